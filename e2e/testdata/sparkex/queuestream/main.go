// Command queuestream is Spark Streaming's QueueStream: a queue of RDDs of
// 1..1000 feeds (x % 10, 1) pairs reduced by key; the job stops itself once
// the queue is drained.
package main

import (
	"flag"
	"time"

	"github.com/sluicehq/sluice/dstream"
)

var (
	rounds = flag.Int("rounds", 5, "how many RDDs of 1..1000 to push, one a second")
	out    = flag.String("out", "", "prefix of the output directories")
)

func main() {
	dstream.Run(dstream.Config{AppName: "QueueStream", BatchInterval: time.Second}, func(ctx *dstream.Context) error {
		if *out == "" {
			return dstream.Usagef("--out is required")
		}
		q := dstream.NewQueue[int](ctx)
		mapped := dstream.Map(q.Stream(), func(x int) dstream.KV[int, int] { return dstream.KVOf(x%10, 1) })
		reduced := dstream.ReduceByKey(mapped, dstream.Sum[int])
		dstream.Print(reduced, 10)
		dstream.SaveAsTextFiles(reduced, *out, "")
		if dstream.IsDriver() {
			go func() { // Spark's loop: push an RDD a second, then stop
				for i := 0; i < *rounds; i++ {
					vals := make([]int, 1000)
					for j := range vals {
						vals[j] = j + 1
					}
					q.Push(vals...)
					time.Sleep(time.Second)
				}
				for q.Len() > 0 {
					time.Sleep(100 * time.Millisecond)
				}
				time.Sleep(1500 * time.Millisecond) // the batch that took the last RDD
				ctx.Stop()
			}()
		}
		return nil
	})
}
