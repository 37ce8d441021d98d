// Command queuestreammain is Spark Streaming's QueueStream written in the
// other style the README names: dstream.New, the graph built in main, and
// dstream.Main(ctx) (Spark's ssc.start(); ssc.awaitTermination()). The
// output prefix comes from the environment, since flags are parsed by Main
// after the graph is built.
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/sluicehq/sluice/dstream"
)

func main() {
	ctx, err := dstream.New(dstream.Config{AppName: "QueueStreamMain", BatchInterval: time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out := os.Getenv("QUEUESTREAM_OUT")
	q := dstream.NewQueue[int](ctx)
	mapped := dstream.Map(q.Stream(), func(x int) dstream.KV[int, int] { return dstream.KVOf(x%10, 1) })
	reduced := dstream.ReduceByKey(mapped, dstream.Sum[int])
	dstream.Print(reduced, 10)
	dstream.SaveAsTextFiles(reduced, out, "")
	if dstream.IsDriver() {
		for range 3 {
			vals := make([]int, 1000)
			for j := range vals {
				vals[j] = j + 1
			}
			q.Push(vals...)
		}
		go func() {
			for q.Len() > 0 {
				time.Sleep(100 * time.Millisecond)
			}
			time.Sleep(1500 * time.Millisecond)
			ctx.Stop()
		}()
	}
	dstream.Main(ctx)
}
