package dstream_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/dstream/dstreamtest"
	"github.com/sluicehq/sluice/rdd"
)

type kvi = dstream.KV[string, int]

func sortKV[V any](kvs []dstream.KV[string, V]) []dstream.KV[string, V] {
	sort.Slice(kvs, func(i, j int) bool { return kvs[i].Key < kvs[j].Key })
	return kvs
}

func TestUpdateStateByKeySmoke(t *testing.T) {
	h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second, Parallelism: 3})
	in := dstreamtest.Input(h, []kvi{{Key: "a", Value: 1}, {Key: "b", Value: 2}, {Key: "a", Value: 3}}, []kvi{{Key: "b", Value: 1}}, nil, []kvi{{Key: "c", Value: 5}})
	st := dstream.UpdateStateByKey(in, "sums", func(vs []int, s int, ok bool) (int, bool) {
		for _, v := range vs {
			s += v
		}
		return s, s < 10 || len(vs) > 0
	})
	out := dstreamtest.Output(h, st)
	h.Run(4)
	want := []string{"[{a 4} {b 2}]", "[{a 4} {b 3}]", "[{a 4} {b 3}]", "[{a 4} {b 3} {c 5}]"}
	for i, w := range want {
		if got := fmt.Sprint(sortKV(out.Batch(i))); got != w {
			t.Errorf("batch %d: got %s want %s", i, got, w)
		}
	}
}

func TestMapWithStateTimeoutSmoke(t *testing.T) {
	h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second, Parallelism: 2})
	in := dstreamtest.Input(h, []kvi{{Key: "a", Value: 1}, {Key: "b", Value: 1}}, []kvi{{Key: "a", Value: 1}}, nil, []kvi{{Key: "a", Value: 1}}, nil, nil, nil)
	var timeouts []string
	ms := dstream.MapWithState(in, dstream.StateSpec[string, int, int, string]{
		Name:    "counter",
		Timeout: 2 * time.Second,
		Initial: []kvi{{Key: "z", Value: 100}},
		Func: func(k string, v dstream.Option[int], st *dstream.State[int]) (string, bool) {
			if st.IsTimingOut() {
				return fmt.Sprintf("timeout %s=%d", k, st.Get()), true
			}
			st.Update(st.Get() + v.Value)
			return fmt.Sprintf("%s=%d", k, st.Get()), true
		},
	})
	out := dstreamtest.Output(h, ms.DStream)
	snaps := dstreamtest.Output(h, ms.Snapshots())
	h.Run(7)
	_ = timeouts
	for i := 0; i < 7; i++ {
		got := out.Batch(i)
		sort.Strings(got)
		t.Logf("batch %d: %v snapshot %v", i, got, sortKV(snaps.Batch(i)))
	}
	// z (initial, touched at start=0s) times out when t - 0 > 2s: batch at 3s (index 2).
	// b touched at 1s times out at 4s (index 3); a touched at 4s times out at 7s (index 6).
	want := map[int]string{0: "[a=1 b=1]", 1: "[a=2]", 2: "[timeout z=100]", 3: "[a=3 timeout b=1]", 6: "[timeout a=3]"}
	for i := 0; i < 7; i++ {
		got := out.Batch(i)
		sort.Strings(got)
		if w := want[i]; fmt.Sprint(got) != w && !(w == "" && len(got) == 0) {
			t.Errorf("batch %d: got %v want %s", i, got, w)
		}
	}
}

// updateStateByKey calls update exactly once per batch for every key with
// data or state: idle keys with no values, keys with data with their values,
// never twice (a key updated with its data must not be seen again as idle),
// and a removed key no more.
func TestUpdateStateByKeyCallsUpdateOncePerKey(t *testing.T) {
	h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second, Parallelism: 2})
	in := dstreamtest.Input(h,
		[]kvi{{Key: "a", Value: 1}, {Key: "b", Value: 1}, {Key: "gone", Value: 1}},
		[]kvi{{Key: "a", Value: 1}, {Key: "never", Value: 0}},
		[]kvi{{Key: "b", Value: 2}, {Key: "gone", Value: 0}},
		nil)
	var calls []string // one line per batch, sorted
	var cur []string
	var mu sync.Mutex // partitions update in parallel
	st := dstream.UpdateStateByKey(in, "calls", func(vs []int, s int, ok bool) (int, bool) {
		mu.Lock()
		cur = append(cur, fmt.Sprintf("%d:%v", len(vs), ok))
		mu.Unlock()
		for _, v := range vs {
			s += v
		}
		return s, len(vs) == 0 || vs[0] != 0 // a 0 removes the key
	})
	out := dstreamtest.Output(h, st)
	dstream.ForeachRDD(st, func(b *dstream.Batch, r *rdd.RDD[kvi]) error {
		mu.Lock()
		defer mu.Unlock()
		sort.Strings(cur)
		calls = append(calls, fmt.Sprint(cur))
		cur = nil
		return nil
	})
	h.Run(4)
	want := []string{
		"[1:false 1:false 1:false]",      // a, b, gone: new
		"[0:true 0:true 1:false 1:true]", // a: data; never: data, not kept; b, gone: idle
		"[0:true 1:true 1:true]",         // b: data; gone: data, removed; a: idle
		"[0:true 0:true]",                // a, b: idle
	}
	for i, w := range want {
		if i >= len(calls) || calls[i] != w {
			t.Fatalf("batch %d: update calls %v, want %s", i, calls, w)
		}
	}
	if got := fmt.Sprint(sortKV(out.Batch(3))); got != "[{a 2} {b 3}]" {
		t.Errorf("state after batch 3: %s", got)
	}
}

// SaveAsTextFiles writes a KV as Print shows it, (key,value), as Spark's
// saveAsTextFiles writes a pair; strings as they are.
func TestSaveAsTextFilesWritesPairsAsPrintShowsThem(t *testing.T) {
	h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second, Parallelism: 1})
	in := dstreamtest.Input(h, []kvi{{Key: "a b", Value: 1}, {Key: "c", Value: 2}})
	dir := t.TempDir()
	dstream.SaveAsTextFiles(in, filepath.Join(dir, "pairs"), "")
	dstream.SaveAsTextFiles(dstream.Map(in, func(kv kvi) string { return kv.Key }), filepath.Join(dir, "keys"), "")
	h.Run(1)
	for prefix, want := range map[string]string{"pairs": "(a b,1)\n(c,2)\n", "keys": "a b\nc\n"} {
		files, _ := filepath.Glob(filepath.Join(dir, prefix+"-*", "part-*"))
		var got string
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			got += string(b)
		}
		if got != want {
			t.Errorf("%s: saved %q, want %q", prefix, got, want)
		}
	}
}

// A nil inverse function is refused where the stream is defined, naming
// it, not a batch later by a nil call inside a task.
func TestReduceByKeyAndWindowInvRefusesNilFunctions(t *testing.T) {
	h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second, Parallelism: 1})
	in := dstreamtest.Input(h, []kvi{{Key: "a", Value: 1}})
	for name, fs := range map[string][2]func(int, int) int{
		"inverse": {dstream.Sum[int], nil},
		"reduce":  {nil, func(a, b int) int { return a - b }},
	} {
		func() {
			defer func() {
				if v := fmt.Sprint(recover()); !strings.Contains(v, "the "+name+" function is nil") {
					t.Errorf("nil %s function: panic %q, want one naming it", name, v)
				}
			}()
			dstream.ReduceByKeyAndWindowInv(in, "w-"+name, fs[0], fs[1], 2*time.Second, time.Second, nil)
		}()
	}
}
