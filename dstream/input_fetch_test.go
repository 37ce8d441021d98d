package dstream

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/memory"

	"github.com/sluicehq/sluice/rdd"
)

// executorInput is a queue's input in the executor role, whose fetches
// from the driver go to fetch instead (the fetch hook).
func executorInput(t *testing.T, mem memory.Allocator, fetch func(ctx context.Context, bt time.Time, part int) ([]arrow.Record, int64, error)) *input[string] {
	t.Helper()
	c, err := New(Config{BatchInterval: time.Second, Master: "local[2]", Allocator: mem, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	q := NewQueue[string](c)
	Print(q.Stream(), 1)
	c.role = roleExecutor
	t.Cleanup(c.Stop)
	q.in.fetchHook = fetch
	return q.in
}

// twoParts is a batch of two partitions as the driver sends one: the
// asked-for partition set, the other nil.
func twoParts(mem memory.Allocator, part int, vals ...string) []arrow.Record {
	recs := make([]arrow.Record, 2)
	recs[part] = rdd.Encode(mem, rdd.CodecOf[string](), vals)
	return recs
}

// Two tasks of one executor read the same input partition (two output
// operations of one batch): the first fetches, the second waits for it.
// When the first task is canceled (its job failed, or its attempt was
// given up), its fetch ends with its context: the waiting task must fetch
// again with its own, not fail with the other task's cancellation.
func TestInputFetchWaiterOutlivesTheFetchersCancellation(t *testing.T) {
	var calls atomic.Int64
	first := make(chan struct{})
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	in := executorInput(t, mem, func(ctx context.Context, bt time.Time, part int) ([]arrow.Record, int64, error) {
		if calls.Add(1) == 1 {
			close(first)
			<-ctx.Done() // the driver is slow; the task is canceled
			return nil, 0, ctx.Err()
		}
		return twoParts(mem, part, "a", "b"), 2, nil
	})
	bt := time.Unix(10, 0)
	ctx1, cancel1 := context.WithCancel(context.Background())
	res1 := make(chan error, 1)
	go func() {
		_, err := in.fetched(ctx1, bt, 1)
		res1 <- err
	}()
	<-first
	res2 := make(chan error, 1)
	var got arrow.Record
	go func() {
		var err error
		got, err = in.fetched(context.Background(), bt, 1)
		res2 <- err
	}()
	// The second task is waiting on the first's fetch (it cannot be seen
	// from outside; give it time to get there: either order must pass).
	time.Sleep(20 * time.Millisecond)
	cancel1()
	if err := <-res1; !errors.Is(err, context.Canceled) {
		t.Fatalf("the canceled task: %v, want its cancellation", err)
	}
	if err := <-res2; err != nil {
		t.Fatalf("the waiting task failed with %v: it got the other task's cancellation", err)
	}
	if got == nil || got.NumRows() != 2 {
		t.Fatalf("the waiting task got %v", got)
	}
	got.Release()
	if calls.Load() != 2 {
		t.Errorf("%d fetches, want 2 (the canceled one and the waiter's own)", calls.Load())
	}
	in.s.b.forget(bt)
	mem.AssertSize(t, 0)
}

// A fetch that finishes after the stream forgot its batch (a straggling
// task of a batch the executor has moved past) hands the partition to its
// task and keeps nothing: the forget that would have released it has run.
func TestInputFetchAfterForgetIsNotKept(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	in := executorInput(t, mem, func(ctx context.Context, bt time.Time, part int) ([]arrow.Record, int64, error) {
		close(started)
		<-release
		return twoParts(mem, part, "x"), 1, nil
	})
	bt := time.Unix(10, 0)
	type result struct {
		rec arrow.Record
		err error
	}
	res := make(chan result, 1)
	go func() {
		r, err := in.fetched(context.Background(), bt, 0)
		res <- result{r, err}
	}()
	<-started
	in.s.b.forget(bt.Add(time.Second)) // the executor moved on
	close(release)
	r := <-res
	if r.err != nil || r.rec == nil || r.rec.NumRows() != 1 {
		t.Fatalf("the straggling task got %v, %v", r.rec, r.err)
	}
	in.mu.Lock()
	_, kept := in.recs[bt]
	in.mu.Unlock()
	if kept {
		t.Errorf("the input of forgotten batch %s was kept after its fetch", fmtTime(bt))
	}
	r.rec.Release()
	mem.AssertSize(t, 0) // nothing else holds it
}

// A batch not yet forgotten is kept: a second task of the executor reading
// the partition does not fetch it again.
func TestInputFetchKeepsThePartitionForItsBatch(t *testing.T) {
	var calls atomic.Int64
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	in := executorInput(t, mem, func(ctx context.Context, bt time.Time, part int) ([]arrow.Record, int64, error) {
		calls.Add(1)
		return twoParts(mem, part, "x", "y", "z"), 3, nil
	})
	bt := time.Unix(10, 0)
	for range 2 {
		r, err := in.fetched(context.Background(), bt, 1)
		if err != nil || r.NumRows() != 3 {
			t.Fatalf("got %v, %v", r, err)
		}
		r.Release()
	}
	if calls.Load() != 1 {
		t.Errorf("%d fetches of one partition, want 1", calls.Load())
	}
	in.s.b.forget(bt)
	mem.AssertSize(t, 0)
}
