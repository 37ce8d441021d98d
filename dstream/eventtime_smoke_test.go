package dstream_test

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/dstream/dstreamtest"
)

// ev encodes an event's timestamp (seconds) in its value.
type ev = dstream.KV[string, int64]

func TestEventTimeSmoke(t *testing.T) {
	h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second, Parallelism: 2})
	// Tumbling 10s windows, lateness 5s. Values are event seconds.
	in := dstreamtest.Input(h,
		[]ev{{Key: "a", Value: 1}, {Key: "a", Value: 12}, {Key: "b", Value: 3}}, // max 12 -> wm 7
		[]ev{{Key: "a", Value: 8}, {Key: "b", Value: 16}},                       // 8 >= wm 7: counted; max 16 -> wm 11
		[]ev{{Key: "a", Value: 9}, {Key: "a", Value: 25}},                       // 9 < wm 11: dropped; window [0,10) emitted now (wm 11 >= 10)
		nil, // wm 20: window [10,20) emitted
	)
	w := dstream.ReduceByKeyAndEventWindow(in, dstream.EventTimeSpec[string, int64]{
		Name:            "counts",
		Timestamp:       func(kv ev) time.Time { return time.Unix(kv.Value, 0) },
		Window:          10 * time.Second,
		AllowedLateness: 5 * time.Second,
		Reduce:          func(a, b int64) int64 { return a + b },
	})
	counted := dstream.Map(w.DStream, func(e dstream.EventWindow[string, int64]) string {
		return fmt.Sprintf("%s[%d,%d)=%d", e.Key, e.Start.Unix(), e.End.Unix(), e.Value)
	})
	out := dstreamtest.Output(h, counted)
	h.Run(5)
	want := []string{"[]", "[]", "[a[0,10)=9 b[0,10)=3]", "[a[10,20)=12 b[10,20)=16]", "[]"}
	for i, wv := range want {
		got := out.Batch(i)
		sort.Strings(got)
		if fmt.Sprint(got) != wv {
			t.Errorf("batch %d: got %v want %s", i, got, wv)
		}
	}
	if w.Dropped() != 1 {
		t.Errorf("dropped %d, want 1", w.Dropped())
	}
}
