package dstream

import (
	"fmt"
	"sort"
	"sync"
	"time"
	"unsafe"

	"github.com/sluicehq/sluice/rdd"
)

// stateStore holds the state of one stateful operator, split into the same
// partitions as the shuffle that feeds it (rdd.PartitionOf of the key's
// codec hash), so a task touches only its own partition. Each partition
// keeps the committed state (as of the last finished batch) and the delta
// written by the batch in flight. A task attempt always starts from the
// committed state and replaces the batch's delta, so retries and
// recomputation are idempotent; the batch commits once all its outputs are
// done. Issue 5/6 checkpoints the committed maps per partition.
type stateStore[K comparable, S any] struct {
	name  string
	kc    rdd.Codec[K]
	parts []*statePart[K, S]
}

type stateEntry[S any] struct {
	value   S
	touched time.Time // the last batch that gave the key data
}

type statePart[K comparable, S any] struct {
	mu        sync.Mutex
	committed map[K]stateEntry[S]
	deltas    map[time.Time]map[K]*stateEntry[S] // nil entry: removed
	bytes     int64
	// wake is the earliest batch time at which something in the partition
	// may be due (a timeout, a window end); zero when nothing is.
	wake time.Time
}

func newStateStore[K comparable, S any](name string, parts int) *stateStore[K, S] {
	st := &stateStore[K, S]{name: name, kc: rdd.CodecOf[K](), parts: make([]*statePart[K, S], parts)}
	for i := range st.parts {
		st.parts[i] = &statePart[K, S]{committed: map[K]stateEntry[S]{}, deltas: map[time.Time]map[K]*stateEntry[S]{}}
	}
	return st
}

// partOf returns the partition of key k.
func (st *stateStore[K, S]) partOf(k K) int { return rdd.PartitionOf(st.kc.Hash(k), len(st.parts)) }

// load puts initial state into the committed maps.
func (st *stateStore[K, S]) load(init []KV[K, S], at time.Time) {
	for _, kv := range init {
		p := st.parts[st.partOf(kv.Key)]
		k := rdd.Clone(kv.Key)
		p.committed[k] = stateEntry[S]{value: rdd.Clone(kv.Value), touched: at}
		p.bytes += entrySize(k, kv.Value)
	}
}

// txn is one task attempt's view of a partition at batch time t.
type txn[K comparable, S any] struct {
	part  int
	p     *statePart[K, S]
	t     time.Time
	delta map[K]*stateEntry[S]
}

func (st *stateStore[K, S]) begin(part int, t time.Time) (*txn[K, S], error) {
	if part < 0 || part >= len(st.parts) {
		return nil, fmt.Errorf("state %s: partition %d out of range [0,%d): the operator's input is not partitioned like its state", st.name, part, len(st.parts))
	}
	return &txn[K, S]{part: part, p: st.parts[part], t: t, delta: map[K]*stateEntry[S]{}}, nil
}

func (x *txn[K, S]) get(k K) (stateEntry[S], bool) {
	if e, ok := x.delta[k]; ok {
		if e == nil {
			return stateEntry[S]{}, false
		}
		return *e, true
	}
	x.p.mu.Lock()
	e, ok := x.p.committed[k]
	x.p.mu.Unlock()
	return e, ok
}

func (x *txn[K, S]) set(k K, e stateEntry[S]) {
	k = rdd.Clone(k)
	e.value = rdd.Clone(e.value)
	x.delta[k] = &e
}

func (x *txn[K, S]) remove(k K) { x.delta[rdd.Clone(k)] = nil }

// wake reports whether something may be due in the partition at t.
func (x *txn[K, S]) due() bool {
	x.p.mu.Lock()
	defer x.p.mu.Unlock()
	return !x.p.wake.IsZero() && !x.t.Before(x.p.wake)
}

// each calls f for every key of the partition as the transaction sees it,
// in a deterministic order (by key hash), so that recomputing the
// partition routes its output exactly as before.
func (x *txn[K, S]) each(f func(k K, e stateEntry[S]) bool) {
	x.p.mu.Lock()
	keys := make([]K, 0, len(x.p.committed)+len(x.delta))
	for k := range x.p.committed {
		if _, ok := x.delta[k]; !ok {
			keys = append(keys, k)
		}
	}
	x.p.mu.Unlock()
	for k, e := range x.delta {
		if e != nil {
			keys = append(keys, k)
		}
	}
	kc := rdd.CodecOf[K]()
	sort.Slice(keys, func(i, j int) bool { return kc.Hash(keys[i]) < kc.Hash(keys[j]) })
	for _, k := range keys {
		e, ok := x.get(k)
		if ok && !f(k, e) {
			return
		}
	}
}

// finish stores the attempt's delta as the batch's, replacing earlier attempts.
func (x *txn[K, S]) finish() {
	x.p.mu.Lock()
	x.p.deltas[x.t] = x.delta
	x.p.mu.Unlock()
}

// commit applies batch t's deltas. wake computes when an entry may next be
// due (zero: never).
func (st *stateStore[K, S]) commit(t time.Time, wake func(k K, e stateEntry[S]) time.Time) {
	for _, p := range st.parts {
		p.mu.Lock()
		d := p.deltas[t]
		delete(p.deltas, t)
		for bt := range p.deltas {
			if bt.Before(t) { // a failed batch's leftovers
				delete(p.deltas, bt)
			}
		}
		for k, e := range d {
			if old, ok := p.committed[k]; ok {
				p.bytes -= entrySize(k, old.value)
			}
			if e == nil {
				delete(p.committed, k)
				continue
			}
			p.committed[k] = *e
			p.bytes += entrySize(k, e.value)
		}
		if wake != nil && (len(d) > 0 || (!p.wake.IsZero() && !t.Before(p.wake))) {
			p.wake = time.Time{}
			for k, e := range p.committed {
				if w := wake(k, e); !w.IsZero() && (p.wake.IsZero() || w.Before(p.wake)) {
					p.wake = w
				}
			}
		}
		p.mu.Unlock()
	}
}

// size returns the committed keys and approximate bytes.
func (st *stateStore[K, S]) size() (keys, bytes int64) {
	for _, p := range st.parts {
		p.mu.Lock()
		keys += int64(len(p.committed))
		bytes += p.bytes
		p.mu.Unlock()
	}
	return keys, bytes
}

// snapshot returns the committed state, sorted by partition, for tests.
func (st *stateStore[K, S]) snapshot() []KV[K, S] {
	var out []KV[K, S]
	for _, p := range st.parts {
		p.mu.Lock()
		start := len(out)
		for k, e := range p.committed {
			out = append(out, KV[K, S]{Key: k, Value: e.value})
		}
		p.mu.Unlock()
		part := out[start:]
		sort.Slice(part, func(i, j int) bool { return st.kc.Hash(part[i].Key) < st.kc.Hash(part[j].Key) })
	}
	return out
}

// entrySize approximates the memory of one entry: the fixed size of key and
// value plus the bytes of top-level strings and byte slices, plus map overhead.
func entrySize[K, S any](k K, v S) int64 {
	n := int64(unsafe.Sizeof(k)) + int64(unsafe.Sizeof(v)) + 16
	n += dynSize(any(k)) + dynSize(any(v))
	return n
}

func dynSize(v any) int64 {
	switch x := v.(type) {
	case string:
		return int64(len(x))
	case []byte:
		return int64(len(x))
	}
	return 0
}
