// Command faultjob is the job of the fault campaign (e2e/fault_campaign_test.go):
// lines "KEY SEQ" from a directory the job's driver reads (files there at
// start included), with known content (seqjob.Feed), and three committing
// sinks under --out:
//
//	lines-<batch>/   every line of the batch
//	state-<batch>/   "KEY COUNT SUM" per key, UpdateStateByKey "perkey"
//	                 (only with --state, the default)
//	window-<batch>/  "KEY COUNT SUM" of the lines of the last --window,
//	                 every --slide (ReduceByKeyAndWindow: a shuffle per
//	                 batch, re-read or recomputed by the window)
//
// so that loss, duplication, a wrong window or wrong state after a fault
// are visible in the files.
package main

import (
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/internal/seqjob"
)

type cs = dstream.Pair[int64, int64] // count, sum of sequence numbers

func main() {
	ctx, err := dstream.New(dstream.Config{AppName: "faultjob", BatchInterval: time.Second, StopTimeout: 10 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	fl := ctx.Flags()
	dir := fl.String("dir", "", "input directory")
	out := fl.String("out", "", "output directory")
	state := fl.Bool("state", true, "keep per-key state (UpdateStateByKey) too")
	window := fl.Duration("window", 4*time.Second, "window length")
	slide := fl.Duration("slide", 2*time.Second, "window slide")
	if err := ctx.ParseFlags(os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, dstream.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "faultjob:", err)
		os.Exit(2)
	}
	lines := dstream.TextFileStream(ctx, *dir, dstream.IncludeExisting())
	if *state {
		seqjob.Build(lines, *out)
	} else {
		dstream.SaveAsTextFiles(lines, filepath.Join(*out, "lines"), "")
	}
	kv := dstream.Map(lines, func(l string) dstream.KV[string, cs] {
		k, s, _ := strings.Cut(l, " ")
		n, _ := strconv.ParseInt(s, 10, 64)
		return dstream.KV[string, cs]{Key: k, Value: cs{First: 1, Second: n}}
	})
	w := dstream.ReduceByKeyAndWindow(kv, func(a, b cs) cs { return cs{First: a.First + b.First, Second: a.Second + b.Second} }, *window, *slide)
	dstream.SaveAsTextFiles(dstream.Map(w, func(e dstream.KV[string, cs]) string {
		return fmt.Sprintf("%s %d %d", e.Key, e.Value.First, e.Value.Second)
	}), filepath.Join(*out, "window"), "")
	dstream.Main(ctx)
}
