// Command statejob is a stateful test job: running totals per key
// (UpdateStateByKey) and a 3 s incremental window (ReduceByKeyAndWindowInv)
// over a rate source, printed once per batch in a deterministic form.
package main

import (
	"fmt"
	"log"
	"sort"
	"strings"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/rdd"
)

type kv = dstream.KV[string, int64]

func main() {
	ctx, err := dstream.New(dstream.Config{AppName: "statejob", BatchInterval: time.Second})
	if err != nil {
		log.Fatal(err)
	}
	rate := ctx.Flags().Int64("rate", 500, "records per second")
	if err := ctx.ParseFlags(osArgs(), osStderr()); err != nil {
		exit(err)
	}
	pairs := dstream.Map(dstream.Rate(ctx, *rate), func(i int64) kv { return kv{Key: fmt.Sprint("k", i%7), Value: i} })
	sum := func(a, b int64) int64 { return a + b }
	totals := dstream.UpdateStateByKey(pairs, "totals", func(vs []int64, s int64, _ bool) (int64, bool) {
		for _, v := range vs {
			s += v
		}
		return s, true
	})
	window := dstream.ReduceByKeyAndWindowInv(pairs, "window", sum, func(a, b int64) int64 { return a - b }, 3*time.Second, time.Second, nil)
	show := func(name string) func(*dstream.Batch, *rdd.RDD[kv]) error {
		return func(b *dstream.Batch, r *rdd.RDD[kv]) error {
			all, err := dstream.Collect(b, r)
			if err != nil {
				return err
			}
			sort.Slice(all, func(i, j int) bool { return all[i].Key < all[j].Key })
			var sb strings.Builder
			for _, e := range all {
				fmt.Fprintf(&sb, " %s=%d", e.Key, e.Value)
			}
			fmt.Printf("batch %s: %s%s\n", b.Time().UTC().Format(time.TimeOnly), name, sb.String())
			return nil
		}
	}
	// Event time: record i happened at i*2ms, up to 1.2 s out of order.
	events := dstream.ReduceByKeyAndEventWindow(pairs, dstream.EventTimeSpec[string, int64]{
		Name: "events",
		Timestamp: func(e kv) time.Time {
			return time.Unix(0, 0).Add(time.Duration(e.Value)*2*time.Millisecond - time.Duration(e.Value%13)*100*time.Millisecond)
		},
		Window: 2 * time.Second, AllowedLateness: 500 * time.Millisecond,
		Reduce: sum,
	})
	dstream.ForeachRDD(totals, show("totals"))
	dstream.ForeachRDD(window, show("window"))
	dstream.ForeachRDD(dstream.Map(events.DStream, func(w dstream.EventWindow[string, int64]) kv {
		return kv{Key: fmt.Sprintf("%s@%d", w.Key, w.Start.Unix()), Value: w.Value}
	}), show("events"))
	dstream.Main(ctx)
}
