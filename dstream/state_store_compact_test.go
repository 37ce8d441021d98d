package dstream

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"
	"unsafe"

	"github.com/sluicehq/sluice/rdd"
)

// The columnar store behaves like a map per partition: random sets and
// removes over many batches, with retried attempts (the last one wins),
// failed batches (never committed) and keys re-added after removal, agree
// with a model map after every commit; each visits keys in hash order.
func TestStateStoreMatchesModel(t *testing.T) {
	st := newStateStore[string, int64]("model", 3)
	st.reportSize = true // as in a cluster's job process
	model := map[string]int64{}
	r := rand.New(rand.NewPCG(1, 2))
	key := func() string { return fmt.Sprintf("key-%d", r.IntN(3000)) }
	reported := map[int][2]int64{}
	for b := 1; b <= 60; b++ {
		bt := time.Unix(int64(b), 0)
		failed := b%7 == 0
		want := map[string]int64{}
		for k, v := range model {
			want[k] = v
		}
		attempts := 1 + b%3
		for a := 0; a < attempts; a++ {
			last := a == attempts-1
			if last {
				r = rand.New(rand.NewPCG(uint64(b), 9))
			}
			for p := range st.parts {
				x, err := st.begin(p, bt)
				if err != nil {
					t.Fatal(err)
				}
				for i := 0; i < 400; i++ {
					k := key()
					if st.partOf(k) != p {
						continue
					}
					e, ok := x.get(k)
					if wv, wok := want[k]; last && (ok != wok || e.value != wv) {
						t.Fatalf("batch %d: get(%s) = %d %v, want %d %v", b, k, e.value, ok, wv, wok)
					}
					if r.IntN(4) == 0 {
						x.remove(k)
						if last {
							delete(want, k)
						}
					} else {
						v := e.value + int64(r.IntN(10)) + 1
						x.set(k, stateEntry[int64]{value: v, touched: bt})
						if last {
							want[k] = v
						}
					}
				}
				var hashes []uint64
				n := 0
				x.each(func(k string, e stateEntry[int64]) bool {
					hashes = append(hashes, st.kc.Hash(k))
					if last && want[k] != e.value {
						t.Fatalf("batch %d: each saw %s=%d, want %d", b, k, e.value, want[k])
					}
					n++
					return true
				})
				if !sort.SliceIsSorted(hashes, func(i, j int) bool { return hashes[i] < hashes[j] }) {
					t.Fatalf("batch %d: each is not in hash order", b)
				}
				tc := &rdd.TaskContext{}
				x.finish(tc)
				if last {
					b := tc.Reports[fmt.Sprintf("stateSize/%d/%d/model", bt.UnixNano(), p)]
					if len(b) != 16 {
						t.Fatalf("batch %d: size report %x", b, b)
					}
					reported[p] = [2]int64{int64(binary.BigEndian.Uint64(b)), int64(binary.BigEndian.Uint64(b[8:]))}
				}
			}
		}
		if failed {
			continue // never committed: the next commit drops its delta
		}
		st.commit(bt, nil)
		model = want
		got := map[string]int64{}
		for _, kv := range st.snapshot() {
			got[kv.Key] = kv.Value
		}
		if len(got) != len(model) {
			t.Fatalf("batch %d: %d keys, want %d", b, len(got), len(model))
		}
		for k, v := range model {
			if got[k] != v {
				t.Fatalf("batch %d: %s=%d, want %d", b, k, got[k], v)
			}
		}
		if keys, bytes := st.size(); keys != int64(len(model)) || bytes <= keys*8 {
			t.Fatalf("batch %d: size %d keys %d bytes", b, keys, bytes)
		}
		// What the tasks reported (the job driver's figure in a cluster)
		// is the committed size: the keys exactly, the bytes roughly.
		for p, r := range reported {
			st.parts[p].mu.Lock()
			keys, bytes := int64(len(st.parts[p].keys)), st.parts[p].bytesLocked()
			st.parts[p].mu.Unlock()
			if r[0] != keys || r[1] < bytes/2 || r[1] > 2*bytes {
				t.Fatalf("batch %d partition %d: reported %d keys %d bytes, holds %d keys %d bytes", b, p, r[0], r[1], keys, bytes)
			}
		}
	}
}

// Keys kept in state must not alias the batch's buffers: the store copies
// them (into its arena) when they are set.
func TestStateStoreClonesKeys(t *testing.T) {
	st := newStateStore[string, int64]("clone", 1)
	buf := []byte("abcdef")
	k := "abc"
	x, _ := st.begin(0, time.Unix(1, 0))
	alias := unsafe.String(&buf[0], len(buf)) // as decoded strings alias Arrow buffers
	x.set(alias[:3], stateEntry[int64]{value: 1})
	x.finish(nil)
	st.commit(time.Unix(1, 0), nil)
	copy(buf, "xyz")
	snap := st.snapshot()
	if len(snap) != 1 || snap[0].Key != k {
		t.Fatalf("state holds %v after the input buffer changed, want key %q", snap, k)
	}
}

// A delta begun before another batch committed structural changes is
// rebased by key, not applied to stale positions.
func TestStateStoreRebasesStaleDelta(t *testing.T) {
	st := newStateStore[string, int64]("rebase", 1)
	st.load([]KV[string, int64]{{Key: "a", Value: 1}, {Key: "b", Value: 2}, {Key: "c", Value: 3}}, time.Unix(0, 0))
	x1, _ := st.begin(0, time.Unix(1, 0))
	x2, _ := st.begin(0, time.Unix(2, 0))
	x1.remove("a")
	x1.set("d", stateEntry[int64]{value: 4})
	x1.finish(nil)
	x2.set("c", stateEntry[int64]{value: 30}) // position of c moves when batch 1 commits
	x2.remove("b")
	st.commit(time.Unix(1, 0), nil)
	x2.finish(nil)
	st.commit(time.Unix(2, 0), nil)
	got := map[string]int64{}
	for _, kv := range st.snapshot() {
		got[kv.Key] = kv.Value
	}
	if fmt.Sprint(got) != "map[c:30 d:4]" {
		t.Fatalf("state %v, want map[c:30 d:4]", got)
	}
}

// Removing most keys lets the arena drop their bytes.
func TestStateStoreArenaCompacts(t *testing.T) {
	st := newStateStore[string, int64]("arena", 1)
	var init []KV[string, int64]
	for i := 0; i < 200_000; i++ {
		init = append(init, KV[string, int64]{Key: fmt.Sprintf("a-long-key-to-fill-the-arena-%08d", i), Value: 1})
	}
	st.load(init, time.Unix(0, 0))
	before := st.parts[0].arena.bytes()
	x, _ := st.begin(0, time.Unix(1, 0))
	for _, kv := range init[1000:] {
		x.remove(kv.Key)
	}
	x.finish(nil)
	st.commit(time.Unix(1, 0), nil)
	after := st.parts[0].arena.bytes()
	if keys, _ := st.size(); keys != 1000 || after*4 > before {
		t.Fatalf("%d keys, arena %d bytes from %d", keys, after, before)
	}
	for _, kv := range st.snapshot() {
		if kv.Value != 1 || len(kv.Key) != len(init[0].Key) {
			t.Fatalf("bad entry after compaction: %v", kv)
		}
	}
}

// BenchmarkStateStoreBatch is one updateStateByKey-style batch over idle
// keys: walk every key, set it, commit. allocs/op must not grow with the
// number of keys (per batch, not per key): compare the two sizes.
func BenchmarkStateStoreBatch(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			st := newStateStore[string, int64]("bench", 1)
			init := make([]KV[string, int64], n)
			for i := range init {
				init[i] = KV[string, int64]{Key: fmt.Sprintf("user-%d", i), Value: 1}
			}
			st.load(init, time.Unix(0, 0))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				bt := time.Unix(int64(i+1), 0)
				x, _ := st.begin(0, bt)
				x.each(func(k string, e stateEntry[int64]) bool {
					x.set(k, stateEntry[int64]{value: e.value + 1, touched: bt})
					return true
				})
				x.finish(nil)
				st.commit(bt, nil)
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "keys/s")
		})
	}
}
