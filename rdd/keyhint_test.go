package rdd

import (
	"fmt"
	"testing"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/memory"
)

// A table made for n keys takes them without growing.
func TestStrTableForHoldsItsKeys(t *testing.T) {
	for _, n := range []int{0, 1, 31, 32, 33, 1000, 100_000} {
		tab := newStrTableFor[int64](n)
		slots := len(tab.slots)
		for i := range n {
			if _, added := tab.slot(fmt.Sprint("key-", i)); !added {
				t.Fatalf("n=%d: key %d not new", n, i)
			}
		}
		if len(tab.slots) != slots || len(tab.keys) != n {
			t.Errorf("n=%d: %d slots after the keys, %d before; %d keys", n, len(tab.slots), slots, len(tab.keys))
		}
	}
}

// The map and reduce tasks of a batch leave how many keys they held for
// the next batch's tasks of the same operator (same call site), which
// start with tables that large; the results are the same.
func TestCombineByKeyHintsTheNextBatch(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	vals := make([]int, 5000)
	for i := range vals {
		vals[i] = i % 3000 // 3000 keys in one map partition
	}
	rec := Encode(mem, CodecOf[int](), vals)
	defer rec.Release()
	var names []string
	var sums []int
	for range 2 { // two batches: one call site
		tc, done := newTC(mem)
		src := FromRecords("nums", CodecOf[int](), []arrow.Record{rec})
		r := ReduceByKey(Map(src, func(i int) KV[string, int] { return KV[string, int]{Key: fmt.Sprint(i), Value: i} }),
			func(a, b int) int { return a + b }, 1)
		sum := 0
		for _, kv := range runJob(t, tc, r) {
			sum += kv.Value
		}
		done()
		sums = append(sums, sum)
		names = append(names, r.Node().String())
		h := hintOf(r.Node())
		if got := h.start(&h.mapSide); got != 3000 {
			t.Errorf("map side hint %d, want 3000", got)
		}
		if got := h.start(&h.reduceSide); got != 3000 {
			t.Errorf("reduce side hint %d, want 3000", got)
		}
	}
	if names[0] != names[1] || sums[0] != sums[1] {
		t.Errorf("batches %v summed %v", names, sums)
	}
	if h := hintOf(&Node{Op: "reduceByKey"}); h != nil || h.start(nil) != 0 {
		t.Errorf("a node without a call site has a hint")
	}
	big := &keyHint{}
	big.keep(&big.mapSide, 1<<40)
	if got := big.start(&big.mapSide); got != maxKeyHint {
		t.Errorf("a huge hint starts a table of %d keys", got)
	}
}
