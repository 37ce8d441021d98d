package dstream_test

import (
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/dstream/dstreamtest"
)

func TestSmokeWordCount(t *testing.T) {
	h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second})
	lines := dstreamtest.Input(h, []string{"a b a", "c"}, nil, []string{"b"})
	words := dstream.FlatMap(lines, strings.Fields)
	pairs := dstream.Map(words, func(w string) dstream.KV[string, int] { return dstream.KV[string, int]{Key: w, Value: 1} })
	counts := dstream.ReduceByKey(pairs, func(a, b int) int { return a + b })
	out := dstreamtest.Output(h, counts)
	n := dstreamtest.Output(h, dstream.Count(lines))
	dstream.Print(counts, 10)
	h.Run(4)
	got := out.Batch(0)
	sort.Slice(got, func(i, j int) bool { return got[i].Key < got[j].Key })
	if len(got) != 3 || got[0] != (dstream.KV[string, int]{Key: "a", Value: 2}) {
		t.Fatalf("batch 0: %v", got)
	}
	if c := n.Batch(1); len(c) != 1 || c[0] != 0 {
		t.Fatalf("count of empty batch: %v", c)
	}
	if c := n.Batch(0); len(c) != 1 || c[0] != 2 {
		t.Fatalf("count batch 0: %v", c)
	}
	t.Log(h.Stdout.String())
}
