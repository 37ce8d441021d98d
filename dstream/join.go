package dstream

import (
	"fmt"
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
	slide := a.b.slide
	if a.b.static {
		slide = b.b.slide // a Dataset's stream follows the other side
	}
	s = newStream(a.b.ctx, op, slide, []*streamBase{a.b, b.b}, func(t time.Time) (*rdd.RDD[U], error) {
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
		if a.b.slide != b.b.slide && !a.b.static && !b.b.static {
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

// joinRDD applies an RDD-level join to the RDDs of a and b at every slide
// time.
func joinRDD[K comparable, V, W, U any](a *DStream[KV[K, V]], b *DStream[KV[K, W]], op string, opts []ShuffleOption,
	join func(ra *rdd.RDD[KV[K, V]], rb *rdd.RDD[KV[K, W]], n int) *rdd.RDD[KV[K, U]]) *DStream[KV[K, U]] {
	n := numParts(a.b.ctx, opts)
	return combine2(a, b, op, func(_ time.Time, ra *rdd.RDD[KV[K, V]], rb *rdd.RDD[KV[K, W]]) (*rdd.RDD[KV[K, U]], error) {
		return join(ra, rb, n), nil
	})
}

// Join pairs the values of keys present in both streams at every slide time.
// Either side may be a Dataset's Stream, to join a stream with static data.
func Join[K comparable, V, W any](a *DStream[KV[K, V]], b *DStream[KV[K, W]], opts ...ShuffleOption) *DStream[KV[K, Pair[V, W]]] {
	return joinRDD(a, b, "join", opts, rdd.Join[K, V, W])
}

// LeftOuterJoin is Join that keeps keys present only in a, with an absent
// right value.
func LeftOuterJoin[K comparable, V, W any](a *DStream[KV[K, V]], b *DStream[KV[K, W]], opts ...ShuffleOption) *DStream[KV[K, Pair[V, Option[W]]]] {
	return joinRDD(a, b, "leftOuterJoin", opts, rdd.LeftOuterJoin[K, V, W])
}

// RightOuterJoin is Join that keeps keys present only in b, with an absent
// left value.
func RightOuterJoin[K comparable, V, W any](a *DStream[KV[K, V]], b *DStream[KV[K, W]], opts ...ShuffleOption) *DStream[KV[K, Pair[Option[V], W]]] {
	return joinRDD(a, b, "rightOuterJoin", opts, rdd.RightOuterJoin[K, V, W])
}

// FullOuterJoin keeps every key of either stream; the side a key is missing
// from is absent.
func FullOuterJoin[K comparable, V, W any](a *DStream[KV[K, V]], b *DStream[KV[K, W]], opts ...ShuffleOption) *DStream[KV[K, Pair[Option[V], Option[W]]]] {
	return joinRDD(a, b, "fullOuterJoin", opts, rdd.FullOuterJoin[K, V, W])
}
