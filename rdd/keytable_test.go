package rdd

import (
	"fmt"
	"testing"

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
	_ = fmt.Sprint
}
