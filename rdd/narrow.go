package rdd

import (
	"fmt"
	"iter"

	"github.com/apache/arrow/go/v15/arrow"
)

// FromRecords makes a source RDD with one partition per record (nil for an
// empty partition). The records stay the caller's, who releases them after
// the RDD's last use.
func FromRecords[T any](op string, c Codec[T], parts []arrow.Record) *RDD[T] {
	n := newNode(op, len(parts))
	return &RDD[T]{node: n, codec: c, iter: func(tc *TaskContext, part int, yield func(T) bool) error {
		rec := parts[part]
		if rec != nil {
			tc.RecordsRead += rec.NumRows()
		}
		ForEach(c, rec, yield)
		return nil
	}}
}

// Generate makes a source RDD whose partitions are produced by gen, which
// must be deterministic in its partition index (rate sources, tests).
func Generate[T any](op string, parts int, gen func(part int, yield func(T) bool)) *RDD[T] {
	n := newNode(op, parts)
	return &RDD[T]{node: n, codec: CodecOf[T](), iter: func(tc *TaskContext, part int, yield func(T) bool) error {
		var count int64
		gen(part, func(v T) bool { count++; return yield(v) })
		tc.RecordsRead += count
		return nil
	}}
}

// Empty returns an RDD with parts partitions and no values.
func Empty[T any](op string, parts int) *RDD[T] {
	return Generate[T](op, parts, func(int, func(T) bool) {})
}

func narrow[T, U any](op string, parent *RDD[T], c Codec[U],
	it func(n *Node) func(tc *TaskContext, part int, yield func(U) bool) error) *RDD[U] {
	n := newNode(op, parent.node.Parts, Dep{Parent: parent.node})
	return &RDD[U]{node: n, codec: c, iter: it(n)}
}

// Map applies f to every value.
func Map[T, U any](r *RDD[T], f func(T) U) *RDD[U] {
	out := narrow("map", r, CodecOf[U](), func(n *Node) func(*TaskContext, int, func(U) bool) error {
		if r.emit != nil { // r emits its values: apply f in its emit
			return func(tc *TaskContext, part int, yield func(U) bool) error {
				stopped := false
				return r.push(tc, part, &stopped, func(v T) {
					if !stopped {
						tc.cur = n.ID
						stopped = !yield(f(v))
					}
				})
			}
		}
		return func(tc *TaskContext, part int, yield func(U) bool) error {
			return r.Iterate(tc, part, func(v T) bool {
				tc.cur = n.ID
				return yield(f(v))
			})
		}
	})
	if r.emit != nil {
		n := out.node
		out.emit = func(tc *TaskContext, part int, stop *bool, emit func(U)) error {
			return r.push(tc, part, stop, func(v T) {
				if !*stop {
					tc.cur = n.ID
					emit(f(v))
				}
			})
		}
	}
	return out
}

// Filter keeps the values for which keep returns true.
func Filter[T any](r *RDD[T], keep func(T) bool) *RDD[T] {
	return narrow("filter", r, r.codec, func(n *Node) func(*TaskContext, int, func(T) bool) error {
		return func(tc *TaskContext, part int, yield func(T) bool) error {
			return r.Iterate(tc, part, func(v T) bool {
				tc.cur = n.ID
				if keep(v) {
					return yield(v)
				}
				return true
			})
		}
	})
}

// FlatMap applies f to every value and flattens the slices it returns.
func FlatMap[T, U any](r *RDD[T], f func(T) []U) *RDD[U] {
	return narrow("flatMap", r, CodecOf[U](), func(n *Node) func(*TaskContext, int, func(U) bool) error {
		return func(tc *TaskContext, part int, yield func(U) bool) error {
			return r.Iterate(tc, part, func(v T) bool {
				tc.cur = n.ID
				for _, u := range f(v) {
					if !yield(u) {
						return false
					}
				}
				return true
			})
		}
	})
}

// FlatMapEmit is FlatMap for functions that emit their outputs one at a time
// instead of returning a slice, so the per-record path allocates nothing.
func FlatMapEmit[T, U any](r *RDD[T], f func(v T, emit func(U))) *RDD[U] {
	out := narrow("flatMap", r, CodecOf[U](), func(n *Node) func(*TaskContext, int, func(U) bool) error {
		return func(tc *TaskContext, part int, yield func(U) bool) error {
			stopped := false
			emit := func(u U) {
				if !stopped && !yield(u) {
					stopped = true
				}
			}
			return r.Iterate(tc, part, func(v T) bool {
				tc.cur = n.ID
				f(v, emit)
				return !stopped
			})
		}
	})
	n := out.node
	out.emit = func(tc *TaskContext, part int, stop *bool, emit func(U)) error {
		return r.Iterate(tc, part, func(v T) bool {
			tc.cur = n.ID
			f(v, emit)
			return !*stop
		})
	}
	return out
}

// MapPartitions transforms a whole partition at once: f receives the
// partition's values as an iterator and returns the output values as one.
func MapPartitions[T, U any](r *RDD[T], f func(in iter.Seq[T]) iter.Seq[U]) *RDD[U] {
	return narrow("mapPartitions", r, CodecOf[U](), func(n *Node) func(*TaskContext, int, func(U) bool) error {
		return func(tc *TaskContext, part int, yield func(U) bool) error {
			var err error
			tc.cur = n.ID
			for u := range f(r.Seq(tc, part, &err)) {
				if !yield(u) {
					break
				}
				tc.cur = n.ID
			}
			return err
		}
	})
}

// Union concatenates the partitions of rs, which must share the element type.
func Union[T any](rs ...*RDD[T]) *RDD[T] {
	if len(rs) == 0 {
		panic("rdd: Union of no RDDs")
	}
	total := 0
	deps := make([]Dep, len(rs))
	type loc struct{ r, p int }
	var locs []loc
	for i, r := range rs {
		total += r.node.Parts
		deps[i] = Dep{Parent: r.node}
		for p := 0; p < r.node.Parts; p++ {
			locs = append(locs, loc{i, p})
		}
	}
	n := newNode("union", total, deps...)
	return &RDD[T]{node: n, codec: rs[0].codec, iter: func(tc *TaskContext, part int, yield func(T) bool) error {
		l := locs[part]
		return rs[l.r].Iterate(tc, l.p, yield)
	}}
}

// WithCodec returns r with its values carried by c at stage boundaries.
func WithCodec[T any](r *RDD[T], c Codec[T]) *RDD[T] {
	return &RDD[T]{node: r.node, codec: c, iter: r.iter}
}

// Named returns a copy of r whose operator name is name (for logs and errors).
func Named[T any](r *RDD[T], name string) *RDD[T] {
	r.node.Op = fmt.Sprintf("%s(%s)", r.node.Op, name)
	return r
}
