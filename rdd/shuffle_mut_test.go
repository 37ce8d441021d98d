package rdd_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/sluicehq/sluice/rdd"
)

// These tests drive the shuffle operators by hand, as tasks would: the map
// side of each shuffle (ShuffleDep.WriteMap) and then the reduce partitions
// (RDD.Iterate), over an in-memory shuffle store. Each guards a change that
// once left the whole suite green (issue 16); tools/mutate replays them.

// poisonAlloc overwrites every buffer it frees, so that a value still
// aliasing released Arrow memory reads garbage instead of the old bytes
// (the Go allocator would leave them intact).
type poisonAlloc struct{ *memory.CheckedAllocator }

func (a poisonAlloc) Free(b []byte) {
	for i := range b {
		b[i] = 0xA5
	}
	a.CheckedAllocator.Free(b)
}

// shuffleEnv is an in-memory shuffle store over a checked, poisoning
// allocator; the test fails if any buffer outlives it.
type shuffleEnv struct {
	t     *testing.T
	mem   *memory.CheckedAllocator
	alloc poisonAlloc
	store *rdd.MemShuffle
}

func newShuffleEnv(t *testing.T) *shuffleEnv {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	t.Cleanup(func() { mem.AssertSize(t, 0) })
	e := &shuffleEnv{t: t, mem: mem, alloc: poisonAlloc{mem}, store: rdd.NewMemShuffle()}
	t.Cleanup(e.store.Close)
	return e
}

// tc returns a fresh task context, so its RecordsRead counts one task.
func (e *shuffleEnv) tc() *rdd.TaskContext {
	return &rdd.TaskContext{Ctx: context.Background(), Alloc: e.alloc, Shuffle: e.store}
}

// writeMaps runs every map task of the shuffles n reads directly.
func (e *shuffleEnv) writeMaps(n *rdd.Node) {
	e.t.Helper()
	for _, d := range n.Deps {
		if d.Shuffle == nil {
			continue
		}
		for p := 0; p < d.Parent.Parts; p++ {
			if err := d.Shuffle.WriteMap(e.tc(), p); err != nil {
				e.t.Fatalf("map task %d of %s: %v", p, n, err)
			}
		}
	}
}

// read returns reduce partition part of r, cloned out of the Arrow buffers,
// and the task context that read it.
func read[T any](e *shuffleEnv, r *rdd.RDD[T], part int) ([]T, *rdd.TaskContext, error) {
	tc := e.tc()
	var out []T
	err := r.Iterate(tc, part, func(v T) bool { out = append(out, rdd.Clone(v)); return true })
	return out, tc, err
}

type kvs = rdd.KV[string, int]

// keyed makes a source of parts partitions; partition p holds the pairs
// data[p].
func keyed(data ...[]kvs) *rdd.RDD[kvs] {
	return rdd.Generate("pairs", len(data), func(p int, yield func(kvs) bool) {
		for _, kv := range data[p] {
			if !yield(kv) {
				return
			}
		}
	})
}

func sum(a, b int) int { return a + b }

// threeMaps is a source whose keys recur across its three partitions, with
// long keys so that a decoded key aliasing a freed buffer shows.
func threeMaps() *rdd.RDD[kvs] {
	k := func(s string) string { return strings.Repeat(s, 20) }
	return keyed(
		[]kvs{{k("a"), 1}, {k("b"), 2}, {k("a"), 3}},
		[]kvs{{k("a"), 10}, {k("c"), 20}},
		[]kvs{{k("b"), 100}, {k("c"), 200}, {k("d"), 300}},
	)
}

func sortedKV(in []kvs) string {
	slices.SortFunc(in, func(a, b kvs) int { return strings.Compare(a.Key, b.Key) })
	var b strings.Builder
	for _, kv := range in {
		fmt.Fprintf(&b, "%c=%d ", kv.Key[0], kv.Value)
	}
	return b.String()
}

var errMap = errors.New("source broke")

// failingAfter passes the first n values of r on, then fails its task.
func failingAfter[T any](r *rdd.RDD[T], n int) *rdd.RDD[T] {
	return rdd.MapPartitionsWithContext(r, "failing", r.Codec(), func(_ *rdd.TaskContext, _ int, in iter.Seq[T], yield func(T) bool) error {
		i := 0
		for v := range in {
			if i == n {
				return errMap
			}
			i++
			if !yield(v) {
				return nil
			}
		}
		return nil
	})
}

func TestShuffleMapErrorStoresNoOutput(t *testing.T) {
	src := func() *rdd.RDD[kvs] { return failingAfter(threeMaps(), 1) }
	for _, tc := range []struct {
		name string
		node *rdd.Node
	}{
		{"reduceByKey", rdd.ReduceByKey(src(), sum, 2).Node()},
		{"groupByKey", rdd.GroupByKey(src(), 2).Node()},
		{"repartition", rdd.Repartition(src(), 2).Node()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newShuffleEnv(t)
			dep := tc.node.Deps[0].Shuffle
			err := dep.WriteMap(e.tc(), 0)
			if !errors.Is(err, errMap) {
				t.Fatalf("map task whose input failed returned %v, want the input's error", err)
			}
			if e.store.HasMapOutput(dep.ID, 0) {
				t.Fatal("the partial output of a failed map task was stored as its map output")
			}
		})
	}
}

func TestShuffleFetchedBlocksOutliveTheirRead(t *testing.T) {
	// A reduce task reads the blocks of every map output; the store keeps
	// them for the next reader (a retried task, another job over a cached
	// lineage). Reading must neither free them nor alias freed memory.
	e := newShuffleEnv(t)
	r := rdd.ReduceByKey(threeMaps(), sum, 2)
	e.writeMaps(r.Node())
	stored := e.mem.CurrentAlloc()
	var first string
	for round := range 3 {
		var all []kvs
		for p := range 2 {
			got, _, err := read(e, r, p)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, got...)
			if now := e.mem.CurrentAlloc(); now != stored {
				t.Fatalf("round %d: %d bytes allocated after reading partition %d, %d before: the read freed or leaked shuffle blocks", round, now, p, stored)
			}
		}
		got := sortedKV(all)
		if round == 0 {
			first = got
			if want := "a=14 b=102 c=220 d=300 "; got != want {
				t.Fatalf("reduceByKey = %s, want %s", got, want)
			}
		} else if got != first {
			t.Fatalf("read %d of the same shuffle = %s, first read %s", round, got, first)
		}
	}
}

func TestShuffleReadsAreCounted(t *testing.T) {
	e := newShuffleEnv(t)
	r := rdd.ReduceByKey(threeMaps(), sum, 2)
	e.writeMaps(r.Node())
	var total int64
	for p := range 2 {
		got, tc, err := read(e, r, p)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) > 0 && tc.RecordsRead == 0 {
			t.Fatalf("partition %d: read %d keys from the shuffle, RecordsRead 0", p, len(got))
		}
		total += tc.RecordsRead
	}
	// Map-side combining sends one record per key and map partition:
	// {a,b} + {a,c} + {b,c,d}.
	if total != 7 {
		t.Fatalf("shuffle records read %d, want 7", total)
	}
}

func TestCoGroupKeepsTheValuesOfEveryMapOutput(t *testing.T) {
	e := newShuffleEnv(t)
	a := keyed([]kvs{{"k", 1}, {"x", 5}}, []kvs{{"k", 2}}, []kvs{{"k", 3}, {"k", 4}})
	b := keyed([]kvs{{"k", 10}}, []kvs{{"y", 7}}, []kvs{{"k", 20}})
	for _, parts := range []int{1, 3} {
		cg := rdd.CoGroup(a, b, parts)
		e.writeMaps(cg.Node())
		got := map[string]string{}
		for p := range parts {
			vals, _, err := read(e, cg, p)
			if err != nil {
				t.Fatal(err)
			}
			for _, kv := range vals {
				slices.Sort(kv.Value.First)
				slices.Sort(kv.Value.Second)
				got[kv.Key] = fmt.Sprint(kv.Value.First, kv.Value.Second)
			}
		}
		want := map[string]string{"k": "[1 2 3 4] [10 20]", "x": "[5] []", "y": "[] [7]"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%d partitions: cogroup = %v, want %v", parts, got, want)
		}
	}
}

func TestShuffleReadersStopWhenTheirConsumerStops(t *testing.T) {
	src := func() *rdd.RDD[kvs] {
		return keyed([]kvs{{"a", 1}, {"b", 2}}, []kvs{{"c", 3}, {"d", 4}}, []kvs{{"e", 5}})
	}
	for _, tc := range []struct {
		name string
		read func(*shuffleEnv, func() bool) error
	}{
		{"combineByKey", func(e *shuffleEnv, yield func() bool) error {
			r := rdd.ReduceByKey(src(), sum, 1)
			e.writeMaps(r.Node())
			return r.Iterate(e.tc(), 0, func(kvs) bool { return yield() })
		}},
		{"cogroup", func(e *shuffleEnv, yield func() bool) error {
			r := rdd.CoGroup(src(), src(), 1)
			e.writeMaps(r.Node())
			return r.Iterate(e.tc(), 0, func(rdd.KV[string, rdd.Pair[[]int, []int]]) bool { return yield() })
		}},
		{"repartition", func(e *shuffleEnv, yield func() bool) error {
			r := rdd.Repartition(src(), 1)
			e.writeMaps(r.Node())
			return r.Iterate(e.tc(), 0, func(kvs) bool { return yield() })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newShuffleEnv(t)
			calls := 0
			err := tc.read(e, func() bool {
				calls++
				if calls > 1 {
					t.Errorf("yield called %d times after it returned false", calls-1)
				}
				return false
			})
			if err != nil {
				t.Fatal(err)
			}
			if calls != 1 {
				t.Fatalf("yield called %d times, want 1", calls)
			}
		})
	}
}

func TestShuffleReadReportsALostMapOutput(t *testing.T) {
	for _, tc := range []struct {
		name string
		make func() (*rdd.Node, func(e *shuffleEnv) error)
		dep  int // which shuffle loses an output
	}{
		{"combineByKey", func() (*rdd.Node, func(*shuffleEnv) error) {
			r := rdd.ReduceByKey(threeMaps(), sum, 2)
			return r.Node(), func(e *shuffleEnv) error { _, _, err := read(e, r, 0); return err }
		}, 0},
		{"repartition", func() (*rdd.Node, func(*shuffleEnv) error) {
			r := rdd.Repartition(threeMaps(), 2)
			return r.Node(), func(e *shuffleEnv) error { _, _, err := read(e, r, 0); return err }
		}, 0},
		{"cogroup first side", func() (*rdd.Node, func(*shuffleEnv) error) {
			r := rdd.CoGroup(threeMaps(), threeMaps(), 2)
			return r.Node(), func(e *shuffleEnv) error { _, _, err := read(e, r, 0); return err }
		}, 0},
		{"cogroup second side", func() (*rdd.Node, func(*shuffleEnv) error) {
			r := rdd.CoGroup(threeMaps(), threeMaps(), 2)
			return r.Node(), func(e *shuffleEnv) error { _, _, err := read(e, r, 0); return err }
		}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newShuffleEnv(t)
			n, readPart := tc.make()
			e.writeMaps(n)
			dep := n.Deps[tc.dep].Shuffle
			e.store.DropMapOutput(dep.ID, 1)
			err := readPart(e)
			ff, ok := rdd.IsFetchFailed(err)
			if !ok || ff.ShuffleID != dep.ID || ff.MapPart != 1 {
				t.Fatalf("read with map output 1 of shuffle %d gone: error %v, want a fetch failure naming it", dep.ID, err)
			}
		})
	}
}

func TestShufflePanicInUserCodeReleasesFetchedBlocks(t *testing.T) {
	e := newShuffleEnv(t)
	panicking := false
	r := rdd.ReduceByKey(threeMaps(), func(a, b int) int {
		if panicking {
			panic("user reduce function broke")
		}
		return a + b
	}, 1)
	e.writeMaps(r.Node())
	stored := e.mem.CurrentAlloc()
	panicking = true
	func() {
		defer func() {
			if v := recover(); v == nil {
				t.Fatal("the user function's panic did not reach the task")
			}
		}()
		read(e, r, 0)
	}()
	if now := e.mem.CurrentAlloc(); now != stored {
		t.Fatalf("%d bytes allocated after a reduce task panicked, %d before: fetched blocks leaked", now, stored)
	}
}
