package rdd

import (
	"hash/maphash"
	"math/bits"
	"unsafe"
)

// This file is the columnar side of keyed aggregation: an open-addressing
// hash table from string keys to dense slots, used by the map-side combiner
// and the reduce side of CombineByKey. Keys and combiners live in dense
// slices (a key column and a value column, in first-seen order) and string
// keys are hashed in place (a decoded string is a view of the Arrow buffer,
// so no key is copied or boxed). Other key types use a Go map (see
// combiner): measured, a generic table with an indirect hash call was
// slower than Go's map, a string-only one is faster.

// tableSeed randomises the in-process table hash per process, so that input
// cannot be crafted to collide. Only placement inside one table depends on it;
// partitioning uses Codec.Hash, which is the same everywhere.
var tableSeed = func() uint64 {
	var h maphash.Hash
	h.WriteString("sluice")
	return h.Sum64() | 1
}()

func load64(p unsafe.Pointer) uint64 { return *(*uint64)(p) }
func load32(p unsafe.Pointer) uint64 { return uint64(*(*uint32)(p)) }

// strHash hashes s reading it 8 bytes at a time (wyhash-style short-string
// handling: short keys cost two loads and a multiply). It never reads past
// the end of s.
func strHash(s string) uint64 {
	h, _ := strHashFP(s)
	return h
}

// strHashFP returns the hash of s and, for len(s) <= 8, a fingerprint that
// together with the length determines s (the loads the hash reads: for 4-8
// bytes the first and last 4, for 1-3 bytes the first, middle and last), so
// short keys compare without reading their bytes again.
func strHashFP(s string) (h, fp uint64) {
	n := len(s)
	h = tableSeed ^ uint64(n)*0x9E3779B97F4A7C15
	if n == 0 {
		return mix(h), 0
	}
	p := unsafe.Pointer(unsafe.StringData(s))
	var a, b uint64
	switch {
	case n > 8:
		i := 0
		for ; i+8 < n; i += 8 {
			hi, lo := bits.Mul64(h^load64(unsafe.Add(p, i)), 0xa0761d6478bd642f)
			h = hi ^ lo
		}
		a = load64(unsafe.Add(p, n-8))
	case n == 8:
		a = load64(p)
	case n >= 4:
		a = load32(p)
		b = load32(unsafe.Add(p, n-4))
	default:
		a = uint64(s[0])<<16 | uint64(s[n>>1])<<8 | uint64(s[n-1])
	}
	hi, lo := bits.Mul64(a^0xe7037ed1a0b428db^h, b^0x8ebc6af09c88c6e3)
	return mix(hi ^ lo ^ h), a ^ b<<32
}

// strTable maps string keys to dense slots 0, 1, 2... in first-seen order.
// The hash is inlined, slots hold the key, its hash and fingerprint so a
// probe touches one cache line, and keys of up to 8 bytes (every word of the
// standard workload) compare without reading their bytes.
type strTable struct {
	slots []strSlot
	mask  uint64
	keys  []string
}

type strSlot struct {
	h   uint64
	fp  uint64 // strHashFP's fingerprint
	key string
	pos uint32 // index into keys, plus 1 (0: empty)
}

func newStrTable() *strTable {
	return &strTable{slots: make([]strSlot, 64), mask: 63}
}

func (t *strTable) slot(k string) (pos int, added bool) {
	h, fp := strHashFP(k)
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		if s.pos == 0 {
			break
		}
		if s.h == h && s.fp == fp && len(s.key) == len(k) && (len(k) <= 8 || s.key == k) {
			return int(s.pos - 1), false
		}
	}
	if (len(t.keys)+1)*4 > len(t.slots)*3 {
		old := t.slots
		t.slots = make([]strSlot, 2*len(old))
		t.mask = uint64(len(t.slots) - 1)
		for _, s := range old {
			if s.pos != 0 {
				t.place(s)
			}
		}
	}
	t.keys = append(t.keys, k)
	t.place(strSlot{h: h, fp: fp, key: k, pos: uint32(len(t.keys))})
	return len(t.keys) - 1, true
}

func (t *strTable) place(s strSlot) {
	for i := s.h & t.mask; ; i = (i + 1) & t.mask {
		if t.slots[i].pos == 0 {
			t.slots[i] = s
			return
		}
	}
}
