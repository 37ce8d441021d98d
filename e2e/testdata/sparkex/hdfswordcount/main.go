// Command hdfswordcount is Spark Streaming's HdfsWordCount: word counts of
// the new files of a directory, saved as text files.
package main

import (
	"flag"
	"strings"
	"time"

	"github.com/sluicehq/sluice/dstream"
)

var (
	dir = flag.String("dir", "", "directory to watch for new files")
	out = flag.String("out", "", "prefix of the output directories")
)

func main() {
	dstream.Run(dstream.Config{AppName: "HdfsWordCount", BatchInterval: 2 * time.Second}, func(ctx *dstream.Context) error {
		if *dir == "" || *out == "" {
			return dstream.Usagef("--dir and --out are required")
		}
		lines := dstream.TextFileStream(ctx, *dir)
		words := dstream.FlatMap(lines, strings.Fields)
		wordCounts := dstream.ReduceByKey(dstream.Map(words, func(w string) dstream.KV[string, int] { return dstream.KVOf(w, 1) }), dstream.Sum[int])
		dstream.Print(wordCounts, 10)
		dstream.SaveAsTextFiles(wordCounts, *out, "")
		return nil
	})
}
