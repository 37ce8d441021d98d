// Command networkwordcount is Spark Streaming's NetworkWordCount example
// ported to Sluice: it counts the words of the text a TCP server sends, per
// one-second batch, and prints the counts.
//
//	nc -lk 9999 &
//	go run ./examples/networkwordcount --addr=localhost:9999
package main

import (
	"flag"
	"strings"
	"time"

	"github.com/sluicehq/sluice/dstream"
)

var addr = flag.String("addr", "localhost:9999", "host:port of the text server")

func main() {
	dstream.Run(dstream.Config{AppName: "NetworkWordCount", BatchInterval: time.Second}, func(ctx *dstream.Context) error {
		lines := dstream.SocketTextStream(ctx, *addr)
		words := dstream.FlatMap(lines, strings.Fields)
		pairs := dstream.Map(words, func(w string) dstream.KV[string, int] { return dstream.KVOf(w, 1) })
		wordCounts := dstream.ReduceByKey(pairs, dstream.Sum[int])
		dstream.Print(wordCounts, 10)
		return nil // Run runs the job until SIGINT, SIGTERM or ctx.Stop()
	})
}
