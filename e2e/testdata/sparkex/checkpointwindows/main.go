// Command checkpointwindows is the windowed and stateful examples over a
// directory source with a checkpoint (--checkpoint), for restarts: every
// batch's input is saved (in), with reduceByKeyAndWindow with and without
// an inverse function, countByWindow, updateStateByKey and mapWithState
// (StatefulNetworkWordCount's function and initial state).
package main

import (
	"flag"
	"strings"
	"time"

	"github.com/sluicehq/sluice/dstream"
)

var (
	dir = flag.String("dir", "", "directory to watch for new files")
	out = flag.String("out", "", "directory of the outputs")
)

func main() {
	dstream.Run(dstream.Config{AppName: "CheckpointWindows", BatchInterval: time.Second}, func(ctx *dstream.Context) error {
		if *dir == "" || *out == "" {
			return dstream.Usagef("--dir and --out are required")
		}
		words := dstream.FlatMap(dstream.TextFileStream(ctx, *dir), strings.Fields)
		pairs := dstream.Map(words, func(w string) dstream.KV[string, int] { return dstream.KVOf(w, 1) })
		sum := dstream.Sum[int]
		dstream.SaveAsTextFiles(words, *out+"/in", "")
		dstream.SaveAsTextFiles(dstream.ReduceByKeyAndWindow(pairs, sum, 3*time.Second, time.Second), *out+"/rbkw-3-1", "")
		dstream.SaveAsTextFiles(dstream.ReduceByKeyAndWindowInv(pairs, "inv42", sum, func(a, b int) int { return a - b },
			4*time.Second, 2*time.Second, func(kv dstream.KV[string, int]) bool { return kv.Value > 0 }), *out+"/inv-4-2", "")
		dstream.SaveAsTextFiles(dstream.CountByWindow(words, 3*time.Second, time.Second), *out+"/cbw-3-1", "")
		dstream.SaveAsTextFiles(dstream.UpdateStateByKey(pairs, "totals", func(vs []int, s int, _ bool) (int, bool) {
			for _, v := range vs {
				s += v
			}
			return s, true
		}), *out+"/totals", "")
		mapped := dstream.MapWithState(pairs, dstream.StateSpec[string, int, int, dstream.KV[string, int]]{
			Name: "word-totals",
			Func: func(word string, one dstream.Option[int], state *dstream.State[int]) (dstream.KV[string, int], bool) {
				s := one.Value + state.Get()
				state.Update(s)
				return dstream.KVOf(word, s), true
			},
			Initial: []dstream.KV[string, int]{dstream.KVOf("hello", 1), dstream.KVOf("world", 1)},
		})
		dstream.SaveAsTextFiles(mapped.Snapshots(), *out+"/mws-state", "")
		return nil
	})
}
