package dstream

import (
	"fmt"
	"iter"
	"time"

	"github.com/sluicehq/sluice/rdd"
)

// Map applies f to every element.
func Map[T, U any](s *DStream[T], f func(T) U) *DStream[U] {
	return derive(s, "map", func(r *rdd.RDD[T]) *rdd.RDD[U] { return rdd.Map(r, f) })
}

// Filter keeps the elements for which keep returns true.
func Filter[T any](s *DStream[T], keep func(T) bool) *DStream[T] {
	return derive(s, "filter", func(r *rdd.RDD[T]) *rdd.RDD[T] { return rdd.Filter(r, keep) })
}

// FlatMap applies f to every element and flattens the results.
func FlatMap[T, U any](s *DStream[T], f func(T) []U) *DStream[U] {
	return derive(s, "flatMap", func(r *rdd.RDD[T]) *rdd.RDD[U] { return rdd.FlatMap(r, f) })
}

// FlatMapEmit is FlatMap for a function that emits its outputs one by one,
// so that nothing is allocated per element.
func FlatMapEmit[T, U any](s *DStream[T], f func(v T, emit func(U))) *DStream[U] {
	return derive(s, "flatMap", func(r *rdd.RDD[T]) *rdd.RDD[U] { return rdd.FlatMapEmit(r, f) })
}

// MapPartitions transforms each partition of each batch as a whole.
func MapPartitions[T, U any](s *DStream[T], f func(in iter.Seq[T]) iter.Seq[U]) *DStream[U] {
	return derive(s, "mapPartitions", func(r *rdd.RDD[T]) *rdd.RDD[U] { return rdd.MapPartitions(r, f) })
}

// Transform applies an arbitrary RDD-to-RDD function to every batch. The
// function runs on the driver when the batch is generated and must build its
// result from r only (plus constants), so that it is deterministic.
func Transform[T, U any](s *DStream[T], f func(t time.Time, r *rdd.RDD[T]) *rdd.RDD[U]) *DStream[U] {
	site := callSite()
	return newStream(s.b.ctx, "transform", s.b.slide, []*streamBase{s.b}, func(t time.Time) (*rdd.RDD[U], error) {
		r, err := s.rddAt(t)
		if err != nil || r == nil {
			return nil, err
		}
		out := f(t, r)
		if out == nil {
			return nil, fmt.Errorf("transform@%s returned a nil RDD at %s: return rdd.Empty for no data", site, fmtTime(t))
		}
		return out, nil
	})
}

// Union merges streams with the same slide interval.
func Union[T any](streams ...*DStream[T]) *DStream[T] {
	if len(streams) == 0 {
		panic("dstream: Union of no streams")
	}
	ctx := streams[0].b.ctx
	parents := make([]*streamBase, len(streams))
	slide := streams[0].b.slide
	for i, s := range streams {
		parents[i] = s.b
		if !s.b.static {
			slide = s.b.slide // Datasets' streams follow the others
		}
	}
	u := newStream(ctx, "union", slide, parents, func(t time.Time) (*rdd.RDD[T], error) {
		var rs []*rdd.RDD[T]
		for _, s := range streams {
			r, err := s.rddAt(t)
			if err != nil {
				return nil, err
			}
			if r != nil {
				rs = append(rs, r)
			}
		}
		if len(rs) == 0 {
			return nil, nil
		}
		return rdd.Union(rs...), nil
	})
	u.b.validate = func() error {
		for _, s := range streams {
			if s.b.ctx != ctx {
				return fmt.Errorf("%s: streams of different contexts cannot be united", u.b.name)
			}
			if s.b.slide != u.b.slide && !s.b.static {
				return fmt.Errorf("%s: streams with different slide intervals (%v, %v) cannot be united; window them to a common slide first", u.b.name, u.b.slide, s.b.slide)
			}
		}
		return nil
	}
	return u
}

// Repartition spreads each batch evenly over n partitions.
func Repartition[T any](s *DStream[T], n int) *DStream[T] {
	if n <= 0 {
		panic(fmt.Sprintf("dstream: Repartition(%d): partition count must be > 0", n))
	}
	return derive(s, "repartition", func(r *rdd.RDD[T]) *rdd.RDD[T] { return rdd.Repartition(r, n) })
}

// single folds every partition of r into at most one value with f, then
// the partial values into one value in a single partition.
func single[T, A any](r *rdd.RDD[T], zero func() A, add func(A, T) A, merge func(A, A) A, always bool) *rdd.RDD[A] {
	partial := rdd.MapPartitions(r, func(in iter.Seq[T]) iter.Seq[rdd.KV[int8, A]] {
		return func(yield func(rdd.KV[int8, A]) bool) {
			acc, seen := zero(), false
			for v := range in {
				acc, seen = add(acc, v), true
			}
			if seen || always {
				yield(rdd.KV[int8, A]{Value: acc})
			}
		}
	})
	if always {
		partial = rdd.Union(partial, rdd.Generate("zero", 1, func(_ int, yield func(rdd.KV[int8, A]) bool) {
			yield(rdd.KV[int8, A]{Value: zero()})
		}))
	}
	total := rdd.ReduceByKey(partial, merge, 1)
	return rdd.Map(total, func(kv rdd.KV[int8, A]) A { return kv.Value })
}

// Count returns a stream with one element per batch: the number of elements
// of the batch (0 for an empty batch).
func Count[T any](s *DStream[T]) *DStream[int64] {
	return derive(s, "count", func(r *rdd.RDD[T]) *rdd.RDD[int64] {
		add := func(a int64, _ T) int64 { return a + 1 }
		sum := func(a, b int64) int64 { return a + b }
		return single(r, func() int64 { return 0 }, add, sum, true)
	})
}

// Reduce returns a stream with one element per non-empty batch: the batch's
// elements combined with f, which must be associative and commutative.
func Reduce[T any](s *DStream[T], f func(T, T) T) *DStream[T] {
	return derive(s, "reduce", func(r *rdd.RDD[T]) *rdd.RDD[T] {
		return rdd.Map(single(r,
			func() rdd.Pair[bool, T] { return rdd.Pair[bool, T]{} },
			func(a rdd.Pair[bool, T], v T) rdd.Pair[bool, T] {
				if !a.First {
					return rdd.Pair[bool, T]{First: true, Second: v}
				}
				return rdd.Pair[bool, T]{First: true, Second: f(a.Second, v)}
			},
			func(a, b rdd.Pair[bool, T]) rdd.Pair[bool, T] {
				switch {
				case !a.First:
					return b
				case !b.First:
					return a
				}
				return rdd.Pair[bool, T]{First: true, Second: f(a.Second, b.Second)}
			}, false), func(p rdd.Pair[bool, T]) T { return p.Second })
	})
}

// CountByValue counts the occurrences of each distinct element per batch.
func CountByValue[T comparable](s *DStream[T], opts ...ShuffleOption) *DStream[KV[T, int64]] {
	n := numParts(s.b.ctx, opts)
	return derive(s, "countByValue", func(r *rdd.RDD[T]) *rdd.RDD[KV[T, int64]] {
		pairs := rdd.Map(r, func(v T) KV[T, int64] { return KV[T, int64]{Key: v, Value: 1} })
		return rdd.ReduceByKey(pairs, func(a, b int64) int64 { return a + b }, n)
	})
}

// ReduceByKey merges the values of each key per batch with f, which must be
// associative and commutative. Values are combined before the shuffle.
func ReduceByKey[K comparable, V any](s *DStream[KV[K, V]], f func(V, V) V, opts ...ShuffleOption) *DStream[KV[K, V]] {
	n := numParts(s.b.ctx, opts)
	return derive(s, "reduceByKey", func(r *rdd.RDD[KV[K, V]]) *rdd.RDD[KV[K, V]] { return rdd.ReduceByKey(r, f, n) })
}

// GroupByKey collects the values of each key per batch.
func GroupByKey[K comparable, V any](s *DStream[KV[K, V]], opts ...ShuffleOption) *DStream[KV[K, []V]] {
	n := numParts(s.b.ctx, opts)
	return derive(s, "groupByKey", func(r *rdd.RDD[KV[K, V]]) *rdd.RDD[KV[K, []V]] { return rdd.GroupByKey(r, n) })
}

// Combiner is the aggregation of CombineByKey (see rdd.Aggregator).
type Combiner[V, C any] = rdd.Aggregator[V, C]

// CombineByKey aggregates the values of each key per batch with agg.
func CombineByKey[K comparable, V, C any](s *DStream[KV[K, V]], agg Combiner[V, C], opts ...ShuffleOption) *DStream[KV[K, C]] {
	n := numParts(s.b.ctx, opts)
	return derive(s, "combineByKey", func(r *rdd.RDD[KV[K, V]]) *rdd.RDD[KV[K, C]] {
		return rdd.CombineByKey(r, "combineByKey", agg, rdd.CodecOf[C](), n)
	})
}

// MapValues applies f to the value of every pair, keeping the key.
func MapValues[K comparable, V, W any](s *DStream[KV[K, V]], f func(V) W) *DStream[KV[K, W]] {
	return derive(s, "mapValues", func(r *rdd.RDD[KV[K, V]]) *rdd.RDD[KV[K, W]] { return rdd.MapValues(r, f) })
}
