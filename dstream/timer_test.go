package dstream

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// The batch clock ticks at every multiple of the interval after the zero
// time, in order, and a late tick (a paused process) skips no batch time.
func TestTimerLoopTicksAtMultiplesWithoutSkipping(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := &Context{cfg: Config{BatchInterval: 200 * time.Millisecond}}
		zero := time.Now().Truncate(c.cfg.BatchInterval)
		ctx, cancel := context.WithCancel(context.Background())
		var ticks []time.Time
		done := make(chan struct{})
		go func() {
			defer close(done)
			c.timerLoop(ctx, zero, func(bt time.Time) {
				if time.Now().Before(bt) {
					t.Errorf("tick %v came early, at %v", bt, time.Now())
				}
				ticks = append(ticks, bt)
				if len(ticks) == 3 {
					time.Sleep(650 * time.Millisecond) // a slow batch: three more ticks are due at once
				}
			})
		}()
		time.Sleep(2 * time.Second)
		cancel()
		<-done
		if len(ticks) < 9 {
			t.Fatalf("%d ticks in 2s of 200ms batches", len(ticks))
		}
		for i, bt := range ticks {
			if want := zero.Add(time.Duration(i+1) * c.cfg.BatchInterval); !bt.Equal(want) {
				t.Fatalf("tick %d at %v, want %v", i, bt, want)
			}
		}
	})
}
