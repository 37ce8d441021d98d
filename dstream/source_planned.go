package dstream

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/sluicehq/sluice/rdd"
)

// SourcePlan is what a planned source decides, in the job's driver, about
// one batch: which parts to read. Each part becomes one partition (one
// task) of the batch's RDD.
type SourcePlan[M any] struct {
	// Parts are small descriptions of what to read (a Kafka offset range).
	Parts []M
	// Records is the number of records the parts hold, for the batch log
	// line and rate control.
	Records int64
	// Attrs are added to the batch log line (offsets, lost records).
	Attrs []slog.Attr
	// Metadata is kept in BatchInfo.Inputs for batch listeners.
	Metadata any
}

// PlannedSource is the extension point for sources whose input stays
// outside the job until a task reads it, the model of Spark's direct Kafka
// stream. At every batch Plan runs in the job's driver and fixes exactly
// what the batch reads; tasks call Read for their part. In a cluster only
// the plan travels to the executors (as the batch's input), never the
// records, and a recomputed task reads the same part again, so Read must
// return the same values for the same part.
type PlannedSource[M, T any] struct {
	// Name names the source operator in logs and errors ("kafka").
	Name string
	// Start, optional, runs once in the job's driver before the first
	// batch (resolving start positions, for example).
	Start func() error
	// Stop, optional, runs in the job's driver when the job stops.
	Stop func()
	// Plan decides batch t. It runs in the job's driver, once per batch,
	// in batch order, at the batch time. An error fails the batch.
	Plan func(t time.Time) (SourcePlan[M], error)
	// Read yields the values of one part of batch t. It runs in tasks, on
	// executors in a cluster. An error fails the task, which is retried.
	Read func(ctx context.Context, t time.Time, part M, yield func(T) bool) error
}

// NewPlannedStream makes an input stream from a planned source. M must be
// encodable by rdd.CodecOf (a struct of basic fields is).
func NewPlannedStream[M, T any](c *Context, src PlannedSource[M, T]) *DStream[T] {
	if src.Plan == nil || src.Read == nil {
		panic("dstream: NewPlannedStream: PlannedSource.Plan and PlannedSource.Read are required")
	}
	op := src.Name
	if op == "" {
		op = "planned"
	}
	codec := rdd.CodecOf[M]()
	var mu sync.Mutex
	infos := map[time.Time]InputInfo{}
	in := newInput[M](c, op+"-plan", func(t time.Time) ([]arrow.Record, int64, error) {
		plan, err := src.Plan(t)
		if err != nil {
			return nil, 0, err
		}
		recs := make([]arrow.Record, len(plan.Parts))
		for i, m := range plan.Parts {
			recs[i] = rdd.Encode(c.cfg.Allocator, codec, []M{m})
		}
		mu.Lock()
		infos[t] = InputInfo{Records: plan.Records, Attrs: plan.Attrs, Metadata: plan.Metadata}
		mu.Unlock()
		return recs, plan.Records, nil
	})
	in.startFn = src.Start
	in.planned = true
	in.stopFn = func() {
		if src.Stop != nil && c.role != roleExecutor {
			src.Stop()
		}
	}
	planStream := in.s
	s := newStream(c, op, c.cfg.BatchInterval, []*streamBase{planStream.b}, func(t time.Time) (*rdd.RDD[T], error) {
		plan, err := planStream.rddAt(t)
		if err != nil || plan == nil {
			return nil, err
		}
		return rdd.ReadPlanned(op, plan, func(tc *rdd.TaskContext, m M, yield func(T) bool) error {
			ctx := tc.Ctx
			if ctx == nil {
				ctx = context.Background()
			}
			if err := src.Read(ctx, tc.BatchTime, m, yield); err != nil {
				return fmt.Errorf("%s: %w", op, err)
			}
			return nil
		}), nil
	})
	forget := planStream.b.forget
	planStream.b.forget = func(before time.Time) {
		forget(before)
		mu.Lock()
		defer mu.Unlock()
		for t := range infos {
			if !t.After(before) {
				delete(infos, t)
			}
		}
	}
	c.hooks.addDescriber(func(t time.Time) (InputInfo, bool) {
		mu.Lock()
		defer mu.Unlock()
		info, ok := infos[t]
		info.Stream = s.b.name
		return info, ok
	})
	return s
}
