package rdd

import (
	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
)

// Builder accumulates typed values into a one-column Arrow record.
type Builder[T any] struct {
	schema *arrow.Schema
	b      array.Builder
	enc    func(T)
	n      int
}

// NewBuilder returns a builder for values of c's type allocating from mem.
func NewBuilder[T any](mem memory.Allocator, c Codec[T]) *Builder[T] {
	dt := c.DataType()
	b := array.NewBuilder(mem, dt)
	return &Builder[T]{
		schema: arrow.NewSchema([]arrow.Field{{Name: "v", Type: dt, Nullable: true}}, nil),
		b:      b,
		enc:    c.Encoder(b),
	}
}

// Append adds one value.
func (b *Builder[T]) Append(v T) { b.enc(v); b.n++ }

// Len returns the number of values appended since the last NewRecord.
func (b *Builder[T]) Len() int { return b.n }

// NewRecord returns the values appended so far as a record (which the caller
// releases) and resets the builder for reuse.
func (b *Builder[T]) NewRecord() arrow.Record {
	arr := b.b.NewArray()
	defer arr.Release()
	n := b.n
	b.n = 0
	return array.NewRecord(b.schema, []arrow.Array{arr}, int64(n))
}

// Release frees the builder's buffers.
func (b *Builder[T]) Release() { b.b.Release() }

// ForEach decodes every row of a one-column record and passes it to yield
// until yield returns false. It reports whether it ran to the end.
func ForEach[T any](c Codec[T], rec arrow.Record, yield func(T) bool) bool {
	if rec == nil || rec.NumRows() == 0 {
		return true
	}
	dec := c.Decoder(rec.Column(0))
	n := int(rec.NumRows())
	for i := 0; i < n; i++ {
		if !yield(dec(i)) {
			return false
		}
	}
	return true
}

// Encode builds a one-column record from vals.
func Encode[T any](mem memory.Allocator, c Codec[T], vals []T) arrow.Record {
	b := NewBuilder(mem, c)
	defer b.Release()
	b.b.Reserve(len(vals))
	if ss, ok := any(vals).([]string); ok {
		if sb, ok := b.b.(*array.StringBuilder); ok { // size the data buffer once
			n := 0
			for _, s := range ss {
				n += len(s)
			}
			sb.ReserveData(n)
		}
	}
	for _, v := range vals {
		b.Append(v)
	}
	return b.NewRecord()
}

// Decode returns every value of a one-column record.
func Decode[T any](c Codec[T], rec arrow.Record) []T {
	if rec == nil {
		return nil
	}
	out := make([]T, 0, rec.NumRows())
	ForEach(c, rec, func(v T) bool { out = append(out, v); return true })
	return out
}
