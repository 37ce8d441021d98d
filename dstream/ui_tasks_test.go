package dstream

import (
	"strconv"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/cluster"
	"github.com/sluicehq/sluice/internal/ui"
	"github.com/sluicehq/sluice/scheduler"
)

// TestUITaskRowsAndExecutorsLocal checks a local job's batch pages list a
// row per task attempt that adds up to the stage figures, with the jobs
// numbered as outputJobs, and that its executors page shows the one
// in-process executor with the tasks it ran.
func TestUITaskRowsAndExecutorsLocal(t *testing.T) {
	base, _, stop := runUIJob(t, 7)
	defer stop()
	jobURL := base + "/api/v1/jobs/ui_job"
	waitBatches(t, jobURL, 3)
	var page ui.BatchPage
	getJSON(t, jobURL+"/batches?limit=3", &page)
	var rows int64
	for _, b := range page.Batches {
		var d ui.BatchDetail
		getJSON(t, jobURL+"/batches/"+itoa(b.ID), &d)
		attempts, records, rowRecords := 0, int64(0), int64(0)
		stages := map[[2]int64]bool{}
		for _, j := range d.OutputJobs {
			for _, s := range j.Stages {
				attempts += s.Tasks + s.Failed
				records += s.RecordsRead
				stages[[2]int64{int64(j.Index), int64(s.ID)}] = true
			}
		}
		for _, k := range d.Tasks {
			if k.Executor != scheduler.LocalID || k.Status != ui.StatusSucceeded || k.DurationMs <= 0 {
				t.Errorf("task row %+v: want a success on %s with a duration", k, scheduler.LocalID)
			}
			if !stages[[2]int64{k.Job, int64(k.Stage)}] {
				t.Errorf("task row %+v: job %d has no stage %d in outputJobs %+v", k, k.Job, k.Stage, d.OutputJobs)
			}
			rowRecords += k.RecordsRead
		}
		if len(d.Tasks) != attempts || rowRecords != records || attempts == 0 || d.TasksDropped != 0 {
			t.Errorf("batch %d: %d task rows reading %d records; the stages count %d attempts reading %d", b.ID, len(d.Tasks), rowRecords, attempts, records)
		}
		if len(d.Inputs) != 0 && d.Inputs[0].Records != b.InputRecords {
			t.Errorf("batch %d: input %+v, want %d records", b.ID, d.Inputs, b.InputRecords)
		}
		rows += int64(len(d.Tasks))
	}
	var es []ui.Executor
	getJSON(t, jobURL+"/executors", &es)
	if len(es) != 1 || es[0].ID != scheduler.LocalID || es[0].Slots != 2 || es[0].State != ui.ExecutorActive ||
		es[0].TasksSucceeded < rows || es[0].StatePartitions == nil {
		t.Fatalf("executors %+v: want the local executor with 2 slots that ran at least %d tasks", es, rows)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestHistoryKeepsTaskRowsOfTheNewestBatches checks the bound on task rows:
// only the newest TaskRowBatches batches keep theirs, whatever the
// history's size, and older batches say their rows were dropped.
func TestHistoryKeepsTaskRowsOfTheNewestBatches(t *testing.T) {
	h := NewHistory(3 * TaskRowBatches)
	t0 := time.Unix(1000, 0)
	const n = 2*TaskRowBatches + 7
	for i := range n {
		h.Add(BatchRecord{BatchInfo: BatchInfo{Time: t0.Add(time.Duration(i) * time.Second)}, Tasks: []ui.Task{{ID: int64(i)}}})
	}
	kept := 0
	for i := range n {
		r, ok := h.Find(t0.Add(time.Duration(i) * time.Second))
		if !ok {
			t.Fatalf("batch %d not in the history", i)
		}
		newest := i >= n-TaskRowBatches
		if newest != (len(r.Tasks) == 1) || newest == r.TasksForgotten {
			t.Fatalf("batch %d of %d: %d task rows, forgotten %v; want rows only in the newest %d", i, n, len(r.Tasks), r.TasksForgotten, TaskRowBatches)
		}
		if newest {
			kept++
		}
	}
	if kept != TaskRowBatches {
		t.Fatalf("%d batches kept task rows, want %d", kept, TaskRowBatches)
	}
}

// TestUIExecutorsListsLostOnes checks a job driver's executors list shows
// an executor the backend lost, with the incarnation its tasks last
// reported and their count.
func TestUIExecutorsListsLostOnes(t *testing.T) {
	c, err := New(Config{AppName: "lost", BatchInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	tr := newTaskTracker(nil)
	c.obs.tracker.Store(tr)
	rb := cluster.NewRemoteBackend(cluster.BackendConfig{})
	c.obs.remote.Store(rb)
	tr.perExec["x"] = &execCount{ok: 3, failed: 1, incarnation: 7}
	if es := c.uiExecutors(); len(es) != 0 {
		t.Fatalf("executors %+v before any was lost, want none", es)
	}
	tr.executorLost("x")
	es := c.uiExecutors()
	if len(es) != 1 || es[0].ID != "x" || es[0].State != ui.ExecutorLost || es[0].Incarnation != 7 || es[0].TasksSucceeded != 3 || es[0].TasksFailed != 1 {
		t.Fatalf("executors %+v, want x lost with incarnation 7 and its 3+1 tasks", es)
	}
}
