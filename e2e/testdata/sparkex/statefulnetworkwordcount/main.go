// Command statefulnetworkwordcount is Spark Streaming's
// StatefulNetworkWordCount (mapWithState with an initial state), with the
// mapped stream and the state snapshots saved as text files.
package main

import (
	"flag"
	"strings"
	"time"

	"github.com/sluicehq/sluice/dstream"
)

var (
	addr = flag.String("addr", "localhost:9999", "host:port of the text server")
	out  = flag.String("out", "", "directory of the outputs")
)

func main() {
	dstream.Run(dstream.Config{AppName: "StatefulNetworkWordCount", BatchInterval: time.Second}, func(ctx *dstream.Context) error {
		lines := dstream.SocketTextStream(ctx, *addr)
		words := dstream.FlatMap(lines, strings.Fields)
		pairs := dstream.Map(words, func(w string) dstream.KV[string, int] { return dstream.KVOf(w, 1) })
		totals := dstream.MapWithState(pairs, dstream.StateSpec[string, int, int, dstream.KV[string, int]]{
			Name: "word-totals",
			Func: func(word string, one dstream.Option[int], state *dstream.State[int]) (dstream.KV[string, int], bool) {
				sum := one.Value + state.Get()
				state.Update(sum)
				return dstream.KVOf(word, sum), true
			},
			Initial: []dstream.KV[string, int]{dstream.KVOf("hello", 1), dstream.KVOf("world", 1)},
		})
		dstream.Print(totals.DStream, 10)
		dstream.SaveAsTextFiles(totals.DStream, *out+"/mapped", "")
		dstream.SaveAsTextFiles(totals.Snapshots(), *out+"/state", "")
		return nil
	})
}
