package rdd

import (
	"fmt"
	"testing"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/sluicehq/sluice/internal/wordgen"
)

func words(n int) []string {
	var out []string
	for _, l := range wordgen.New(5).Lines(n / wordgen.WordsPerLine) {
		wordgen.Fields(l, func(w string) { out = append(out, w) })
	}
	return out
}

// The string table must agree with a Go map on every key, across growth.
func TestStrTableMatchesMap(t *testing.T) {
	ws := words(200_000)
	tab := newStrTable()
	ref := map[string]int{}
	for _, w := range ws {
		pos, added := tab.slot(w)
		want, ok := ref[w]
		if !ok {
			want = len(ref)
			ref[w] = want
		}
		if pos != want || added == ok {
			t.Fatalf("%q: slot %d added %v, want %d added %v", w, pos, added, want, !ok)
		}
	}
	// Short keys compare by length and fingerprint alone: every string of
	// up to 8 bytes over a small alphabet must get its own fingerprint.
	fps := map[[2]uint64]string{}
	var gen func(prefix []byte)
	gen = func(prefix []byte) {
		if len(prefix) > 0 {
			_, fp := strHashFP(string(prefix))
			k := [2]uint64{uint64(len(prefix)), fp}
			if other, ok := fps[k]; ok {
				t.Fatalf("%q and %q share length and fingerprint", other, prefix)
			}
			fps[k] = string(prefix)
		}
		if len(prefix) == 8 || (len(prefix) >= 5 && prefix[0] != 'a') {
			return
		}
		for _, c := range []byte("ab\x00\xff") {
			gen(append(prefix, c))
		}
	}
	gen(nil)
	for n := 0; n < 40; n++ { // every length path, short reads included
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('a' + i)
		}
		s := string(b)
		if strHash(s) != strHash(string(b)) {
			t.Fatalf("hash of %q is not stable", s)
		}
		if n > 0 && strHash(s) == strHash(s[:n-1]) {
			t.Fatalf("%q and its prefix collide", s)
		}
	}
}

func BenchmarkKeyTable(b *testing.B) {
	ws := words(1_000_000)
	b.Run("strtable", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			tab := newStrTable()
			vals := make([]int64, 0, 16)
			for _, w := range ws {
				if p, added := tab.slot(w); added {
					vals = append(vals, 1)
				} else {
					vals[p]++
				}
			}
		}
		b.ReportMetric(float64(len(ws)*b.N)/b.Elapsed().Seconds(), "words/s")
	})
	b.Run("map", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			m := map[string]int64{}
			for _, w := range ws {
				m[w]++
			}
		}
		b.ReportMetric(float64(len(ws)*b.N)/b.Elapsed().Seconds(), "words/s")
	})
}

// BenchmarkWordCountReduceSide is the reduce side of WordCount: fetch the
// map outputs' blocks, decode the string keys in place and merge the counts
// in the string table. allocs/op must not grow with the number of lines
// (per batch, not per record): compare the two sizes.
func BenchmarkWordCountReduceSide(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("lines=%d", n), func(b *testing.B) {
			mem := memory.NewGoAllocator()
			lines := wordgen.New(1).Lines(n)
			recs := []arrow.Record{Encode(mem, CodecOf[string](), lines[:n/2]), Encode(mem, CodecOf[string](), lines[n/2:])}
			defer recs[0].Release()
			defer recs[1].Release()
			tc, done := newTC(mem)
			defer done()
			src := FromRecords("lines", CodecOf[string](), recs)
			counts := ReduceByKey(Map(FlatMapEmit(src, wordgen.Fields), func(w string) KV[string, int64] {
				return KV[string, int64]{Key: w, Value: 1}
			}), func(a, b int64) int64 { return a + b }, 1)
			for p := 0; p < 2; p++ {
				if err := counts.Node().Deps[0].Shuffle.WriteMap(tc, p); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				var total int64
				if err := counts.Iterate(tc, 0, func(kv KV[string, int64]) bool { total += kv.Value; return true }); err != nil {
					b.Fatal(err)
				}
				if total != int64(n*wordgen.WordsPerLine) {
					b.Fatalf("counted %d words", total)
				}
			}
		})
	}
}
