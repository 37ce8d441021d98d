package dstream_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/dstream/dstreamtest"
)

type span struct{ Lo, Hi int64 }

// A planned source: the plan fixes each batch in the driver, tasks read
// exactly their part (a failed read is retried and reads the same part),
// the plan's figures reach BatchInfo and the log line, and listeners hear
// of successful batches only, in order.
func TestPlannedSource(t *testing.T) {
	var logs strings.Builder
	h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	var next int64
	var failOnce atomic.Bool
	failOnce.Store(true)
	s := dstream.NewPlannedStream(h.Ctx, dstream.PlannedSource[span, int64]{
		Name: "spans",
		Plan: func(t time.Time) (dstream.SourcePlan[span], error) {
			if next >= 30 {
				return dstream.SourcePlan[span]{}, errors.New("no more spans")
			}
			lo := next
			next += 10
			return dstream.SourcePlan[span]{
				Parts:    []span{{lo, lo + 4}, {lo + 4, lo + 10}},
				Records:  10,
				Attrs:    []slog.Attr{slog.String("spans", fmt.Sprintf("%d-%d", lo, lo+10))},
				Metadata: lo,
			}, nil
		},
		Read: func(ctx context.Context, t time.Time, p span, yield func(int64) bool) error {
			if p.Lo == 14 && failOnce.CompareAndSwap(true, false) {
				yield(-1) // a partial read, discarded with the failed attempt
				return errors.New("transient")
			}
			for v := p.Lo; v < p.Hi; v++ {
				if !yield(v) {
					return nil
				}
			}
			return nil
		},
	})
	var heard []dstream.BatchInfo
	h.Ctx.AddBatchListener(func(info dstream.BatchInfo) { heard = append(heard, info) })
	out := dstreamtest.Output(h, s)
	h.Run(3)
	if _, err := h.Step(); err == nil || !strings.Contains(err.Error(), "no more spans") {
		t.Fatalf("4th batch: %v, want the plan's error", err)
	}
	for i := range 3 {
		got := out.Batch(i)
		if len(got) != 10 || got[0] != int64(10*i) || got[9] != int64(10*i+9) {
			t.Fatalf("batch %d read %v", i, got)
		}
	}
	if len(heard) != 3 {
		t.Fatalf("listener heard %d batches, want the 3 that succeeded", len(heard))
	}
	for i, info := range heard {
		if !info.Time.Equal(h.BatchTime(i)) || info.InputRecords != 10 || len(info.Inputs) != 1 ||
			info.Inputs[0].Metadata != int64(10*i) || !strings.HasPrefix(info.Inputs[0].Stream, "spans@") {
			t.Fatalf("batch %d info %+v", i, info)
		}
	}
	if !strings.Contains(logs.String(), "spans=10-20") {
		t.Fatalf("the plan's attributes are not on the batch log line:\n%s", logs.String())
	}
	if failOnce.Load() {
		t.Fatal("the failing read never ran")
	}
}

// Figures a planned source's tasks count (records skipped) reach the batch
// log line and BatchInfo, added to the plan's own: a failed attempt's
// figures do not count, and a part read twice (two outputs) counts once.
func TestPlannedSourceCounts(t *testing.T) {
	var logs strings.Builder
	h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	var failOnce atomic.Bool
	failOnce.Store(true)
	s := dstream.NewPlannedStream(h.Ctx, dstream.PlannedSource[span, int64]{
		Name: "spans",
		Plan: func(t time.Time) (dstream.SourcePlan[span], error) {
			return dstream.SourcePlan[span]{Parts: []span{{0, 4}, {4, 10}, {10, 12}}, Records: 12, Counts: map[string]int64{"skipped": 100, "planned_only": 7}}, nil
		},
		Read: func(ctx context.Context, t time.Time, p span, yield func(int64) bool) error {
			dstream.AddSourceCount(ctx, "skipped", p.Hi-p.Lo)
			dstream.AddSourceCount(ctx, "skipped", 1)
			if p.Lo == 4 && failOnce.CompareAndSwap(true, false) {
				dstream.AddSourceCount(ctx, "skipped", 1000) // dropped with the failed attempt
				return errors.New("transient")
			}
			for v := p.Lo; v < p.Hi; v++ {
				if !yield(v) {
					return nil
				}
			}
			return nil
		},
	})
	dstream.AddSourceCount(context.Background(), "skipped", 1) // outside a Read: nothing
	var heard []dstream.BatchInfo
	h.Ctx.AddBatchListener(func(info dstream.BatchInfo) { heard = append(heard, info) })
	out := dstreamtest.Output(h, s)
	out2 := dstreamtest.Output(h, s)
	h.Run(2)
	if len(out.Batch(0)) != 12 || len(out2.Batch(1)) != 12 {
		t.Fatalf("read %v and %v", out.Batch(0), out2.Batch(1))
	}
	// 100 planned + (4+1) + (6+1) + (2+1) read.
	if got := strings.Count(logs.String(), "planned_only=7 skipped=115"); got != 2 {
		t.Fatalf("the figures are on %d batch log lines, want 2:\n%s", got, logs.String())
	}
	if len(heard) != 2 {
		t.Fatalf("heard %d batches", len(heard))
	}
	for _, info := range heard {
		var got []string
		for _, a := range info.Inputs[0].Attrs {
			got = append(got, a.String())
		}
		if strings.Join(got, " ") != "planned_only=7 skipped=115" {
			t.Fatalf("BatchInfo attrs %v", got)
		}
	}
	if failOnce.Load() {
		t.Fatal("the failing read never ran")
	}
}
