// Command statefulnetworkwordcount is Spark Streaming's
// StatefulNetworkWordCount example ported to Sluice: a running count of
// every word received from a TCP server since the job started, kept with
// MapWithState and started from an initial state.
//
//	nc -lk 9999 &
//	go run ./examples/statefulnetworkwordcount --addr=localhost:9999
package main

import (
	"flag"
	"strings"
	"time"

	"github.com/sluicehq/sluice/dstream"
)

var addr = flag.String("addr", "localhost:9999", "host:port of the text server")

func main() {
	dstream.Run(dstream.Config{AppName: "StatefulNetworkWordCount", BatchInterval: time.Second}, func(ctx *dstream.Context) error {
		lines := dstream.SocketTextStream(ctx, *addr)
		words := dstream.FlatMap(lines, strings.Fields)
		pairs := dstream.Map(words, func(w string) dstream.KV[string, int] { return dstream.KVOf(w, 1) })
		totals := dstream.MapWithState(pairs, dstream.StateSpec[string, int, int, dstream.KV[string, int]]{
			Name: "word-totals", // state is keyed by this name
			Func: func(word string, one dstream.Option[int], state *dstream.State[int]) (dstream.KV[string, int], bool) {
				sum := one.Value + state.Get()
				state.Update(sum)
				return dstream.KVOf(word, sum), true
			},
			Initial: []dstream.KV[string, int]{dstream.KVOf("hello", 1), dstream.KVOf("world", 1)},
		})
		dstream.Print(totals.DStream, 10)
		return nil
	})
}
