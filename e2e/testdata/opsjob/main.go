// Command opsjob runs, over a deterministic rate source, the operators of
// the README's "What works today" that no other process test runs in a
// cluster: filter, mapPartitions, reduce, groupByKey, combineByKey,
// mapValues, cogroup, rightOuterJoin, fullOuterJoin, transformWith,
// reduceByWindow, groupByKeyAndWindow, countByWindow and a shuffle with
// dstream.Partitions. Every batch prints one line per operator, sorted:
//
//	batch 12:00:01: groupByKey w0=8 w1=7 ...
//
// so that a cluster run can be compared with a local one line by line
// (e2e/readme_claims_test.go).
package main

import (
	"flag"
	"fmt"
	"iter"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/rdd"
)

var rate = flag.Int64("rate", 50, "records per second")

type kvs = dstream.KV[string, int64]

func main() {
	dstream.Run(dstream.Config{AppName: "opsjob", BatchInterval: time.Second}, func(ctx *dstream.Context) error {
		nums := dstream.Rate(ctx, *rate)
		words := dstream.Map(nums, func(i int64) string { return fmt.Sprintf("w%d", i%7) })
		pairs := dstream.Map(words, func(w string) kvs { return dstream.KVOf(w, int64(1)) })
		pairsB := dstream.Map(nums, func(i int64) kvs { return dstream.KVOf(fmt.Sprintf("w%d", i%5+3), i) })
		sum := dstream.Sum[int64]
		counts := dstream.ReduceByKey(pairs, sum)
		sumsB := dstream.ReduceByKey(pairsB, sum)

		show("filter", dstream.Map(dstream.Count(dstream.Filter(nums, func(i int64) bool { return i%2 == 0 })), itoa))
		show("mapPartitions", dstream.Map(dstream.Reduce(dstream.MapPartitions(nums, func(in iter.Seq[int64]) iter.Seq[int64] {
			return func(yield func(int64) bool) {
				for v := range in {
					if !yield(2 * v) {
						return
					}
				}
			}
		}), sum), itoa))
		show("reduce", dstream.Map(dstream.Reduce(nums, sum), itoa))
		show("groupByKey", dstream.Map(dstream.GroupByKey(pairs), func(kv dstream.KV[string, []int64]) string {
			return fmt.Sprintf("%s=%d", kv.Key, len(kv.Value))
		}))
		show("combineByKey", dstream.Map(dstream.CombineByKey(pairsB, dstream.Combiner[int64, [2]int64]{
			Create:  func(v int64) [2]int64 { return [2]int64{v, 1} },
			Merge:   func(c [2]int64, v int64) [2]int64 { return [2]int64{c[0] + v, c[1] + 1} },
			Combine: func(a, b [2]int64) [2]int64 { return [2]int64{a[0] + b[0], a[1] + b[1]} },
		}), func(kv dstream.KV[string, [2]int64]) string {
			return fmt.Sprintf("%s=%d/%d", kv.Key, kv.Value[0], kv.Value[1])
		}))
		show("mapValues", dstream.Map(dstream.MapValues(counts, func(v int64) int64 { return 10 * v }), kvString))
		show("coGroup", dstream.Map(dstream.CoGroup(pairs, pairsB), func(kv dstream.KV[string, dstream.Pair[[]int64, []int64]]) string {
			return fmt.Sprintf("%s=%d/%d", kv.Key, len(kv.Value.First), len(kv.Value.Second))
		}))
		show("rightOuterJoin", dstream.Map(dstream.RightOuterJoin(counts, sumsB), func(kv dstream.KV[string, dstream.Pair[dstream.Option[int64], int64]]) string {
			return fmt.Sprintf("%s=%s/%d", kv.Key, opt(kv.Value.First), kv.Value.Second)
		}))
		show("fullOuterJoin", dstream.Map(dstream.FullOuterJoin(counts, sumsB), func(kv dstream.KV[string, dstream.Pair[dstream.Option[int64], dstream.Option[int64]]]) string {
			return fmt.Sprintf("%s=%s/%s", kv.Key, opt(kv.Value.First), opt(kv.Value.Second))
		}))
		show("transformWith", dstream.TransformWith(words, nums, func(_ time.Time, a *rdd.RDD[string], b *rdd.RDD[int64]) *rdd.RDD[string] {
			return rdd.Union(a, rdd.Map(b, func(i int64) string { return fmt.Sprintf("n%d", i%3) }))
		}))
		show("reduceByWindow", dstream.Map(dstream.ReduceByWindow(nums, sum, 3*time.Second, time.Second), itoa))
		show("groupByKeyAndWindow", dstream.Map(dstream.GroupByKeyAndWindow(pairs, 3*time.Second, time.Second), func(kv dstream.KV[string, []int64]) string {
			return fmt.Sprintf("%s=%d", kv.Key, len(kv.Value))
		}))
		show("countByWindow", dstream.Map(dstream.CountByWindow(nums, 2*time.Second, time.Second), itoa))
		show("partitions3", dstream.Map(dstream.ReduceByKey(pairs, sum, dstream.Partitions(3)), kvString))
		return nil
	})
}

func itoa(i int64) string { return fmt.Sprint(i) }

func kvString(kv kvs) string { return fmt.Sprintf("%s=%d", kv.Key, kv.Value) }

func opt(o dstream.Option[int64]) string {
	if !o.Valid {
		return "-"
	}
	return fmt.Sprint(o.Value)
}

// show prints the stream's elements of every batch on one line, sorted,
// with repeated elements counted.
func show(name string, s *dstream.DStream[string]) {
	dstream.ForeachRDD(s, func(b *dstream.Batch, r *rdd.RDD[string]) error {
		all, err := dstream.Collect(b, r)
		if err != nil {
			return err
		}
		n := map[string]int{}
		for _, v := range all {
			n[v]++
		}
		var items []string
		for v, c := range n {
			if c > 1 {
				v = fmt.Sprintf("%s*%d", v, c)
			}
			items = append(items, v)
		}
		sort.Strings(items)
		fmt.Fprintf(os.Stdout, "batch %s: %s %s\n", b.Time().UTC().Format(time.TimeOnly), name, strings.Join(items, " "))
		return nil
	})
}
