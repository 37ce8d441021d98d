package dstream_test

import (
	"fmt"
	"iter"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/dstream/dstreamtest"
	"github.com/sluicehq/sluice/rdd"
)

// Every operator against a plain Go reference, over many batches of random
// input, with one and several partitions and task slots.

const refBatches = 20

type refCase struct {
	name string
	// build defines the operator on the input stream and returns a function
	// that reads batch i of its output, rendered as sorted strings.
	build func(h *dstreamtest.Harness, in *dstream.DStream[string]) func(i int) []string
	// want computes the same from batch i of the input (all batches given,
	// for windows).
	want func(batches [][]string, i int) []string
}

func render[T any](vals []T) []string {
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = fmt.Sprint(v)
	}
	sort.Strings(out)
	return out
}

func collect[T any](h *dstreamtest.Harness, s *dstream.DStream[T]) func(int) []string {
	c := dstreamtest.Output(h, s)
	return func(i int) []string { return render(c.Batch(i)) }
}

func words(batch []string) []string {
	var w []string
	for _, l := range batch {
		w = append(w, strings.Fields(l)...)
	}
	return w
}

func countWords(ws []string) map[string]int {
	m := map[string]int{}
	for _, w := range ws {
		m[w]++
	}
	return m
}

func kvs(m map[string]int) []string {
	var out []string
	for k, v := range m {
		out = append(out, fmt.Sprint(dstream.KV[string, int]{Key: k, Value: v}))
	}
	sort.Strings(out)
	return out
}

func pair(w string) dstream.KV[string, int] { return dstream.KV[string, int]{Key: w, Value: len(w)} }

func refCases() []refCase {
	sum := func(a, b int) int { return a + b }
	return []refCase{
		{"map", func(h *dstreamtest.Harness, in *dstream.DStream[string]) func(int) []string {
			return collect(h, dstream.Map(in, strings.ToUpper))
		}, func(b [][]string, i int) []string {
			var out []string
			for _, l := range b[i] {
				out = append(out, strings.ToUpper(l))
			}
			return render(out)
		}},
		{"filter", func(h *dstreamtest.Harness, in *dstream.DStream[string]) func(int) []string {
			return collect(h, dstream.Filter(in, func(s string) bool { return len(s)%2 == 0 }))
		}, func(b [][]string, i int) []string {
			var out []string
			for _, l := range b[i] {
				if len(l)%2 == 0 {
					out = append(out, l)
				}
			}
			return render(out)
		}},
		{"flatMap", func(h *dstreamtest.Harness, in *dstream.DStream[string]) func(int) []string {
			return collect(h, dstream.FlatMap(in, strings.Fields))
		}, func(b [][]string, i int) []string { return render(words(b[i])) }},
		{"flatMapEmit", func(h *dstreamtest.Harness, in *dstream.DStream[string]) func(int) []string {
			return collect(h, dstream.FlatMapEmit(in, func(l string, emit func(string)) {
				for _, w := range strings.Fields(l) {
					emit(w)
				}
			}))
		}, func(b [][]string, i int) []string { return render(words(b[i])) }},
		{"mapPartitions", func(h *dstreamtest.Harness, in *dstream.DStream[string]) func(int) []string {
			return collect(h, dstream.MapPartitions(in, func(s iter.Seq[string]) iter.Seq[int] {
				return func(yield func(int) bool) {
					n := 0
					for l := range s {
						n += len(l)
					}
					yield(n)
				}
			}))
		}, nil}, // partition sums: checked by their total below
		{"union", func(h *dstreamtest.Harness, in *dstream.DStream[string]) func(int) []string {
			return collect(h, dstream.Union(in, dstream.Map(in, strings.ToUpper)))
		}, func(b [][]string, i int) []string {
			out := slices.Clone(b[i])
			for _, l := range b[i] {
				out = append(out, strings.ToUpper(l))
			}
			return render(out)
		}},
		{"repartition", func(h *dstreamtest.Harness, in *dstream.DStream[string]) func(int) []string {
			return collect(h, dstream.Repartition(in, 5))
		}, func(b [][]string, i int) []string { return render(b[i]) }},
		{"count", func(h *dstreamtest.Harness, in *dstream.DStream[string]) func(int) []string {
			return collect(h, dstream.Count(in))
		}, func(b [][]string, i int) []string { return []string{fmt.Sprint(len(b[i]))} }},
		{"reduce", func(h *dstreamtest.Harness, in *dstream.DStream[string]) func(int) []string {
			return collect(h, dstream.Reduce(dstream.Map(in, func(l string) int { return len(l) }), sum))
		}, func(b [][]string, i int) []string {
			if len(b[i]) == 0 {
				return []string{}
			}
			n := 0
			for _, l := range b[i] {
				n += len(l)
			}
			return []string{fmt.Sprint(n)}
		}},
		{"countByValue", func(h *dstreamtest.Harness, in *dstream.DStream[string]) func(int) []string {
			return collect(h, dstream.MapValues(dstream.CountByValue(dstream.FlatMap(in, strings.Fields)), func(n int64) int { return int(n) }))
		}, func(b [][]string, i int) []string { return kvs(countWords(words(b[i]))) }},
		{"transform", func(h *dstreamtest.Harness, in *dstream.DStream[string]) func(int) []string {
			return collect(h, dstream.Transform(in, func(_ time.Time, r *rdd.RDD[string]) *rdd.RDD[int] {
				return rdd.Map(r, func(l string) int { return len(l) })
			}))
		}, func(b [][]string, i int) []string {
			var out []int
			for _, l := range b[i] {
				out = append(out, len(l))
			}
			return render(out)
		}},
		{"reduceByKey", func(h *dstreamtest.Harness, in *dstream.DStream[string]) func(int) []string {
			return collect(h, dstream.ReduceByKey(dstream.Map(dstream.FlatMap(in, strings.Fields), func(w string) dstream.KV[string, int] {
				return dstream.KV[string, int]{Key: w, Value: 1}
			}), sum))
		}, func(b [][]string, i int) []string { return kvs(countWords(words(b[i]))) }},
		{"groupByKey", func(h *dstreamtest.Harness, in *dstream.DStream[string]) func(int) []string {
			return collect(h, dstream.MapValues(dstream.GroupByKey(dstream.Map(dstream.FlatMap(in, strings.Fields), pair)),
				func(vs []int) int {
					n := 0
					for _, v := range vs {
						n += v
					}
					return n
				}))
		}, func(b [][]string, i int) []string {
			m := countWords(words(b[i]))
			for k, n := range m {
				m[k] = n * len(k)
			}
			return kvs(m)
		}},
		{"combineByKey", func(h *dstreamtest.Harness, in *dstream.DStream[string]) func(int) []string {
			type acc = rdd.Pair[int, int] // count, sum of lengths
			return collect(h, dstream.MapValues(dstream.CombineByKey(dstream.Map(dstream.FlatMap(in, strings.Fields), pair), dstream.Combiner[int, acc]{
				Create:  func(v int) acc { return acc{First: 1, Second: v} },
				Merge:   func(a acc, v int) acc { return acc{First: a.First + 1, Second: a.Second + v} },
				Combine: func(a, b acc) acc { return acc{First: a.First + b.First, Second: a.Second + b.Second} },
			}), func(a acc) int { return a.First*1000 + a.Second }))
		}, func(b [][]string, i int) []string {
			m := countWords(words(b[i]))
			for k, n := range m {
				m[k] = n*1000 + n*len(k)
			}
			return kvs(m)
		}},
		{"reduceByKeyAndWindow", func(h *dstreamtest.Harness, in *dstream.DStream[string]) func(int) []string {
			return collect(h, dstream.ReduceByKeyAndWindow(dstream.Map(dstream.FlatMap(in, strings.Fields), func(w string) dstream.KV[string, int] {
				return dstream.KV[string, int]{Key: w, Value: 1}
			}), sum, 3*time.Second, time.Second))
		}, func(b [][]string, i int) []string {
			var all []string
			for j := max(0, i-2); j <= i; j++ {
				all = append(all, words(b[j])...)
			}
			return kvs(countWords(all))
		}},
		{"join", func(h *dstreamtest.Harness, in *dstream.DStream[string]) func(int) []string {
			a := dstream.Map(dstream.FlatMap(in, strings.Fields), pair)
			b := dstream.Map(in, func(l string) dstream.KV[string, int] {
				return dstream.KV[string, int]{Key: strings.Fields(l + " x")[0], Value: -1}
			})
			return collect(h, dstream.Join(a, b))
		}, func(b [][]string, i int) []string {
			var out []string
			for _, l := range b[i] {
				k := strings.Fields(l + " x")[0]
				for _, w := range words(b[i]) {
					if w == k {
						out = append(out, fmt.Sprint(dstream.KV[string, dstream.Pair[int, int]]{Key: k, Value: dstream.Pair[int, int]{First: len(w), Second: -1}}))
					}
				}
			}
			return render(out)
		}},
	}
}

func randomBatches(r *rand.Rand) [][]string {
	vocab := []string{"a", "bb", "ccc", "dd", "e", "fff", "gggg", "h"}
	out := make([][]string, refBatches)
	for i := range out {
		if r.IntN(6) == 0 {
			continue // an empty batch
		}
		for n := r.IntN(40); n > 0; n-- {
			var l []string
			for m := r.IntN(6); m > 0; m-- {
				l = append(l, vocab[r.IntN(len(vocab))])
			}
			out[i] = append(out[i], strings.Join(l, " "))
		}
	}
	return out
}

func TestOperatorsAgainstReference(t *testing.T) {
	for _, tc := range refCases() {
		for _, cfg := range []struct {
			master string
			parts  int
		}{{"local[1]", 1}, {"local[3]", 3}, {"local[2]", 7}} {
			t.Run(fmt.Sprintf("%s/%s/p%d", tc.name, cfg.master, cfg.parts), func(t *testing.T) {
				r := rand.New(rand.NewPCG(uint64(cfg.parts), uint64(len(tc.name))))
				batches := randomBatches(r)
				h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second, Master: cfg.master, Parallelism: cfg.parts})
				in := dstreamtest.Input(h, batches...)
				got := tc.build(h, in)
				var lines func(int) []string
				if tc.want == nil { // mapPartitions: per-partition sums add up to the batch's length
					lines = dstreamtest.Output(h, dstream.Map(in, func(l string) string { return l })).Batch
				}
				h.Run(refBatches)
				for i := 0; i < refBatches; i++ {
					g := got(i)
					if tc.want == nil {
						total, want := 0, 0
						for _, s := range g {
							var n int
							fmt.Sscan(s, &n)
							total += n
						}
						for _, l := range lines(i) {
							want += len(l)
						}
						if total != want {
							t.Fatalf("batch %d: partition sums add to %d, want %d", i, total, want)
						}
						continue
					}
					w := tc.want(batches, i)
					if len(g) == 0 && len(w) == 0 {
						continue
					}
					if !reflect.DeepEqual(g, w) {
						t.Fatalf("batch %d:\n got  %v\n want %v", i, g, w)
					}
				}
			})
		}
	}
}
