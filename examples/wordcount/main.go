// Command wordcount counts the words of every batch and prints the most
// frequent ones. With no flags it reads an embedded demo source (lines of
// the standard benchmark workload generated in the job), so it runs with
// nothing installed:
//
//	go run ./examples/wordcount
//	go run ./examples/wordcount --source=socket --addr=localhost:9999   # nc -lk 9999
//	go run ./examples/wordcount --source=dir --dir=/tmp/in --out=/tmp/counts
package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/internal/wordgen"
	"github.com/sluicehq/sluice/rdd"
)

var (
	source = flag.String("source", "demo", "input: demo (generated lines), socket or dir")
	rate   = flag.Int64("lines-per-second", 20000, "demo source: lines per second (>= 0)")
	addr   = flag.String("addr", "localhost:9999", "socket source: host:port of a text server")
	dir    = flag.String("dir", "", "dir source: directory to watch for new files")
	out    = flag.String("out", "", "also save every batch's counts as text files under this prefix")
	top    = flag.Int("top", 10, "how many of the most frequent words to print per batch (>= 0)")
)

func main() {
	dstream.Run(dstream.Config{AppName: "wordcount", BatchInterval: time.Second}, build)
}

func build(ctx *dstream.Context) error {
	var lines *dstream.DStream[string]
	switch *source {
	case "demo":
		if *rate < 0 {
			return dstream.Usagef("--lines-per-second=%d: must be >= 0", *rate)
		}
		vocab := wordgen.Vocabulary(wordgen.VocabularySize)
		lines = dstream.Map(dstream.Rate(ctx, *rate), func(i int64) string { return wordgen.LineAt(vocab, i) })
	case "socket":
		lines = dstream.SocketTextStream(ctx, *addr)
	case "dir":
		if *dir == "" {
			return dstream.Usagef("--source=dir needs --dir=DIRECTORY")
		}
		lines = dstream.TextFileStream(ctx, *dir)
	default:
		return dstream.Usagef("--source=%q: use demo, socket or dir", *source)
	}
	if *top < 0 {
		return dstream.Usagef("--top=%d: must be >= 0", *top)
	}

	words := dstream.FlatMap(lines, strings.Fields)
	pairs := dstream.Map(words, func(w string) dstream.KV[string, int64] { return dstream.KVOf(w, int64(1)) })
	counts := dstream.ReduceByKey(pairs, dstream.Sum[int64])

	n := *top
	dstream.ForeachRDD(counts, func(b *dstream.Batch, r *rdd.RDD[dstream.KV[string, int64]]) error {
		all, err := dstream.Collect(b, r)
		if err != nil {
			return err
		}
		sort.Slice(all, func(i, j int) bool {
			if all[i].Value != all[j].Value {
				return all[i].Value > all[j].Value
			}
			return all[i].Key < all[j].Key
		})
		var total int64
		for _, kv := range all {
			total += kv.Value
		}
		var sb strings.Builder
		fmt.Fprintf(&sb, "batch %s: %d words, %d distinct; top %d:", b.Time().UTC().Format(time.TimeOnly), total, len(all), min(n, len(all)))
		for _, kv := range all[:min(n, len(all))] {
			fmt.Fprintf(&sb, " %s=%d", kv.Key, kv.Value)
		}
		fmt.Fprintln(os.Stdout, sb.String())
		return nil
	})
	if *out != "" {
		dstream.SaveAsTextFiles(dstream.Map(counts, func(kv dstream.KV[string, int64]) string {
			return fmt.Sprintf("%s\t%d", kv.Key, kv.Value)
		}), *out, "")
	}
	return nil
}
