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
