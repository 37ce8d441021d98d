package dstream_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/dstream/dstreamtest"
	"github.com/sluicehq/sluice/rdd"
)

// Joins, state and event time against plain references over many batches.

type kv = dstream.KV[string, int]

func randomKV(r *rand.Rand, batches, keys int) [][]kv {
	out := make([][]kv, batches)
	for i := range out {
		if r.IntN(5) == 0 {
			continue
		}
		for n := r.IntN(12); n > 0; n-- {
			out[i] = append(out[i], kv{Key: fmt.Sprint("k", r.IntN(keys)), Value: r.IntN(100)})
		}
	}
	return out
}

func byKey(b []kv) map[string][]int {
	m := map[string][]int{}
	for _, e := range b {
		m[e.Key] = append(m[e.Key], e.Value)
	}
	return m
}

func sorted(s []string) []string { sort.Strings(s); return s }

func check(t *testing.T, what string, i int, got, want []string) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s batch %d:\n got  %v\n want %v", what, i, got, want)
	}
}

func opt(v int, ok bool) string {
	if !ok {
		return "None"
	}
	return fmt.Sprintf("Some(%d)", v)
}

func TestJoinsAgainstReference(t *testing.T) {
	for _, parts := range []int{1, 4} {
		t.Run(fmt.Sprint("p", parts), func(t *testing.T) {
			r := rand.New(rand.NewPCG(7, uint64(parts)))
			const n = 15
			left, right := randomKV(r, n, 6), randomKV(r, n, 6)
			h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second, Parallelism: parts, Master: "local[2]"})
			a, b := dstreamtest.Input(h, left...), dstreamtest.Input(h, right...)
			show := func(k string, x, y string) string { return k + ":" + x + "," + y }
			join := dstreamtest.Output(h, dstream.Map(dstream.Join(a, b), func(e dstream.KV[string, dstream.Pair[int, int]]) string {
				return show(e.Key, fmt.Sprint(e.Value.First), fmt.Sprint(e.Value.Second))
			}))
			lo := dstreamtest.Output(h, dstream.Map(dstream.LeftOuterJoin(a, b), func(e dstream.KV[string, dstream.Pair[int, dstream.Option[int]]]) string {
				return show(e.Key, fmt.Sprint(e.Value.First), opt(e.Value.Second.Value, e.Value.Second.Valid))
			}))
			ro := dstreamtest.Output(h, dstream.Map(dstream.RightOuterJoin(a, b), func(e dstream.KV[string, dstream.Pair[dstream.Option[int], int]]) string {
				return show(e.Key, opt(e.Value.First.Value, e.Value.First.Valid), fmt.Sprint(e.Value.Second))
			}))
			fo := dstreamtest.Output(h, dstream.Map(dstream.FullOuterJoin(a, b), func(e dstream.KV[string, dstream.Pair[dstream.Option[int], dstream.Option[int]]]) string {
				return show(e.Key, opt(e.Value.First.Value, e.Value.First.Valid), opt(e.Value.Second.Value, e.Value.Second.Valid))
			}))
			cg := dstreamtest.Output(h, dstream.Map(dstream.CoGroup(a, b), func(e dstream.KV[string, dstream.Pair[[]int, []int]]) string {
				x, y := append([]int(nil), e.Value.First...), append([]int(nil), e.Value.Second...)
				sort.Ints(x)
				sort.Ints(y)
				return show(e.Key, fmt.Sprint(x), fmt.Sprint(y))
			}))
			tw := dstreamtest.Output(h, dstream.TransformWith(a, b, func(_ time.Time, ra, rb *rdd.RDD[kv]) *rdd.RDD[kv] {
				return rdd.Union(ra, rb)
			}))
			h.Run(n)
			for i := 0; i < n; i++ {
				check(t, "transformWith", i, render(tw.Batch(i)), render(append(append([]kv(nil), left[i]...), right[i]...)))
				l, rr := byKey(left[i]), byKey(right[i])
				var wj, wl, wr, wf, wc []string
				keys := map[string]bool{}
				for k := range l {
					keys[k] = true
				}
				for k := range rr {
					keys[k] = true
				}
				for k := range keys {
					vs, ws := l[k], rr[k]
					x, y := append([]int(nil), vs...), append([]int(nil), ws...)
					sort.Ints(x)
					sort.Ints(y)
					wc = append(wc, show(k, fmt.Sprint(x), fmt.Sprint(y)))
					for _, v := range vs {
						if len(ws) == 0 {
							wl = append(wl, show(k, fmt.Sprint(v), "None"))
							wf = append(wf, show(k, opt(v, true), "None"))
						}
						for _, w := range ws {
							wj = append(wj, show(k, fmt.Sprint(v), fmt.Sprint(w)))
							wl = append(wl, show(k, fmt.Sprint(v), opt(w, true)))
							wr = append(wr, show(k, opt(v, true), fmt.Sprint(w)))
							wf = append(wf, show(k, opt(v, true), opt(w, true)))
						}
					}
					if len(vs) == 0 {
						for _, w := range ws {
							wr = append(wr, show(k, "None", fmt.Sprint(w)))
							wf = append(wf, show(k, "None", opt(w, true)))
						}
					}
				}
				check(t, "join", i, sorted(join.Batch(i)), sorted(wj))
				check(t, "leftOuterJoin", i, sorted(lo.Batch(i)), sorted(wl))
				check(t, "rightOuterJoin", i, sorted(ro.Batch(i)), sorted(wr))
				check(t, "fullOuterJoin", i, sorted(fo.Batch(i)), sorted(wf))
				check(t, "cogroup", i, sorted(cg.Batch(i)), sorted(wc))
			}
		})
	}
}

func TestStateAgainstReference(t *testing.T) {
	for _, parts := range []int{1, 3} {
		t.Run(fmt.Sprint("p", parts), func(t *testing.T) {
			r := rand.New(rand.NewPCG(11, uint64(parts)))
			const n, timeout = 25, 3
			batches := randomKV(r, n, 10)
			h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second, Parallelism: parts, Master: "local[2]"})
			in := dstreamtest.Input(h, batches...)
			// updateStateByKey: a running sum; a key whose sum passes 300 is removed.
			up := dstreamtest.Output(h, dstream.UpdateStateByKey(in, "sums", func(vs []int, s int, _ bool) (int, bool) {
				for _, v := range vs {
					s += v
				}
				return s, s <= 300
			}))
			// mapWithState: counts per key, idle timeout of 3 batches; emits
			// "k=count" per value and "k timeout" once when a key times out.
			ms := dstream.MapWithState(in, dstream.StateSpec[string, int, int, string]{
				Name: "counts", Timeout: timeout * time.Second,
				Func: func(k string, v dstream.Option[int], st *dstream.State[int]) (string, bool) {
					if st.IsTimingOut() {
						return k + " timeout", true
					}
					st.Update(st.Get() + 1)
					return fmt.Sprintf("%s=%d", k, st.Get()), true
				},
			})
			mo := dstreamtest.Output(h, ms.DStream)
			h.Run(n)
			sums := map[string]int{}
			counts, last := map[string]int{}, map[string]int{}
			for i := 0; i < n; i++ {
				m := byKey(batches[i])
				for k, vs := range m {
					for _, v := range vs {
						sums[k] += v
					}
				}
				var wu []string
				for k, s := range sums {
					if s > 300 {
						delete(sums, k)
						continue
					}
					wu = append(wu, fmt.Sprint(kv{Key: k, Value: s}))
				}
				check(t, "updateStateByKey", i, sorted(render(up.Batch(i))), sorted(wu))

				var wm []string
				for k, vs := range m {
					for range vs {
						counts[k]++
						wm = append(wm, fmt.Sprintf("%s=%d", k, counts[k]))
					}
					last[k] = i
				}
				for k, l := range last {
					if _, fresh := m[k]; !fresh && i-l > timeout {
						wm = append(wm, k+" timeout")
						delete(last, k)
						delete(counts, k)
					}
				}
				got := append([]string(nil), mo.Batch(i)...)
				// Values of one key are counted in an order; compare the final
				// counts per key via the sorted multiset, which is order-free.
				check(t, "mapWithState", i, sorted(got), sorted(wm))
			}
		})
	}
}

func TestEventTimeAgainstReference(t *testing.T) {
	for _, parts := range []int{1, 3} {
		t.Run(fmt.Sprint("p", parts), func(t *testing.T) {
			r := rand.New(rand.NewPCG(5, uint64(parts)))
			const n, win, slide, lateness = 30, 10, 5, 4
			// Events with a drifting clock and out-of-order jitter; the value is
			// the event second, the key one of three.
			var batches [][]kv
			now := 0
			for i := 0; i < n; i++ {
				var b []kv
				for m := r.IntN(6); m > 0; m-- {
					b = append(b, kv{Key: fmt.Sprint("k", r.IntN(3)), Value: max(0, now-r.IntN(9))})
				}
				now += 1 + r.IntN(3)
				batches = append(batches, b)
			}
			h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second, Parallelism: parts, Master: "local[2]"})
			in := dstreamtest.Input(h, batches...)
			w := dstream.ReduceByKeyAndEventWindow(dstream.MapValues(in, func(v int) int { return v }), dstream.EventTimeSpec[string, int]{
				Name:      "ev",
				Timestamp: func(e kv) time.Time { return time.Unix(int64(e.Value), 0) },
				Window:    win * time.Second, Slide: slide * time.Second, AllowedLateness: lateness * time.Second,
				Reduce: func(a, b int) int { return a + b },
			})
			out := dstreamtest.Output(h, dstream.Map(w.DStream, func(e dstream.EventWindow[string, int]) string {
				return fmt.Sprintf("%s[%d,%d)=%d", e.Key, e.Start.Unix(), e.End.Unix(), e.Value)
			}))
			h.Run(n)
			// Reference: the watermark of batch i is the max event before i
			// minus the lateness; events behind it are dropped; a window is
			// emitted by the first batch whose watermark reaches its end.
			type wk struct {
				k     string
				start int
			}
			open := map[wk]int{}
			maxEv, seen, dropped := 0, false, 0
			for i := 0; i < n; i++ {
				wm, hasWM := maxEv-lateness, seen
				for _, e := range batches[i] {
					if hasWM && e.Value < wm {
						dropped++
						continue
					}
					for st := e.Value - e.Value%slide; st > e.Value-win; st -= slide {
						open[wk{e.Key, st}] += e.Value
					}
				}
				var want []string
				if hasWM {
					for k, v := range open {
						if k.start+win <= wm {
							want = append(want, fmt.Sprintf("%s[%d,%d)=%d", k.k, k.start, k.start+win, v))
							delete(open, k)
						}
					}
				}
				for _, e := range batches[i] {
					if !(hasWM && e.Value < wm) {
						maxEv, seen = max(maxEv, e.Value), true
					}
				}
				check(t, "event time", i, sorted(out.Batch(i)), sorted(want))
			}
			if w.Dropped() != int64(dropped) {
				t.Fatalf("dropped %d, reference %d", w.Dropped(), dropped)
			}
			if dropped == 0 {
				t.Fatal("the input should have late records")
			}
		})
	}
}
