package dstream

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/sluicehq/sluice/rdd"
)

// manualJob is a context driven batch by batch with a checked allocator.
func manualJob(t *testing.T, master string) (*Context, func(n int)) {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	c, err := New(Config{AppName: "acc", BatchInterval: time.Second, Master: master, Allocator: mem, Stdout: io.Discard,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	zero := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	started := false
	batches := 0
	t.Cleanup(func() {
		c.Stop()
		mem.AssertSize(t, 0)
	})
	return c, func(n int) {
		t.Helper()
		if !started {
			if err := c.StartManual(zero); err != nil {
				t.Fatal(err)
			}
			started = true
		}
		for range n {
			batches++
			if _, err := c.RunBatch(context.Background(), zero.Add(time.Duration(batches)*time.Second)); err != nil {
				t.Fatalf("batch %d: %v", batches, err)
			}
		}
	}
}

func pushN(q *Queue[int], batches, per int) int {
	total := 0
	for range batches {
		vals := make([]int, per)
		for i := range vals {
			vals[i] = total + i
		}
		total += per
		q.Push(vals...)
	}
	return total
}

// TestAccumulatorRetries: a task whose first attempt fails after updating
// the accumulator (in a map upstream and in the sink) is counted once, from
// the attempt that succeeded.
func TestAccumulatorRetries(t *testing.T) {
	c, run := manualJob(t, "local[2]")
	q := NewQueue[int](c)
	total := pushN(q, 3, 50)
	seen := NewAccumulator(c, "seen", Sum[int64])
	written := NewAccumulator(c, "written", Sum[int64])
	var calls, failures atomic.Int64
	mapped := MapWithTask(q.Stream(), func(task *Task, v int) int {
		calls.Add(1)
		seen.Add(task, 1)
		return v
	})
	ForeachPartition(mapped, Sink[int, *Task]{
		Open: func(p PartitionInfo) (*Task, error) { return p.Task, nil },
		Write: func(task *Task, v int) error {
			written.Add(task, 1)
			if task.Attempt() == 0 && task.Partition() == 0 {
				failures.Add(1)
				return errors.New("injected sink failure")
			}
			return nil
		},
	})
	run(3)
	if failures.Load() == 0 || calls.Load() <= int64(total) {
		t.Fatalf("no retry happened (failures %d, calls %d for %d elements)", failures.Load(), calls.Load(), total)
	}
	if got := seen.Value(); got != int64(total) {
		t.Errorf("map accumulator %d, want %d (each element once)", got, total)
	}
	if got := written.Value(); got != int64(total) {
		t.Errorf("sink accumulator %d, want %d", got, total)
	}
}

// TestAccumulatorRecomputation: a map stage recomputed after its shuffle
// output was lost, a stream computed again by a second output, and a
// partition computed only in part (Print) count once each.
func TestAccumulatorRecomputation(t *testing.T) {
	c, run := manualJob(t, "local[1]") // one slot: reduce tasks run in order
	q := NewQueue[int](c)
	total := pushN(q, 2, 40)
	seen := NewAccumulator(c, "seen", Sum[int64])
	var calls atomic.Int64
	pairs := MapWithTask(q.Stream(), func(task *Task, v int) KV[int, int] {
		calls.Add(1)
		seen.Add(task, 1)
		return KVOf(v%7, 1)
	})
	var dropped atomic.Int64 // batches whose map output was dropped
	counts := Transform(ReduceByKey(pairs, Sum[int], Partitions(3)), func(bt time.Time, r *rdd.RDD[KV[int, int]]) *rdd.RDD[KV[int, int]] {
		shuffle := r.Node().Deps[0].Shuffle.ID
		var once atomic.Bool
		return rdd.Map(r, func(kv KV[int, int]) KV[int, int] {
			// After reduce partition 0 fetched, lose map output 0: the
			// next reduce task's fetch fails and map partition 0 is
			// recomputed.
			if once.CompareAndSwap(false, true) {
				c.shuffle.DropMapOutput(shuffle, 0)
				dropped.Add(1)
			}
			return kv
		})
	})
	var sum atomic.Int64
	ForeachRDD(counts, func(b *Batch, r *rdd.RDD[KV[int, int]]) error {
		vals, err := Collect(b, r)
		for _, kv := range vals {
			sum.Add(int64(kv.Value))
		}
		return err
	})
	Print(pairs, 1)                                                    // reads part of a partition
	ForeachRDD(pairs, func(b *Batch, r *rdd.RDD[KV[int, int]]) error { // computes pairs again
		_, err := Collect(b, r)
		return err
	})
	run(2)
	if dropped.Load() == 0 {
		t.Fatal("no map output was dropped")
	}
	if sum.Load() != int64(total) {
		t.Fatalf("the job's result %d, want %d", sum.Load(), total)
	}
	if calls.Load() < 3*int64(total) {
		t.Fatalf("the map ran %d times for %d elements: not recomputed", calls.Load(), total)
	}
	if got := seen.Value(); got != int64(total) {
		t.Errorf("accumulator %d, want %d (each element once)", got, total)
	}
}

func TestAccumulatorGraphErrors(t *testing.T) {
	c, run := manualJob(t, "local[1]")
	NewAccumulator(c, "x", Sum[int])
	NewAccumulator(c, "x", Sum[int])
	NewAccumulator[int](c, "y", nil)
	Print(NewQueue[int](c).Stream(), 1)
	err := c.StartManual(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	if err == nil || !errContains(err, `accumulator "x"`, "used twice") || !errContains(err, `accumulator "y"`, "merge function is nil") {
		t.Fatalf("got %v", err)
	}
	_ = run
}

func errContains(err error, subs ...string) bool {
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			return false
		}
	}
	return true
}
