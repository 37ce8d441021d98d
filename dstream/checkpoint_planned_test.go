package dstream_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/rdd"
)

// offsetLog is a planned source over an endless log (offset i holds i),
// like Kafka's: Start positions it at a "committed" offset that lags (0),
// each plan reads at most perBatch offsets, Resume moves it.
type offsetLog struct {
	t        *testing.T
	perBatch int64
	mu       sync.Mutex
	planned  map[time.Time]span // every batch ever planned, over all runs
	resumed  []int64            // the offsets Resume was given, one per restart
	replays  int                // batches whose BatchInfo says replayed
}

func (l *offsetLog) source() dstream.PlannedSource[span, int64] {
	var next int64
	return dstream.PlannedSource[span, int64]{
		Name:  "log",
		Start: func() error { next = 0; return nil },
		Plan: func(bt time.Time) (dstream.SourcePlan[span], error) {
			l.mu.Lock()
			defer l.mu.Unlock()
			if was, ok := l.planned[bt.UTC()]; ok {
				l.t.Errorf("batch %v planned again (first %v): a recorded batch must be replayed, not re-planned", bt, was)
			}
			p := span{next, next + l.perBatch}
			l.planned[bt.UTC()] = p
			next = p.Hi
			return dstream.SourcePlan[span]{Parts: []span{{p.Lo, p.Lo + 3}, {p.Lo + 3, p.Hi}}, Records: l.perBatch, Next: []span{{p.Hi, p.Hi}}}, nil
		},
		Read: func(_ context.Context, _ time.Time, p span, yield func(int64) bool) error {
			for v := p.Lo; v < p.Hi && yield(v); v++ {
			}
			return nil
		},
		Resume: func(n []span) error {
			if len(n) != 1 {
				return fmt.Errorf("Resume got %v, want one position", n)
			}
			l.mu.Lock()
			l.resumed = append(l.resumed, n[0].Lo)
			l.mu.Unlock()
			next = n[0].Lo
			return nil
		},
	}
}

// runPlanned runs a stateful job over the log with a checkpoint until rec
// saw batches more batches of "vals".
func runPlanned(t *testing.T, dir string, l *offsetLog, rec *recorder, batches int) error {
	c, err := dstream.New(dstream.Config{AppName: "ckptplanned", BatchInterval: ckptInterval, Master: "local[2]", Parallelism: 3,
		Checkpoint: dir, CheckpointInterval: 3 * ckptInterval, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	vals := dstream.NewPlannedStream(c, l.source())
	record(t, rec, "vals", vals)
	kv := dstream.Map(vals, func(v int64) dstream.KV[int64, int64] { return dstream.KV[int64, int64]{Key: v % 3, Value: v} })
	st := dstream.UpdateStateByKey(kv, "sums", func(vs []int64, s dstream.Pair[int64, int64], _ bool) (dstream.Pair[int64, int64], bool) {
		for _, v := range vs {
			s.First++
			s.Second += v
		}
		return s, true
	})
	record(t, rec, "state", st)
	c.AddBatchListener(func(info dstream.BatchInfo) {
		for _, in := range info.Inputs {
			for _, a := range in.Attrs {
				if a.Key == "replayed" && a.Value.Bool() {
					l.mu.Lock()
					l.replays++
					if in.Records != l.perBatch {
						l.t.Errorf("replayed batch %v: %d records, want the recorded %d", info.Time, in.Records, l.perBatch)
					}
					l.mu.Unlock()
				}
			}
		}
	})
	rec.mu.Lock()
	target := rec.n["vals"] + batches
	rec.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dstream.ForeachRDD(vals, func(*dstream.Batch, *rdd.RDD[int64]) error {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if rec.n["vals"] >= target {
			cancel()
		}
		return nil
	})
	return c.Run(ctx)
}

// A planned source with Resume runs with a checkpoint: a restart replays
// the batches after the snapshot with exactly their recorded parts (the
// recorder fails a replay with other values), never plans them again, and
// the planner resumes right after the newest recorded batch, so every
// offset is read by exactly one batch time and the state is exact.
func TestCheckpointResumesAPlannedSource(t *testing.T) {
	dir := t.TempDir()
	l := &offsetLog{t: t, perBatch: 7, planned: map[time.Time]span{}}
	rec := newRecorder()
	replayed := func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return rec.n["vals"] > len(rec.outs["vals"])
	}
	runs := 0
	for ; runs < 3 || (!replayed() && runs < 10); runs++ {
		if err := runPlanned(t, dir, l, rec, 7); err != nil {
			t.Fatalf("run %d: %v", runs, err)
		}
		time.Sleep(4 * ckptInterval) // missed batch times: planned afresh, one by one
	}
	if !replayed() {
		t.Fatal("no batch was replayed: the test proves nothing")
	}
	if len(l.resumed) != runs-1 {
		t.Fatalf("Resume called %d times in %d restarts", len(l.resumed), runs-1)
	}
	// Every batch time once, in order, without gaps; its values are its
	// plan's; together they are every offset exactly once.
	times := slices.SortedFunc(func(yield func(time.Time) bool) {
		for bt := range rec.outs["vals"] {
			if !yield(bt) {
				return
			}
		}
	}, time.Time.Compare)
	var want int64
	sum := map[int64]dstream.Pair[int64, int64]{}
	for i, bt := range times {
		if i > 0 && bt.Sub(times[i-1]) != ckptInterval {
			t.Errorf("batch %v follows %v: a batch time was skipped", bt, times[i-1])
		}
		p, ok := l.planned[bt]
		if !ok {
			t.Fatalf("batch %v has output but was never planned", bt)
		}
		var got []int64
		for _, s := range rec.outs["vals"][bt] {
			v, _ := strconv.ParseInt(s, 10, 64)
			got = append(got, v)
		}
		slices.Sort(got)
		if p.Lo != want || int64(len(got)) != p.Hi-p.Lo || got[0] != p.Lo || got[len(got)-1] != p.Hi-1 {
			t.Fatalf("batch %v read %v; its plan %v; the offsets so far end at %d", bt, got, p, want)
		}
		want = p.Hi
		for _, v := range got {
			s := sum[v%3]
			sum[v%3] = dstream.Pair[int64, int64]{First: s.First + 1, Second: s.Second + v}
		}
		var st []string
		for k, s := range sum {
			st = append(st, fmt.Sprint(dstream.KV[int64, dstream.Pair[int64, int64]]{Key: k, Value: s}))
		}
		slices.Sort(st)
		if got := rec.outs["state"][bt]; !slices.Equal(got, st) {
			t.Fatalf("state at %v: %v, want %v", bt, got, st)
		}
	}
	if l.replays != rec.n["vals"]-len(times) {
		t.Errorf("%d batches reported replayed, %d were", l.replays, rec.n["vals"]-len(times))
	}
	// A stop may come between planning a batch and logging it: that plan
	// is dropped (planning has no side effects; the offsets check above
	// shows nothing was lost or read twice), at most once per run.
	if d := len(l.planned) - len(times); d < 0 || d > runs {
		t.Errorf("%d batches planned, %d ran, in %d runs", len(l.planned), len(times), runs)
	}
	t.Logf("%d runs, %d batches, %d outputs (replays included), offsets 0-%d each once; resumed at %v", runs, len(times), rec.n["vals"], want, l.resumed)
}

func TestCheckpointRefusesAPlannedSourceWithoutResume(t *testing.T) {
	c, err := dstream.New(dstream.Config{BatchInterval: ckptInterval, Checkpoint: t.TempDir(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	s := dstream.NewPlannedStream(c, dstream.PlannedSource[int64, int64]{
		Name: "custom",
		Plan: func(time.Time) (dstream.SourcePlan[int64], error) { return dstream.SourcePlan[int64]{}, nil },
		Read: func(context.Context, time.Time, int64, func(int64) bool) error { return nil },
	})
	dstream.ForeachRDD(s, func(*dstream.Batch, *rdd.RDD[int64]) error { return nil })
	err = c.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "has no PlannedSource.Resume") || !strings.Contains(err.Error(), "custom") {
		t.Fatalf("planned source without Resume, with --checkpoint: %v, want a refusal naming it", err)
	}
	if errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}
