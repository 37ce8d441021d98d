package dstream

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/memory"

	"github.com/sluicehq/sluice/internal/cluster"
	"github.com/sluicehq/sluice/rdd"
)

// A window in batch 2 recomputes batch 1's RDD and rewrites its shuffle S
// (same cluster-wide id: the driver forgot S's outputs after batch 1). The
// executor prunes batch 1's shuffles (S) when batch 2's first task resolves;
// a map output of S that batch 2's map task writes after that must survive.
// The prune runs in the background (ShuffleStore.RemoveShufflesLater): the
// write waits for it. (Found by a review: a first version deleted it.)
func TestPruneDoesNotDeleteAShuffleTheNextBatchRewrites(t *testing.T) {
	const bi = time.Second
	c, err := New(Config{BatchInterval: bi, Master: "local[2]", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	q := NewQueue[string](c)
	Print(Count(Window(q.Stream(), 2*bi, bi)), 1)
	c.role = roleExecutor
	c.resolver = &resolver{c: c, batches: map[time.Time]*batch{}, inputParts: map[inputKey]int{}, jobID: "job"}
	defer c.Stop()
	store, err := cluster.NewShuffleStore(t.TempDir(), memory.NewGoAllocator())
	if err != nil {
		t.Fatal(err)
	}
	c.resolver.prune = func(ids []int64) { store.RemoveShufflesLater("job", ids...) }
	const S = 42
	// Batch 1 wrote S: many map outputs (a wide shuffle).
	blocks := func() []arrow.Record {
		return []arrow.Record{rdd.Encode(memory.NewGoAllocator(), rdd.CodecOf[string](), []string{"a"})}
	}
	for m := 0; m < 3000; m++ {
		if err := store.Write("job", S, m, blocks()); err != nil {
			t.Fatal(err)
		}
	}
	zero := time.Unix(0, 0)
	t1, t2 := zero.Add(bi), zero.Add(2*bi)
	ctx := context.Background()
	if _, err := c.resolver.Resolve(ctx, cluster.TaskSpec{Zero: zero, BatchTime: t1, Action: actForce}); err != nil {
		t.Fatal(err)
	}
	c.resolver.wrote(t1, S)
	// Batch 2's first task: the prune of batch 1's shuffles.
	if _, err := c.resolver.Resolve(ctx, cluster.TaskSpec{Zero: zero, BatchTime: t2, Action: actForce}); err != nil {
		t.Fatal(err)
	}
	// Batch 2's map task 0 of S (the window recomputing batch 1's RDD).
	if err := store.Write("job", S, 0, blocks()); err != nil {
		t.Fatal(err)
	}
	c.resolver.wrote(t2, S)
	store.WaitRemovals()
	if b, err := store.Read("job", S, 0, 0); err != nil || b == nil {
		t.Fatalf("batch 2's map output 0 of shuffle %d after the prune: %d bytes, %v: deleted by the prune of batch 1", S, len(b), err)
	}
}
