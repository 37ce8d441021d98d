package dstream

import (
	"fmt"
	"iter"
	"time"

	"github.com/sluicehq/sluice/rdd"
)

// ReduceByKeyAndWindowInv is the incremental ReduceByKeyAndWindow: instead
// of merging every batch of the window, each slide adds the batches that
// entered the window with f and takes out the batches that left it with inv
// (inv(f(a, b), b) == a). The operator keeps one value per key (its state,
// named name), not the batches of the window: the batches that leave are
// recomputed from their lineage. Keys for which filter returns false are
// dropped (nil keeps every key, even those whose value went back to zero).
// A slide of 0 means s's slide; Partitions(n) sets the partition count of
// the shuffle and of the state.
func ReduceByKeyAndWindowInv[K comparable, V any](s *DStream[KV[K, V]], name string, f, inv func(V, V) V,
	window, slide time.Duration, filter func(KV[K, V]) bool, opts ...ShuffleOption) *DStream[KV[K, V]] {
	switch {
	case f == nil:
		panic("dstream: ReduceByKeyAndWindowInv at " + callSite() + ": the reduce function is nil")
	case inv == nil:
		panic("dstream: ReduceByKeyAndWindowInv at " + callSite() + ": the inverse function is nil; without one, use ReduceByKeyAndWindow")
	}
	ctx := s.b.ctx
	slide = windowSlide(s.b, []time.Duration{slide}) // 0: s's slide
	n := numParts(ctx, opts)
	store := newStateStore[K, V](name, n)
	type delta = Pair[Option[V], Option[V]] // (entering, leaving)
	merge := func(a, b delta) delta {
		if b.First.Valid {
			if a.First.Valid {
				a.First.Value = f(a.First.Value, b.First.Value)
			} else {
				a.First = b.First
			}
		}
		if b.Second.Valid {
			if a.Second.Valid {
				a.Second.Value = f(a.Second.Value, b.Second.Value)
			} else {
				a.Second = b.Second
			}
		}
		return a
	}
	agg := rdd.Aggregator[delta, delta]{Create: func(d delta) delta { return d }, Merge: merge, Combine: merge}
	var out *DStream[KV[K, V]]
	out = newStream(ctx, "reduceByKeyAndWindow", slide, []*streamBase{s.b}, func(t time.Time) (*rdd.RDD[KV[K, V]], error) {
		entering, err := rddsIn(s, t.Add(-slide), t)
		if err != nil {
			return nil, err
		}
		leaving, err := rddsIn(s, t.Add(-window-slide), t.Add(-window))
		if err != nil {
			return nil, err
		}
		var tagged []*rdd.RDD[KV[K, delta]]
		for _, r := range entering {
			tagged = append(tagged, rdd.MapValues(r, func(v V) delta { return delta{First: rdd.Some(v)} }))
		}
		for _, r := range leaving {
			tagged = append(tagged, rdd.MapValues(r, func(v V) delta { return delta{Second: rdd.Some(v)} }))
		}
		deltas := rdd.CombineByKey(unionOrEmpty(tagged, "reduceByKeyAndWindow"), "reduceByKeyAndWindow", agg, rdd.CodecOf[delta](), n)
		r := rdd.MapPartitionsWithContext(deltas, "reduceByKeyAndWindow("+name+")", rdd.CodecOf[KV[K, V]](),
			func(tc *rdd.TaskContext, part int, in iter.Seq[KV[K, delta]], yield func(KV[K, V]) bool) error {
				x, err := store.begin(part, t)
				if err != nil {
					return err
				}
				for kv := range in {
					e, ok := x.get(kv.Key)
					cur := e.value
					if d := kv.Value.First; d.Valid {
						if ok {
							cur = f(cur, d.Value)
						} else {
							cur, ok = d.Value, true
						}
					}
					if d := kv.Value.Second; d.Valid && ok {
						cur = inv(cur, d.Value)
					}
					if filter != nil && !filter(KV[K, V]{Key: kv.Key, Value: cur}) {
						x.remove(kv.Key)
						continue
					}
					x.set(kv.Key, stateEntry[V]{value: cur, touched: t})
				}
				x.each(func(k K, e stateEntry[V]) bool { return yield(KV[K, V]{Key: k, Value: e.value}) })
				x.finish(tc)
				return nil
			})
		r.Node().State = name
		return r.Persist(), nil
	})
	out.b.lookback = window + slide
	out.b.validate = checkWindow(out.b, s.b, window, slide)
	out.b.stateSize = stateSizeOf(ctx, store)
	ctx.registerStateful(name, out.b, storeCheckpoint(ctx, &statefulStream[KV[K, V]]{
		s: out, name: "reduceByKeyAndWindow(" + name + ")",
		commit_: func(t time.Time) { store.commit(t, nil) },
	}, fmt.Sprintf("reduceByKeyAndWindowInv(window=%v,slide=%v)", window, slide), store))
	return out
}
