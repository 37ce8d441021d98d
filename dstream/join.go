package dstream

import (
	"fmt"
	"iter"
	"time"

	"github.com/sluicehq/sluice/rdd"
)

// Option is a value that may be absent; outer joins produce it.
type Option[T any] = rdd.Option[T]

// TransformWith combines the RDDs of two streams with the same slide at
// every slide time. f runs on the driver and must build its result from its
// arguments only. A stream with no RDD at a time contributes an empty one.
func TransformWith[A, B, U any](a *DStream[A], b *DStream[B], f func(t time.Time, ra *rdd.RDD[A], rb *rdd.RDD[B]) *rdd.RDD[U]) *DStream[U] {
	return combine2(a, b, "transformWith", func(t time.Time, ra *rdd.RDD[A], rb *rdd.RDD[B]) (*rdd.RDD[U], error) {
		out := f(t, ra, rb)
		if out == nil {
			return nil, fmt.Errorf("returned a nil RDD at %s: return rdd.Empty for no data", fmtTime(t))
		}
		return out, nil
	})
}

func combine2[A, B, U any](a *DStream[A], b *DStream[B], op string, f func(t time.Time, ra *rdd.RDD[A], rb *rdd.RDD[B]) (*rdd.RDD[U], error)) *DStream[U] {
	var s *DStream[U]
	s = newStream(a.b.ctx, op, a.b.slide, []*streamBase{a.b, b.b}, func(t time.Time) (*rdd.RDD[U], error) {
		ra, err := a.rddAt(t)
		if err != nil {
			return nil, err
		}
		rb, err := b.rddAt(t)
		if err != nil {
			return nil, err
		}
		if ra == nil && rb == nil {
			return nil, nil
		}
		if ra == nil {
			ra = rdd.Empty[A](op, 0)
		}
		if rb == nil {
			rb = rdd.Empty[B](op, 0)
		}
		out, err := f(t, ra, rb)
		if err == nil && out != nil {
			out.Node().Site = s.b.name[len(op)+1:]
		}
		return out, err
	})
	s.b.validate = func() error {
		if a.b.ctx != b.b.ctx {
			return fmt.Errorf("%s: the streams belong to different contexts", s.b.name)
		}
		if a.b.slide != b.b.slide {
			return fmt.Errorf("%s: the streams have different slide intervals (%v and %v); window them to a common slide first", s.b.name, a.b.slide, b.b.slide)
		}
		return nil
	}
	return s
}

// CoGroup groups the values of both streams by key at every slide time.
func CoGroup[K comparable, V, W any](a *DStream[KV[K, V]], b *DStream[KV[K, W]], opts ...ShuffleOption) *DStream[KV[K, Pair[[]V, []W]]] {
	n := numParts(a.b.ctx, opts)
	return combine2(a, b, "cogroup", func(_ time.Time, ra *rdd.RDD[KV[K, V]], rb *rdd.RDD[KV[K, W]]) (*rdd.RDD[KV[K, Pair[[]V, []W]]], error) {
		return rdd.CoGroup(ra, rb, n), nil
	})
}

// joinWith cogroups a and b and expands every key's groups with emit.
func joinWith[K comparable, V, W, U any](a *DStream[KV[K, V]], b *DStream[KV[K, W]], op string,
	emit func(k K, vs []V, ws []W, yield func(KV[K, U]) bool) bool, opts []ShuffleOption) *DStream[KV[K, U]] {
	n := numParts(a.b.ctx, opts)
	return combine2(a, b, op, func(_ time.Time, ra *rdd.RDD[KV[K, V]], rb *rdd.RDD[KV[K, W]]) (*rdd.RDD[KV[K, U]], error) {
		cg := rdd.CoGroup(ra, rb, n)
		kc := ra.Codec().(rdd.KVCodec[K, V]).K
		return rdd.MapPartitionsWithContext(cg, op, rdd.Codec[KV[K, U]](rdd.KVCodec[K, U]{K: kc, V: rdd.CodecOf[U]()}),
			func(_ *rdd.TaskContext, _ int, in iter.Seq[KV[K, Pair[[]V, []W]]], yield func(KV[K, U]) bool) error {
				for kv := range in {
					if !emit(kv.Key, kv.Value.First, kv.Value.Second, yield) {
						return nil
					}
				}
				return nil
			}), nil
	})
}

// Join pairs the values of keys present in both streams at every slide time.
func Join[K comparable, V, W any](a *DStream[KV[K, V]], b *DStream[KV[K, W]], opts ...ShuffleOption) *DStream[KV[K, Pair[V, W]]] {
	return joinWith(a, b, "join", func(k K, vs []V, ws []W, yield func(KV[K, Pair[V, W]]) bool) bool {
		for _, v := range vs {
			for _, w := range ws {
				if !yield(KV[K, Pair[V, W]]{Key: k, Value: Pair[V, W]{First: v, Second: w}}) {
					return false
				}
			}
		}
		return true
	}, opts)
}

// LeftOuterJoin is Join that keeps keys present only in a, with an absent
// right value.
func LeftOuterJoin[K comparable, V, W any](a *DStream[KV[K, V]], b *DStream[KV[K, W]], opts ...ShuffleOption) *DStream[KV[K, Pair[V, Option[W]]]] {
	return joinWith(a, b, "leftOuterJoin", func(k K, vs []V, ws []W, yield func(KV[K, Pair[V, Option[W]]]) bool) bool {
		for _, v := range vs {
			if len(ws) == 0 {
				if !yield(KV[K, Pair[V, Option[W]]]{Key: k, Value: Pair[V, Option[W]]{First: v}}) {
					return false
				}
			}
			for _, w := range ws {
				if !yield(KV[K, Pair[V, Option[W]]]{Key: k, Value: Pair[V, Option[W]]{First: v, Second: rdd.Some(w)}}) {
					return false
				}
			}
		}
		return true
	}, opts)
}

// RightOuterJoin is Join that keeps keys present only in b, with an absent
// left value.
func RightOuterJoin[K comparable, V, W any](a *DStream[KV[K, V]], b *DStream[KV[K, W]], opts ...ShuffleOption) *DStream[KV[K, Pair[Option[V], W]]] {
	return joinWith(a, b, "rightOuterJoin", func(k K, vs []V, ws []W, yield func(KV[K, Pair[Option[V], W]]) bool) bool {
		for _, w := range ws {
			if len(vs) == 0 {
				if !yield(KV[K, Pair[Option[V], W]]{Key: k, Value: Pair[Option[V], W]{Second: w}}) {
					return false
				}
			}
			for _, v := range vs {
				if !yield(KV[K, Pair[Option[V], W]]{Key: k, Value: Pair[Option[V], W]{First: rdd.Some(v), Second: w}}) {
					return false
				}
			}
		}
		return true
	}, opts)
}

// FullOuterJoin keeps every key of either stream; the side a key is missing
// from is absent.
func FullOuterJoin[K comparable, V, W any](a *DStream[KV[K, V]], b *DStream[KV[K, W]], opts ...ShuffleOption) *DStream[KV[K, Pair[Option[V], Option[W]]]] {
	type out = KV[K, Pair[Option[V], Option[W]]]
	return joinWith(a, b, "fullOuterJoin", func(k K, vs []V, ws []W, yield func(out) bool) bool {
		switch {
		case len(ws) == 0:
			for _, v := range vs {
				if !yield(out{Key: k, Value: Pair[Option[V], Option[W]]{First: rdd.Some(v)}}) {
					return false
				}
			}
		case len(vs) == 0:
			for _, w := range ws {
				if !yield(out{Key: k, Value: Pair[Option[V], Option[W]]{Second: rdd.Some(w)}}) {
					return false
				}
			}
		default:
			for _, v := range vs {
				for _, w := range ws {
					if !yield(out{Key: k, Value: Pair[Option[V], Option[W]]{First: rdd.Some(v), Second: rdd.Some(w)}}) {
						return false
					}
				}
			}
		}
		return true
	}, opts)
}
