package rdd

import (
	"fmt"
	"slices"
	"testing"

	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/sluicehq/sluice/internal/wordgen"
)

// Encode's string path writes the buffers itself: its records must equal
// the builder's (same schema, same values) and release every byte.
func TestEncodeStringsMatchesBuilder(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	for _, vals := range [][]string{
		nil,
		{},
		{""},
		{"", "", ""},
		{"a", "", "bc", "déjà vu", "\x00\xff"},
		wordgen.New(4).Lines(1000),
	} {
		t.Run(fmt.Sprint(len(vals)), func(t *testing.T) {
			got := Encode(mem, CodecOf[string](), vals)
			defer got.Release()
			b := NewBuilder(mem, CodecOf[string]())
			defer b.Release()
			for _, v := range vals {
				b.Append(v)
			}
			want := b.NewRecord()
			defer want.Release()
			if !got.Schema().Equal(want.Schema()) || got.NumRows() != int64(len(vals)) {
				t.Fatalf("schema %v rows %d, want %v rows %d", got.Schema(), got.NumRows(), want.Schema(), len(vals))
			}
			if !array.Equal(got.Column(0), want.Column(0)) {
				t.Fatalf("column %v, want %v", got.Column(0), want.Column(0))
			}
			if dec := Decode(CodecOf[string](), got); !slices.Equal(dec, vals) && len(vals) > 0 {
				t.Fatalf("decoded %q, want %q", dec, vals)
			}
		})
	}
}

// BenchmarkEncodeLines is what a text source does with each batch: encode
// its lines into an Arrow record. allocs/op must not grow with the number of
// lines.
func BenchmarkEncodeLines(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("lines=%d", n), func(b *testing.B) {
			mem := memory.NewGoAllocator()
			lines := wordgen.New(1).Lines(n)
			b.ReportAllocs()
			for b.Loop() {
				Encode(mem, CodecOf[string](), lines).Release()
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "lines/s")
		})
	}
}
