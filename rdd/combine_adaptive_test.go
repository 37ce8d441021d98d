package rdd

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/memory"
)

// mapSideRows runs the map side of ReduceByKey (sum) over one partition of
// pairs and returns how many records it wrote to the shuffle, and the
// reduced result.
func mapSideRows[K comparable](t *testing.T, pairs []KV[K, int64]) (int64, map[K]int64) {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	tc, done := newTC(mem)
	defer done()
	rec := Encode(mem, CodecOf[KV[K, int64]](), pairs)
	defer rec.Release()
	sums := ReduceByKey(FromRecords("pairs", CodecOf[KV[K, int64]](), []arrow.Record{rec}), func(a, b int64) int64 { return a + b }, 2)
	dep := sums.Node().Deps[0].Shuffle
	if err := dep.WriteMap(tc, 0); err != nil {
		t.Fatal(err)
	}
	var rows int64
	for p := 0; p < 2; p++ {
		if err := tc.Shuffle.Fetch(tc.Ctx, dep.ID, 1, p, func(r arrow.Record) error { rows += r.NumRows(); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	got := map[K]int64{}
	for p := 0; p < 2; p++ {
		if err := sums.Iterate(tc, p, func(kv KV[K, int64]) bool { got[kv.Key] += kv.Value; return true }); err != nil {
			t.Fatal(err)
		}
	}
	return rows, got
}

// The map side combines while keys repeat, and passes records straight to
// the shuffle once most records bring a new key; the result is the same.
func TestCombineByKeyPassesThroughWhenKeysDoNotRepeat(t *testing.T) {
	const distinct, repeats = 70000, 70000
	for _, kind := range []string{"string", "int"} {
		run := func(name string, keys []int, wantRows int64) {
			t.Run(kind+"/"+name, func(t *testing.T) {
				want := map[int]int64{}
				for _, k := range keys {
					want[k]++
				}
				var rows int64
				var got map[int]int64
				if kind == "string" {
					pairs := make([]KV[string, int64], len(keys))
					for i, k := range keys {
						pairs[i] = KV[string, int64]{Key: "k" + strconv.Itoa(k), Value: 1}
					}
					var gs map[string]int64
					rows, gs = mapSideRows(t, pairs)
					got = map[int]int64{}
					for k, v := range gs {
						n, _ := strconv.Atoi(k[1:])
						got[n] = v
					}
				} else {
					pairs := make([]KV[int, int64], len(keys))
					for i, k := range keys {
						pairs[i] = KV[int, int64]{Key: k, Value: 1}
					}
					rows, got = mapSideRows(t, pairs)
				}
				if rows != wantRows {
					t.Errorf("map side wrote %d records, want %d", rows, wantRows)
				}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("reduced %d keys, want %d (or values differ)", len(got), len(want))
				}
			})
		}
		var unique []int // 70k new keys, then one key 70k times
		for i := 0; i < distinct; i++ {
			unique = append(unique, i)
		}
		for i := 0; i < repeats; i++ {
			unique = append(unique, -1)
		}
		// The first 2^16 keys are combined; then every record passes.
		run("new keys then one hot key", unique, combineProbeKeys+(distinct-combineProbeKeys)+repeats)
		var twice []int // every key twice in a row: half the records combine
		for i := 0; i < distinct; i++ {
			twice = append(twice, i, i)
		}
		run("every key twice", twice, distinct)
		var few []int // 100 keys, many times
		for i := 0; i < 200000; i++ {
			few = append(few, i%100)
		}
		run("few keys", few, 100)
	}
}
