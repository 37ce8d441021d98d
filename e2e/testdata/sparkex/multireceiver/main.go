// Command multireceiver is the Spark Streaming guide's "level of
// parallelism in data receiving": several socket streams united into one
// (streamingContext.union(streams)), counted per batch and saved.
package main

import (
	"flag"
	"strings"
	"time"

	"github.com/sluicehq/sluice/dstream"
)

var (
	addrs = flag.String("addrs", "", "text servers, host:port,...")
	out   = flag.String("out", "", "prefix of the output directories")
)

func main() {
	dstream.Run(dstream.Config{AppName: "MultiReceiver", BatchInterval: time.Second}, func(ctx *dstream.Context) error {
		if *addrs == "" || *out == "" {
			return dstream.Usagef("--addrs and --out are required")
		}
		var streams []*dstream.DStream[string]
		for _, a := range strings.Split(*addrs, ",") {
			streams = append(streams, dstream.SocketTextStream(ctx, a))
		}
		words := dstream.FlatMap(dstream.Union(streams...), strings.Fields)
		counts := dstream.CountByValue(dstream.Repartition(words, 3))
		dstream.SaveAsTextFiles(counts, *out, "")
		return nil
	})
}
