package dstream_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/dstream/dstreamtest"
)

// TestReduceByKeyAndWindowInvAfterTheFilterDroppedAKey covers keys whose
// state the filter removed while batches holding them are still in the
// window (issue 16): when such a batch leaves, its values must not be taken
// out of a state that no longer holds them, and a key that comes back in the
// same slide must still lose the leaving values.
//
// Window 2s, slide 1s, keep positive sums. Key b: +1, -1, then nothing; its
// sum is 0 at batch 1 and the filter drops it, and the leaving -1 at batch 3
// must not bring it back as +1. Key a: +1, -1, +5: dropped at batch 1, back
// at batch 2 with 5 entering while its +1 leaves: 4.
func TestReduceByKeyAndWindowInvAfterTheFilterDroppedAKey(t *testing.T) {
	for _, parts := range []int{1, 3} {
		t.Run(fmt.Sprintf("p%d", parts), func(t *testing.T) {
			h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second, Parallelism: parts})
			in := dstreamtest.Input(h,
				[]kvi{{Key: "a", Value: 1}, {Key: "b", Value: 1}},
				[]kvi{{Key: "a", Value: -1}, {Key: "b", Value: -1}},
				[]kvi{{Key: "a", Value: 5}},
			)
			sum := func(a, b int) int { return a + b }
			positive := func(kv kvi) bool { return kv.Value > 0 }
			w, s := 2*time.Second, time.Second
			plain := dstreamtest.Output(h, dstream.Filter(dstream.ReduceByKeyAndWindow(in, sum, w, s), positive))
			inc := dstreamtest.Output(h, dstream.ReduceByKeyAndWindowInv(in, "inc", sum, func(a, b int) int { return a - b }, w, s, positive))
			h.Run(6)
			want := []string{"[{a 1} {b 1}]", "[]", "[{a 4}]", "[{a 5}]", "[]", "[]"}
			for i := range 6 {
				got, ref := fmt.Sprint(sortKV(inc.Batch(i))), fmt.Sprint(sortKV(plain.Batch(i)))
				if got != want[i] || ref != want[i] {
					t.Fatalf("batch %d: incremental %s, plain %s, want %s", i, got, ref, want[i])
				}
			}
		})
	}
}
