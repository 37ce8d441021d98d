package rdd

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/sluicehq/sluice/internal/wordgen"
)

func words(n int) []string {
	var out []string
	for _, l := range wordgen.New(5).Lines(n / wordgen.WordsPerLine) {
		wordgen.Fields(l, func(w string) { out = append(out, w) })
	}
	return out
}

// The string table must agree with a Go map on every key, across growth.
func TestStrTableMatchesMap(t *testing.T) {
	ws := words(200_000)
	tab := newStrTable[int64]()
	ref := map[string]int{}
	for _, w := range ws {
		i, added := tab.slot(w)
		pos := tab.posOf(i)
		want, ok := ref[w]
		if !ok {
			want = len(ref)
			ref[w] = want
		}
		if pos != want || added == ok {
			t.Fatalf("%q: slot %d added %v, want %d added %v", w, pos, added, want, !ok)
		}
	}
	// Short keys compare by length and fingerprint alone: every string of
	// up to 8 bytes over a small alphabet must get its own fingerprint.
	fps := map[[2]uint64]string{}
	var gen func(prefix []byte)
	gen = func(prefix []byte) {
		if len(prefix) > 0 {
			_, fp := strHashFP(string(prefix))
			k := [2]uint64{uint64(len(prefix)), fp}
			if other, ok := fps[k]; ok {
				t.Fatalf("%q and %q share length and fingerprint", other, prefix)
			}
			fps[k] = string(prefix)
		}
		if len(prefix) == 8 || (len(prefix) >= 5 && prefix[0] != 'a') {
			return
		}
		for _, c := range []byte("ab\x00\xff") {
			gen(append(prefix, c))
		}
	}
	gen(nil)
	for n := 0; n < 40; n++ { // every length path, short reads included
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('a' + i)
		}
		s := string(b)
		if strHash(s) != strHash(string(b)) {
			t.Fatalf("hash of %q is not stable", s)
		}
		if n > 0 && strHash(s) == strHash(s[:n-1]) {
			t.Fatalf("%q and its prefix collide", s)
		}
	}
}

func BenchmarkKeyTable(b *testing.B) {
	ws := words(1_000_000)
	b.Run("strtable", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			tab := newStrTable[int64]()
			for _, w := range ws {
				if i, added := tab.slot(w); added {
					tab.slots[i].val = 1
				} else {
					tab.slots[i].val++
				}
			}
		}
		b.ReportMetric(float64(len(ws)*b.N)/b.Elapsed().Seconds(), "words/s")
	})
	b.Run("map", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			m := map[string]int64{}
			for _, w := range ws {
				m[w]++
			}
		}
		b.ReportMetric(float64(len(ws)*b.N)/b.Elapsed().Seconds(), "words/s")
	})
}

// BenchmarkWordCountReduceSide is the reduce side of WordCount: fetch the
// map outputs' blocks, decode the string keys in place and merge the counts
// in the string table. allocs/op must not grow with the number of lines
// (per batch, not per record): compare the two sizes.
func BenchmarkWordCountReduceSide(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("lines=%d", n), func(b *testing.B) {
			mem := memory.NewGoAllocator()
			lines := wordgen.New(1).Lines(n)
			recs := []arrow.Record{Encode(mem, CodecOf[string](), lines[:n/2]), Encode(mem, CodecOf[string](), lines[n/2:])}
			defer recs[0].Release()
			defer recs[1].Release()
			tc, done := newTC(mem)
			defer done()
			src := FromRecords("lines", CodecOf[string](), recs)
			counts := ReduceByKey(Map(FlatMapEmit(src, wordgen.Fields), func(w string) KV[string, int64] {
				return KV[string, int64]{Key: w, Value: 1}
			}), func(a, b int64) int64 { return a + b }, 1)
			for p := 0; p < 2; p++ {
				if err := counts.Node().Deps[0].Shuffle.WriteMap(tc, p); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				var total int64
				if err := counts.Iterate(tc, 0, func(kv KV[string, int64]) bool { total += kv.Value; return true }); err != nil {
					b.Fatal(err)
				}
				if total != int64(n*wordgen.WordsPerLine) {
					b.Fatalf("counted %d words", total)
				}
			}
		})
	}
}

// The string table must agree with a Go map on random keys: every length
// path (empty, 1-3, 4-7, 8, long), zero and 0xff bytes, keys that differ only
// in length ("ab" and "ab\x00") or only in the middle of long keys, repeats,
// keys crowded into one probe run, tag collisions, and growth, which hashes
// short keys again from their fingerprints and long keys from their bytes.
func TestStrTableMatchesMapRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	alphabet := []byte("ab\x00\xffxyzcdefghijklmnopqrstuvw")
	randKey := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		return string(b)
	}
	var keys []string
	for len(keys) < 150_000 {
		switch k := randKey(r.IntN(12)); r.IntN(6) {
		case 0:
			keys = append(keys, k, k+"\x00", "\x00"+k)
		case 1: // long keys sharing their first and last bytes
			keys = append(keys, "prefix-prefix-"+k+"-suffix-suffix", strings.Repeat("x", 8+r.IntN(30))+k)
		default:
			keys = append(keys, k)
		}
	}
	keys = append(keys, "")
	// Keys whose home slots coincide in tables of up to 4096 slots: one
	// long probe run that wraps around the end of a small table.
	for i := 0; len(keys) < 160_000 && i < 2_000_000; i++ {
		if k := fmt.Sprint("crowd", i); strHash(k)>>52 == 0xfff {
			keys = append(keys, k, k)
		}
	}
	// Pairs of distinct keys of one length with the same tag (the table
	// hash is seeded per process, so search for them), short and long.
	for _, n := range []int{5, 8, 20} {
		seen := map[uint8]string{}
		for found := 0; found < 3; {
			k := randKey(n)
			h, _ := strHashFP(k)
			tag := strTag(h, n)
			if other, ok := seen[tag]; ok && other != k {
				keys = append(keys, other, k)
				found++
			}
			seen[tag] = k
		}
	}
	// Repeats, in random order.
	stream := make([]string, 0, 3*len(keys))
	for range 3 {
		stream = append(stream, keys...)
	}
	r.Shuffle(len(stream), func(i, j int) { stream[i], stream[j] = stream[j], stream[i] })

	tab := newStrTable[int]()
	ref := map[string]int{}
	for _, k := range stream {
		i, added := tab.slot(k)
		pos := tab.posOf(i)
		if added {
			tab.slots[i].val = 1
		} else {
			tab.slots[i].val++
		}
		want, ok := ref[k]
		if !ok {
			want = len(ref)
			ref[k] = want
		}
		if pos != want || added == ok {
			t.Fatalf("%q: slot %d added %v, want %d added %v", k, pos, added, want, !ok)
		}
	}
	if len(tab.keys) != len(ref) {
		t.Fatalf("%d keys, want %d", len(tab.keys), len(ref))
	}
	for i, k := range tab.keys {
		if ref[k] != i {
			t.Fatalf("keys[%d] = %q, the map has it at %d", i, k, ref[k])
		}
	}
	// Every key's count (3 per occurrence in keys) followed its slot
	// through growth, in first-seen order.
	occurs := map[string]int{}
	for _, k := range keys {
		occurs[k] += 3
	}
	next := 0
	tab.each(func(k string, n int) bool {
		if k != tab.keys[next] || n != occurs[k] {
			t.Fatalf("each: %d-th key %q with %d, want %q with %d", next, k, n, tab.keys[next], occurs[k])
		}
		next++
		return true
	})
	if next != len(ref) {
		t.Fatalf("each visited %d keys, want %d", next, len(ref))
	}
	// Distinct keys of the same length class with the same tag and
	// fingerprint (long keys, which share their last 8 bytes) were told
	// apart by their bytes: the test must have had some.
	type tagFP struct {
		tag uint8
		fp  uint64
	}
	seenTF := map[tagFP]int{}
	collisions := 0
	for _, k := range tab.keys {
		h, fp := strHashFP(k)
		tf := tagFP{strTag(h, len(k)), fp}
		collisions += seenTF[tf]
		seenTF[tf]++
	}
	if collisions < 9 {
		t.Fatal("no two keys shared a tag and fingerprint; the test exercises less than it claims")
	}
	t.Logf("%d keys, %d tag and fingerprint collisions, %d slots", len(tab.keys), collisions, len(tab.slots))
}

// Keys of up to 8 bytes compare by tag and fingerprint alone, and "ab" and
// "ab\x00" share a fingerprint: the tag must tell lengths apart even when
// their hashes' top bits coincide (too rare to search for), and never be 0
// (an empty slot).
func TestStrTagSeparatesLengths(t *testing.T) {
	for _, h := range []uint64{0, 1 << 63, ^uint64(0), 0x0123456789abcdef} {
		seen := map[uint8]int{}
		for n := 0; n <= 8; n++ {
			tag := strTag(h, n)
			if tag == 0 {
				t.Fatalf("strTag(%#x, %d) = 0", h, n)
			}
			if m, ok := seen[tag]; ok {
				t.Fatalf("strTag(%#x, ...): lengths %d and %d share tag %#x", h, m, n, tag)
			}
			seen[tag] = n
		}
		if strTag(h, 9) == 0 || strTag(h, 1000) == 0 {
			t.Fatalf("strTag(%#x, long) = 0", h)
		}
	}
}

// A lookup must not take a key with its tag (but another fingerprint) for
// itself, wherever that key sits: in the home slot, the next one (which
// short keys test without a branch) or further on.
func TestStrTableTagCollisionInProbeRun(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	randKey := func(n int) string { // any bytes: 2^24 keys of 3 bytes, enough for tag collisions
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return string(b)
	}
	home := func(k string) uint64 { h, _ := strHashFP(k); return h >> (64 - strTableMinLog) }
	for _, n := range []int{3, 5, 8, 12} {
		// a and b: same length, same tag, different keys.
		seen := map[uint8]string{}
		var a, b string
		for a == "" {
			k := randKey(n)
			h, _ := strHashFP(k)
			tag := strTag(h, n)
			if other, ok := seen[tag]; ok && other != k {
				a, b = other, k
			}
			seen[tag] = k
		}
		for fillers := 0; fillers <= 2; fillers++ {
			// fillers keys with a's home slot go first, so a sits that many
			// slots past its home.
			tab := newStrTable[int]()
			for placed := 0; placed < fillers; {
				if k := randKey(n); home(k) == home(a) && k != a && k != b {
					tab.slot(k)
					placed++
				}
			}
			ia, added := tab.slot(a)
			if !added || tab.posOf(ia) != fillers {
				t.Fatalf("len %d, %d fillers: %q added %v at %d", n, fillers, a, added, tab.posOf(ia))
			}
			if ib, added := tab.slot(b); !added || ib == ia {
				t.Fatalf("len %d, %d fillers: %q (tag of %q) found as %q", n, fillers, b, a, tab.keys[tab.posOf(ib)])
			}
			if len(tab.slots) != 1<<strTableMinLog {
				t.Fatal("the table grew; the slots are not where the test put them")
			}
		}
	}
}

// White box: a slot whose tag differs from a short key's only in a bit its
// fingerprint has, and whose fingerprint lacks that bit, is another key, in
// the home slot or the next (where the lookup tests both without a branch).
// Such slots are too rare to meet by hashing.
func TestStrTableComparesTagAndFingerprint(t *testing.T) {
	for _, c := range []string{"abc", "abcd", "abcdefgh"} {
		for at := 0; at <= 1; at++ {
			tab := newStrTable[int]()
			h, fp := strHashFP(c)
			tag := strTag(h, len(c))
			bit := uint64(0)
			for b := 4; b < 8; b++ { // a hash bit of the tag, set in fp
				if fp&(1<<b) != 0 {
					bit = 1 << b
					break
				}
			}
			if bit == 0 {
				t.Fatalf("%q: no usable bit", c)
			}
			home := h >> tab.shift
			mask := uint64(len(tab.slots) - 1)
			if at == 1 { // another key in the home slot
				tab.slots[home].fp, tab.tags[home], tab.pos[home] = ^fp, tag^1<<7, uint32(len(tab.keys))
				tab.keys = append(tab.keys, "filler")
				tab.order = append(tab.order, uint32(home))
			}
			i := (home + uint64(at)) & mask
			tab.slots[i].fp, tab.tags[i], tab.pos[i] = fp&^bit, tag^uint8(bit), uint32(len(tab.keys))
			tab.keys = append(tab.keys, "crafted")
			tab.order = append(tab.order, uint32(i))
			if j, added := tab.slot(c); !added {
				t.Fatalf("%q found as %q (slot %d)", c, tab.keys[tab.posOf(j)], j)
			}
		}
	}
}
