package rdd

import (
	"fmt"
	"slices"
	"testing"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/memory"
)

// Map over FlatMapEmit (and Map over that) compose their functions with the
// consumer's through RDD.emit instead of a yield per operator: the values,
// the early stop, the cache and the operator blamed for a panic must be
// those of the unfused chain.
func TestEmitFusionMatchesUnfused(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	recs := []arrow.Record{Encode(mem, CodecOf[int](), []int{1, 2, 3, 4, 5}), Encode(mem, CodecOf[int](), []int{6, 7})}
	defer recs[0].Release()
	defer recs[1].Release()
	src := FromRecords("nums", CodecOf[int](), recs)
	expand := func(v int, emit func(int)) {
		for i := 0; i < v%3+1; i++ {
			emit(v*10 + i)
		}
	}
	expandSlice := func(v int) []int {
		var out []int
		expand(v, func(u int) { out = append(out, u) })
		return out
	}
	toKV := func(u int) KV[string, int] { return KV[string, int]{Key: fmt.Sprint(u % 4), Value: u} }
	double := func(kv KV[string, int]) KV[string, int] { kv.Value *= 2; return kv }
	sum := func(a, b int) int { return a + b }

	fused := Map(Map(FlatMapEmit(src, expand), toKV), double)
	plain := Map(Map(FlatMap(src, expandSlice), toKV), double)
	if fused.emit == nil || plain.emit != nil {
		t.Fatal("the chain over FlatMapEmit does not emit, or the one over FlatMap does")
	}
	sorted := func(kvs []KV[string, int]) []string {
		var out []string
		for _, kv := range kvs {
			out = append(out, fmt.Sprint(kv))
		}
		slices.Sort(out)
		return out
	}
	tc, done := newTC(mem)
	defer done()
	// Narrow (yield) and shuffle (push) consumers, string and int keys.
	if got, want := runJob(t, tc, fused), runJob(t, tc, plain); !slices.Equal(sorted(got), sorted(want)) || len(got) == 0 {
		t.Fatalf("fused %v, unfused %v", got, want)
	}
	if got, want := runJob(t, tc, ReduceByKey(fused, sum, 2)), runJob(t, tc, ReduceByKey(plain, sum, 2)); !slices.Equal(sorted(got), sorted(want)) || len(got) != 4 {
		t.Fatalf("fused %v, unfused %v", got, want)
	}
	intKeys := func(kv KV[string, int]) KV[int, int] { return KV[int, int]{Key: kv.Value % 3, Value: kv.Value} }
	gotI := runJob(t, tc, ReduceByKey(Map(fused, intKeys), sum, 2))
	wantI := runJob(t, tc, ReduceByKey(Map(plain, intKeys), sum, 2))
	if fmt.Sprint(gotI) != fmt.Sprint(wantI) {
		t.Fatalf("fused %v, unfused %v", gotI, wantI)
	}

	// A consumer that stops: no function runs for a value after the stop.
	calls := 0
	counted := Map(FlatMapEmit(src, expand), func(u int) int { calls++; return u })
	var seen []int
	if err := counted.Iterate(tc, 0, func(u int) bool { seen = append(seen, u); return len(seen) < 3 }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seen, []int{10, 11, 20}) || calls != 3 {
		t.Fatalf("stopped after %v with %d calls of f, want [10 11 20] and 3", seen, calls)
	}
	calls = 0
	seen = nil
	inner := 0
	twice := Map(Map(FlatMapEmit(src, expand), func(u int) int { inner++; return u }), func(u int) int { calls++; return u })
	if err := twice.Iterate(tc, 0, func(u int) bool { seen = append(seen, u); return len(seen) < 2 }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seen, []int{10, 11}) || calls != 2 || inner != 2 {
		t.Fatalf("stopped after %v with %d and %d calls, want [10 11] and 2, 2", seen, inner, calls)
	}

	// A persisted FlatMapEmit is read from (and first written to) the cache.
	cached := FlatMapEmit(src, expand).Persist()
	if got := runJob(t, tc, ReduceByKey(Map(cached, toKV), sum, 2)); len(got) != 4 {
		t.Fatalf("got %v", got)
	}
	for p := 0; p < 2; p++ {
		rec, ok := tc.Blocks.Get(cached.Node().ID, p)
		if !ok {
			t.Fatalf("partition %d of the persisted FlatMapEmit is not in the cache", p)
		}
		rec.Release()
	}

	// A panic in a function of the chain is blamed on its operator.
	for _, c := range []struct {
		name string
		r    *RDD[KV[string, int]]
	}{
		{"map", Map(FlatMapEmit(src, expand), func(u int) KV[string, int] { panic("boom") })},
		{"flatMap", Map(FlatMapEmit(src, func(int, func(int)) { panic("boom") }), toKV)},
	} {
		red := ReduceByKey(c.r, sum, 1)
		func() {
			defer func() {
				if recover() == nil {
					t.Fatalf("%s: no panic", c.name)
				}
				var want *Node
				switch c.name {
				case "map":
					want = c.r.Node()
				case "flatMap":
					want = c.r.Node().Deps[0].Parent
				}
				if tc.CurrentID() != want.ID {
					t.Fatalf("%s: blamed node %d, want %v (%d)", c.name, tc.CurrentID(), want, want.ID)
				}
			}()
			red.Node().Deps[0].Shuffle.WriteMap(tc, 0)
		}()
	}

	// A partition out of range is the same error with and without emit.
	errF := fused.push(tc, 5, new(bool), func(KV[string, int]) {})
	errP := plain.Iterate(tc, 5, func(KV[string, int]) bool { return true })
	if errF == nil || errP == nil {
		t.Fatalf("out of range: %v, %v", errF, errP)
	}
}
