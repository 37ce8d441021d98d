// Command networkwordcount is Spark Streaming's NetworkWordCount, ported
// from the README (the README's port, plus --out to save every batch's
// counts as text files).
package main

import (
	"flag"
	"strings"
	"time"

	"github.com/sluicehq/sluice/dstream"
)

var (
	addr = flag.String("addr", "localhost:9999", "host:port of the text server")
	out  = flag.String("out", "", "prefix of the output directories (empty: print only)")
)

func main() {
	dstream.Run(dstream.Config{AppName: "NetworkWordCount", BatchInterval: time.Second}, func(ctx *dstream.Context) error {
		lines := dstream.SocketTextStream(ctx, *addr)
		words := dstream.FlatMap(lines, strings.Fields)
		pairs := dstream.Map(words, func(w string) dstream.KV[string, int] { return dstream.KVOf(w, 1) })
		wordCounts := dstream.ReduceByKey(pairs, dstream.Sum[int])
		dstream.Print(wordCounts, 10)
		if *out != "" {
			dstream.SaveAsTextFiles(wordCounts, *out, "")
		}
		return nil
	})
}
