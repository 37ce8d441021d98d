package dstream

import (
	"errors"
	"fmt"
	"reflect"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/sluicehq/sluice/rdd"
	"github.com/sluicehq/sluice/scheduler"
)

// Jobs are described by actions so that no output function runs on an
// executor. An output function (Print, SaveAsTextFiles, a ForeachRDD body)
// runs only in the driver; each job it starts is named on the wire by the
// output's place in the batch and an action over the output's RDD ("take 11",
// "count", "text", "sink", "force"), from which an executor rebuilds the
// per-partition function in its own copy of the graph (actionFunc).
type action struct {
	kind string
	arg  int64
}

const (
	actTake  = "take"  // up to arg values per partition (-1: all), to the driver
	actCount = "count" // the partition's number of values
	actText  = "text"  // the partition as text lines (SaveAsTextFiles)
	actSink  = "sink"  // the output's own sink (ForeachPartition)
	actForce = "force" // compute the partition, send nothing (stateful streams)
)

// sinkTask is an output's per-partition function, fixed when the output is
// defined (so every process has it without running the output).
type sinkTask[T any] func(r *rdd.RDD[T], op string) scheduler.ResultFunc

// actionFunc returns the per-partition function of a over r; op names the
// job (jobOp) for a sink's accumulator updates.
func actionFunc[T any](r *rdd.RDD[T], a action, sink sinkTask[T], op string) (scheduler.ResultFunc, error) {
	c := r.Codec()
	switch a.kind {
	case actTake:
		n := int(a.arg)
		return func(tc *rdd.TaskContext, part int) (arrow.Record, error) {
			bl := rdd.NewBuilder(tc.Alloc, c)
			defer bl.Release()
			err := r.Iterate(tc, part, func(v T) bool {
				bl.Append(v)
				return n < 0 || bl.Len() < n
			})
			return bl.NewRecord(), err
		}, nil
	case actCount:
		return func(tc *rdd.TaskContext, part int) (arrow.Record, error) {
			var n int64
			err := r.Iterate(tc, part, func(T) bool { n++; return true })
			return rdd.Encode(tc.Alloc, rdd.CodecOf[int64](), []int64{n}), err
		}, nil
	case actText:
		return func(tc *rdd.TaskContext, part int) (arrow.Record, error) {
			var buf []byte
			err := r.Iterate(tc, part, func(v T) bool {
				if s, ok := any(v).(string); ok {
					buf = append(buf, s...)
				} else { // as Print shows it: a KV or Pair as (key,value)
					buf = appendPrinted(buf, reflect.ValueOf(v))
				}
				buf = append(buf, '\n')
				return true
			})
			if err != nil {
				return nil, err
			}
			return rdd.Encode(tc.Alloc, rdd.CodecOf[[]byte](), [][]byte{buf}), nil
		}, nil
	case actForce:
		return func(tc *rdd.TaskContext, part int) (arrow.Record, error) {
			return nil, r.Iterate(tc, part, func(T) bool { return true })
		}, nil
	case actSink:
		if sink == nil {
			return nil, errors.New("dstream: a sink job on an output that has no sink")
		}
		return sink(r, op), nil
	}
	return nil, fmt.Errorf("dstream: unknown job action %q (driver and executor run different Sluice versions?)", a.kind)
}

// errRebuild is returned in a cluster when a job cannot be rebuilt on the
// executors without running output code.
var errRebuild = errors.New("dstream: in cluster mode, executors rebuild a job from the job's graph without running output functions")

// runAction runs one job over r, an action whose per-partition function an
// executor can rebuild; onResult receives each partition's result in the
// driver.
func runAction[T any](b *Batch, r *rdd.RDD[T], a action, onResult func(part int, rec arrow.Record) error) error {
	if b.sc.role == roleDriver && r.Node() != b.root {
		return fmt.Errorf("%w: a job of %s runs over %s, an RDD built inside the output function; build it in the stream graph instead (dstream.Transform or Map before the output)",
			errRebuild, b.op, r.Node())
	}
	var sink sinkTask[T]
	if a.kind == actSink {
		sink, _ = b.sink.(sinkTask[T])
	}
	fn, err := actionFunc(r, a, sink, jobOp(b.index, b.jobs))
	if err != nil {
		return err
	}
	return runJob(b, r, a, fn, onResult)
}

// CountRDD runs a job that counts the elements of r (a ForeachRDD body's
// RDD) and returns the count to the driver.
func CountRDD[T any](b *Batch, r *rdd.RDD[T]) (int64, error) {
	var n int64
	err := runAction(b, r, action{kind: actCount}, func(_ int, rec arrow.Record) error {
		for _, v := range rdd.Decode(rdd.CodecOf[int64](), rec) {
			n += v
		}
		return nil
	})
	return n, err
}
