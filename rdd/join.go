package rdd

// joinWith cogroups a and b into numParts partitions and expands each key's
// groups with emit.
func joinWith[K comparable, V, W, U any](a *RDD[KV[K, V]], b *RDD[KV[K, W]], op string, numParts int,
	emit func(k K, vs []V, ws []W, yield func(KV[K, U]) bool) bool) *RDD[KV[K, U]] {
	cg := CoGroup(a, b, numParts)
	kc := a.codec.(KVCodec[K, V]).K
	out := narrow(op, cg, Codec[KV[K, U]](KVCodec[K, U]{K: kc, V: CodecOf[U]()}),
		func(n *Node) func(*TaskContext, int, func(KV[K, U]) bool) error {
			return func(tc *TaskContext, part int, yield func(KV[K, U]) bool) error {
				return cg.Iterate(tc, part, func(kv KV[K, Pair[[]V, []W]]) bool {
					tc.cur = n.ID
					return emit(kv.Key, kv.Value.First, kv.Value.Second, yield)
				})
			}
		})
	return out
}

// Join pairs the values of every key present in both a and b, in numParts
// partitions hash-partitioned by key.
func Join[K comparable, V, W any](a *RDD[KV[K, V]], b *RDD[KV[K, W]], numParts int) *RDD[KV[K, Pair[V, W]]] {
	return joinWith(a, b, "join", numParts, func(k K, vs []V, ws []W, yield func(KV[K, Pair[V, W]]) bool) bool {
		for _, v := range vs {
			for _, w := range ws {
				if !yield(KV[K, Pair[V, W]]{Key: k, Value: Pair[V, W]{First: v, Second: w}}) {
					return false
				}
			}
		}
		return true
	})
}

// LeftOuterJoin is Join that keeps the keys present only in a, with an
// absent right value.
func LeftOuterJoin[K comparable, V, W any](a *RDD[KV[K, V]], b *RDD[KV[K, W]], numParts int) *RDD[KV[K, Pair[V, Option[W]]]] {
	type out = KV[K, Pair[V, Option[W]]]
	return joinWith(a, b, "leftOuterJoin", numParts, func(k K, vs []V, ws []W, yield func(out) bool) bool {
		for _, v := range vs {
			if len(ws) == 0 && !yield(out{Key: k, Value: Pair[V, Option[W]]{First: v}}) {
				return false
			}
			for _, w := range ws {
				if !yield(out{Key: k, Value: Pair[V, Option[W]]{First: v, Second: Some(w)}}) {
					return false
				}
			}
		}
		return true
	})
}

// RightOuterJoin is Join that keeps the keys present only in b, with an
// absent left value.
func RightOuterJoin[K comparable, V, W any](a *RDD[KV[K, V]], b *RDD[KV[K, W]], numParts int) *RDD[KV[K, Pair[Option[V], W]]] {
	type out = KV[K, Pair[Option[V], W]]
	return joinWith(a, b, "rightOuterJoin", numParts, func(k K, vs []V, ws []W, yield func(out) bool) bool {
		for _, w := range ws {
			if len(vs) == 0 && !yield(out{Key: k, Value: Pair[Option[V], W]{Second: w}}) {
				return false
			}
			for _, v := range vs {
				if !yield(out{Key: k, Value: Pair[Option[V], W]{First: Some(v), Second: w}}) {
					return false
				}
			}
		}
		return true
	})
}

// FullOuterJoin keeps every key of a or b; the side a key is missing from
// is absent.
func FullOuterJoin[K comparable, V, W any](a *RDD[KV[K, V]], b *RDD[KV[K, W]], numParts int) *RDD[KV[K, Pair[Option[V], Option[W]]]] {
	type out = KV[K, Pair[Option[V], Option[W]]]
	return joinWith(a, b, "fullOuterJoin", numParts, func(k K, vs []V, ws []W, yield func(out) bool) bool {
		switch {
		case len(ws) == 0:
			for _, v := range vs {
				if !yield(out{Key: k, Value: Pair[Option[V], Option[W]]{First: Some(v)}}) {
					return false
				}
			}
		case len(vs) == 0:
			for _, w := range ws {
				if !yield(out{Key: k, Value: Pair[Option[V], Option[W]]{Second: Some(w)}}) {
					return false
				}
			}
		default:
			for _, v := range vs {
				for _, w := range ws {
					if !yield(out{Key: k, Value: Pair[Option[V], Option[W]]{First: Some(v), Second: Some(w)}}) {
						return false
					}
				}
			}
		}
		return true
	})
}

// Parallelize makes a source RDD of vals split into numParts contiguous
// partitions (fewer when there are fewer values, at least one). vals must
// not change while the RDD is in use.
func Parallelize[T any](op string, vals []T, numParts int) *RDD[T] {
	numParts = max(1, min(numParts, len(vals)))
	return Generate(op, numParts, func(p int, yield func(T) bool) {
		lo, hi := p*len(vals)/numParts, (p+1)*len(vals)/numParts
		for _, v := range vals[lo:hi] {
			if !yield(v) {
				return
			}
		}
	})
}
