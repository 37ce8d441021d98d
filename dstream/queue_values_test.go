package dstream

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/sluicehq/sluice/rdd"
)

// In local mode without a checkpoint, a queue's tasks read the pushed values
// in place: no Arrow copy of the input (the allocator serves none of it),
// each string the task sees is the very string pushed, every value reaches
// the tasks once, and the batch's input goes when the batch is done. With a
// checkpoint the input is encoded, for the write-ahead log.
func TestQueueInLocalModeReadsPushedValues(t *testing.T) {
	for _, ckpt := range []bool{false, true} {
		name := "no checkpoint"
		if ckpt {
			name = "checkpoint"
		}
		t.Run(name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			cfg := Config{BatchInterval: time.Second, Master: "local[2]", Allocator: mem, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			if ckpt {
				cfg.Checkpoint = t.TempDir()
			}
			ctx, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			q := NewQueue[string](ctx)
			pushed := make([]string, 1000)
			data := map[*byte]bool{}
			for i := range pushed {
				pushed[i] = strings.Repeat("x", 100+i) // distinct lengths: distinct strings
				data[unsafe.StringData(pushed[i])] = true
			}
			var mu sync.Mutex
			var seen, inPlace int
			var peak int
			ForeachRDD(q.Stream(), func(b *Batch, r *rdd.RDD[string]) error {
				_, err := Collect(b, rdd.Map(r, func(s string) int {
					mu.Lock()
					defer mu.Unlock()
					seen++
					if data[unsafe.StringData(s)] {
						inPlace++
					}
					peak = max(peak, mem.CurrentAlloc())
					return len(s)
				}))
				return err
			})
			zero := time.Unix(0, 0)
			if ckpt {
				zero, _ = startCheckpointed(t, ctx) // as Run does
			} else if err := ctx.StartManual(zero); err != nil {
				t.Fatal(err)
			}
			defer ctx.Stop()
			q.Push(pushed...)
			if _, err := ctx.RunBatch(context.Background(), zero.Add(time.Second)); err != nil {
				t.Fatal(err)
			}
			if seen != len(pushed) {
				t.Fatalf("the tasks saw %d values, want %d", seen, len(pushed))
			}
			if held, _ := q.in.residentBatches(); held != 0 {
				t.Fatalf("%d batches' input held after the batch", held)
			}
			inputBytes := 0
			for _, s := range pushed {
				inputBytes += len(s)
			}
			switch {
			case !ckpt && (inPlace != len(pushed) || peak >= inputBytes):
				t.Fatalf("%d of %d values read in place, allocator peak %d bytes for %d bytes of input: want all in place, no copy", inPlace, len(pushed), peak, inputBytes)
			case ckpt && (inPlace != 0 || peak < inputBytes):
				t.Fatalf("with a checkpoint: %d values read in place, allocator peak %d bytes: want the input encoded (>= %d bytes)", inPlace, peak, inputBytes)
			}
		})
	}
}

// An RDD of a queue's batch kept past the batch fails when read, naming the
// batch, as with encoded input.
func TestQueueValuesOfADoneBatchAreGone(t *testing.T) {
	ctx, err := New(Config{BatchInterval: time.Second, Master: "local[2]", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	q := NewQueue[string](ctx)
	var kept *rdd.RDD[string]
	ForeachRDD(q.Stream(), func(b *Batch, r *rdd.RDD[string]) error {
		if kept == nil {
			kept = r
		}
		_, err := Collect(b, r)
		return err
	})
	if err := ctx.StartManual(time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	defer ctx.Stop()
	for k := 1; k <= 2; k++ {
		q.Push("a", "b")
		if _, err := ctx.RunBatch(context.Background(), time.Unix(int64(k), 0)); err != nil {
			t.Fatal(err)
		}
	}
	_, err = ctx.RunBatch(context.Background(), time.Unix(3, 0))
	if err != nil {
		t.Fatal(err)
	}
	tc := &rdd.TaskContext{Ctx: context.Background(), Alloc: memory.NewGoAllocator()}
	err = kept.Iterate(tc, 0, func(string) bool { return true })
	if err == nil || !strings.Contains(err.Error(), "no longer remembered") {
		t.Fatalf("reading a done batch's input: %v, want \"no longer remembered\"", err)
	}
}
