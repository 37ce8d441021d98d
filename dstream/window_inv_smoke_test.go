package dstream_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/dstream/dstreamtest"
)

func TestReduceByKeyAndWindowInvEqualsPlain(t *testing.T) {
	for _, parts := range []int{1, 3} {
		for _, ws := range [][2]int{{3, 1}, {4, 2}, {2, 2}, {6, 3}} {
			t.Run(fmt.Sprintf("p%d_w%d_s%d", parts, ws[0], ws[1]), func(t *testing.T) {
				h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second, Parallelism: parts})
				r := rand.New(rand.NewPCG(uint64(parts), uint64(ws[0])))
				var batches [][]kvi
				for b := 0; b < 20; b++ {
					var batch []kvi
					for i := r.IntN(30); i > 0; i-- {
						batch = append(batch, kvi{Key: string(rune('a' + r.IntN(8))), Value: r.IntN(10)})
					}
					batches = append(batches, batch)
				}
				in := dstreamtest.Input(h, batches...)
				w, s := time.Duration(ws[0])*time.Second, time.Duration(ws[1])*time.Second
				sum := func(a, b int) int { return a + b }
				plain := dstreamtest.Output(h, dstream.ReduceByKeyAndWindow(in, sum, w, s))
				inc := dstreamtest.Output(h, dstream.ReduceByKeyAndWindowInv(in, "inc", sum, func(a, b int) int { return a - b }, w, s,
					func(kv kvi) bool { return kv.Value != 0 }))
				h.Run(24)
				for i := 0; i < 24; i++ {
					var p []kvi
					for _, kv := range plain.Batch(i) {
						if kv.Value != 0 {
							p = append(p, kv)
						}
					}
					if got, want := fmt.Sprint(sortKV(inc.Batch(i))), fmt.Sprint(sortKV(p)); got != want {
						t.Fatalf("batch %d: incremental %s, plain %s", i, got, want)
					}
					if plain.Has(i) != inc.Has(i) {
						t.Fatalf("batch %d: plain has %v, incremental has %v", i, plain.Has(i), inc.Has(i))
					}
				}
			})
		}
	}
}
