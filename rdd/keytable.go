package rdd

import (
	"hash/maphash"
	"math/bits"
	"unsafe"
)

// This file is the columnar side of keyed aggregation: an open-addressing
// hash table from string keys to combiners, used by the map-side combiner
// and the reduce side of CombineByKey. Keys live in a dense column in
// first-seen order (the output order), each combiner next to its key's
// fingerprint in the slot, and string keys are hashed in place (a decoded
// string is a view of the Arrow buffer, so no key is copied or boxed). Other
// key types use a Go map (see combiner): measured, a generic table with an
// indirect hash call was slower than Go's map, a string-only one is faster
// (BenchmarkKeyTable). Tried and measured slower or no faster on WordCount:
// combiners inside 24-byte slots that also held a 32-bit tag and the key's
// position, looking keys up 32 at a time after loading their home slots
// first (to overlap cache misses), and reading both candidates' combiners
// while the keys are compared (to cut the wait for the compare).

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

// Second and third seeds of the table hash, derived from tableSeed.
var (
	tableSeed2 = mix(tableSeed ^ 0xa0761d6478bd642f)
	tableSeed3 = mix(tableSeed ^ 0xe7037ed1a0b428db)
)

// fold is wyhash's mixing step: the 128-bit product of a and b, folded to
// 64 bits. One multiply; every input bit reaches the high output bits.
func fold(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// strHash hashes s reading it 8 bytes at a time (wyhash-style short-string
// handling: short keys cost one or two loads and one multiply). It never
// reads past the end of s.
func strHash(s string) uint64 {
	h, _ := strHashFP(s)
	return h
}

// strHashFP returns the hash of s and a fingerprint. For len(s) <= 8 the
// fingerprint is the bytes of s, zero-padded, as a little-endian word (read
// with at most two overlapping loads), so that together with the length it
// determines s and short keys compare without reading their bytes again. For
// longer keys it is the last 8 bytes, a filter before the byte compare.
func strHashFP(s string) (h, fp uint64) {
	n := len(s)
	if n > 8 {
		p := unsafe.Pointer(unsafe.StringData(s))
		h = tableSeed3 ^ uint64(n)
		for i := 0; i+8 < n; i += 8 {
			h = fold(h^load64(unsafe.Add(p, i)), 0xa0761d6478bd642f)
		}
		fp = load64(unsafe.Add(p, n-8))
	} else {
		fp = shortFP(s)
	}
	return strHashOf(h, fp, n), fp
}

// shortFP is the fingerprint of a string of at most 8 bytes: its bytes,
// zero-padded, as a little-endian word.
func shortFP(s string) uint64 {
	if len(s) >= 4 {
		return fp4to8(s)
	}
	return fp0to3(s)
}

// fp4to8 is shortFP for 4 to 8 bytes: two loads, which overlap below 8.
func fp4to8(s string) uint64 {
	n := uintptr(len(s))
	p := unsafe.Pointer(unsafe.StringData(s))
	return load32(p) | load32(unsafe.Add(p, n-4))<<(8*(n-4))
}

// fp0to3 is shortFP for up to 3 bytes: the first, middle and last.
func fp0to3(s string) uint64 {
	n := len(s)
	if n == 0 {
		return 0
	}
	return uint64(s[0]) | uint64(s[n>>1])<<(8*(n>>1)) | uint64(s[n-1])<<(8*(n-1))
}

// strHashOf finishes strHashFP: h is 0 for keys of at most 8 bytes.
func strHashOf(h, fp uint64, n int) uint64 {
	return fold(fp^h^tableSeed, bits.RotateLeft64(fp, 32)^tableSeed2^uint64(n)*0x9E3779B97F4A7C15)
}

// strTable maps string keys to combiners of type C, and remembers the keys
// in first-seen order. It is open addressing with linear probing over three
// columns of the same length: slots (a key's fingerprint and its combiner,
// 16 bytes for an 8-byte C, four per cache line), tags (one byte: four hash
// bits and the key's length class, so the column of 2^15 tags fits in L1)
// and pos (the key's position in first-seen order, read only for long keys
// and when growing). Keys of up to 8 bytes (every word of the standard
// workload) are determined by fingerprint and length, so a hit reads one
// tag and one slot and never the key's bytes, and its combiner is on the
// cache line of its fingerprint (with the combiners in a column of their
// own, a hit read two lines of the table, the second only after the first).
// Longer keys compare their bytes after the tag and fingerprint matched.
type strTable[C any] struct {
	slots []strSlot[C] // len a power of two
	tags  []uint8      // len(slots); tags[i] is slots[i]'s tag, 0: empty
	pos   []uint32     // len(slots); pos[i]: index into keys of slots[i]'s key
	shift uint         // 64 - log2(len(slots)): home slot = hash >> shift
	keys  []string     // first-seen order
	order []uint32     // order[pos]: the slot of keys[pos]
}

type strSlot[C any] struct {
	fp  uint64 // strHashFP's fingerprint
	val C      // the key's combiner
}

const strTableMinLog = 6

func newStrTable[C any]() *strTable[C] { return newStrTableFor[C](0) }

// newStrTableFor returns a table that holds keys keys without growing.
func newStrTableFor[C any](keys int) *strTable[C] {
	log := uint(strTableMinLog)
	for 1<<log < 2*keys { // at most half full, as probe keeps it
		log++
	}
	return &strTable[C]{
		slots: make([]strSlot[C], 1<<log),
		tags:  make([]uint8, 1<<log),
		pos:   make([]uint32, 1<<log),
		shift: 64 - log,
		keys:  make([]string, 0, keys),
		order: make([]uint32, 0, keys),
	}
}

// strTag is the tag of a key of length n with hash h: four bits of h that
// the home slot does not use (the home is the top bits) over the length
// class (1..15). Never 0, and equal tags with equal fingerprints mean equal
// keys when n <= 8.
func strTag(h uint64, n int) uint8 {
	return uint8(h)&0xf0 | uint8(min(n, 14)+1)
}

// slot returns the slot of k, adding k if it is new (added), in which case
// the caller sets t.slots[i].val. Slots move when the table grows: i is
// valid until the next call.
func (t *strTable[C]) slot(k string) (i int, added bool) {
	if len(k) > 8 {
		h, fp := strHashFP(k)
		return t.probe(k, h, fp, strTag(h, len(k)))
	}
	var fp uint64 // strHashFP, inlined for short keys
	if len(k) >= 4 {
		fp = fp4to8(k)
	} else {
		fp = fp0to3(k)
	}
	h := strHashOf(0, fp, len(k))
	tag := strTag(h, len(k))
	// Most short keys sit in their home slot or the next: test both without
	// a branch between them (a branch on the first would mispredict for the
	// one lookup in five that needs the second). i0 < len(slots) ==
	// len(tags): it is the top bits of h; i1 is masked.
	base := unsafe.Pointer(unsafe.SliceData(t.slots))
	tags := unsafe.Pointer(unsafe.SliceData(t.tags))
	size := unsafe.Sizeof(strSlot[C]{})
	i0 := h >> t.shift
	i1 := (i0 + 1) & uint64(len(t.slots)-1)
	s0 := (*strSlot[C])(unsafe.Add(base, uintptr(i0)*size))
	s1 := (*strSlot[C])(unsafe.Add(base, uintptr(i1)*size))
	x0 := uint64(*(*uint8)(unsafe.Add(tags, i0))^tag) | (s0.fp ^ fp) // 0: a match (| and ^ bind alike in Go)
	x1 := uint64(*(*uint8)(unsafe.Add(tags, i1))^tag) | (s1.fp ^ fp)
	if min(x0, x1) == 0 {
		j := i0
		if x0 != 0 {
			j = i1
		}
		return int(j), false
	}
	return t.probe(k, h, fp, tag)
}

// probe is slot's slow path, for long keys, short keys past the slot after
// their home, and new keys: out of line, so that the fast path makes no
// call and keeps its values in registers.
//
//go:noinline
func (t *strTable[C]) probe(k string, h, fp uint64, tag uint8) (int, bool) {
	mask := uint64(len(t.slots) - 1)
	for i := h >> t.shift; ; i = (i + 1) & mask {
		if t.tags[i] == tag && t.slots[i].fp == fp && (len(k) <= 8 || t.keys[t.pos[i]] == k) {
			return int(i), false
		}
		if t.tags[i] == 0 {
			break
		}
	}
	// At most half full: with linear probing at 61% a lookup tested 1.8 slots
	// on average, and the unpredictable number of probes cost more in branch
	// misses than the larger table costs in cache (measured on WordCount).
	if (len(t.keys)+1)*2 > len(t.slots) {
		t.grow()
	}
	i := t.place(h>>t.shift, fp, tag, uint32(len(t.keys)))
	t.keys = append(t.keys, k)
	t.order = append(t.order, uint32(i))
	return i, true
}

// posOf returns the first-seen position of the key in slot i.
func (t *strTable[C]) posOf(i int) int { return int(t.pos[i]) }

// each calls f with every key and its combiner in first-seen order, until f
// returns false.
func (t *strTable[C]) each(f func(k string, c C) bool) {
	for pos, i := range t.order {
		if !f(t.keys[pos], t.slots[i].val) {
			return
		}
	}
}

// grow doubles the table. A key of up to 8 bytes is hashed again from its
// fingerprint and length (which its tag holds), without reading its bytes;
// a longer key from its bytes.
func (t *strTable[C]) grow() {
	oldSlots, oldTags, oldPos := t.slots, t.tags, t.pos
	n := 2 * len(oldSlots)
	t.slots, t.tags, t.pos = make([]strSlot[C], n), make([]uint8, n), make([]uint32, n)
	t.shift--
	for j, tag := range oldTags {
		if tag == 0 {
			continue
		}
		s, pos := &oldSlots[j], oldPos[j]
		var h uint64
		if n := int(tag&15) - 1; n <= 8 {
			h = strHashOf(0, s.fp, n)
		} else {
			h = strHash(t.keys[pos])
		}
		i := t.place(h>>t.shift, s.fp, tag, pos)
		t.slots[i].val = s.val
		t.order[pos] = uint32(i)
	}
}

// place puts a key in the first empty slot from i on and returns its index.
func (t *strTable[C]) place(i uint64, fp uint64, tag uint8, pos uint32) int {
	mask := uint64(len(t.slots) - 1)
	for ; ; i = (i + 1) & mask {
		if t.tags[i] == 0 {
			t.slots[i].fp, t.tags[i], t.pos[i] = fp, tag, pos
			return int(i)
		}
	}
}
