package dstream

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// A batch's partitions: one chunk gives one per slot, equal; several are
// cut so that slots taking them in order end together (see cutPieces).
func TestCutPieces(t *testing.T) {
	for _, c := range []struct {
		lens  []int64
		parts int64
		want  string
	}{
		{[]int64{1000}, 2, "[{0 0 500} {0 500 1000}]"},
		{[]int64{4}, 3, "[{0 0 1} {0 1 2} {0 2 4}]"},
		{[]int64{1}, 3, "[{0 0 1}]"},
		// The bench's batch in two chunks: the cut near the first's end
		// moves onto it, a piece a slot.
		{[]int64{101731, 98269}, 2, "[{0 0 101731} {1 0 98269}]"},
		// Halves would leave one slot 140k lines: quarters.
		{[]int64{60000, 140000}, 2, "[{0 0 50000} {0 50000 60000} {1 0 40000} {1 40000 90000} {1 90000 140000}]"},
	} {
		n := int64(0)
		for _, l := range c.lens {
			n += l
		}
		if got := fmt.Sprint(cutPieces(c.lens, n, c.parts)); got != c.want {
			t.Errorf("cutPieces(%v, %d): %s, want %s", c.lens, c.parts, got, c.want)
		}
	}
	// Any chunks: the pieces hold every line once, in order, at most
	// 3*parts+chunks of them, and slots taking them in order end within
	// about a piece (n/(3*parts) lines) of an even share, or a tenth.
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		parts := int64(1 + r.IntN(8))
		lens := make([]int64, 1+r.IntN(6))
		n := int64(0)
		for i := range lens {
			lens[i] = 1 + r.Int64N(100000)
			n += lens[i]
		}
		ps := cutPieces(lens, n, parts)
		ci, next := 0, int64(0)
		for _, p := range ps {
			if p.chunk != ci {
				if next != lens[ci] || p.chunk != ci+1 {
					t.Fatalf("%v, %d slots: %v does not go on from chunk %d line %d", lens, parts, p, ci, next)
				}
				ci, next = p.chunk, 0
			}
			if p.lo != next || p.hi <= p.lo {
				t.Fatalf("%v, %d slots: %v after line %d", lens, parts, p, next)
			}
			next = p.hi
		}
		if ci != len(lens)-1 || next != lens[ci] {
			t.Fatalf("%v, %d slots: pieces end at chunk %d line %d", lens, parts, ci, next)
		}
		if int64(len(ps)) > 3*parts+int64(len(lens)) {
			t.Fatalf("%v, %d slots: %d pieces", lens, parts, len(ps))
		}
		if len(lens) == 1 && int64(len(ps)) != min(parts, n) {
			t.Fatalf("%v, %d slots: %d pieces, want %d", lens, parts, len(ps), min(parts, n))
		}
		even := (n + parts - 1) / parts
		if ms := piecesEnd(ps, parts); ms > max(even+even/10, even+n/(3*parts)+n/(3*parts)/4+1) {
			t.Fatalf("%v, %d slots: %v end at %d; an even share is %d", lens, parts, ps, ms, even)
		}
	}
}
