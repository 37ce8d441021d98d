package dstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/sluicehq/sluice/rdd"
	"github.com/sluicehq/sluice/scheduler"
)

// outputOp is an output operation: at every batch it turns its stream's RDD
// into jobs, which run in the order the outputs were defined.
type outputOp struct {
	name     string
	generate func(t time.Time) (*outputJob, error)
}

// addOutput adds an output operation: run runs in the driver only; sink, if
// set, is the per-partition function of its "sink" jobs, which executors
// find by the output's place in the batch.
func addOutput[T any](s *DStream[T], op string, run func(b *Batch, r *rdd.RDD[T]) error, sink sinkTask[T]) {
	ctx := s.b.ctx
	o := &outputOp{name: op + "@" + callSite()}
	o.generate = func(t time.Time) (*outputJob, error) {
		r, err := s.rddAt(t)
		if err != nil || r == nil {
			return nil, err
		}
		return newOutputJob(o, r, sink, run), nil
	}
	ctx.mu.Lock()
	defer ctx.mu.Unlock()
	if ctx.state != created {
		panic(fmt.Sprintf("dstream: cannot add output %s after the context started: define every output before Start", o.name))
	}
	ctx.outputs = append(ctx.outputs, o)
}

// newOutputJob makes the job of one output at one batch: run starts its
// jobs in the driver; resolve rebuilds a job's function from its action (on
// an executor).
func newOutputJob[T any](o *outputOp, r *rdd.RDD[T], sink sinkTask[T], run func(b *Batch, r *rdd.RDD[T]) error) *outputJob {
	return &outputJob{op: o, final: r.Node(),
		run: func(b *Batch) error {
			b.root, b.sink = r.Node(), sink
			return run(b, r)
		},
		resolve: func(a action, index, sub int) (*rdd.Node, scheduler.ResultFunc, error) {
			fn, err := actionFunc(r, a, sink, jobOp(index, sub))
			return r.Node(), fn, err
		},
	}
}

// Batch is handed to ForeachRDD functions: it runs jobs over the batch's RDDs.
type Batch struct {
	ctx     context.Context
	sc      *Context
	time    time.Time
	op      string
	index   int // the output's job index in the batch
	jobs    int // jobs run so far
	metrics []scheduler.JobMetrics
	root    *rdd.Node // the output's RDD: the one jobs may run over in a cluster
	sink    any       // the output's sinkTask, if it has one
}

// Time returns the batch time.
func (b *Batch) Time() time.Time { return b.time }

// runJob runs one job over r: fn computes each partition on an executor,
// onResult receives each partition's result on the driver.
func runJob[T any](b *Batch, r *rdd.RDD[T], a action, fn scheduler.ResultFunc, onResult func(part int, rec arrow.Record) error) error {
	sub := b.jobs
	b.jobs++
	m, err := b.sc.sched.RunJob(b.ctx, &scheduler.Job{
		Final:     r.Node(),
		Desc:      b.op,
		BatchTime: b.time,
		Index:     b.index,
		Sub:       sub,
		Action:    a.kind,
		ActionArg: a.arg,
		Func:      fn,
		OnResult:  onResult,
	})
	b.metrics = append(b.metrics, m)
	return err
}

// Collect runs a job that returns every element of r to the driver, in
// partition order. Use it for small results only.
func Collect[T any](b *Batch, r *rdd.RDD[T]) ([]T, error) {
	return take(b, r, -1)
}

// take returns up to n elements of r (all for n < 0) in partition order.
func take[T any](b *Batch, r *rdd.RDD[T], n int) ([]T, error) {
	c := r.Codec()
	parts := make([][]T, r.NumPartitions())
	err := runAction(b, r, action{kind: actTake, arg: int64(n)}, func(part int, rec arrow.Record) error {
		vals := rdd.Decode(c, rec)
		for i := range vals {
			vals[i] = rdd.Clone(vals[i])
		}
		parts[part] = vals
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []T
	for _, p := range parts {
		out = append(out, p...)
		if n >= 0 && len(out) >= n {
			return out[:n], nil
		}
	}
	return out, nil
}

// Print prints the first n elements of every batch to the context's
// standard output, under a header with the batch time, one per line as fmt
// prints them (%v), except that pairs print as in Spark: a KV as
// (key,value) and a Pair as (first,second).
func Print[T any](s *DStream[T], n int) {
	w := s.b.ctx.cfg.Stdout
	addOutput(s, "print", func(b *Batch, r *rdd.RDD[T]) error {
		vals, err := take(b, r, n+1)
		if err != nil {
			return err
		}
		return writePrint(w, b.time, vals, n)
	}, nil)
}

func writePrint[T any](w io.Writer, t time.Time, vals []T, n int) error {
	buf := fmt.Appendf(nil, "-------------------------------------------\nTime: %s\n-------------------------------------------\n", fmtTime(t))
	for i, v := range vals {
		if i == n {
			buf = append(buf, "...\n"...)
			break
		}
		buf = appendPrinted(buf, reflect.ValueOf(v))
		buf = append(buf, '\n')
	}
	buf = append(buf, '\n')
	_, err := w.Write(buf)
	return err
}

// ForeachRDD runs f on the driver for every batch's RDD. f may run jobs over
// the RDD with Collect or ForeachPartitionRDD.
//
// f runs only in the driver, also in a cluster. There, the jobs f runs
// must be over r itself (Collect, CountRDD, ...): executors rebuild r from
// the job's graph, but not RDDs built inside f; build those with Transform
// or Map before the output. A ForeachPartitionRDD with a sink made inside
// f runs in local mode only: use ForeachPartition for a cluster.
func ForeachRDD[T any](s *DStream[T], f func(b *Batch, r *rdd.RDD[T]) error) {
	addOutput(s, "foreachRDD", f, nil)
}

// PartitionInfo tells a Sink which partition of which batch it writes.
type PartitionInfo struct {
	BatchTime time.Time
	Partition int
	Attempt   int // > 0 when the task is retried: sinks must tolerate rewrites
	// Task updates accumulators; its updates count once the partition was
	// written and Close returned nil.
	Task *Task
}

// Sink writes the elements of each partition of each batch, on the
// executors. Open (optional) sets up a writer W for one partition; Write is
// called for every element; Close (optional) tears the writer down and is
// always called after a successful Open, with the first error of Write (or
// nil). An error from any of them fails the task, which is retried.
type Sink[T, W any] struct {
	Open  func(p PartitionInfo) (W, error)
	Write func(w W, v T) error
	Close func(w W, err error) error
}

// ForeachPartition writes every batch to sink, partition by partition.
func ForeachPartition[T, W any](s *DStream[T], sink Sink[T, W]) {
	if sink.Write == nil {
		panic("dstream: ForeachPartition: Sink.Write is nil")
	}
	addOutput(s, "foreachPartition", func(b *Batch, r *rdd.RDD[T]) error {
		return runAction(b, r, action{kind: actSink}, nil)
	}, func(r *rdd.RDD[T], op string) scheduler.ResultFunc { return sinkFunc(r, sink, op) })
}

// ForeachPartitionRDD runs a job that writes every partition of r to sink.
// In a cluster, executors cannot find a sink made inside a ForeachRDD
// function: use ForeachPartition there.
func ForeachPartitionRDD[T, W any](b *Batch, r *rdd.RDD[T], sink Sink[T, W]) error {
	if b.sc.role == roleDriver {
		return fmt.Errorf("%w: %s runs ForeachPartitionRDD with a sink made in the output function; use dstream.ForeachPartition(stream, sink) in a cluster", errRebuild, b.op)
	}
	return runJob(b, r, action{kind: actSink}, sinkFunc(r, sink, jobOp(b.index, b.jobs)), nil)
}

// jobOp names job sub of the batch's job index for accumulator updates:
// the same in the driver and on executors.
func jobOp(index, sub int) string { return "o" + strconv.Itoa(index) + "." + strconv.Itoa(sub) }

// sinkFunc is the per-partition function that writes a partition to sink;
// op names the job for accumulator updates.
func sinkFunc[T, W any](r *rdd.RDD[T], sink Sink[T, W], op string) scheduler.ResultFunc {
	return func(tc *rdd.TaskContext, part int) (_ arrow.Record, err error) {
		bt := tc.BatchTime
		var w W
		task := newTask(tc, op, bt, part)
		if sink.Open != nil {
			if w, err = sink.Open(PartitionInfo{BatchTime: tc.BatchTime, Partition: part, Attempt: tc.Attempt, Task: task}); err != nil {
				return nil, fmt.Errorf("sink open: %w", err)
			}
		}
		var werr error
		ierr := r.Iterate(tc, part, func(v T) bool {
			werr = sink.Write(w, v)
			return werr == nil
		})
		werr = errors.Join(werr, ierr)
		if sink.Close != nil {
			if cerr := sink.Close(w, werr); cerr != nil {
				werr = errors.Join(werr, fmt.Errorf("sink close: %w", cerr))
			}
		}
		if werr == nil {
			werr = task.finish()
		}
		return nil, werr
	}
}

// SaveAsTextFiles writes every batch as a directory of text files, one line
// per element (as Print shows it: a string as is, a KV or Pair as
// (key,value), anything else as fmt's %v) and one file per partition, named
// "<prefix>-<batch time in ms>[.<suffix>]". The directory appears atomically
// once the whole batch is written: partitions are written into a temporary
// directory that is renamed when every task has finished.
//
// The output commits exactly once per batch: the directory holds a
// _SUCCESS file naming the batch time, renamed into place together with the
// part files, and a batch whose directory already holds it (a batch
// replayed after a restart from a checkpoint) is not written again.
func SaveAsTextFiles[T any](s *DStream[T], prefix, suffix string) {
	addOutput(s, "saveAsTextFiles", func(b *Batch, r *rdd.RDD[T]) error {
		dir := prefix + "-" + strconv.FormatInt(b.time.UnixMilli(), 10)
		if suffix != "" {
			dir += "." + suffix
		}
		return saveFiles(b, r, dir, "part-%05d", action{kind: actText})
	}, nil)
}

// saveFiles writes r into dir atomically, one file per partition. Tasks
// compute each partition's bytes (a), and the driver writes them, once per
// partition: the output lands on the driver's file system whichever hosts
// the executors run on.
func saveFiles[T any](b *Batch, r *rdd.RDD[T], dir, nameFmt string, a action) error {
	marker := []byte("batch " + fmtTime(b.time) + "\n")
	if got, err := os.ReadFile(filepath.Join(dir, successFile)); err == nil && bytes.Equal(got, marker) {
		return nil // committed already: a replay writes nothing again
	}
	tmp := dir + "._temporary"
	old := dir + "._replaced"
	for _, d := range []string{tmp, old} { // left by a crash
		if err := os.RemoveAll(d); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return fmt.Errorf("create output directory: %w", err)
	}
	err := runAction(b, r, a, func(part int, rec arrow.Record) error {
		name := filepath.Join(tmp, fmt.Sprintf(nameFmt, part))
		return writeFileAtomic(name, func(w io.Writer) error {
			for _, chunk := range rdd.Decode(rdd.CodecOf[[]byte](), rec) {
				if _, err := w.Write(chunk); err != nil {
					return err
				}
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(tmp, successFile), func(w io.Writer) error {
		_, err := w.Write(marker)
		return err
	}); err != nil {
		return err
	}
	if err := syncDir(tmp); err != nil {
		return err
	}
	// A directory without this batch's marker (an interrupted older
	// write) is moved aside in one rename, never removed in place.
	if _, err := os.Stat(dir); err == nil {
		if err := os.Rename(dir, old); err != nil {
			return fmt.Errorf("commit output: %w", err)
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("commit output: %w", err)
	}
	if err := syncDir(filepath.Dir(dir)); err != nil {
		return err
	}
	return os.RemoveAll(old)
}

// successFile marks a committed output directory with its batch time.
const successFile = "_SUCCESS"

// writeFileAtomic writes a file through a temporary name, synced and renamed.
func writeFileAtomic(name string, write func(io.Writer) error) error {
	tmp := name + ".inprogress"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	err = write(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, name)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// rddPkg is the package path of rdd.KV and rdd.Pair.
var rddPkg = reflect.TypeFor[rdd.KV[int, int]]().PkgPath()

// appendPrinted appends v as Print shows it: KV and Pair values, at any
// depth of pairs, as (a,b); everything else as %v.
func appendPrinted(buf []byte, v reflect.Value) []byte {
	if !v.IsValid() {
		return fmt.Append(buf, nil)
	}
	t := v.Type()
	if t.Kind() == reflect.Struct && t.PkgPath() == rddPkg && t.NumField() == 2 &&
		(strings.HasPrefix(t.Name(), "KV[") || strings.HasPrefix(t.Name(), "Pair[")) {
		buf = append(buf, '(')
		buf = appendPrinted(buf, v.Field(0))
		buf = append(buf, ',')
		buf = appendPrinted(buf, v.Field(1))
		return append(buf, ')')
	}
	if v.CanInterface() {
		return fmt.Appendf(buf, "%v", v.Interface())
	}
	return fmt.Appendf(buf, "%v", v)
}
