package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	"github.com/sluicehq/sluice/rdd"
	"github.com/sluicehq/sluice/scheduler"
)

// countingShuffle is a ShuffleServer that counts the blocks asked of it.
type countingShuffle struct {
	*ShuffleServer
	calls atomic.Int64
}

func (c *countingShuffle) FetchBlock(req *sluicev1.FetchBlockRequest, stream sluicev1.Shuffle_FetchBlockServer) error {
	c.calls.Add(1)
	return c.ShuffleServer.FetchBlock(req, stream)
}

// A reduce task fetches no block its map task reported empty: no call to
// the executor holding it (an empty batch's reduce wave made one per map
// output), even when that executor is gone. Blocks with rows, and blocks
// whose bitmap is unknown or too short, are fetched as before.
func TestShuffleSkipsBlocksReportedEmpty(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	secret := mustSecret(t, "the-right-cluster-secret")
	remote, err := NewShuffleStore(t.TempDir(), mem)
	if err != nil {
		t.Fatal(err)
	}
	srv := &countingShuffle{ShuffleServer: &ShuffleServer{Store: remote}}
	addr := serve(t, secret.ServerOptions(nil), func(s *grpc.Server) { sluicev1.RegisterShuffleServer(s, srv) })
	blocks := records(t, mem, nil, []string{"a", "b"}, []string{}) // reduce 0 and 2 empty
	bitmap := nonEmptyBitmap(blocks)
	if len(bitmap) != 1 || bitmap[0] != 0b010 {
		t.Fatalf("bitmap %08b, want 00000010", bitmap)
	}
	if err := remote.Write("job", 7, 0, blocks); err != nil {
		t.Fatal(err)
	}
	local, err := NewShuffleStore(t.TempDir(), mem)
	if err != nil {
		t.Fatal(err)
	}
	pool := NewPool(secret.DialOptions()...)
	defer pool.Close()
	fetch := func(loc string, bm []byte, reduce int) (rows, calls int64, err error) {
		t.Helper()
		before := srv.calls.Load()
		ts := &taskShuffle{store: local, job: "job", self: "me", pool: pool,
			locations: map[int64][]string{7: {loc}}, nonEmpty: map[int64][][]byte{7: {bm}}}
		err = ts.Fetch(context.Background(), 7, 1, reduce, func(r arrow.Record) error { rows += r.NumRows(); return nil })
		return rows, srv.calls.Load() - before, err
	}
	for _, c := range []struct {
		name          string
		loc           string
		bitmap        []byte
		reduce        int
		rows, calls   int64
		fetchFailedOK bool
	}{
		{"empty block", addr, bitmap, 0, 0, 0, false},
		{"block with rows", addr, bitmap, 1, 2, 1, false},
		{"another empty block", addr, bitmap, 2, 0, 0, false},
		{"empty block of a lost executor", "", bitmap, 0, 0, 0, false},
		{"unknown bitmap", addr, nil, 0, 0, 1, false},
		{"reduce partition past the bitmap", addr, bitmap, 9, 0, 1, false},
		{"block with rows of a lost executor", "", bitmap, 1, 0, 0, true},
		// The map task reported rows for reduce 0, but the executor
		// answers with none (its files deleted under the fetch): a lost
		// output, never an empty block (found by a review).
		{"no data for a block with rows", addr, []byte{0b011}, 0, 0, 1, true},
	} {
		rows, calls, err := fetch(c.loc, c.bitmap, c.reduce)
		if c.fetchFailedOK {
			if !isFetchFailed(err, 7, 0) {
				t.Errorf("%s: %v, want a fetch failure", c.name, err)
			}
			continue
		}
		if err != nil || rows != c.rows || calls != c.calls {
			t.Errorf("%s: %d rows in %d calls (%v), want %d rows in %d calls", c.name, rows, calls, err, c.rows, c.calls)
		}
	}
}

// A task's bitmaps must match its map locations and the shuffle's reduce
// partitions; anything else is refused by name.
func TestCheckNonEmpty(t *testing.T) {
	locs := []string{"a", "b"}
	for _, c := range []struct {
		name   string
		bitmap [][]byte
		want   string // "" : accepted
	}{
		{"none", nil, ""},
		{"one per map", [][]byte{{1, 0}, {0, 2}}, ""},
		{"unknown for one map", [][]byte{{1, 0}, nil}, ""},
		{"too few", [][]byte{{1, 0}}, "1 non-empty block bitmaps for 2 map locations"},
		{"too short", [][]byte{{1}, {0, 2}}, "map output 0 has 1 bytes, want 2"},
		{"too long", [][]byte{{1, 0}, {0, 2, 0}}, "map output 1 has 3 bytes, want 2"},
	} {
		err := checkNonEmpty(&sluicev1.ShuffleInput{ShuffleId: 7, MapLocations: locs, MapNonempty: c.bitmap}, 10)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want InvalidArgument naming %q", c.name, err, c.want)
		}
	}
}

// A store deletes shuffles in the background when asked to later; a write
// of a shuffle waits for its pending removal (a window rewrites an older
// batch's shuffle id), so what it writes survives; WaitRemovals returns
// once everything asked is gone.
func TestShuffleStoreRemovesLater(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	dir := t.TempDir()
	store, err := NewShuffleStore(dir, mem)
	if err != nil {
		t.Fatal(err)
	}
	for id := int64(1); id <= 4; id++ {
		for m := range 500 { // many map outputs: the removal takes a while
			if err := store.Write("job", id, m, records(t, mem, []string{"x"})); err != nil {
				t.Fatal(err)
			}
		}
	}
	store.RemoveShufflesLater("job")
	store.RemoveShufflesLater("job", 1, 2)
	store.RemoveShufflesLater("job", 3)
	// Shuffle 3 written again at once: after its removal, not undone by it.
	if err := store.Write("job", 3, 0, records(t, mem, []string{"again"})); err != nil {
		t.Fatal(err)
	}
	store.WaitRemovals()
	left, err := os.ReadDir(filepath.Join(dir, "job"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range left {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "3,4" {
		t.Fatalf("left %v, want shuffles 3 (rewritten) and 4", names)
	}
	if b, err := store.Read("job", 3, 0, 0); err != nil || b == nil {
		t.Fatalf("the rewritten map output: %d bytes, %v", len(b), err)
	}
	if _, err := store.Read("job", 3, 1, 0); err == nil {
		t.Fatal("a map output of shuffle 3 from before its removal survived it")
	}
	store.RemoveShufflesLater("job", 3, 4) // the store is used again after WaitRemovals
	store.WaitRemovals()
	if left, _ := os.ReadDir(filepath.Join(dir, "job")); len(left) != 0 {
		t.Fatalf("left %v, want nothing", left)
	}
}

// A shuffle map task's response carries its output's bitmap of non-empty
// blocks: all clear for a map partition with no rows, and the blocks that
// hold rows set for the others.
func TestTaskServerReportsNonEmptyBlocks(t *testing.T) {
	pairs := rdd.Map(rdd.Generate("gen", 3, func(p int, yield func(int) bool) {
		if p == 2 {
			return // an empty map partition
		}
		for i := range 10 {
			if !yield(p*10 + i) {
				return
			}
		}
	}), func(i int) rdd.KV[string, int64] { return rdd.KV[string, int64]{Key: fmt.Sprint(i), Value: 1} })
	final := rdd.ReduceByKey(pairs, func(a, b int64) int64 { return a + b }, 10)
	job := &scheduler.Job{Final: final.Node(), BatchTime: time.Unix(2, 0)}
	shuffle := rdd.NewMemShuffle()
	ts := NewTaskServer(TaskServerConfig{
		Resolver: fixedResolver{Resolved{Final: final.Node()}},
		Shuffle:  func(ShuffleInputs) rdd.ShuffleService { return shuffle },
		Alloc:    memory.NewGoAllocator(),
	})
	dep := final.Node().Deps[0].Shuffle
	stage := &scheduler.Stage{Node: dep.Parent, Shuffle: dep, NumTasks: 3}
	for p := range 3 {
		req, err := Request("job", strings.Repeat("0", 64), nil, time.Unix(0, 0), &scheduler.Task{ID: int64(p + 1), Job: job, Stage: stage, Partition: p})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := ts.RunTask(context.Background(), req)
		if err != nil || resp.GetError() != "" {
			t.Fatalf("map %d: %v %s", p, err, resp.GetError())
		}
		bm := resp.GetBlockNonempty()
		if len(bm) != 2 { // 10 reduce partitions
			t.Fatalf("map %d: bitmap %08b, want 2 bytes", p, bm)
		}
		rowsOf := func(maps, r int) int64 { // rows of reduce partition r in map outputs [0, maps)
			var rows int64
			if err := shuffle.Fetch(context.Background(), dep.ID, maps, r, func(rec arrow.Record) error { rows += rec.NumRows(); return nil }); err != nil {
				t.Fatal(err)
			}
			return rows
		}
		for r := range 10 {
			if has := rowsOf(p+1, r) > rowsOf(p, r); has != hasBit(bm, r) {
				t.Errorf("map %d: block %d has rows: %v; bitmap %08b", p, r, has, bm)
			}
		}
		if set := bm[0] != 0 || bm[1] != 0; set != (p != 2) {
			t.Errorf("map %d: bitmap %08b", p, bm)
		}
	}
}
