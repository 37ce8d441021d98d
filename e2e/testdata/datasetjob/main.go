// Command datasetjob joins a rate stream with two static datasets, one
// from dstream.Parallelize and one from dstream.TextFile, as the README's
// "What works today" describes ("Static datasets ... joined, cogrouped or
// united with a stream of any slide in one call"). It prints, per batch,
// how many records of each key met which user name and block flag:
//
//	batch 12:00:01: u0/ann/false=8 u1/bob/false=8 u2/cy/true=7
//
// e2e/readme_claims_test.go runs it locally and in a cluster.
package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/rdd"
)

var (
	table = flag.String("blocklist", "", "text file: one blocked user id a line (absolute path)")
	rate  = flag.Int64("rate", 30, "records per second")
	// --derived collects an RDD built inside the ForeachRDD function, which
	// the README says fails a batch in a cluster "with an error saying so".
	derived = flag.Bool("derived", false, "collect an RDD derived inside the output function")
)

func main() {
	dstream.Run(dstream.Config{AppName: "datasetjob", BatchInterval: time.Second}, func(ctx *dstream.Context) error {
		if *table == "" {
			return dstream.Usagef("--blocklist is required")
		}
		blocked, err := dstream.TextFile(ctx, *table)
		if err != nil {
			return err
		}
		users := dstream.Parallelize(ctx, []dstream.KV[string, string]{
			dstream.KVOf("u0", "ann"), dstream.KVOf("u1", "bob"), dstream.KVOf("u2", "cy"),
		})
		pairs := dstream.Map(dstream.Rate(ctx, *rate), func(i int64) dstream.KV[string, int] {
			return dstream.KVOf(fmt.Sprintf("u%d", i%4), 1)
		})
		named := dstream.Join(pairs, users.Stream())
		flags := dstream.Map(blocked.Stream(), func(id string) dstream.KV[string, bool] { return dstream.KVOf(id, true) })
		flagged := dstream.LeftOuterJoin(named, flags)
		rows := dstream.Map(flagged, func(kv dstream.KV[string, dstream.Pair[dstream.Pair[int, string], dstream.Option[bool]]]) string {
			return fmt.Sprintf("%s/%s/%v", kv.Key, kv.Value.First.Second, kv.Value.Second.Valid && kv.Value.Second.Value)
		})
		counts := dstream.CountByValue(rows)
		dstream.ForeachRDD(counts, func(b *dstream.Batch, r *rdd.RDD[dstream.KV[string, int64]]) error {
			if *derived {
				r = rdd.Map(r, func(kv dstream.KV[string, int64]) dstream.KV[string, int64] { return kv })
			}
			all, err := dstream.Collect(b, r)
			if err != nil {
				return err
			}
			sort.Slice(all, func(i, j int) bool { return all[i].Key < all[j].Key })
			var sb strings.Builder
			fmt.Fprintf(&sb, "batch %s:", b.Time().UTC().Format(time.TimeOnly))
			for _, kv := range all {
				fmt.Fprintf(&sb, " %s=%d", kv.Key, kv.Value)
			}
			fmt.Fprintln(os.Stdout, sb.String())
			return nil
		})
		return nil
	})
}
