package rdd

import (
	"context"
	"fmt"
	"testing"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/sluicehq/sluice/internal/wordgen"
)

// runJob computes every partition of r by hand: the map sides of its
// shuffles first (parents before children), then the final partitions.
func runJob[T any](t testing.TB, tc *TaskContext, r *RDD[T]) []T {
	t.Helper()
	var writeDeps func(n *Node)
	done := map[int64]bool{}
	writeDeps = func(n *Node) {
		for _, d := range n.Deps {
			writeDeps(d.Parent)
			if d.Shuffle != nil && !done[d.Shuffle.ID] {
				done[d.Shuffle.ID] = true
				for p := 0; p < d.Parent.Parts; p++ {
					if err := d.Shuffle.WriteMap(tc, p); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	}
	writeDeps(r.Node())
	var out []T
	for p := 0; p < r.NumPartitions(); p++ {
		if err := r.Iterate(tc, p, func(v T) bool { out = append(out, Clone(v)); return true }); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func newTC(mem memory.Allocator) (*TaskContext, func()) {
	sh, bl := NewMemShuffle(), NewMemBlocks()
	return &TaskContext{Ctx: context.Background(), Alloc: mem, Shuffle: sh, Blocks: bl}, func() { sh.Close(); bl.Close() }
}

func TestWordCountByHand(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	tc, done := newTC(mem)
	defer done()
	lines := wordgen.New(3).Lines(2000)
	recs := []arrow.Record{Encode(mem, CodecOf[string](), lines[:1000]), Encode(mem, CodecOf[string](), lines[1000:])}
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	src := FromRecords("lines", CodecOf[string](), recs)
	counts := ReduceByKey(Map(FlatMapEmit(src, wordgen.Fields), func(w string) KV[string, int64] { return KV[string, int64]{Key: w, Value: 1} }),
		func(a, b int64) int64 { return a + b }, 3)
	var total int64
	for _, kv := range runJob(t, tc, counts) {
		total += kv.Value
	}
	if total != 2000*wordgen.WordsPerLine {
		t.Fatalf("counted %d words", total)
	}
}

// BenchmarkWordCountMapSide is the per-record path of WordCount: read lines
// (decoded from Arrow, or Go values as a queue's input in local mode:
// FromSliceFunc), split, map to pairs, combine by key, write shuffle
// blocks. allocs/op must not grow with the number of lines (per batch, not
// per record): compare the two sizes.
func BenchmarkWordCountMapSide(b *testing.B) {
	for _, c := range []struct {
		source   string
		n, vocab int
	}{{"arrow", 10_000, 0}, {"arrow", 100_000, 0}, {"slice", 10_000, 0}, {"slice", 100_000, 0},
		{"arrow", 50_000, 100_000}} { // a task of the cluster-socket bench: 100k distinct words
		source, n := c.source, c.n
		name := fmt.Sprintf("source=%s/lines=%d", source, n)
		gen := wordgen.New(1)
		if c.vocab > 0 {
			name += fmt.Sprintf("/vocab=%d", c.vocab)
			gen = wordgen.NewSized(1, c.vocab)
		}
		{
			b.Run(name, func(b *testing.B) {
				mem := memory.NewGoAllocator()
				lines := gen.Lines(n)
				rec := Encode(mem, CodecOf[string](), lines)
				defer rec.Release()
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					tc, done := newTC(mem)
					src := FromRecords("lines", CodecOf[string](), []arrow.Record{rec})
					if source == "slice" {
						src = FromSliceFunc("lines", 1, func(*TaskContext, int) ([]string, error) { return lines, nil })
					}
					counts := ReduceByKey(Map(FlatMapEmit(src, wordgen.Fields), func(w string) KV[string, int64] {
						return KV[string, int64]{Key: w, Value: 1}
					}), func(a, b int64) int64 { return a + b }, 2)
					if err := counts.Node().Deps[0].Shuffle.WriteMap(tc, 0); err != nil {
						b.Fatal(err)
					}
					done()
				}
				b.ReportMetric(float64(n*wordgen.WordsPerLine*b.N)/b.Elapsed().Seconds(), "words/s")
			})
		}
	}
}

func TestFetchFailedWhenMapOutputIsLost(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	tc, done := newTC(mem)
	defer done()
	rec := Encode(mem, CodecOf[int](), []int{1, 2, 3, 4})
	defer rec.Release()
	src := FromRecords("nums", CodecOf[int](), []arrow.Record{rec, nil})
	sums := ReduceByKey(Map(src, func(i int) KV[int, int] { return KV[int, int]{Key: i % 2, Value: i} }), func(a, b int) int { return a + b }, 2)
	dep := sums.Node().Deps[0].Shuffle
	for p := 0; p < 2; p++ {
		if err := dep.WriteMap(tc, p); err != nil {
			t.Fatal(err)
		}
	}
	tc.Shuffle.(*MemShuffle).DropMapOutput(dep.ID, 1)
	err := sums.Iterate(tc, 0, func(KV[int, int]) bool { return true })
	if ff, ok := IsFetchFailed(err); !ok || ff.ShuffleID != dep.ID || ff.MapPart != 1 {
		t.Fatalf("got %v", err)
	}
	if err := sums.Iterate(tc, 5, func(KV[int, int]) bool { return true }); err == nil {
		t.Fatal("partition out of range accepted")
	}
}

// A recomputed repartition map task must route every value as before.
func TestRepartitionIsDeterministic(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	vals := make([]int, 1000)
	for i := range vals {
		vals[i] = i * 7
	}
	rec := Encode(mem, CodecOf[int](), vals)
	defer rec.Release()
	run := func() [][]int {
		tc, done := newTC(mem)
		defer done()
		r := Repartition(FromRecords("nums", CodecOf[int](), []arrow.Record{rec}), 4)
		if err := r.Node().Deps[0].Shuffle.WriteMap(tc, 0); err != nil {
			t.Fatal(err)
		}
		out := make([][]int, 4)
		for p := range out {
			r.Iterate(tc, p, func(v int) bool { out[p] = append(out[p], v); return true })
		}
		return out
	}
	a, b := run(), run()
	for p := range a {
		if fmt.Sprint(a[p]) != fmt.Sprint(b[p]) || len(a[p]) != 250 {
			t.Fatalf("partition %d: %d then %d values", p, len(a[p]), len(b[p]))
		}
	}
}

// A panic in user code on the reduce side leaks no shuffle block.
func TestPanicOnReduceSideReleasesBlocks(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	tc, done := newTC(mem)
	defer done()
	recs := []arrow.Record{Encode(mem, CodecOf[int](), []int{1, 2}), Encode(mem, CodecOf[int](), []int{3})}
	defer recs[0].Release()
	defer recs[1].Release()
	src := FromRecords("nums", CodecOf[int](), recs)
	for _, r := range []*RDD[int]{
		Map(Repartition(src, 1), func(i int) int { panic("boom") }),
		Map(ReduceByKey(Map(src, func(i int) KV[int, int] { return KV[int, int]{Key: i % 2, Value: i} }),
			func(a, b int) int {
				if a+b > 3 { // only on the reduce side, where 1+3 and 2 meet
					panic("boom")
				}
				return a + b
			}, 1), func(kv KV[int, int]) int { return kv.Value }),
	} {
		dep := r.Node().Deps[0].Parent.Deps[0].Shuffle
		func() {
			for p := 0; p < 2; p++ {
				if err := dep.WriteMap(tc, p); err != nil {
					t.Fatal(err)
				}
			}
			defer func() {
				if recover() == nil {
					t.Error("no panic on the reduce side")
				}
			}()
			r.Iterate(tc, 0, func(int) bool { return true })
		}()
	}
}
