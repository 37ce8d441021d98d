package scheduler

import (
	"maps"
	"testing"
)

// Tests for changes to Core that once left the suite green (issue 16);
// tools/mutate replays those changes.

func TestCoreSecondAttemptOfADonePartitionIsNotHandedOn(t *testing.T) {
	// Two attempts of one result partition may both succeed: a backend
	// that re-ran a task it believed lost, or speculative execution. The
	// core launches one attempt at a time, so the second attempt is put in
	// flight by hand, as such a backend would have it. OnResult must see
	// the partition once, and the second record must still be released
	// (the checked allocator fails the test otherwise).
	ct := newCoreTest(t, nil)
	j := ct.job(words("queue", 2).Node())
	ct.expect("submit", ct.submit(j), "launch 0/0#0", "launch 0/1#0")
	second := *ct.live["0/0"]
	second.ID = 1000
	second.Attempt = 1
	ct.c.tasks[second.ID] = &second
	ct.expect("first attempt", ct.ok("0/0", "e1"))
	ct.expect("second attempt", ct.completed(TaskResult{TaskID: second.ID, Executor: "e2", Result: ct.record(0)}))
	ct.expect("partition 1", ct.ok("0/1", "e1"), "done 1 ok")
	if got := ct.results[j.ID]; got[0] != 1 || got[1] != 1 {
		t.Fatalf("OnResult calls per partition %v, want one each", got)
	}
}

func TestCoreHandsOnTheReportsOfSuccessfulAttemptsOnly(t *testing.T) {
	ct := newCoreTest(t, nil)
	j := ct.job(words("queue", 2).Node())
	ct.expect("submit", ct.submit(j), "launch 0/0#0", "launch 0/1#0")
	reports := map[string][]byte{"watermark": []byte("42")}

	// A failed attempt's reports are dropped with it.
	t0 := ct.task("0/0")
	acts := ct.c.Completed(TaskResult{TaskID: t0.ID, Executor: "e1", Err: errBoom, Reports: reports})
	for _, a := range acts {
		if _, ok := a.(Reported); ok {
			t.Fatalf("reports of a failed attempt handed on: %+v", acts)
		}
	}
	ct.expect("retry", ct.render(acts), "launch 0/0#1")

	// A successful one's reach the driver, naming the task.
	t0 = ct.task("0/0")
	acts = ct.c.Completed(TaskResult{TaskID: t0.ID, Executor: "e1", Result: ct.record(0), Reports: reports})
	var got []Reported
	var rest []Action
	for _, a := range acts {
		if r, ok := a.(Reported); ok {
			got = append(got, r)
		} else {
			rest = append(rest, a)
		}
	}
	if len(got) != 1 || got[0].Task != t0 || !maps.EqualFunc(got[0].Reports, reports, func(a, b []byte) bool { return string(a) == string(b) }) {
		t.Fatalf("reported %+v, want one Reported of %s with %v", got, t0, reports)
	}
	ct.expect("partition 0", ct.render(rest))
	ct.expect("partition 1", ct.ok("0/1", "e1"), "done 1 ok")
}

func TestCoreStageMetricsKeepTheLongestTask(t *testing.T) {
	ct := newCoreTest(t, nil)
	j := ct.job(words("queue", 3).Node())
	ct.expect("submit", ct.submit(j), "launch 0/0#0", "launch 0/1#0", "launch 0/2#0")
	// ok gives partition p a duration of p+1 ms: finish the longest first.
	ct.ok("0/2", "e1")
	ct.ok("0/0", "e1")
	ct.expect("last", ct.ok("0/1", "e1"), "done 1 ok")
	st := ct.dones[j.ID].Metrics.Stages
	if len(st) != 1 || st[0].MaxTaskTime != 3e6 || st[0].TaskTime != 6e6 || st[0].RecordsRead != 30 {
		t.Fatalf("stage metrics %+v, want max 3ms, total 6ms, 30 records", st)
	}
}
