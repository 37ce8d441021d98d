// Command recoverablenetworkwordcount is Spark Streaming's
// RecoverableNetworkWordCount: word counts of a socket stream with a
// checkpoint (--checkpoint), a broadcast list of words to exclude and an
// accumulator of the words dropped; every batch's counts are appended to
// --output-file ("Counts at time ... [...]"), and saved as text files
// under --out.
package main

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/rdd"
)

var (
	addr       = flag.String("addr", "localhost:9999", "host:port of the text server")
	outputFile = flag.String("output-file", "", "file every batch's counts are appended to")
	out        = flag.String("out", "", "prefix of the output directories")
)

func main() {
	dstream.Run(dstream.Config{AppName: "RecoverableNetworkWordCount", BatchInterval: time.Second}, func(ctx *dstream.Context) error {
		if *outputFile == "" || *out == "" {
			return dstream.Usagef("--output-file and --out are required")
		}
		exclude, err := dstream.NewBroadcast(ctx, "wordExcludeList", func() ([]string, error) { return []string{"a", "b", "c"}, nil })
		if err != nil {
			return err
		}
		dropped := dstream.NewAccumulator(ctx, "droppedWordsCounter", dstream.Sum[int64])
		lines := dstream.SocketTextStream(ctx, *addr)
		words := dstream.FlatMap(lines, strings.Fields)
		kept := dstream.FlatMapWithTask(words, func(task *dstream.Task, w string) []dstream.KV[string, int] {
			if slices.Contains(exclude.Value(), w) {
				dropped.Add(task, 1)
				return nil
			}
			return []dstream.KV[string, int]{dstream.KVOf(w, 1)}
		})
		counts := dstream.ReduceByKey(kept, dstream.Sum[int])
		dstream.SaveAsTextFiles(counts, *out, "")
		dstream.ForeachRDD(counts, func(b *dstream.Batch, r *rdd.RDD[dstream.KV[string, int]]) error {
			all, err := dstream.Collect(b, r)
			if err != nil {
				return err
			}
			sort.Slice(all, func(i, j int) bool { return all[i].Key < all[j].Key })
			parts := make([]string, len(all))
			for i, kv := range all {
				parts[i] = fmt.Sprintf("(%s,%d)", kv.Key, kv.Value)
			}
			output := fmt.Sprintf("Counts at time %d [%s]", b.Time().UnixMilli(), strings.Join(parts, ", "))
			fmt.Println(output)
			fmt.Printf("Dropped %d word(s) totally\n", dropped.Value())
			f, err := os.OpenFile(*outputFile, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintln(f, output); err != nil {
				f.Close()
				return err
			}
			return f.Close()
		})
		return nil
	})
}
