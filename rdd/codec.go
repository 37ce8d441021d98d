package rdd

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"reflect"
	"sync"
	"unsafe"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
)

// A Codec maps Go values of type T to and from one Arrow column. Codecs are
// resolved once per operator (when the graph is built) and produce per-batch
// closures, so the per-record path does no reflection and no interface
// dispatch beyond one indirect call.
//
// Decoded strings and byte slices alias the Arrow buffers they came from.
// Sluice allocates those buffers with Go's allocator, so the aliases stay
// valid for as long as they are referenced, but an operator that keeps a value
// across batches (state, windows) must copy it first (see [Clone]).
type Codec[T any] interface {
	// DataType is the Arrow type of the column.
	DataType() arrow.DataType
	// Encoder returns a function that appends one value to b, which was
	// made for DataType. Called once per batch.
	Encoder(b array.Builder) func(T)
	// Decoder returns a function that reads row i of arr. Called once per batch.
	Decoder(arr arrow.Array) func(i int) T
	// Hash returns a hash of v that is the same in every process and every
	// run; partitioners and state placement depend on it.
	Hash(v T) uint64
}

// CodecOf returns the codec for T: a built-in one for Go's basic types, KV
// pairs, Pair and slices of those; a codec registered with [RegisterCodec];
// otherwise a JSON codec, which works for any JSON-encodable type but costs a
// reflection-driven encoding per record at stage boundaries.
func CodecOf[T any]() Codec[T] {
	var zero T
	switch any(zero).(type) {
	case string:
		return any(stringCodec{}).(Codec[T])
	case []byte:
		return any(bytesCodec{}).(Codec[T])
	case int64:
		return any(int64Codec{}).(Codec[T])
	case int:
		return any(intCodec{}).(Codec[T])
	case int32:
		return any(int32Codec{}).(Codec[T])
	case uint64:
		return any(uint64Codec{}).(Codec[T])
	case float64:
		return any(float64Codec{}).(Codec[T])
	case bool:
		return any(boolCodec{}).(Codec[T])
	}
	if c, ok := any(zero).(interface{ codecAny() any }); ok {
		return c.codecAny().(Codec[T])
	}
	t := reflect.TypeFor[T]()
	registry.RLock()
	c, ok := registry.m[t]
	registry.RUnlock()
	if ok {
		return c.(Codec[T])
	}
	return JSONCodec[T]{}
}

var registry = struct {
	sync.RWMutex
	m map[reflect.Type]any
}{m: map[reflect.Type]any{}}

// RegisterCodec makes c the codec for T in every later call to CodecOf. Call
// it from an init function, before any graph that uses T is built.
func RegisterCodec[T any](c Codec[T]) {
	registry.Lock()
	registry.m[reflect.TypeFor[T]()] = c
	registry.Unlock()
}

// HasNativeCodec reports whether T is carried in a native Arrow column (not
// the JSON fallback).
func HasNativeCodec[T any]() bool {
	_, isJSON := CodecOf[T]().(JSONCodec[T])
	return !isJSON
}

func hashBytes(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return mix(h.Sum64())
}

// hashString is FNV-1a over the bytes of s, inlined so that it does not allocate.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return mix(h)
}

// mix is the splitmix64 finalizer; it spreads low-entropy inputs.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

type stringCodec struct{}

func (stringCodec) DataType() arrow.DataType { return arrow.BinaryTypes.String }
func (stringCodec) Encoder(b array.Builder) func(string) {
	sb := b.(*array.StringBuilder)
	return sb.Append
}
func (stringCodec) Decoder(a arrow.Array) func(int) string { return a.(*array.String).Value }
func (stringCodec) Hash(v string) uint64                   { return hashString(v) }

type bytesCodec struct{}

func (bytesCodec) DataType() arrow.DataType { return arrow.BinaryTypes.Binary }
func (bytesCodec) Encoder(b array.Builder) func([]byte) {
	return b.(*array.BinaryBuilder).Append
}
func (bytesCodec) Decoder(a arrow.Array) func(int) []byte { return a.(*array.Binary).Value }
func (bytesCodec) Hash(v []byte) uint64                   { return hashBytes(v) }

type int64Codec struct{}

func (int64Codec) DataType() arrow.DataType { return arrow.PrimitiveTypes.Int64 }
func (int64Codec) Encoder(b array.Builder) func(int64) {
	return b.(*array.Int64Builder).Append
}
func (int64Codec) Decoder(a arrow.Array) func(int) int64 { return a.(*array.Int64).Value }
func (int64Codec) Hash(v int64) uint64                   { return mix(uint64(v)) }

type intCodec struct{}

func (intCodec) DataType() arrow.DataType { return arrow.PrimitiveTypes.Int64 }
func (intCodec) Encoder(b array.Builder) func(int) {
	ib := b.(*array.Int64Builder)
	return func(v int) { ib.Append(int64(v)) }
}
func (intCodec) Decoder(a arrow.Array) func(int) int {
	vals := a.(*array.Int64).Int64Values()
	return func(i int) int { return int(vals[i]) }
}
func (intCodec) Hash(v int) uint64 { return mix(uint64(v)) }

type int32Codec struct{}

func (int32Codec) DataType() arrow.DataType { return arrow.PrimitiveTypes.Int32 }
func (int32Codec) Encoder(b array.Builder) func(int32) {
	return b.(*array.Int32Builder).Append
}
func (int32Codec) Decoder(a arrow.Array) func(int) int32 { return a.(*array.Int32).Value }
func (int32Codec) Hash(v int32) uint64                   { return mix(uint64(v)) }

type uint64Codec struct{}

func (uint64Codec) DataType() arrow.DataType { return arrow.PrimitiveTypes.Uint64 }
func (uint64Codec) Encoder(b array.Builder) func(uint64) {
	return b.(*array.Uint64Builder).Append
}
func (uint64Codec) Decoder(a arrow.Array) func(int) uint64 { return a.(*array.Uint64).Value }
func (uint64Codec) Hash(v uint64) uint64                   { return mix(v) }

type float64Codec struct{}

func (float64Codec) DataType() arrow.DataType { return arrow.PrimitiveTypes.Float64 }
func (float64Codec) Encoder(b array.Builder) func(float64) {
	return b.(*array.Float64Builder).Append
}
func (float64Codec) Decoder(a arrow.Array) func(int) float64 { return a.(*array.Float64).Value }
func (float64Codec) Hash(v float64) uint64 {
	if v == 0 { // +0 and -0 are equal keys
		v = 0
	}
	return mix(math.Float64bits(v))
}

type boolCodec struct{}

func (boolCodec) DataType() arrow.DataType { return arrow.FixedWidthTypes.Boolean }
func (boolCodec) Encoder(b array.Builder) func(bool) {
	return b.(*array.BooleanBuilder).Append
}
func (boolCodec) Decoder(a arrow.Array) func(int) bool { return a.(*array.Boolean).Value }
func (boolCodec) Hash(v bool) uint64 {
	if v {
		return mix(1)
	}
	return mix(2)
}

// JSONCodec carries any JSON-encodable T as a binary column of JSON
// documents. It is the fallback for types with no native codec; register a
// native one with RegisterCodec where a type crosses stage boundaries in a
// hot path.
type JSONCodec[T any] struct{}

func (JSONCodec[T]) DataType() arrow.DataType { return arrow.BinaryTypes.Binary }
func (JSONCodec[T]) Encoder(b array.Builder) func(T) {
	bb := b.(*array.BinaryBuilder)
	return func(v T) {
		buf, err := json.Marshal(v)
		if err != nil {
			panic(fmt.Errorf("rdd: JSON codec for %s: %w (register a codec with rdd.RegisterCodec)", reflect.TypeFor[T](), err))
		}
		bb.Append(buf)
	}
}
func (JSONCodec[T]) Decoder(a arrow.Array) func(int) T {
	ba := a.(*array.Binary)
	return func(i int) T {
		var v T
		if err := json.Unmarshal(ba.Value(i), &v); err != nil {
			panic(fmt.Errorf("rdd: JSON codec for %s: %w", reflect.TypeFor[T](), err))
		}
		return v
	}
}
func (JSONCodec[T]) Hash(v T) uint64 {
	buf, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Errorf("rdd: JSON codec for %s: %w", reflect.TypeFor[T](), err))
	}
	return hashBytes(buf)
}

// KV is a key-value pair, the element type of keyed streams and RDDs.
type KV[K comparable, V any] struct {
	Key   K
	Value V
}

func (KV[K, V]) codecAny() any { return KVCodec[K, V]{K: CodecOf[K](), V: CodecOf[V]()} }

// KVCodec encodes KV pairs as an Arrow struct column {key, value}.
type KVCodec[K comparable, V any] struct {
	K Codec[K]
	V Codec[V]
}

func (c KVCodec[K, V]) DataType() arrow.DataType {
	return arrow.StructOf(
		arrow.Field{Name: "key", Type: c.K.DataType()},
		arrow.Field{Name: "value", Type: c.V.DataType(), Nullable: true},
	)
}
func (c KVCodec[K, V]) Encoder(b array.Builder) func(KV[K, V]) {
	sb := b.(*array.StructBuilder)
	ek, ev := c.K.Encoder(sb.FieldBuilder(0)), c.V.Encoder(sb.FieldBuilder(1))
	return func(kv KV[K, V]) {
		sb.Append(true)
		ek(kv.Key)
		ev(kv.Value)
	}
}
func (c KVCodec[K, V]) Decoder(a arrow.Array) func(int) KV[K, V] {
	sa := a.(*array.Struct)
	dk, dv := c.K.Decoder(sa.Field(0)), c.V.Decoder(sa.Field(1))
	return func(i int) KV[K, V] { return KV[K, V]{Key: dk(i), Value: dv(i)} }
}
func (c KVCodec[K, V]) Hash(kv KV[K, V]) uint64 { return mix(c.K.Hash(kv.Key) ^ c.V.Hash(kv.Value)*31) }

// Pair holds two values of possibly different types; joins produce it.
type Pair[A, B any] struct {
	First  A
	Second B
}

func (Pair[A, B]) codecAny() any { return PairCodec[A, B]{A: CodecOf[A](), B: CodecOf[B]()} }

// PairCodec encodes a Pair as an Arrow struct column {first, second}.
type PairCodec[A, B any] struct {
	A Codec[A]
	B Codec[B]
}

func (c PairCodec[A, B]) DataType() arrow.DataType {
	return arrow.StructOf(
		arrow.Field{Name: "first", Type: c.A.DataType(), Nullable: true},
		arrow.Field{Name: "second", Type: c.B.DataType(), Nullable: true},
	)
}
func (c PairCodec[A, B]) Encoder(b array.Builder) func(Pair[A, B]) {
	sb := b.(*array.StructBuilder)
	ea, eb := c.A.Encoder(sb.FieldBuilder(0)), c.B.Encoder(sb.FieldBuilder(1))
	return func(p Pair[A, B]) {
		sb.Append(true)
		ea(p.First)
		eb(p.Second)
	}
}
func (c PairCodec[A, B]) Decoder(a arrow.Array) func(int) Pair[A, B] {
	sa := a.(*array.Struct)
	da, db := c.A.Decoder(sa.Field(0)), c.B.Decoder(sa.Field(1))
	return func(i int) Pair[A, B] { return Pair[A, B]{First: da(i), Second: db(i)} }
}
func (c PairCodec[A, B]) Hash(p Pair[A, B]) uint64 {
	return mix(c.A.Hash(p.First) ^ c.B.Hash(p.Second)*31)
}

// SliceCodec encodes []T as an Arrow list column.
type SliceCodec[T any] struct{ Elem Codec[T] }

func (c SliceCodec[T]) DataType() arrow.DataType { return arrow.ListOf(c.Elem.DataType()) }
func (c SliceCodec[T]) Encoder(b array.Builder) func([]T) {
	lb := b.(*array.ListBuilder)
	ee := c.Elem.Encoder(lb.ValueBuilder())
	return func(vs []T) {
		lb.Append(true)
		for _, v := range vs {
			ee(v)
		}
	}
}
func (c SliceCodec[T]) Decoder(a arrow.Array) func(int) []T {
	la := a.(*array.List)
	de := c.Elem.Decoder(la.ListValues())
	offs := la.Offsets()
	return func(i int) []T {
		i += la.Data().Offset()
		lo, hi := int(offs[i]), int(offs[i+1])
		out := make([]T, hi-lo)
		for j := range out {
			out[j] = de(lo + j)
		}
		return out
	}
}
func (c SliceCodec[T]) Hash(vs []T) uint64 {
	h := uint64(len(vs))
	for _, v := range vs {
		h = mix(h*31 ^ c.Elem.Hash(v))
	}
	return h
}

// Clone returns a copy of v that shares no memory with an Arrow buffer. Use it
// before keeping a decoded string across batches.
func Clone[T any](v T) T {
	switch x := any(v).(type) {
	case string:
		return any(cloneString(x)).(T)
	case []byte:
		return any(append([]byte(nil), x...)).(T)
	}
	return v
}

func cloneString(s string) string {
	if len(s) == 0 {
		return ""
	}
	b := make([]byte, len(s))
	copy(b, s)
	return unsafe.String(&b[0], len(b))
}
