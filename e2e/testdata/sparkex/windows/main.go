// Command windows ports Spark Streaming's windowed operations
// (WindowedNetworkWordCount-style reduceByKeyAndWindow with and without an
// inverse function, countByWindow, window + transform, countByValueAndWindow)
// and the join and union of two streams, over two queues whose batches are
// known: every batch's input is saved too (in-a, in-b), so that the test
// computes each window from what each batch held.
package main

import (
	"flag"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/rdd"
)

var (
	out     = flag.String("out", "", "directory of the outputs")
	batches = flag.Int("batches", 8, "batches of input to push")
)

// BatchA and BatchB are the words of the i-th batch of each queue (the test
// has the same functions).
func BatchA(i int) []string {
	var w []string
	for j := 0; j < 4+i; j++ {
		w = append(w, "w"+strconv.Itoa((i*j+j)%5))
	}
	return w
}

func BatchB(i int) []string {
	var w []string
	for j := 0; j < 2+i%3; j++ {
		w = append(w, "w"+strconv.Itoa((i+j)%4))
	}
	return w
}

func main() {
	dstream.Run(dstream.Config{AppName: "Windows", BatchInterval: time.Second}, func(ctx *dstream.Context) error {
		if *out == "" {
			return dstream.Usagef("--out is required")
		}
		qa := dstream.NewQueue[string](ctx)
		qb := dstream.NewQueue[string](ctx)
		if dstream.IsDriver() {
			for i := 0; i < *batches; i++ {
				qa.Push(BatchA(i)...)
				qb.Push(BatchB(i)...)
			}
		}
		a, b := qa.Stream(), qb.Stream()
		one := func(w string) dstream.KV[string, int] { return dstream.KVOf(w, 1) }
		pa, pb := dstream.Map(a, one), dstream.Map(b, one)
		sum := dstream.Sum[int]
		minus := func(x, y int) int { return x - y }
		save := func(name string, s *dstream.DStream[dstream.KV[string, int]]) {
			dstream.SaveAsTextFiles(s, *out+"/"+name, "")
		}
		dstream.SaveAsTextFiles(a, *out+"/in-a", "")
		dstream.SaveAsTextFiles(b, *out+"/in-b", "")
		save("rbkw-3-1", dstream.ReduceByKeyAndWindow(pa, sum, 3*time.Second, time.Second))
		save("rbkw-4-2", dstream.ReduceByKeyAndWindow(pa, sum, 4*time.Second, 2*time.Second))
		save("inv-3-1", dstream.ReduceByKeyAndWindowInv(pa, "inv31", sum, minus, 3*time.Second, time.Second,
			func(kv dstream.KV[string, int]) bool { return kv.Value > 0 }))
		save("inv-4-2", dstream.ReduceByKeyAndWindowInv(pa, "inv42", sum, minus, 4*time.Second, 2*time.Second, nil))
		dstream.SaveAsTextFiles(dstream.CountByWindow(a, 3*time.Second, time.Second), *out+"/cbw-3-1", "")
		save("wintrans-3-1", dstream.Transform(dstream.Window(pa, 3*time.Second), func(_ time.Time, r *rdd.RDD[dstream.KV[string, int]]) *rdd.RDD[dstream.KV[string, int]] {
			return rdd.ReduceByKey(r, sum, 2)
		}))
		dstream.SaveAsTextFiles(dstream.CountByValueAndWindow(a, 4*time.Second, 2*time.Second), *out+"/cbvw-4-2", "")
		ra, rb := dstream.ReduceByKey(pa, sum), dstream.ReduceByKey(pb, sum)
		dstream.SaveAsTextFiles(dstream.Join(ra, rb), *out+"/join", "")
		dstream.SaveAsTextFiles(dstream.Join(
			dstream.ReduceByKeyAndWindow(pa, sum, 3*time.Second, time.Second),
			dstream.ReduceByKeyAndWindow(pb, sum, 3*time.Second, time.Second)), *out+"/winjoin-3-1", "")
		dstream.SaveAsTextFiles(dstream.CountByValue(dstream.Union(a, b)), *out+"/union", "")
		return nil
	})
}
