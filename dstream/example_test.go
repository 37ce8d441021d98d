package dstream_test

import (
	"fmt"
	"log"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/dstream/dstreamtest"
	"github.com/sluicehq/sluice/rdd"
)

// Pairs print as in Spark.
func ExamplePrint() {
	h, err := dstreamtest.Open(dstream.Config{BatchInterval: time.Second, Parallelism: 1})
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	words := dstreamtest.Input(h, []string{"to", "be", "or", "not", "to", "be"})
	pairs := dstream.Map(words, func(w string) dstream.KV[string, int] { return dstream.KVOf(w, 1) })
	dstream.Print(dstream.ReduceByKey(pairs, dstream.Sum[int]), 2)
	if err := h.Run(1); err != nil {
		log.Fatal(err)
	}
	fmt.Print(h.Stdout.String())
	// Output:
	// -------------------------------------------
	// Time: 2026-01-01T00:00:01.000Z
	// -------------------------------------------
	// (to,2)
	// (be,2)
	// ...
}

// A stream joined with static data in one call.
func ExampleParallelize() {
	h, err := dstreamtest.Open(dstream.Config{BatchInterval: time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	users := dstream.Parallelize(h.Ctx, []dstream.KV[string, string]{dstream.KVOf("u1", "ann"), dstream.KVOf("u2", "bob")})
	clicks := dstreamtest.Input(h, []dstream.KV[string, int]{dstream.KVOf("u2", 3)})
	out := dstreamtest.Output(h, dstream.Join(clicks, users.Stream()))
	if err := h.Run(1); err != nil {
		log.Fatal(err)
	}
	fmt.Println(out.Batch(0))
	// Output: [{u2 {3 bob}}]
}

// An accumulator counts the lines that did not parse.
func ExampleNewAccumulator() {
	h, err := dstreamtest.Open(dstream.Config{BatchInterval: time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	bad := dstream.NewAccumulator(h.Ctx, "bad-lines", dstream.Sum[int64])
	lines := dstreamtest.Input(h, []string{"1", "x", "2"}, []string{"y", "3"})
	nums := dstream.FlatMapWithTask(lines, func(task *dstream.Task, l string) []int {
		n, err := strconv.Atoi(strings.TrimSpace(l))
		if err != nil {
			bad.Add(task, 1)
			return nil
		}
		return []int{n}
	})
	dstream.ForeachRDD(dstream.Reduce(nums, dstream.Sum[int]), func(b *dstream.Batch, r *rdd.RDD[int]) error {
		sum, err := dstream.Collect(b, r)
		fmt.Println("sum", sum, "bad lines so far", bad.Value())
		return err
	})
	if err := h.Run(2); err != nil {
		log.Fatal(err)
	}
	// Output:
	// sum [3] bad lines so far 1
	// sum [3] bad lines so far 2
}

// A window without a slide moves every batch.
func ExampleWindow() {
	h, err := dstreamtest.Open(dstream.Config{BatchInterval: time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	in := dstreamtest.Input(h, []int{1}, []int{2}, []int{3})
	out := dstreamtest.Output(h, dstream.Reduce(dstream.Window(in, 2*time.Second), dstream.Sum[int]))
	if err := h.Run(3); err != nil {
		log.Fatal(err)
	}
	fmt.Println(out.Batch(0), out.Batch(1), out.Batch(2))
	// Output: [1] [3] [5]
}
