// Command sqlnetworkwordcount is Spark Streaming's SqlNetworkWordCount
// without SQL: every batch's words are collected in a ForeachRDD function,
// counted ("select word, count(*) as total from words group by word") and
// written as a table file per batch under --out-dir.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/rdd"
)

var (
	addr    = flag.String("addr", "localhost:9999", "host:port of the text server")
	outDir  = flag.String("out-dir", "", "directory of the per-batch table files")
	sinkDir = flag.String("sink-dir", "", "directory ForeachPartition writes each partition's words to (on the executors)")
)

func main() {
	dstream.Run(dstream.Config{AppName: "SqlNetworkWordCount", BatchInterval: time.Second}, func(ctx *dstream.Context) error {
		if *outDir == "" {
			return dstream.Usagef("--out-dir is required")
		}
		if dstream.IsDriver() {
			if err := os.MkdirAll(*outDir, 0o755); err != nil {
				return err
			}
		}
		lines := dstream.SocketTextStream(ctx, *addr)
		words := dstream.FlatMap(lines, strings.Fields)
		dstream.ForeachRDD(words, func(b *dstream.Batch, r *rdd.RDD[string]) error {
			all, err := dstream.Collect(b, r)
			if err != nil {
				return err
			}
			total := map[string]int{}
			for _, w := range all {
				total[w]++
			}
			keys := make([]string, 0, len(total))
			for w := range total {
				keys = append(keys, w)
			}
			sort.Strings(keys)
			var sb strings.Builder
			fmt.Fprintf(&sb, "========= %d =========\n", b.Time().UnixMilli())
			for _, w := range keys {
				fmt.Fprintf(&sb, "%s\t%d\n", w, total[w])
			}
			fmt.Print(sb.String())
			name := filepath.Join(*outDir, fmt.Sprintf("table-%d.txt", b.Time().UnixMilli()))
			return os.WriteFile(name, []byte(sb.String()), 0o644)
		})
		if *sinkDir != "" { // foreachRDD { rdd.foreachPartition { ... } }: a writer per partition
			dstream.ForeachPartition(words, dstream.Sink[string, *os.File]{
				Open: func(p dstream.PartitionInfo) (*os.File, error) {
					return os.Create(filepath.Join(*sinkDir, fmt.Sprintf("%d-%d-%d.txt", p.BatchTime.UnixMilli(), p.Partition, p.Attempt)))
				},
				Write: func(f *os.File, w string) error {
					_, err := fmt.Fprintln(f, w)
					return err
				},
				Close: func(f *os.File, err error) error { return f.Close() },
			})
		}
		return nil
	})
}
