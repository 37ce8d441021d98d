package ratecontrol

import (
	"testing"
	"testing/synctest"
	"time"
)

// simJob simulates a job on the synctest clock: a generator plans a batch
// every interval from a backlog fed at offered(t) records/s, a processor
// takes each batch in turn and needs overhead + records/capacity to
// process it, then reports to the controller, as the dstream batch loop
// and a planned source do.
type simBatch struct {
	t       time.Time
	records int64
}

type simStats struct {
	t          time.Time
	records    int64
	scheduling time.Duration
	processing time.Duration
	backlog    int64 // offered but not planned, at planning time
}

func simulate(t *testing.T, ctl *Controller, interval time.Duration, capacity float64, offered func(k int) float64, batches int) []simStats {
	t.Helper()
	var out []simStats
	synctest.Test(t, func(t *testing.T) {
		queue := make(chan simBatch, batches)
		backlogs := make([]int64, batches)
		go func() { // the generator, waited for by the queue's close
			defer close(queue)
			var produced, planned float64
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for k := range batches {
				bt := <-tick.C
				produced += offered(k) * interval.Seconds()
				lag := int64(produced - planned)
				n := lag
				if a := ctl.Allow([]int64{lag})[0]; a >= 0 {
					n = min(n, a)
				}
				planned += float64(n)
				backlogs[k] = int64(produced - planned)
				queue <- simBatch{t: bt, records: n}
			}
		}()
		k := 0
		for b := range queue {
			start := time.Now()
			time.Sleep(20*time.Millisecond + time.Duration(float64(b.records)/capacity*float64(time.Second)))
			proc := time.Since(start)
			sched := start.Sub(b.t)
			ctl.Update(b.t, b.records, proc, sched)
			out = append(out, simStats{t: b.t, records: b.records, scheduling: sched, processing: proc, backlog: backlogs[k]})
			k++
		}
	})
	return out
}

func TestBackpressureSettlesAndDrains(t *testing.T) {
	const interval = time.Second
	const capacity = 10_000.0 // records/s the slowed job processes
	overload := 60            // batches offered at 3x capacity, then 0.3x
	ctl, err := New(Config{BatchInterval: interval, Backpressure: true, InitialRate: 5_000})
	if err != nil {
		t.Fatal(err)
	}
	stats := simulate(t, ctl, interval, capacity, func(k int) float64 {
		if k < overload {
			return 3 * capacity
		}
		return 0.3 * capacity
	}, 400)

	// Under 3x load the batches settle to what one interval processes:
	// processing keeps up and the scheduling queue stays short.
	for _, s := range stats[overload-20 : overload] {
		if s.scheduling > 2*interval {
			t.Errorf("batch %v: scheduling delay %v under overload: processing does not keep up", s.t, s.scheduling)
		}
		if s.processing > 3*interval/2 {
			t.Errorf("batch %v: %d records took %v: batch size did not settle", s.t, s.records, s.processing)
		}
		if s.records < int64(capacity/2) {
			t.Errorf("batch %v: %d records: the rate fell far below capacity %v", s.t, s.records, capacity)
		}
	}
	if b := stats[overload-1].backlog; b < int64(capacity) {
		t.Fatalf("backlog %d after overload: the test did not overload the job", b)
	}
	// Once input drops the backlog drains, still in bounded batches.
	drained := -1
	for i, s := range stats[overload:] {
		if s.processing > 3*interval/2 {
			t.Errorf("batch %v: %d records took %v while draining: catch-up batch not bounded", s.t, s.records, s.processing)
		}
		if s.backlog == 0 && drained < 0 {
			drained = i
		}
	}
	if drained < 0 {
		t.Fatalf("backlog never drained: %d records left", stats[len(stats)-1].backlog)
	}
	t.Logf("backlog %d drained %d batches after the load dropped; settled batch %d records",
		stats[overload-1].backlog, drained, stats[overload-1].records)
}

// Without backpressure the same overload makes the scheduling delay grow
// without bound: the assertions above can fail.
func TestNoBackpressureFallsBehind(t *testing.T) {
	ctl, err := New(Config{BatchInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	stats := simulate(t, ctl, time.Second, 10_000, func(int) float64 { return 30_000 }, 30)
	if last := stats[len(stats)-1]; last.scheduling < 10*time.Second {
		t.Fatalf("scheduling delay %v after 30 overloaded batches without backpressure; want it growing past 10s", last.scheduling)
	}
}

func TestAllowSplitsByLag(t *testing.T) {
	ctl, err := New(Config{BatchInterval: 2 * time.Second, InitialRate: 1000, MaxRatePerPartition: 300})
	if err != nil {
		t.Fatal(err)
	}
	// 1000/s split 3:1 = 750 and 250, capped at 300/s; times 2 s.
	got := ctl.Allow([]int64{3000, 1000, 0})
	want := []int64{600, 500, 1}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Allow = %v, want %v", got, want)
		}
	}
	unbounded, _ := New(Config{BatchInterval: time.Second})
	if got := unbounded.Allow([]int64{5}); got[0] != -1 {
		t.Fatalf("Allow without rates = %v, want [-1]", got)
	}
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without BatchInterval: no error")
	}
}

func TestPIDFirstBatchOnlySetsStart(t *testing.T) {
	e := NewPID(time.Second, 1, 0.2, 0, 100)
	t0 := time.Unix(1000, 0)
	if _, ok := e.Compute(t0, 1000, time.Second, 0); ok {
		t.Fatal("first batch produced a rate")
	}
	// Processing 2000 records in 1 s with no queue: rate = 2000.
	r, ok := e.Compute(t0.Add(time.Second), 2000, time.Second, 0)
	if !ok || r != 2000 {
		t.Fatalf("rate = %v, %v; want 2000", r, ok)
	}
	// A 2 s scheduling delay at 1000/s subtracts 0.2 * 2 * 1000.
	r, _ = e.Compute(t0.Add(2*time.Second), 1000, time.Second, 2*time.Second)
	if want := 2000 - (2000 - 1000) - 0.2*2*1000; r != want {
		t.Fatalf("rate = %v, want %v", r, want)
	}
}
