package dstream_test

import (
	"testing"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/dstream/dstreamtest"
)

func TestWindowSmoke(t *testing.T) {
	h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second, Parallelism: 3})
	in := dstreamtest.Input(h, []int{1}, []int{2}, []int{3}, []int{4}, []int{5})
	sum := dstream.ReduceByWindow(in, func(a, b int) int { return a + b }, 3*time.Second, 2*time.Second)
	out := dstreamtest.Output(h, sum)
	cnt := dstreamtest.Output(h, dstream.CountByWindow(in, 3*time.Second, time.Second))
	h.Run(7)
	// slide 2s: outputs at batches 1 (t=2s), 3 (t=4s), 5 (t=6s)
	want := map[int]int{1: 3, 3: 2 + 3 + 4, 5: 4 + 5}
	for i := 0; i < 7; i++ {
		got := out.Batch(i)
		if w, ok := want[i]; ok {
			if len(got) != 1 || got[0] != w {
				t.Errorf("batch %d: got %v want %d", i, got, w)
			}
		} else if out.Has(i) {
			t.Errorf("batch %d: unexpected output %v", i, got)
		}
	}
	wantCnt := []int64{1, 2, 3, 3, 3, 2, 1}
	for i, w := range wantCnt {
		if got := cnt.Batch(i); len(got) != 1 || got[0] != w {
			t.Errorf("count batch %d: got %v want %d", i, got, w)
		}
	}
}

func TestWindowValidation(t *testing.T) {
	h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second})
	in := dstreamtest.Input[int](h)
	dstreamtest.Output(h, dstream.Window(in, 2500*time.Millisecond, time.Second))
	if _, err := h.Step(); err == nil || !contains(err.Error(), "window 2.5s is not a multiple of the batch interval 1s") {
		t.Fatalf("got %v", err)
	}
}

func contains(s, sub string) bool { return len(s) >= len(sub) && (s == sub || indexOf(s, sub) >= 0) }
func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}
