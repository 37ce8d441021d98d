package rdd

import (
	"math"

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
	if ss, ok := any(vals).([]string); ok {
		if _, ok := any(c).(stringCodec); ok {
			if rec := encodeStrings(mem, ss); rec != nil {
				return rec
			}
		}
	}
	b := NewBuilder(mem, c)
	defer b.Release()
	b.b.Reserve(len(vals))
	for _, v := range vals {
		b.Append(v)
	}
	return b.NewRecord()
}

// encodeStrings is Encode for strings (the lines of every text source):
// the offsets and bytes are written straight into two buffers sized once,
// with no per-value builder call and no validity bitmap (no value is null).
// It returns nil if the bytes do not fit 32-bit offsets.
func encodeStrings(mem memory.Allocator, vals []string) arrow.Record {
	total := 0
	for _, s := range vals {
		total += len(s)
	}
	if total > math.MaxInt32 {
		return nil
	}
	n := len(vals)
	offsets := memory.NewResizableBuffer(mem)
	defer offsets.Release()
	offsets.Resize((n + 1) * arrow.Int32SizeBytes)
	data := memory.NewResizableBuffer(mem)
	defer data.Release()
	data.Resize(total)
	offs := arrow.Int32Traits.CastFromBytes(offsets.Bytes())[:n+1]
	d := data.Bytes()[:total]
	pos := 0
	for i, s := range vals {
		offs[i] = int32(pos)
		pos += copy(d[pos:], s)
	}
	offs[n] = int32(pos)
	ad := array.NewData(arrow.BinaryTypes.String, n, []*memory.Buffer{nil, offsets, data}, nil, 0, 0)
	defer ad.Release()
	arr := array.NewStringData(ad)
	defer arr.Release()
	return array.NewRecord(stringSchema, []arrow.Array{arr}, int64(n))
}

// stringSchema is the schema of a one-column record of strings (as
// NewBuilder makes it).
var stringSchema = arrow.NewSchema([]arrow.Field{{Name: "v", Type: arrow.BinaryTypes.String, Nullable: true}}, nil)

// Decode returns every value of a one-column record.
func Decode[T any](c Codec[T], rec arrow.Record) []T {
	if rec == nil {
		return nil
	}
	out := make([]T, 0, rec.NumRows())
	ForEach(c, rec, func(v T) bool { out = append(out, v); return true })
	return out
}
