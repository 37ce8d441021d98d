package dstream

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"slices"
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
// done. Issue 5/6 checkpoints the committed state per partition.
//
// Storage is columnar: a partition's committed state is four parallel
// slices (codec hash, key, value, last-data time) sorted by key hash, an
// open-addressing index over the hashes, and, for string keys, an arena
// holding the key bytes (one allocation per MiB, not per key). A delta keeps
// changes to committed keys by position (an op byte, value and time per
// key) and new keys in a small table of the same shape. 1M string -> int64
// keys cost about 50 bytes each plus the key bytes.
type stateStore[K comparable, S any] struct {
	name  string
	kc    rdd.Codec[K]
	parts []*statePart[K, S]
	// reportSize makes every task report its partition's size after the
	// batch (a cluster's job process: see stateSizeOf).
	reportSize bool
	// restore, if set (a job process in a cluster), is called before every
	// transaction: it loads the partition from a checkpoint snapshot the
	// first time (restore.go).
	restore func(part int) error
}

type stateEntry[S any] struct {
	value   S
	touched time.Time // the last batch that gave the key data
}

// noTime encodes the zero time.Time in the touched columns.
const noTime = math.MinInt64

func packTime(t time.Time) int64 {
	if t.IsZero() {
		return noTime
	}
	return t.UnixNano()
}

func unpackTime(n int64) time.Time {
	if n == noTime {
		return time.Time{}
	}
	return time.Unix(0, n)
}

type statePart[K comparable, S any] struct {
	mu sync.Mutex
	kc rdd.Codec[K]
	// committed state, sorted by hash; gen changes whenever positions do
	hashes  []uint64
	keys    []K
	vals    []S
	touched []int64
	index   hashIndex
	gen     uint64
	arena   keyArena // bytes of string keys (unused for other key types)
	deltas  map[time.Time]*stateDelta[K, S]
	// wake is the earliest batch time at which something in the partition
	// may be due (a timeout, a window end); zero when nothing is.
	wake time.Time
}

const (
	opNone = iota
	opSet
	opRemove
)

// stateDelta is one task attempt's changes to a partition.
type stateDelta[K comparable, S any] struct {
	gen  uint64 // the committed generation positions refer to
	base []K    // the committed keys at that generation
	// changes to committed keys, by position (allocated on first change)
	op      []uint8
	vals    []S
	touched []int64
	// keys that were not committed, in first-set order
	added addedKeys[K, S]
}

type addedKeys[K comparable, S any] struct {
	hashes  []uint64
	keys    []K
	vals    []S
	touched []int64
	removed []bool
	index   hashIndex
}

func newStateStore[K comparable, S any](name string, parts int) *stateStore[K, S] {
	kc := rdd.CodecOf[K]()
	st := &stateStore[K, S]{name: name, kc: kc, parts: make([]*statePart[K, S], parts)}
	for i := range st.parts {
		st.parts[i] = &statePart[K, S]{kc: kc, deltas: map[time.Time]*stateDelta[K, S]{}}
	}
	return st
}

// partOf returns the partition of key k.
func (st *stateStore[K, S]) partOf(k K) int { return rdd.PartitionOf(st.kc.Hash(k), len(st.parts)) }

// load puts initial state into the committed state.
func (st *stateStore[K, S]) load(init []KV[K, S], at time.Time) {
	ds := make([]*stateDelta[K, S], len(st.parts))
	for i, p := range st.parts {
		ds[i] = p.newDelta()
	}
	for _, kv := range init {
		i := st.partOf(kv.Key)
		p := st.parts[i]
		p.mu.Lock()
		ds[i].set(p, kv.Key, stateEntry[S]{value: kv.Value, touched: at})
		p.mu.Unlock()
	}
	for i, p := range st.parts {
		p.mu.Lock()
		p.apply(ds[i])
		p.mu.Unlock()
	}
}

// txn is one task attempt's view of a partition at batch time t.
type txn[K comparable, S any] struct {
	part   int
	name   string // the store's
	report bool   // the store's reportSize
	p      *statePart[K, S]
	t      time.Time
	delta  *stateDelta[K, S]
	// hint is the committed position after the last one each visited or set
	// found: UpdateStateByKey sets keys in the order each visits them, so a
	// set usually finds its key there without a hash lookup.
	hint int
}

func (st *stateStore[K, S]) begin(part int, t time.Time) (*txn[K, S], error) {
	if part < 0 || part >= len(st.parts) {
		return nil, fmt.Errorf("state %s: partition %d out of range [0,%d): the operator's input is not partitioned like its state", st.name, part, len(st.parts))
	}
	if st.restore != nil {
		// A job process of a restarted job driver: the partition starts
		// from the checkpoint's snapshot, loaded before its first task.
		if err := st.restore(part); err != nil {
			return nil, err
		}
	}
	p := st.parts[part]
	p.mu.Lock()
	d := p.newDelta()
	p.mu.Unlock()
	return &txn[K, S]{part: part, name: st.name, report: st.reportSize, p: p, t: t, delta: d}, nil
}

// newDelta returns an empty delta against the current committed state
// (p.mu held).
func (p *statePart[K, S]) newDelta() *stateDelta[K, S] {
	return &stateDelta[K, S]{gen: p.gen, base: p.keys}
}

func (x *txn[K, S]) get(k K) (stateEntry[S], bool) {
	h := x.p.kc.Hash(k)
	d := x.delta
	if i := d.added.find(h, k); i >= 0 {
		if d.added.removed[i] {
			return stateEntry[S]{}, false
		}
		return stateEntry[S]{value: d.added.vals[i], touched: unpackTime(d.added.touched[i])}, true
	}
	x.p.mu.Lock()
	defer x.p.mu.Unlock()
	pos := x.p.find(h, k)
	if pos < 0 {
		return stateEntry[S]{}, false
	}
	if d.gen == x.p.gen && d.op != nil {
		switch d.op[pos] {
		case opSet:
			return stateEntry[S]{value: d.vals[pos], touched: unpackTime(d.touched[pos])}, true
		case opRemove:
			return stateEntry[S]{}, false
		}
	}
	return stateEntry[S]{value: x.p.vals[pos], touched: unpackTime(x.p.touched[pos])}, true
}

func (x *txn[K, S]) set(k K, e stateEntry[S]) {
	x.p.mu.Lock()
	defer x.p.mu.Unlock()
	x.rebase()
	d, p := x.delta, x.p
	for _, pos := range [2]int{x.hint, x.hint + 1} {
		if pos < len(p.keys) && p.keys[pos] == k { // committed, so not among the added keys
			d.ensureOps()
			d.op[pos], d.vals[pos], d.touched[pos] = opSet, rdd.Clone(e.value), packTime(e.touched)
			x.hint = pos + 1
			return
		}
	}
	d.set(p, k, e)
}

// rebase moves the delta onto the current committed state if a commit
// happened since it began (p.mu held).
func (x *txn[K, S]) rebase() {
	if x.delta.gen != x.p.gen {
		x.delta = x.p.rebase(x.delta)
	}
}

func (x *txn[K, S]) remove(k K) {
	x.p.mu.Lock()
	defer x.p.mu.Unlock()
	x.rebase()
	d := x.delta
	h := x.p.kc.Hash(k)
	if i := d.added.find(h, k); i >= 0 {
		d.added.removed[i] = true
		var zero S
		d.added.vals[i] = zero
		return
	}
	if pos := x.p.find(h, k); pos >= 0 {
		d.ensureOps()
		var zero S
		d.op[pos], d.vals[pos] = opRemove, zero
	}
}

// set records k = e in d (p.mu held). Keys and values are cloned: they may
// alias Arrow buffers of this batch.
func (d *stateDelta[K, S]) set(p *statePart[K, S], k K, e stateEntry[S]) {
	h := p.kc.Hash(k)
	v := rdd.Clone(e.value)
	if i := d.added.find(h, k); i >= 0 {
		d.added.vals[i], d.added.touched[i], d.added.removed[i] = v, packTime(e.touched), false
		return
	}
	if d.gen != p.gen {
		panic(fmt.Sprintf("dstream: state changed under a running task (generation %d, now %d)", d.gen, p.gen))
	}
	if pos := p.find(h, k); pos >= 0 {
		d.ensureOps()
		d.op[pos], d.vals[pos], d.touched[pos] = opSet, v, packTime(e.touched)
		return
	}
	d.added.add(h, cloneKey(&p.arena, k), v, packTime(e.touched))
}

func (d *stateDelta[K, S]) ensureOps() {
	if d.op == nil {
		d.op = make([]uint8, len(d.base))
		d.vals = make([]S, len(d.base))
		d.touched = make([]int64, len(d.base))
	}
}

// due reports whether something may be due in the partition at t.
func (x *txn[K, S]) due() bool {
	x.p.mu.Lock()
	defer x.p.mu.Unlock()
	return !x.p.wake.IsZero() && !x.t.Before(x.p.wake)
}

// each calls f for every key of the partition as the transaction sees it,
// in a deterministic order (by key hash), so that recomputing the
// partition routes its output exactly as before. Keys set during the walk
// are not visited; keys removed during it are skipped.
func (x *txn[K, S]) each(f func(k K, e stateEntry[S]) bool) {
	x.walk(func(k K, e stateEntry[S], _ bool) bool { return f(k, e) })
}

// walk is each that also tells f whether the transaction set the key
// before the walk (changed), so that a caller can skip the keys it already
// updated without remembering them.
func (x *txn[K, S]) walk(f func(k K, e stateEntry[S], changed bool) bool) {
	p := x.p
	p.mu.Lock()
	x.rebase()
	d := x.delta
	hashes, keys, vals, touched := p.hashes, p.keys, p.vals, p.touched
	p.mu.Unlock()
	added := d.added.sortedLive()
	ai := 0
	emitAdded := func(i int) bool {
		if d.added.removed[i] {
			return true
		}
		return f(d.added.keys[i], stateEntry[S]{value: d.added.vals[i], touched: unpackTime(d.added.touched[i])}, true)
	}
	for pos := range keys {
		for ai < len(added) && d.added.hashes[added[ai]] < hashes[pos] {
			if !emitAdded(added[ai]) {
				return
			}
			ai++
		}
		e, changed := stateEntry[S]{value: vals[pos], touched: unpackTime(touched[pos])}, false
		if d.op != nil {
			switch d.op[pos] {
			case opRemove:
				continue
			case opSet:
				e, changed = stateEntry[S]{value: d.vals[pos], touched: unpackTime(d.touched[pos])}, true
			}
		}
		x.hint = pos
		if !f(keys[pos], e, changed) {
			return
		}
	}
	for ; ai < len(added); ai++ {
		if !emitAdded(added[ai]) {
			return
		}
	}
	x.hint = 0
}

// finish stores the attempt's delta as the batch's, replacing earlier attempts.
func (x *txn[K, S]) finish(tc *rdd.TaskContext) {
	x.p.mu.Lock()
	x.p.deltas[x.t] = x.delta
	x.p.mu.Unlock()
	if tc != nil && x.report {
		// The partition's size as this batch leaves it, for the job
		// driver's figures: in a cluster the state lives in executors.
		keys, bytes := x.sizeAfter()
		tc.Report(fmt.Sprintf("stateSize/%d/%d/%s", x.t.UnixNano(), x.part, x.name), binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, uint64(keys)), uint64(bytes)))
	}
}

// sizeAfter returns the keys and bytes the partition will hold once the
// transaction commits: the committed state less the keys it removes, plus
// the keys it adds (their bytes estimated like committed ones).
func (x *txn[K, S]) sizeAfter() (keys, bytes int64) {
	p, d := x.p, x.delta
	p.mu.Lock()
	defer p.mu.Unlock()
	keys, bytes = int64(len(p.keys)), p.bytesLocked()
	if d.gen == p.gen {
		for _, op := range d.op {
			if op == opRemove {
				keys--
			}
		}
	}
	var k K
	var s S
	for i, removed := range d.added.removed {
		if removed {
			continue
		}
		keys++
		bytes += 8 + int64(unsafe.Sizeof(k)) + int64(unsafe.Sizeof(s)) + 8 + 4
		if hasDynSize[K]() {
			bytes += dynSize(any(d.added.keys[i]))
		}
		if hasDynSize[S]() {
			bytes += dynSize(any(d.added.vals[i]))
		}
	}
	return max(keys, 0), bytes
}

// deltaAt returns batch t's delta (an empty one if there is none).
func (p *statePart[K, S]) deltaAt(t time.Time) *stateDelta[K, S] {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d := p.deltas[t]; d != nil {
		return d
	}
	return p.newDelta()
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
		changed := d != nil && (d.op != nil || len(d.added.keys) > 0)
		if d != nil {
			p.apply(d)
		}
		if wake != nil && (changed || (!p.wake.IsZero() && !t.Before(p.wake))) {
			p.wake = time.Time{}
			for i, k := range p.keys {
				if w := wake(k, stateEntry[S]{value: p.vals[i], touched: unpackTime(p.touched[i])}); !w.IsZero() && (p.wake.IsZero() || w.Before(p.wake)) {
					p.wake = w
				}
			}
		}
		p.mu.Unlock()
	}
}

// rewake recomputes the wake time of the given partitions (all if none)
// from their committed keys: after initial state or a snapshot is loaded,
// no delta says that anything changed.
func (st *stateStore[K, S]) rewake(wake func(k K, e stateEntry[S]) time.Time, parts ...int) {
	if wake == nil {
		return
	}
	if len(parts) == 0 {
		parts = make([]int, len(st.parts))
		for i := range parts {
			parts[i] = i
		}
	}
	for _, i := range parts {
		p := st.parts[i]
		p.mu.Lock()
		p.wake = time.Time{}
		for j, k := range p.keys {
			if w := wake(k, stateEntry[S]{value: p.vals[j], touched: unpackTime(p.touched[j])}); !w.IsZero() && (p.wake.IsZero() || w.Before(p.wake)) {
				p.wake = w
			}
		}
		p.mu.Unlock()
	}
}

// apply makes d's changes committed (p.mu held). Value changes are written
// in place; added or removed keys rebuild the columns, merged in hash order.
func (p *statePart[K, S]) apply(d *stateDelta[K, S]) {
	if d.gen != p.gen {
		d = p.rebase(d)
	}
	removed := 0
	for pos, op := range d.op {
		switch op {
		case opSet:
			p.vals[pos], p.touched[pos] = d.vals[pos], d.touched[pos]
		case opRemove:
			removed++
		}
	}
	added := d.added.sortedLive()
	live := 0
	for _, i := range added {
		if !d.added.removed[i] {
			live++
		}
	}
	if removed == 0 && live == 0 {
		return
	}
	n := len(p.keys) - removed + live
	hashes, keys := make([]uint64, 0, n), make([]K, 0, n)
	vals, touched := make([]S, 0, n), make([]int64, 0, n)
	ai := 0
	takeAdded := func(i int) {
		if !d.added.removed[i] {
			hashes, keys = append(hashes, d.added.hashes[i]), append(keys, d.added.keys[i])
			vals, touched = append(vals, d.added.vals[i]), append(touched, d.added.touched[i])
		}
	}
	for pos := range p.keys {
		for ai < len(added) && d.added.hashes[added[ai]] < p.hashes[pos] {
			takeAdded(added[ai])
			ai++
		}
		if d.op != nil && d.op[pos] == opRemove {
			continue
		}
		hashes, keys = append(hashes, p.hashes[pos]), append(keys, p.keys[pos])
		vals, touched = append(vals, p.vals[pos]), append(touched, p.touched[pos])
	}
	for ; ai < len(added); ai++ {
		takeAdded(added[ai])
	}
	p.hashes, p.keys, p.vals, p.touched = hashes, keys, vals, touched
	p.index = buildIndex(hashes)
	p.gen++
	p.keys = compactKeys(&p.arena, p.keys)
}

// rebase returns d moved onto the current committed state: its positions
// refer to older columns, so its changes are found again by key (p.mu held).
func (p *statePart[K, S]) rebase(d *stateDelta[K, S]) *stateDelta[K, S] {
	nd := p.newDelta()
	for pos, op := range d.op {
		switch op {
		case opSet:
			nd.set(p, d.base[pos], stateEntry[S]{value: d.vals[pos], touched: unpackTime(d.touched[pos])})
		case opRemove:
			if i := p.find(p.kc.Hash(d.base[pos]), d.base[pos]); i >= 0 {
				nd.ensureOps()
				nd.op[i] = opRemove
			}
		}
	}
	for i, k := range d.added.keys {
		if !d.added.removed[i] {
			nd.set(p, k, stateEntry[S]{value: d.added.vals[i], touched: unpackTime(d.added.touched[i])})
		}
	}
	return nd
}

// find returns the committed position of k, or -1 (p.mu held).
func (p *statePart[K, S]) find(h uint64, k K) int {
	return p.index.find(h, p.hashes, func(i int) bool { return p.keys[i] == k })
}

func (a *addedKeys[K, S]) find(h uint64, k K) int {
	return a.index.find(h, a.hashes, func(i int) bool { return a.keys[i] == k })
}

func (a *addedKeys[K, S]) add(h uint64, k K, v S, touched int64) {
	a.hashes = append(a.hashes, h)
	a.keys = append(a.keys, k)
	a.vals = append(a.vals, v)
	a.touched = append(a.touched, touched)
	a.removed = append(a.removed, false)
	a.index.insert(h, len(a.keys)-1, a.hashes)
}

// sortedLive returns the positions of added keys in hash order (stable).
func (a *addedKeys[K, S]) sortedLive() []int {
	if len(a.keys) == 0 {
		return nil
	}
	order := make([]int, len(a.keys))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(i, j int) int {
		if c := cmp.Compare(a.hashes[i], a.hashes[j]); c != 0 {
			return c
		}
		return cmp.Compare(i, j) // equal hashes: first set first
	})
	return order
}

// hashIndex is an open-addressing index from a hash to positions in a
// hashes column (linear probing, at most 3/4 full). Slots hold position+1.
type hashIndex struct {
	slots []int32
	mask  uint64
	shift uint // slot of hash h: (h * fib) >> shift
	n     int
}

// fib spreads hashes over the slots by their high bits: a partition's keys
// share their hash modulo the partition count, so low bits alone would
// cluster.
const fib = 0x9E3779B97F4A7C15

func buildIndex(hashes []uint64) hashIndex {
	var ix hashIndex
	size, bits := 8, uint(3)
	for size*3 < len(hashes)*4+4 {
		size, bits = size*2, bits+1
	}
	ix.slots = make([]int32, size)
	ix.mask = uint64(size - 1)
	ix.shift = 64 - bits
	for i, h := range hashes {
		ix.place(h, i)
	}
	ix.n = len(hashes)
	return ix
}

func (ix *hashIndex) place(h uint64, pos int) {
	for i := (h * fib) >> ix.shift; ; i = (i + 1) & ix.mask {
		if ix.slots[i] == 0 {
			ix.slots[i] = int32(pos + 1)
			return
		}
	}
}

func (ix *hashIndex) find(h uint64, hashes []uint64, match func(int) bool) int {
	if ix.n == 0 {
		return -1
	}
	for i := (h * fib) >> ix.shift; ; i = (i + 1) & ix.mask {
		s := ix.slots[i]
		if s == 0 {
			return -1
		}
		if hashes[s-1] == h && match(int(s-1)) {
			return int(s - 1)
		}
	}
}

func (ix *hashIndex) insert(h uint64, pos int, hashes []uint64) {
	if (ix.n+1)*4 > len(ix.slots)*3 {
		*ix = buildIndex(hashes[:pos])
	}
	ix.place(h, pos)
	ix.n++
}

// keyArena holds the bytes of string keys in 1 MiB chunks, so state with
// many keys costs no allocation per key. Removed keys leave garbage, which
// compact reclaims when it exceeds the live bytes.
type keyArena struct {
	chunks [][]byte
	used   int64 // bytes handed out
}

func isString[T any]() bool {
	var zero T
	_, ok := any(zero).(string)
	return ok
}

const arenaChunk = 1 << 20

// clone returns k with its bytes in the arena if K is a string, else a
// deep copy of k (rdd.Clone).
func cloneKey[K any](a *keyArena, k K) K {
	if !isString[K]() {
		return rdd.Clone(k)
	}
	s := *(*string)(unsafe.Pointer(&k))
	if len(s) == 0 || len(s) > arenaChunk/4 {
		return rdd.Clone(k)
	}
	var c []byte
	if n := len(a.chunks); n > 0 && cap(a.chunks[n-1])-len(a.chunks[n-1]) >= len(s) {
		c = a.chunks[n-1]
	} else {
		c = make([]byte, 0, arenaChunk)
		a.chunks = append(a.chunks, c)
	}
	start := len(c)
	c = append(c, s...)
	a.chunks[len(a.chunks)-1] = c
	a.used += int64(len(s))
	b := c[start:]
	out := unsafe.String(&b[0], len(s))
	return *(*K)(unsafe.Pointer(&out))
}

// compact copies live string keys into fresh chunks once more than half
// the arena is garbage, and returns the keys pointing there.
func compactKeys[K any](a *keyArena, keys []K) []K {
	if len(a.chunks) < 4 || !isString[K]() {
		return keys
	}
	var live int64
	for i := range keys {
		live += int64(len(*(*string)(unsafe.Pointer(&keys[i]))))
	}
	if live*2 > a.used {
		return keys
	}
	*a = keyArena{}
	for i := range keys {
		keys[i] = cloneKey(a, keys[i])
	}
	return keys
}

func (a *keyArena) bytes() int64 {
	var n int64
	for _, c := range a.chunks {
		n += int64(cap(c))
	}
	return n
}

// size returns the committed keys and the bytes the committed columns,
// index and key arena occupy (plus the bytes of string or byte-slice
// values).
func (st *stateStore[K, S]) size() (keys, bytes int64) {
	for _, p := range st.parts {
		p.mu.Lock()
		keys += int64(len(p.keys))
		bytes += p.bytesLocked()
		p.mu.Unlock()
	}
	return keys, bytes
}

// bytesLocked returns the bytes the partition's committed state holds
// (p.mu held).
func (p *statePart[K, S]) bytesLocked() int64 {
	var k K
	var s S
	bytes := int64(cap(p.hashes))*8 + int64(cap(p.keys))*int64(unsafe.Sizeof(k)) +
		int64(cap(p.vals))*int64(unsafe.Sizeof(s)) + int64(cap(p.touched))*8 + int64(len(p.index.slots))*4 + p.arena.bytes()
	if hasDynSize[S]() {
		for i := range p.vals {
			bytes += dynSize(any(p.vals[i]))
		}
	}
	if hasDynSize[K]() && !isString[K]() {
		for i := range p.keys {
			bytes += dynSize(any(p.keys[i]))
		}
	}
	return bytes
}

// stateSizeOf is a stateful stream's size figure: the store's own, but in
// a cluster's job driver, whose executors hold the state, the sum of what
// each partition's last task reported (stateSize reports, see finish).
func stateSizeOf[K comparable, S any](ctx *Context, st *stateStore[K, S]) func() (keys, bytes int64) {
	st.reportSize = os.Getenv("SLUICE_ROLE") == roleExecutor
	var mu sync.Mutex
	reported := map[int][2]int64{}
	ctx.registerReporter("stateSize/", st.name, func(_ time.Time, part int, b []byte) error {
		if len(b) != 16 || part < 0 || part >= len(st.parts) {
			return fmt.Errorf("state size report of %d bytes for partition %d", len(b), part)
		}
		mu.Lock()
		reported[part] = [2]int64{int64(binary.BigEndian.Uint64(b)), int64(binary.BigEndian.Uint64(b[8:]))}
		mu.Unlock()
		return nil
	})
	return func() (keys, bytes int64) {
		mu.Lock()
		n := len(reported)
		for _, r := range reported {
			keys, bytes = keys+r[0], bytes+r[1]
		}
		mu.Unlock()
		if ctx.role != roleDriver || n == 0 {
			return st.size()
		}
		return keys, bytes
	}
}

// snapshot returns the committed state, sorted by partition then key hash,
// for tests.
func (st *stateStore[K, S]) snapshot() []KV[K, S] {
	var out []KV[K, S]
	for _, p := range st.parts {
		p.mu.Lock()
		for i, k := range p.keys {
			out = append(out, KV[K, S]{Key: k, Value: p.vals[i]})
		}
		p.mu.Unlock()
	}
	return out
}

func hasDynSize[T any]() bool {
	var zero T
	switch any(zero).(type) {
	case string, []byte:
		return true
	}
	return false
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
