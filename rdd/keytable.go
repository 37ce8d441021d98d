package rdd

import (
	"hash/maphash"
	"math/bits"
	"unsafe"
)

// This file is the columnar side of keyed aggregation: an open-addressing
// hash table from string keys to combiners, used by the map-side combiner
// and the reduce side of CombineByKey. Keys live in a dense column in
// first-seen order (the output order), combiners in a column parallel to the
// slots, and string keys are hashed in place (a decoded string is a view of
// the Arrow buffer, so no key is copied or boxed). Other key types use a Go
// map (see combiner): measured, a generic table with an indirect hash call
// was slower than Go's map, a string-only one is faster (BenchmarkKeyTable).
// Tried and measured slower or no faster on WordCount: combiners inside the
// slots (24-byte slots), and looking keys up 32 at a time after loading
// their home slots first (to overlap cache misses).

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
// in first-seen order. It is open addressing with linear probing over 16-byte
// slots (four per cache line): a slot holds the key's fingerprint, a tag (the
// top bits of its hash and its length class) and its position in first-seen
// order. Keys of up to 8 bytes (every word of the standard workload) are
// determined by fingerprint and length, so they compare with two loads from
// the slot and never read key bytes; longer keys compare their bytes after
// the tag and fingerprint matched. The combiners are a column parallel to the
// slots (vals[i] belongs to slots[i]), so the CPU can load a hit's combiner
// while it still checks the slot, instead of after reading a position from
// it. A slot's home is the top bits of the hash, which the tag holds, so
// growing moves slots without hashing keys again (up to 2^28 slots).
type strTable[C any] struct {
	slots []strSlot // len a power of two
	vals  []C       // len(slots); vals[i] is the combiner of slots[i]'s key
	shift uint      // 64 - log2(len(slots)): home slot = hash >> shift
	keys  []string  // first-seen order
	order []uint32  // order[pos]: the slot of keys[pos]
}

type strSlot struct {
	fp  uint64 // strHashFP's fingerprint
	tag uint32 // hash>>36<<4 | length class (1..15); 0: empty
	pos uint32 // index into keys
}

const (
	strTableMinLog = 6
	tagHashBits    = 28 // the hash bits a tag holds
)

// rehashAbove is the table size (log2) past which grow hashes keys again;
// tagHashBits except in tests, which lower it to run that path.
var rehashAbove uint = tagHashBits

func newStrTable[C any]() *strTable[C] {
	return &strTable[C]{
		slots: make([]strSlot, 1<<strTableMinLog),
		vals:  make([]C, 1<<strTableMinLog),
		shift: 64 - strTableMinLog,
	}
}

// strTag is the tag of a key of length n with hash h: never 0, and equal
// tags with equal fingerprints mean equal keys when n <= 8.
func strTag(h uint64, n int) uint32 {
	return uint32(h>>(64-tagHashBits))<<4 | uint32(min(n, 14)+1)
}

// slot returns the slot of k, adding k if it is new (added), in which case
// the caller sets t.vals[i]. Slots move when the table grows: i is valid
// until the next call.
func (t *strTable[C]) slot(k string) (i int, added bool) {
	var h, fp uint64
	if len(k) <= 8 { // strHashFP, inlined for short keys
		if len(k) >= 4 {
			fp = fp4to8(k)
		} else {
			fp = fp0to3(k)
		}
		h = strHashOf(0, fp, len(k))
	} else {
		h, fp = strHashFP(k)
	}
	tag := strTag(h, len(k))
	mask := uint64(len(t.slots) - 1)
	base := unsafe.Pointer(unsafe.SliceData(t.slots))
	i0 := h >> t.shift
	if len(k) <= 8 {
		// Most short keys sit in their home slot or the next: test both
		// without a branch between them (a branch on the first would
		// mispredict for the one lookup in five that needs the second).
		i1 := (i0 + 1) & mask
		s0 := (*strSlot)(unsafe.Add(base, uintptr(i0)*unsafe.Sizeof(strSlot{})))
		s1 := (*strSlot)(unsafe.Add(base, uintptr(i1)*unsafe.Sizeof(strSlot{})))
		x0 := uint64(s0.tag^tag) | (s0.fp ^ fp) // 0: a match (| and ^ bind alike in Go)
		x1 := uint64(s1.tag^tag) | (s1.fp ^ fp)
		if min(x0, x1) == 0 {
			j := i0
			if x0 != 0 {
				j = i1
			}
			return int(j), false
		}
	}
	for i := i0; ; i = (i + 1) & mask {
		// i <= mask < len(slots): i starts below len(slots) (the top bits
		// of h) and is masked after.
		s := (*strSlot)(unsafe.Add(base, uintptr(i)*unsafe.Sizeof(strSlot{})))
		if s.tag == tag && s.fp == fp && (len(k) <= 8 || t.keys[s.pos] == k) {
			return int(i), false
		}
		if s.tag == 0 {
			break
		}
	}
	return t.insert(k, h, fp, tag), true
}

// insert adds k (not in the table) and returns its slot. It is slot's
// slow path, out of line so that the lookup keeps its values in registers.
//
//go:noinline
func (t *strTable[C]) insert(k string, h, fp uint64, tag uint32) int {
	// At most half full: with linear probing at 61% a lookup tested 1.8 slots
	// on average, and the unpredictable number of probes cost more in branch
	// misses than the larger table costs in cache (measured on WordCount).
	if (len(t.keys)+1)*2 > len(t.slots) {
		t.grow()
	}
	i := t.place(h>>t.shift, strSlot{fp: fp, tag: tag, pos: uint32(len(t.keys))})
	t.keys = append(t.keys, k)
	t.order = append(t.order, uint32(i))
	return i
}

// pos returns the first-seen position of the key in slot i.
func (t *strTable[C]) pos(i int) int { return int(t.slots[i].pos) }

// each calls f with every key and its combiner in first-seen order, until f
// returns false.
func (t *strTable[C]) each(f func(k string, c C) bool) {
	for pos, i := range t.order {
		if !f(t.keys[pos], t.vals[i]) {
			return
		}
	}
}

// grow doubles the table. A slot's home comes from its tag while the table
// has at most 2^rehashAbove slots; past that the key is hashed again.
func (t *strTable[C]) grow() {
	oldSlots, oldVals := t.slots, t.vals
	t.slots = make([]strSlot, 2*len(oldSlots))
	t.vals = make([]C, 2*len(oldVals))
	t.shift--
	log := 64 - t.shift
	for j, s := range oldSlots {
		if s.tag == 0 {
			continue
		}
		var home uint64
		if log <= rehashAbove {
			home = uint64(s.tag>>4) >> (tagHashBits - log)
		} else {
			h, _ := strHashFP(t.keys[s.pos])
			home = h >> t.shift
		}
		i := t.place(home, s)
		t.vals[i] = oldVals[j]
		t.order[s.pos] = uint32(i)
	}
}

// place puts s in the first empty slot from i on and returns its index.
func (t *strTable[C]) place(i uint64, s strSlot) int {
	mask := uint64(len(t.slots) - 1)
	for ; ; i = (i + 1) & mask {
		if t.slots[i].tag == 0 {
			t.slots[i] = s
			return int(i)
		}
	}
}
