package dstream

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/sluicehq/sluice/internal/cluster"
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
	// Counts are figures known when planning (records skipped), to which
	// tasks add with AddSourceCount; each batch's totals are added to its
	// log line (after Attrs, by name) and to BatchInfo.Inputs' Attrs.
	Counts map[string]int64
	// Next, for a source with a Resume hook, says where the batch after
	// this one starts (Kafka: one empty range per partition, at its next
	// offset). With a checkpoint it is recorded with the batch's parts
	// before the batch is scheduled, and a restarted job gives the newest
	// recorded one to Resume.
	Next []M
}

type sourceCountsKey struct{}

// sourceCounts collects a task's AddSourceCount figures, by part read.
type sourceCounts struct {
	mu    sync.Mutex
	part  string
	parts map[string]map[string]int64 // by part (%v), by name
}

// AddSourceCount adds n to the figure name of the batch a PlannedSource's
// Read reads, for the part it reads. A part's figures count once, from the
// last successful read of the part (a retried or recomputed read replaces
// them), and only when the task succeeds. ctx is the ctx given to Read;
// elsewhere AddSourceCount does nothing.
func AddSourceCount(ctx context.Context, name string, n int64) {
	sc, _ := ctx.Value(sourceCountsKey{}).(*sourceCounts)
	if sc == nil {
		return
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.parts == nil {
		sc.parts = map[string]map[string]int64{}
	}
	m := sc.parts[sc.part]
	if m == nil {
		m = map[string]int64{}
		sc.parts[sc.part] = m
	}
	m[name] += n
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
	// Resume, optional, makes the source usable with a checkpoint
	// (--checkpoint); without it such a run is refused. A restarted job
	// calls it once in the job's driver, after Start and before any
	// batch, with SourcePlan.Next of the newest batch in the checkpoint's
	// write-ahead log; the next Plan must start right there. The batches
	// the log holds are not planned again: they are replayed with exactly
	// their recorded parts (BatchInfo.Inputs then has the recorded record
	// count and the attribute replayed=true, not the plan's Metadata).
	Resume func(next []M) error
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
	plans := map[time.Time]map[string]int64{}          // SourcePlan.Counts
	nexts := map[time.Time][]M{}                       // SourcePlan.Next, until logged
	counted := map[int64]map[string]map[string]int64{} // tasks' counts by batch (ns), part
	reportName := op + "/" + strconv.Itoa(len(c.streams))
	c.registerReporter("plannedCounts/", reportName, func(t time.Time, _ int, b []byte) error {
		var parts map[string]map[string]int64
		if err := json.Unmarshal(b, &parts); err != nil {
			return fmt.Errorf("%s: task counts: %w", op, err)
		}
		mu.Lock()
		defer mu.Unlock()
		ns := t.UnixNano()
		if counted[ns] == nil {
			counted[ns] = map[string]map[string]int64{}
		}
		for p, m := range parts {
			counted[ns][p] = m
		}
		return nil
	})
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
		if plan.Counts != nil {
			plans[t] = plan.Counts
		}
		if src.Resume != nil {
			nexts[t] = plan.Next
		}
		mu.Unlock()
		return recs, plan.Records, nil
	})
	in.startFn = src.Start
	in.planned = true // describesItself
	if src.Resume != nil {
		// The write-ahead record of a batch (checkpoint.go) carries, after
		// the parts, the plan's record count and Next.
		nextCodec := rdd.CodecOf[M]()
		in.extra = func(t time.Time) []byte {
			mu.Lock()
			next, records := nexts[t], infos[t].Records
			delete(nexts, t)
			mu.Unlock()
			return appendPlanPosition(c, nextCodec, records, next)
		}
		in.restoreExtra = func(t time.Time, b []byte) (int64, error) {
			records, _, err := readPlanPosition(nextCodec, b)
			if err != nil {
				return 0, fmt.Errorf("%s: %w", op, err)
			}
			mu.Lock()
			infos[t] = InputInfo{Records: records, Attrs: []slog.Attr{slog.Bool("replayed", true)}}
			mu.Unlock()
			return records, nil
		}
		in.resume = func(b []byte) error {
			_, next, err := readPlanPosition(nextCodec, b)
			if err != nil {
				return fmt.Errorf("%s: %w", op, err)
			}
			return src.Resume(next)
		}
	}
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
			sc := &sourceCounts{part: fmt.Sprintf("%v", m)}
			if err := src.Read(context.WithValue(ctx, sourceCountsKey{}, sc), tc.BatchTime, m, yield); err != nil {
				return fmt.Errorf("%s: %w", op, err)
			}
			if sc.parts != nil {
				// Merged with the task's earlier parts' counts, if any.
				key := "plannedCounts/" + strconv.FormatInt(tc.BatchTime.UnixNano(), 10) + "/" + strconv.Itoa(tc.Partition) + "/" + reportName
				var all map[string]map[string]int64
				if old, ok := tc.Reports[key]; ok {
					if err := json.Unmarshal(old, &all); err != nil {
						return fmt.Errorf("%s: %w", op, err)
					}
				}
				if all == nil {
					all = map[string]map[string]int64{}
				}
				maps.Copy(all, sc.parts)
				b, err := json.Marshal(all)
				if err != nil {
					return fmt.Errorf("%s: %w", op, err)
				}
				tc.Report(key, b)
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
		for t := range plans {
			if !t.After(before) {
				delete(plans, t)
			}
		}
		for t := range nexts {
			if !t.After(before) {
				delete(nexts, t)
			}
		}
		for ns := range counted {
			if ns <= before.UnixNano() {
				delete(counted, ns)
			}
		}
	}
	c.hooks.addDescriber(func(t time.Time) (InputInfo, bool) {
		mu.Lock()
		defer mu.Unlock()
		info, ok := infos[t]
		info.Stream = s.b.name
		if plans[t] != nil || counted[t.UnixNano()] != nil {
			tot := maps.Clone(plans[t])
			if tot == nil {
				tot = map[string]int64{}
			}
			for _, m := range counted[t.UnixNano()] {
				for k, n := range m {
					tot[k] += n
				}
			}
			info.Attrs = slices.Clone(info.Attrs)
			for _, k := range slices.Sorted(maps.Keys(tot)) {
				info.Attrs = append(info.Attrs, slog.Int64(k, tot[k]))
			}
		}
		return info, ok
	})
	return s
}

// appendPlanPosition encodes a plan's record count and Next: 8 bytes of
// count, then Next as framed Arrow IPC (nothing if Next is empty).
func appendPlanPosition[M any](c *Context, codec rdd.Codec[M], records int64, next []M) []byte {
	out := binary.BigEndian.AppendUint64(nil, uint64(records))
	if len(next) == 0 {
		return out
	}
	rec := rdd.Encode(c.cfg.Allocator, codec, next)
	defer rec.Release()
	b, err := cluster.EncodeIPC(rec, memory.DefaultAllocator)
	if err != nil {
		// An in-memory encoding of a record just built cannot fail short
		// of a bug; a record without Next refuses to resume, loudly.
		panic(fmt.Sprintf("dstream: encode a plan's Next: %v", err))
	}
	return append(out, b...)
}

// readPlanPosition decodes what appendPlanPosition wrote.
func readPlanPosition[M any](codec rdd.Codec[M], b []byte) (int64, []M, error) {
	if len(b) < 8 {
		return 0, nil, errors.New("recorded plan position truncated (a record without it was written by another build)")
	}
	records := int64(binary.BigEndian.Uint64(b))
	if len(b) == 8 {
		return records, nil, nil
	}
	rec, err := cluster.DecodeIPC(b[8:], memory.DefaultAllocator) // Go heap: decoded strings outlive the record
	if err != nil {
		return 0, nil, fmt.Errorf("recorded plan position: %w", err)
	}
	defer rec.Release()
	return records, rdd.Decode(codec, rec), nil
}
