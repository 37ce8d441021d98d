package rdd

import (
	"hash/maphash"
	"math/bits"
	"unsafe"
)

// This file is the columnar side of keyed aggregation: an open-addressing
// hash table from keys to dense slots, used by the map-side combiner and the
// reduce side of CombineByKey for string and fixed-width integer keys. Keys
// and combiners live in dense slices (a key column and a value column, in
// first-seen order), the index holds (hash, slot) pairs, and string keys are
// hashed in place (a decoded string is a view of the Arrow buffer, so no key
// is copied or boxed). Other key types use a Go map (see combiner).

// tableSeed randomises the in-process table hash per process, so that input
// cannot be crafted to collide. Only placement inside one table depends on it;
// partitioning uses Codec.Hash, which is the same everywhere.
var tableSeed = func() uint64 {
	var h maphash.Hash
	h.WriteString("sluice")
	return h.Sum64() | 1
}()

// fastHash returns an in-process hash function for K when K is a string or
// a fixed-width integer, and nil otherwise.
func fastHash[K comparable]() func(K) uint64 {
	var zero K
	switch any(zero).(type) {
	case string:
		return func(k K) uint64 { return strHash(*(*string)(unsafe.Pointer(&k))) }
	case int64, uint64, int, uint:
		return func(k K) uint64 { return mix(*(*uint64)(unsafe.Pointer(&k)) ^ tableSeed) }
	case int32, uint32:
		return func(k K) uint64 { return mix(uint64(*(*uint32)(unsafe.Pointer(&k))) ^ tableSeed) }
	}
	return nil
}

func load64(p unsafe.Pointer) uint64 { return *(*uint64)(p) }
func load32(p unsafe.Pointer) uint64 { return uint64(*(*uint32)(p)) }

// strHash hashes s reading it 8 bytes at a time (wyhash-style short-string
// handling: short keys cost two loads and a multiply). It never reads past
// the end of s.
func strHash(s string) uint64 {
	n := len(s)
	h := tableSeed ^ uint64(n)*0x9E3779B97F4A7C15
	if n == 0 {
		return mix(h)
	}
	p := unsafe.Pointer(unsafe.StringData(s))
	var a, b uint64
	switch {
	case n >= 8:
		i := 0
		for ; i+8 < n; i += 8 {
			hi, lo := bits.Mul64(h^load64(unsafe.Add(p, i)), 0xa0761d6478bd642f)
			h = hi ^ lo
		}
		a = load64(unsafe.Add(p, n-8))
	case n >= 4:
		a = load32(p)
		b = load32(unsafe.Add(p, n-4))
	default:
		a = uint64(s[0])<<16 | uint64(s[n>>1])<<8 | uint64(s[n-1])
	}
	hi, lo := bits.Mul64(a^0xe7037ed1a0b428db^h, b^0x8ebc6af09c88c6e3)
	return mix(hi ^ lo ^ h)
}

// keyTable maps keys to dense slots 0, 1, 2... in first-seen order.
type keyTable[K comparable] struct {
	hash  func(K) uint64
	slots []tableSlot[K] // power-of-two sized; slot == 0 means empty
	mask  uint64
	keys  []K
}

type tableSlot[K comparable] struct {
	h   uint64
	pos uint32 // index into keys, plus 1 (0: empty)
	key K      // a copy of keys[pos-1], so a probe touches one cache line
}

func newKeyTable[K comparable](hash func(K) uint64) *keyTable[K] {
	return &keyTable[K]{hash: hash, slots: make([]tableSlot[K], 64), mask: 63}
}

// grow doubles the index, re-placing slots by their stored hashes.
func (t *keyTable[K]) grow() {
	old := t.slots
	t.slots = make([]tableSlot[K], 2*len(old))
	t.mask = uint64(len(t.slots) - 1)
	for _, s := range old {
		if s.pos != 0 {
			t.place(s.h, s.pos, s.key)
		}
	}
}

func (t *keyTable[K]) place(h uint64, pos uint32, k K) {
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		if t.slots[i].pos == 0 {
			t.slots[i] = tableSlot[K]{h: h, pos: pos, key: k}
			return
		}
	}
}

// slot returns the dense slot of k, adding k if it is new.
func (t *keyTable[K]) slot(k K) (pos int, added bool) {
	h := t.hash(k)
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		if s.pos == 0 {
			break
		}
		if s.h == h && s.key == k {
			return int(s.pos - 1), false
		}
	}
	if (len(t.keys)+1)*4 > len(t.slots)*3 {
		t.grow()
	}
	t.keys = append(t.keys, k)
	t.place(h, uint32(len(t.keys)), k)
	return len(t.keys) - 1, true
}
