package rdd

import (
	"fmt"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
)

// Option is a value that may be absent; outer joins produce it.
type Option[T any] struct {
	Value T
	Valid bool
}

// Some returns a present Option.
func Some[T any](v T) Option[T] { return Option[T]{Value: v, Valid: true} }

// Get returns the value and whether it is present.
func (o Option[T]) Get() (T, bool) { return o.Value, o.Valid }

func (o Option[T]) String() string {
	if !o.Valid {
		return "None"
	}
	return fmt.Sprintf("Some(%v)", o.Value)
}

func (Option[T]) codecAny() any { return OptionCodec[T]{Elem: CodecOf[T]()} }

// OptionCodec encodes an Option as an Arrow struct column {valid, value}.
type OptionCodec[T any] struct{ Elem Codec[T] }

func (c OptionCodec[T]) DataType() arrow.DataType {
	return arrow.StructOf(
		arrow.Field{Name: "valid", Type: arrow.FixedWidthTypes.Boolean},
		arrow.Field{Name: "value", Type: c.Elem.DataType(), Nullable: true},
	)
}

func (c OptionCodec[T]) Encoder(b array.Builder) func(Option[T]) {
	sb := b.(*array.StructBuilder)
	vb := sb.FieldBuilder(0).(*array.BooleanBuilder)
	ev := c.Elem.Encoder(sb.FieldBuilder(1))
	return func(o Option[T]) {
		sb.Append(true)
		vb.Append(o.Valid)
		ev(o.Value) // the zero value when absent, so columns stay aligned
	}
}

func (c OptionCodec[T]) Decoder(a arrow.Array) func(int) Option[T] {
	sa := a.(*array.Struct)
	valid := sa.Field(0).(*array.Boolean)
	dv := c.Elem.Decoder(sa.Field(1))
	return func(i int) Option[T] {
		if !valid.Value(i) {
			return Option[T]{}
		}
		return Option[T]{Value: dv(i), Valid: true}
	}
}

func (c OptionCodec[T]) Hash(o Option[T]) uint64 {
	if !o.Valid {
		return mix(3)
	}
	return mix(c.Elem.Hash(o.Value) + 1)
}
