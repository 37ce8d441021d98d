package dstream_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/dstream/dstreamtest"
	"github.com/sluicehq/sluice/rdd"
)

// TestPrintPairs: Print shows pairs as Spark does, (key,value), nested
// pairs included; other values as fmt's %v.
func TestPrintPairs(t *testing.T) {
	h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second, Parallelism: 1})
	kv := dstreamtest.Input(h, []dstream.KV[string, int64]{dstream.KVOf("spark", int64(3))})
	nested := dstreamtest.Input(h, []dstream.KV[string, dstream.Pair[int, dstream.Option[string]]]{
		dstream.KVOf("u1", dstream.PairOf(1, rdd.Some("ann"))),
		dstream.KVOf("u3", dstream.PairOf(2, dstream.Option[string]{})),
	})
	plain := dstreamtest.Input(h, []struct{ A, B int }{{1, 2}})
	dstream.Print(kv, 10)
	dstream.Print(nested, 10)
	dstream.Print(plain, 10)
	h.Run(1)
	out := h.Stdout.String()
	for _, want := range []string{"\n(spark,3)\n", "\n(u1,(1,Some(ann)))\n", "\n(u3,(2,None))\n", "\n{1 2}\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
