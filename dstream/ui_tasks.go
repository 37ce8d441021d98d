package dstream

import (
	"encoding/json"
	"sort"
	"sync"
	"time"

	"github.com/sluicehq/sluice/internal/ui"
	"github.com/sluicehq/sluice/scheduler"
)

// taskTracker wraps the scheduler's backend to keep, for the web UI, a row
// per task attempt of each batch and per-executor task counts. It sees
// every launch (from the scheduler's goroutine) and every report (from the
// backend's goroutines) and never blocks either: its lock guards maps only.
type taskTracker struct {
	inner scheduler.Backend

	mu      sync.Mutex
	running map[int64]launched // by task id: launched, not reported
	byBatch map[time.Time]*taskRows
	perExec map[string]*execCount // by executor id
	lost    map[string]int64      // lost executors, with the incarnation they had
}

type launched struct {
	row   ui.Task
	batch time.Time
	start time.Time
}

type taskRows struct {
	rows    []ui.Task
	dropped int
}

type execCount struct {
	ok, failed  int64
	incarnation int64
}

func newTaskTracker(inner scheduler.Backend) *taskTracker {
	return &taskTracker{
		inner: inner, running: map[int64]launched{}, byBatch: map[time.Time]*taskRows{},
		perExec: map[string]*execCount{}, lost: map[string]int64{},
	}
}

// Start implements scheduler.Backend.
func (t *taskTracker) Start(report func(scheduler.TaskResult)) {
	t.inner.Start(func(r scheduler.TaskResult) {
		t.reported(r)
		report(r)
	})
}

// Launch implements scheduler.Backend.
func (t *taskTracker) Launch(task *scheduler.Task) {
	t.mu.Lock()
	t.running[task.ID] = launched{
		row: ui.Task{
			ID: task.ID, Job: task.Job.ID, Output: task.Job.Index, Stage: task.Stage.ID,
			Partition: task.Partition, Attempt: task.Attempt,
		},
		batch: task.Job.BatchTime, start: time.Now(),
	}
	t.mu.Unlock()
	t.inner.Launch(task)
}

// Kill implements scheduler.Killer when the backend does.
func (t *taskTracker) Kill(task *scheduler.Task) {
	if k, ok := t.inner.(scheduler.Killer); ok {
		k.Kill(task)
	}
}

// Stop implements scheduler.Backend.
func (t *taskTracker) Stop() { t.inner.Stop() }

func (t *taskTracker) reported(r scheduler.TaskResult) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.running[r.TaskID]
	if !ok {
		return
	}
	delete(t.running, r.TaskID)
	row := l.row
	row.Executor = r.Executor
	row.DurationMs = ui.Ms(r.Metrics.Duration)
	if r.Metrics.Duration == 0 {
		row.DurationMs = ui.Ms(time.Since(l.start))
	}
	row.RecordsRead = r.Metrics.RecordsRead
	row.Status = ui.StatusSucceeded
	if r.Err != nil {
		row.Status = ui.StatusFailed
		if row.Error = r.Err.Error(); len(row.Error) > 512 {
			row.Error = row.Error[:512] + "…"
		}
	}
	if r.Executor != "" {
		c := t.perExec[r.Executor]
		if c == nil {
			c = &execCount{}
			t.perExec[r.Executor] = c
		}
		if r.Err != nil {
			c.failed++
		} else {
			c.ok++
		}
		c.incarnation = r.Incarnation
	}
	rows := t.byBatch[l.batch]
	if rows == nil {
		rows = &taskRows{}
		t.byBatch[l.batch] = rows
	}
	if len(rows.rows) < ui.MaxTaskRows {
		rows.rows = append(rows.rows, row)
	} else {
		rows.dropped++
	}
}

// take removes and returns the rows of batch bt, and drops those of
// earlier batches (attempts that ended after their batch was recorded).
func (t *taskTracker) take(bt time.Time) ([]ui.Task, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	rows := t.byBatch[bt]
	for b := range t.byBatch {
		if !b.After(bt) {
			delete(t.byBatch, b)
		}
	}
	if rows == nil {
		return nil, 0
	}
	return rows.rows, rows.dropped
}

// executorLost notes a lost executor (cluster mode), with the
// incarnation its last task reported.
func (t *taskTracker) executorLost(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var inc int64
	if c := t.perExec[id]; c != nil {
		inc = c.incarnation
	}
	t.lost[id] = inc
}

// runningCount counts the running tasks (all of them: local mode has one
// executor).
func (t *taskTracker) runningCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.running)
}

func (t *taskTracker) counts(id string) execCount {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c := t.perExec[id]; c != nil {
		return *c
	}
	return execCount{}
}

// maxLostShown bounds the lost executors the executors page lists.
const maxLostShown = 100

// executors lists the job's executors for the UI: the cluster backend's
// executors (or the one local executor), the state partitions the
// scheduler's registry places on each, and the executors lost.
func (c *Context) uiExecutors() []ui.Executor {
	t := c.obs.tracker.Load()
	sched := c.schedRef.Load()
	var locs map[string]scheduler.Location
	var cached map[string]int
	if sched != nil {
		locs = sched.StateLocations()
		if c.obs.remote.Load() != nil {
			// The partitions executors cache, as the scheduler's
			// registry has them (local mode's are in this process).
			cached = map[string]int{}
			for at, n := range sched.CachedLocations() {
				cached[at.Executor] += n
			}
		}
	}
	held := map[string][]string{}
	for key, l := range locs {
		held[l.Executor] = append(held[l.Executor], key)
	}
	fill := func(e *ui.Executor) {
		e.StatePartitions = held[e.ID]
		if e.StatePartitions == nil {
			e.StatePartitions = []string{}
		}
		sort.Strings(e.StatePartitions)
		if cached != nil {
			n := cached[e.ID]
			e.CachedBlocks = &n
		}
		if t != nil {
			cnt := t.counts(e.ID)
			e.TasksSucceeded, e.TasksFailed = cnt.ok, cnt.failed
			if e.Incarnation == 0 {
				e.Incarnation = cnt.incarnation
			}
		}
	}
	var out []ui.Executor
	rb := c.obs.remote.Load()
	if rb == nil {
		e := ui.Executor{ID: scheduler.LocalID, Address: "in-process", Slots: c.slots, State: ui.ExecutorActive}
		if t != nil {
			e.RunningTasks = t.runningCount()
		}
		fill(&e)
		return []ui.Executor{e}
	}
	live := map[string]bool{}
	for _, v := range rb.ExecutorViews() {
		live[v.ID] = true
		e := ui.Executor{ID: v.ID, Epoch: v.Epoch, Address: v.Addr, Slots: v.Slots, RunningTasks: v.Running, State: ui.ExecutorActive}
		if v.Draining {
			e.State = ui.ExecutorDraining
		}
		fill(&e)
		out = append(out, e)
	}
	if t != nil {
		t.mu.Lock()
		var lost []ui.Executor
		for id, inc := range t.lost {
			if !live[id] {
				lost = append(lost, ui.Executor{ID: id, Incarnation: inc, State: ui.ExecutorLost})
			}
		}
		t.mu.Unlock()
		sort.Slice(lost, func(i, j int) bool { return lost[i].ID < lost[j].ID })
		for i := range lost[:min(len(lost), maxLostShown)] {
			fill(&lost[i])
			out = append(out, lost[i])
		}
	}
	return out
}

// uiInputs turns a batch's input descriptions into the API's.
func uiInputs(ins []InputInfo) []ui.Input {
	out := make([]ui.Input, 0, len(ins))
	for _, in := range ins {
		u := ui.Input{Stream: in.Stream, Records: in.Records}
		if len(in.Attrs) > 0 {
			u.Attrs = make(map[string]string, len(in.Attrs))
			for _, a := range in.Attrs {
				u.Attrs[a.Key] = a.Value.String()
			}
		}
		if in.Metadata != nil {
			if b, err := json.Marshal(in.Metadata); err == nil && len(b) <= 64<<10 {
				u.Metadata = b
			}
		}
		u.Partitions = uiPartitions(in)
		out = append(out, u)
	}
	return out
}

// uiPartitions returns an input's figures per partition, if its metadata
// has them (PartitionedInput).
func uiPartitions(in InputInfo) []ui.PartitionInput {
	pm, ok := in.Metadata.(PartitionedInput)
	if !ok {
		return nil
	}
	ps := pm.PartitionInputs()
	out := make([]ui.PartitionInput, len(ps))
	for i, p := range ps {
		out[i] = ui.PartitionInput{Topic: p.Topic, Partition: p.Partition, FromOffset: p.From, UntilOffset: p.Until, Lag: p.Lag}
	}
	return out
}
