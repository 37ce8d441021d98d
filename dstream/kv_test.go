package dstream_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/dstream/dstreamtest"
	"github.com/sluicehq/sluice/rdd"
)

func TestKVOf(t *testing.T) {
	kv := dstream.KVOf("a", int64(2))
	if kv != (dstream.KV[string, int64]{Key: "a", Value: 2}) {
		t.Fatalf("got %+v", kv)
	}
	if p := dstream.PairOf(1, "x"); p.First != 1 || p.Second != "x" {
		t.Fatalf("got %+v", p)
	}
}

// TestWindowDefaultSlide: a window without a slide produces every batch.
func TestWindowDefaultSlide(t *testing.T) {
	h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second})
	in := dstreamtest.Input(h, []int{1}, []int{2}, []int{3}, []int{4})
	w := dstreamtest.Output(h, dstream.Window(in, 2*time.Second))
	c := dstreamtest.Output(h, dstream.CountByWindow(in, 3*time.Second))
	pairs := dstream.Map(in, func(v int) dstream.KV[string, int] { return dstream.KVOf("k", v) })
	r := dstreamtest.Output(h, dstream.ReduceByKeyAndWindow(pairs, func(a, b int) int { return a + b }, 2*time.Second, 0))
	h.Run(4)
	wantW := [][]int{{1}, {1, 2}, {2, 3}, {3, 4}}
	wantC := []int64{1, 2, 3, 3}
	wantR := []int{1, 3, 5, 7}
	for i := range 4 {
		got := slices.Sorted(slices.Values(w.Batch(i)))
		if !slices.Equal(got, wantW[i]) {
			t.Errorf("window batch %d: %v, want %v", i, got, wantW[i])
		}
		if got := c.Batch(i); len(got) != 1 || got[0] != wantC[i] {
			t.Errorf("countByWindow batch %d: %v, want %d", i, got, wantC[i])
		}
		if got := r.Batch(i); len(got) != 1 || got[0].Value != wantR[i] {
			t.Errorf("reduceByKeyAndWindow batch %d: %v, want %d", i, got, wantR[i])
		}
	}
}

// TestShufflePartitions: Partitions(n) sets the partition count of every
// shuffle operator's output; without it the default applies.
func TestShufflePartitions(t *testing.T) {
	h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second, Parallelism: 2})
	words := dstreamtest.Input(h, []string{"a", "b", "a", "c"})
	pairs := dstream.Map(words, func(w string) dstream.KV[string, int] { return dstream.KVOf(w, 1) })
	sum := func(a, b int) int { return a + b }
	parts := map[string]*int{}
	record := func(name string) func(*dstream.Batch, int) {
		n := new(int)
		parts[name] = n
		return func(_ *dstream.Batch, p int) { *n = p }
	}
	op := dstream.Partitions(5)
	forParts(pairs, "default", record("default"), func(s *dstream.DStream[dstream.KV[string, int]]) *dstream.DStream[dstream.KV[string, int]] {
		return dstream.ReduceByKey(s, sum)
	})
	forParts(pairs, "reduceByKey", record("reduceByKey"), func(s *dstream.DStream[dstream.KV[string, int]]) *dstream.DStream[dstream.KV[string, int]] {
		return dstream.ReduceByKey(s, sum, op)
	})
	forParts(pairs, "groupByKey", record("groupByKey"), func(s *dstream.DStream[dstream.KV[string, int]]) *dstream.DStream[dstream.KV[string, []int]] {
		return dstream.GroupByKey(s, op)
	})
	forParts(pairs, "combineByKey", record("combineByKey"), func(s *dstream.DStream[dstream.KV[string, int]]) *dstream.DStream[dstream.KV[string, int]] {
		return dstream.CombineByKey(s, dstream.Combiner[int, int]{Create: func(v int) int { return v }, Merge: sum, Combine: sum}, op)
	})
	forParts(words, "countByValue", record("countByValue"), func(s *dstream.DStream[string]) *dstream.DStream[dstream.KV[string, int64]] {
		return dstream.CountByValue(s, op)
	})
	forParts(pairs, "join", record("join"), func(s *dstream.DStream[dstream.KV[string, int]]) *dstream.DStream[dstream.KV[string, dstream.Pair[int, int]]] {
		return dstream.Join(s, s, op)
	})
	forParts(pairs, "leftOuterJoin", record("leftOuterJoin"), func(s *dstream.DStream[dstream.KV[string, int]]) *dstream.DStream[dstream.KV[string, dstream.Pair[int, dstream.Option[int]]]] {
		return dstream.LeftOuterJoin(s, s, op)
	})
	forParts(pairs, "rightOuterJoin", record("rightOuterJoin"), func(s *dstream.DStream[dstream.KV[string, int]]) *dstream.DStream[dstream.KV[string, dstream.Pair[dstream.Option[int], int]]] {
		return dstream.RightOuterJoin(s, s, op)
	})
	forParts(pairs, "fullOuterJoin", record("fullOuterJoin"), func(s *dstream.DStream[dstream.KV[string, int]]) *dstream.DStream[dstream.KV[string, dstream.Pair[dstream.Option[int], dstream.Option[int]]]] {
		return dstream.FullOuterJoin(s, s, op)
	})
	forParts(pairs, "cogroup", record("cogroup"), func(s *dstream.DStream[dstream.KV[string, int]]) *dstream.DStream[dstream.KV[string, dstream.Pair[[]int, []int]]] {
		return dstream.CoGroup(s, s, op)
	})
	forParts(pairs, "reduceByKeyAndWindow", record("reduceByKeyAndWindow"), func(s *dstream.DStream[dstream.KV[string, int]]) *dstream.DStream[dstream.KV[string, int]] {
		return dstream.ReduceByKeyAndWindow(s, sum, time.Second, 0, op)
	})
	forParts(pairs, "groupByKeyAndWindow", record("groupByKeyAndWindow"), func(s *dstream.DStream[dstream.KV[string, int]]) *dstream.DStream[dstream.KV[string, []int]] {
		return dstream.GroupByKeyAndWindow(s, time.Second, 0, op)
	})
	forParts(words, "countByValueAndWindow", record("countByValueAndWindow"), func(s *dstream.DStream[string]) *dstream.DStream[dstream.KV[string, int64]] {
		return dstream.CountByValueAndWindow(s, time.Second, 0, op)
	})
	forParts(pairs, "reduceByKeyAndWindowInv", record("reduceByKeyAndWindowInv"), func(s *dstream.DStream[dstream.KV[string, int]]) *dstream.DStream[dstream.KV[string, int]] {
		return dstream.ReduceByKeyAndWindowInv(s, "inv", sum, func(a, b int) int { return a - b }, time.Second, 0, nil, op)
	})
	forParts(pairs, "updateStateByKey", record("updateStateByKey"), func(s *dstream.DStream[dstream.KV[string, int]]) *dstream.DStream[dstream.KV[string, int]] {
		return dstream.UpdateStateByKey(s, "parts-u", func(vs []int, st int, _ bool) (int, bool) { return st + len(vs), true }, op)
	})
	forParts(pairs, "mapWithState", record("mapWithState"), func(s *dstream.DStream[dstream.KV[string, int]]) *dstream.DStream[int] {
		return dstream.MapWithState(s, dstream.StateSpec[string, int, int, int]{Name: "parts-m", Partitions: 5,
			Func: func(_ string, v dstream.Option[int], st *dstream.State[int]) (int, bool) { return 1, true }}).DStream
	})
	forParts(pairs, "eventWindow", record("eventWindow"), func(s *dstream.DStream[dstream.KV[string, int]]) *dstream.DStream[dstream.EventWindow[string, int]] {
		return dstream.ReduceByKeyAndEventWindow(s, dstream.EventTimeSpec[string, int]{Name: "parts-e", Partitions: 5, Window: time.Second,
			Timestamp: func(dstream.KV[string, int]) time.Time { return time.Unix(0, 0) }, Reduce: sum}).DStream
	})
	h.Run(1)
	for name, n := range parts {
		want := 5
		if name == "default" {
			want = 2
		}
		if *n != want {
			t.Errorf("%s: %d partitions, want %d", name, *n, want)
		}
	}
	if len(parts) != 17 {
		t.Errorf("%d operators checked", len(parts))
	}
}

// forParts applies op to s and records its RDD's partition count.
func forParts[T, U any](s *dstream.DStream[T], _ string, rec func(*dstream.Batch, int), op func(*dstream.DStream[T]) *dstream.DStream[U]) {
	dstream.ForeachRDD(op(s), func(b *dstream.Batch, r *rdd.RDD[U]) error {
		rec(b, r.NumPartitions())
		_, err := dstream.Collect(b, r)
		return err
	})
}

func TestPartitionsZeroIsAGraphError(t *testing.T) {
	h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second})
	in := dstreamtest.Input[string](h)
	dstreamtest.Output(h, dstream.CountByValue(in, dstream.Partitions(0)))
	if _, err := h.Step(); err == nil || !strings.Contains(err.Error(), "Partitions(0): partition count must be > 0") {
		t.Fatalf("got %v", err)
	}
}

// TestUpdateStateByKeyInitialState: the initial state is seen from the
// first batch and kept for keys with no data.
func TestUpdateStateByKeyInitialState(t *testing.T) {
	h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second})
	in := dstreamtest.Input(h, []dstream.KV[string, int]{dstream.KVOf("a", 1)}, []dstream.KV[string, int]{dstream.KVOf("b", 5)})
	total := dstream.UpdateStateByKey(in, "totals", func(vs []int, s int, _ bool) (int, bool) {
		for _, v := range vs {
			s += v
		}
		return s, true
	}, dstream.WithInitialState([]dstream.KV[string, int]{dstream.KVOf("a", 10), dstream.KVOf("z", 7)}))
	out := dstreamtest.Output(h, total)
	h.Run(2)
	got := func(i int) map[string]int {
		m := map[string]int{}
		for _, kv := range out.Batch(i) {
			m[kv.Key] = kv.Value
		}
		return m
	}
	if g := got(0); len(g) != 2 || g["a"] != 11 || g["z"] != 7 {
		t.Errorf("batch 0: %v, want a=11 z=7", g)
	}
	if g := got(1); len(g) != 3 || g["a"] != 11 || g["b"] != 5 || g["z"] != 7 {
		t.Errorf("batch 1: %v, want a=11 b=5 z=7", g)
	}
}
