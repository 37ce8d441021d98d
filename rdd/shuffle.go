package rdd

import (
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/apache/arrow/go/v15/arrow"
)

// Aggregator combines the values of one key: Create starts a combiner from
// the first value, Merge adds a value to a combiner (map side), Combine merges
// two combiners (reduce side). Merge and Combine must be associative and
// commutative, as the order values arrive in is not defined, and agree:
// Combine(c, Create(v)) must equal Merge(c, v), as a map task may pass a
// value on uncombined (when its keys do not repeat).
type Aggregator[V, C any] struct {
	Create  func(V) C
	Merge   func(C, V) C
	Combine func(C, C) C
}

// The map side of CombineByKey stops combining once it has seen
// combineProbeKeys distinct keys (and again at every doubling) if at least
// combineSkipRatio of its records so far brought a new key.
const (
	combineProbeKeys = 1 << 16
	combineSkipRatio = 0.8
)

// partitionOf maps a key hash to one of n partitions.
func partitionOf(h uint64, n int) int { return int(h % uint64(n)) }

// combiner is a hash table from K to C that hashes each key once per
// record and emits in a deterministic order (first-seen order). String keys
// use strTable (hashed in place, no boxing, each combiner in its key's
// slot); other key types a Go map to dense key and value columns.
type combiner[K comparable, C any] struct {
	tab  *strTable[C] // K is string
	idx  map[K]int32
	keys []K // with idx
	vals []C // with idx
}

// newCombiner returns a combiner that holds keys keys without growing.
func newCombiner[K comparable, C any](keys int) *combiner[K, C] {
	var zero K
	if _, ok := any(zero).(string); ok {
		return &combiner[K, C]{tab: newStrTableFor[C](keys)}
	}
	return &combiner[K, C]{idx: make(map[K]int32, keys), keys: make([]K, 0, keys), vals: make([]C, 0, keys)}
}

// size is the number of keys.
func (m *combiner[K, C]) size() int {
	if m.tab != nil {
		return len(m.tab.keys)
	}
	return len(m.keys)
}

// keyHints remembers, by operator and call site (Node.String, as
// "reduceByKey@main.go:62"), how many keys the last map and reduce tasks
// of that operator held in this process, so that the next batch's tables
// start that large instead of doubling up to it (every doubling moves
// every key: at 100k distinct keys a seventh of a map task's time). Its
// entries are the program's operator sites: bounded by the code.
var keyHints sync.Map // string -> *keyHint

type keyHint struct{ mapSide, reduceSide atomic.Int64 }

// maxKeyHint bounds a hinted table (a hint is only a start: it grows on).
const maxKeyHint = 1 << 22

// hintOf returns the hint of n's operator, or nil for a node without a
// call site.
func hintOf(n *Node) *keyHint {
	if n.Site == "" {
		return nil
	}
	name := n.String()
	if h, ok := keyHints.Load(name); ok {
		return h.(*keyHint)
	}
	h, _ := keyHints.LoadOrStore(name, &keyHint{})
	return h.(*keyHint)
}

// start returns the keys a table of side should start with.
func (h *keyHint) start(side *atomic.Int64) int {
	if h == nil {
		return 0
	}
	return int(min(side.Load(), maxKeyHint))
}

func (h *keyHint) keep(side *atomic.Int64, keys int) {
	if h != nil {
		side.Store(int64(keys))
	}
}

// ref returns k's combiner and whether k is new, in which case the caller
// sets it. The pointer is valid until the next call.
func (m *combiner[K, C]) ref(k K) (*C, bool) {
	if m.tab != nil {
		i, added := m.tab.slot(*(*string)(unsafe.Pointer(&k)))
		return &m.tab.slots[i].val, added
	}
	if i, ok := m.idx[k]; ok {
		return &m.vals[i], false
	}
	m.idx[k] = int32(len(m.keys))
	m.keys = append(m.keys, k)
	var zero C
	m.vals = append(m.vals, zero)
	return &m.vals[len(m.vals)-1], true
}

// each calls f with every key and its combiner in first-seen order, until f
// returns false.
func (m *combiner[K, C]) each(f func(K, C) bool) {
	if m.tab != nil {
		m.tab.each(func(k string, c C) bool { return f(*(*K)(unsafe.Pointer(&k)), c) })
		return
	}
	for i, k := range m.keys {
		if !f(k, m.vals[i]) {
			return
		}
	}
}

func (m *combiner[K, C]) add(k K, create func() C, merge func(C) C) {
	if p, added := m.ref(k); added {
		*p = create()
	} else {
		*p = merge(*p)
	}
}

// writeShuffle encodes the values of one map task into numReduce blocks,
// routing each value with route, and stores them.
func writeShuffle[X any](tc *TaskContext, dep *ShuffleDep, mapPart int, c Codec[X], fill func(emit func(reducer int, v X)) error) error {
	builders := make([]*Builder[X], dep.NumReduce)
	defer func() {
		for _, b := range builders {
			if b != nil {
				b.Release()
			}
		}
	}()
	err := fill(func(r int, v X) {
		b := builders[r]
		if b == nil {
			b = NewBuilder(tc.Alloc, c)
			builders[r] = b
		}
		b.Append(v)
	})
	if err != nil {
		return err
	}
	blocks := make([]arrow.Record, dep.NumReduce)
	for r, b := range builders {
		if b != nil && b.Len() > 0 {
			blocks[r] = b.NewRecord()
		}
	}
	return tc.Shuffle.PutMapOutput(dep.ID, mapPart, blocks)
}

// fetchAll fetches reduce partition part of a shuffle, retaining every block
// until release is called, so decoded values may alias them meanwhile.
func fetchAll(tc *TaskContext, dep *ShuffleDep, part int, each func(arrow.Record)) (release func(), err error) {
	var held []arrow.Record
	release = func() {
		for _, r := range held {
			r.Release()
		}
		held = nil
	}
	defer func() { // a panic in each (user code) must not leak the blocks
		if v := recover(); v != nil {
			release()
			panic(v)
		}
	}()
	err = tc.Shuffle.Fetch(tc.Ctx, dep.ID, dep.Parent.Parts, part, func(rec arrow.Record) error {
		rec.Retain()
		held = append(held, rec)
		tc.RecordsRead += rec.NumRows()
		each(rec)
		return nil
	})
	return release, err
}

// mapSide is the state of one map task of CombineByKey: how often keys
// repeated so far, whether it stopped combining, and (string keys) its
// table.
type mapSide[V, C any] struct {
	tab     *strTable[C]
	merge   func(C, V) C
	hits    int  // records whose key was in the table
	check   int  // the next number of distinct keys at which to decide
	through bool // combining stopped: records pass to the shuffle
}

// grew decides, once the table holds check keys (and at every doubling),
// whether combining pays: not when most records so far brought a new key.
func (st *mapSide[V, C]) grew(keys int) {
	if keys >= st.check {
		st.through = float64(keys) >= combineSkipRatio*float64(keys+st.hits)
		st.check *= 2
	}
}

// CombineByKey groups the values of each key with agg into numParts
// partitions, hash-partitioned by key. Values are combined on the map side
// before the shuffle, so at most one record per key and map task crosses it.
func CombineByKey[K comparable, V, C any](r *RDD[KV[K, V]], op string, agg Aggregator[V, C], cc Codec[C], numParts int) *RDD[KV[K, C]] {
	kc := r.codec.(KVCodec[K, V]).K
	outCodec := KVCodec[K, C]{K: kc, V: cc}
	dep := &ShuffleDep{ID: newID(), Parent: r.node, NumReduce: numParts}
	n := newNode(op, numParts, Dep{Parent: r.node, Shuffle: dep})
	dep.Child = n
	dep.WriteMap = func(tc *TaskContext, mapPart int) error {
		return writeShuffle(tc, dep, mapPart, outCodec, func(emit func(int, KV[K, C])) error {
			hint := hintOf(n)
			m := newCombiner[K, C](hint.start(&hint.mapSide))
			// Combining pays when keys repeat. When most records so far
			// brought a new key, the rest pass straight to the shuffle
			// (adaptive partial aggregation, as in DataFusion and Trino):
			// the table stops growing, and the reduce side combines.
			st := &mapSide[V, C]{check: combineProbeKeys, merge: agg.Merge, tab: m.tab}
			pass := func(k K, v V) { emit(partitionOf(kc.Hash(k), numParts), KV[K, C]{Key: k, Value: agg.Create(v)}) }
			nid := n.ID
			var err error
			never := false     // the map side reads its whole partition
			if st.tab != nil { // the hot path: no call between the record and the table
				// What the closure needs after the table's lookup (a call:
				// Go's registers do not survive it) is behind one pointer.
				err = r.push(tc, mapPart, &never, func(kv KV[K, V]) {
					tc.cur = nid
					if st.through {
						pass(kv.Key, kv.Value)
						return
					}
					i, added := st.tab.slot(*(*string)(unsafe.Pointer(&kv.Key)))
					if !added {
						st.hits++
						p := &st.tab.slots[i].val
						*p = st.merge(*p, kv.Value)
						return
					}
					st.tab.slots[i].val = agg.Create(kv.Value)
					st.grew(len(st.tab.keys))
				})
			} else {
				err = r.push(tc, mapPart, &never, func(kv KV[K, V]) {
					tc.cur = nid
					if st.through {
						pass(kv.Key, kv.Value)
					} else if p, added := m.ref(kv.Key); added {
						*p = agg.Create(kv.Value)
						st.grew(len(m.keys))
					} else {
						st.hits++
						*p = agg.Merge(*p, kv.Value)
					}
				})
			}
			if err != nil {
				return err
			}
			hint.keep(&hint.mapSide, m.size())
			m.each(func(k K, c C) bool {
				emit(partitionOf(kc.Hash(k), numParts), KV[K, C]{Key: k, Value: c})
				return true
			})
			return nil
		})
	}
	out := &RDD[KV[K, C]]{node: n, codec: outCodec}
	out.iter = func(tc *TaskContext, part int, yield func(KV[K, C]) bool) error {
		hint := hintOf(n)
		m := newCombiner[K, C](hint.start(&hint.reduceSide))
		release, err := fetchAll(tc, dep, part, func(rec arrow.Record) {
			if tab := m.tab; tab != nil {
				ForEach(outCodec, rec, func(kv KV[K, C]) bool {
					tc.cur = n.ID
					if i, added := tab.slot(*(*string)(unsafe.Pointer(&kv.Key))); added {
						tab.slots[i].val = kv.Value
					} else {
						p := &tab.slots[i].val
						*p = agg.Combine(*p, kv.Value)
					}
					return true
				})
				return
			}
			ForEach(outCodec, rec, func(kv KV[K, C]) bool {
				tc.cur = n.ID
				if p, added := m.ref(kv.Key); added {
					*p = kv.Value
				} else {
					*p = agg.Combine(*p, kv.Value)
				}
				return true
			})
		})
		defer release()
		if err != nil {
			return err
		}
		hint.keep(&hint.reduceSide, m.size())
		m.each(func(k K, c C) bool { return yield(KV[K, C]{Key: k, Value: c}) })
		return nil
	}
	return out
}

// ReduceByKey merges the values of each key with the associative and
// commutative function f.
func ReduceByKey[K comparable, V any](r *RDD[KV[K, V]], f func(V, V) V, numParts int) *RDD[KV[K, V]] {
	vc := r.codec.(KVCodec[K, V]).V
	return CombineByKey(r, "reduceByKey", Aggregator[V, V]{
		Create:  func(v V) V { return v },
		Merge:   f,
		Combine: f,
	}, vc, numParts)
}

// GroupByKey collects the values of each key into a slice (in no defined order).
func GroupByKey[K comparable, V any](r *RDD[KV[K, V]], numParts int) *RDD[KV[K, []V]] {
	vc := r.codec.(KVCodec[K, V]).V
	return CombineByKey(r, "groupByKey", Aggregator[V, []V]{
		Create:  func(v V) []V { return []V{v} },
		Merge:   func(c []V, v V) []V { return append(c, v) },
		Combine: func(a, b []V) []V { return append(a, b...) },
	}, SliceCodec[V]{Elem: vc}, numParts)
}

// MapValues applies f to the value of every pair, keeping keys (and so the
// partitioning) unchanged.
func MapValues[K comparable, V, W any](r *RDD[KV[K, V]], f func(V) W) *RDD[KV[K, W]] {
	kc := r.codec.(KVCodec[K, V]).K
	return narrow("mapValues", r, Codec[KV[K, W]](KVCodec[K, W]{K: kc, V: CodecOf[W]()}),
		func(n *Node) func(*TaskContext, int, func(KV[K, W]) bool) error {
			return func(tc *TaskContext, part int, yield func(KV[K, W]) bool) error {
				return r.Iterate(tc, part, func(kv KV[K, V]) bool {
					tc.cur = n.ID
					return yield(KV[K, W]{Key: kv.Key, Value: f(kv.Value)})
				})
			}
		})
}

// Repartition redistributes the values round-robin over numParts partitions.
// The distribution depends only on each map partition's contents and order,
// which are deterministic, so a recomputed map task routes every value to the
// same place as before.
func Repartition[T any](r *RDD[T], numParts int) *RDD[T] {
	dep := &ShuffleDep{ID: newID(), Parent: r.node, NumReduce: numParts}
	n := newNode("repartition", numParts, Dep{Parent: r.node, Shuffle: dep})
	dep.Child = n
	dep.WriteMap = func(tc *TaskContext, mapPart int) error {
		return writeShuffle(tc, dep, mapPart, r.codec, func(emit func(int, T)) error {
			next := mapPart % numParts
			return r.Iterate(tc, mapPart, func(v T) bool {
				emit(next, v)
				if next++; next == numParts {
					next = 0
				}
				return true
			})
		})
	}
	out := &RDD[T]{node: n, codec: r.codec}
	out.iter = func(tc *TaskContext, part int, yield func(T) bool) error {
		stopped := false
		release, err := fetchAll(tc, dep, part, func(rec arrow.Record) {
			if !stopped {
				stopped = !ForEach(r.codec, rec, yield)
			}
		})
		defer release()
		return err
	}
	return out
}

// CoGroup groups the values of both RDDs by key into numParts partitions:
// each output pair holds a key's values from a (First) and from b (Second).
func CoGroup[K comparable, V, W any](a *RDD[KV[K, V]], b *RDD[KV[K, W]], numParts int) *RDD[KV[K, Pair[[]V, []W]]] {
	kc := a.codec.(KVCodec[K, V]).K
	ga := GroupByKey(a, numParts)
	gb := GroupByKey(b, numParts)
	depA, depB := ga.node.Deps[0], gb.node.Deps[0]
	ca, cb := ga.codec, gb.codec
	outCodec := KVCodec[K, Pair[[]V, []W]]{K: kc, V: PairCodec[[]V, []W]{
		A: SliceCodec[V]{Elem: a.codec.(KVCodec[K, V]).V},
		B: SliceCodec[W]{Elem: b.codec.(KVCodec[K, W]).V},
	}}
	n := newNode("cogroup", numParts, depA, depB)
	out := &RDD[KV[K, Pair[[]V, []W]]]{node: n, codec: outCodec}
	out.iter = func(tc *TaskContext, part int, yield func(KV[K, Pair[[]V, []W]]) bool) error {
		m := newCombiner[K, Pair[[]V, []W]](0)
		relA, err := fetchAll(tc, depA.Shuffle, part, func(rec arrow.Record) {
			ForEach(ca, rec, func(kv KV[K, []V]) bool {
				m.add(kv.Key, func() Pair[[]V, []W] { return Pair[[]V, []W]{First: kv.Value} },
					func(p Pair[[]V, []W]) Pair[[]V, []W] { p.First = append(p.First, kv.Value...); return p })
				return true
			})
		})
		defer relA()
		if err != nil {
			return err
		}
		relB, err := fetchAll(tc, depB.Shuffle, part, func(rec arrow.Record) {
			ForEach(cb, rec, func(kv KV[K, []W]) bool {
				m.add(kv.Key, func() Pair[[]V, []W] { return Pair[[]V, []W]{Second: kv.Value} },
					func(p Pair[[]V, []W]) Pair[[]V, []W] { p.Second = append(p.Second, kv.Value...); return p })
				return true
			})
		})
		defer relB()
		if err != nil {
			return err
		}
		m.each(func(k K, p Pair[[]V, []W]) bool { return yield(KV[K, Pair[[]V, []W]]{Key: k, Value: p}) })
		return nil
	}
	return out
}
