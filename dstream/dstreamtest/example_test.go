package dstreamtest_test

import (
	"fmt"
	"log"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/dstream/dstreamtest"
)

// A word count over two batches of input, checked batch by batch. In a
// test, dstreamtest.New(t, cfg) replaces Open and Close.
func Example() {
	h, err := dstreamtest.Open(dstream.Config{BatchInterval: time.Second})
	if err != nil {
		log.Fatal(err)
	}
	lines := dstreamtest.Input(h, []string{"a b a"}, []string{"b"})
	counts := dstream.CountByValue(dstream.FlatMap(lines, strings.Fields))
	out := dstreamtest.Output(h, counts)
	if err := h.Run(2); err != nil {
		log.Fatal(err)
	}
	for i := range 2 {
		batch := out.Batch(i)
		slices.SortFunc(batch, func(x, y dstream.KV[string, int64]) int { return strings.Compare(x.Key, y.Key) })
		fmt.Println(i, batch)
	}
	if err := h.Close(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// 0 [{a 2} {b 1}]
	// 1 [{b 1}]
}
