package scheduler

import (
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/sluicehq/sluice/rdd"
)

// DefaultMaxAttempts is how many times a task is tried before its job fails.
const DefaultMaxAttempts = 4

// maxStageResubmits bounds how often one stage may be set back by lost
// shuffle output before its job fails (Spark's maxConsecutiveStageAttempts).
const maxStageResubmits = 4

// ResultFunc computes one partition of a job's final RDD on an executor and
// returns what the driver should receive (nil for nothing).
type ResultFunc func(tc *rdd.TaskContext, part int) (arrow.Record, error)

// Job is one action over an RDD: run Func on every partition of Final and
// hand each partition's result to OnResult on the driver.
type Job struct {
	ID        int64 // assigned on submission
	Final     *rdd.Node
	Desc      string // what the job is, for logs: "print@wordcount.go:30"
	BatchTime time.Time
	// Index is the job's output operation's place among its batch's jobs,
	// and Sub the job's number within that output operation: executors find
	// the same job in their copy of the graph by them.
	Index, Sub int
	Func       ResultFunc
	// OnResult receives each partition's result exactly once, in the
	// scheduler's goroutine; it must not block. The scheduler releases rec
	// after it returns. An error fails the job.
	OnResult func(part int, rec arrow.Record) error

	finished atomic.Bool
	done     chan struct{} // closed when the job is over
}

// Finished reports whether the job is over; backends drop its queued tasks.
func (j *Job) Finished() bool { return j.finished.Load() }

// Done is closed when the job is over (nil for a job never submitted):
// backends kill its tasks still running.
func (j *Job) Done() <-chan struct{} { return j.done }

// Task is one attempt at one partition of one stage.
type Task struct {
	ID        int64
	Job       *Job
	Stage     *Stage
	Partition int
	Attempt   int // 0 for the first attempt
	epoch     int // the stage run's epoch at launch; see stageRun.epoch
	// Inputs gives, for each shuffle the stage reads, the executor holding
	// each map partition's output.
	Inputs map[int64][]string
}

func (t *Task) String() string {
	return fmt.Sprintf("task %d (job %d, stage %d, partition %d, attempt %d)", t.ID, t.Job.ID, t.Stage.ID, t.Partition, t.Attempt)
}

// TaskResult is what an executor reports for a task.
type TaskResult struct {
	TaskID   int64
	Executor string
	Err      error
	Result   arrow.Record // result tasks only; owned by the receiver
	Metrics  TaskMetrics
	Reports  map[string][]byte // rdd.TaskContext.Reports of a successful attempt
}

// TaskMetrics are measured by the executor for one task attempt.
type TaskMetrics struct {
	Duration    time.Duration
	RecordsRead int64
}

// StageMetrics aggregate a stage's task attempts.
type StageMetrics struct {
	StageID     int
	Name        string
	Tasks       int           // successful tasks
	Failed      int           // failed attempts
	Resubmits   int           // times set back by lost shuffle output
	TaskTime    time.Duration // sum of successful task durations
	MaxTaskTime time.Duration
	RecordsRead int64
}

// JobMetrics are reported when a job finishes.
type JobMetrics struct {
	Stages []StageMetrics // in stage id order; skipped stages are absent
}

// RecordsRead sums the records read by every stage.
func (m JobMetrics) RecordsRead() int64 {
	var n int64
	for _, s := range m.Stages {
		n += s.RecordsRead
	}
	return n
}

// ErrExecutorLost is the error of a task whose executor went away. Such
// failures do not count against the task's attempts.
var ErrExecutorLost = errors.New("scheduler: executor lost")

// TaskFailedError fails a job whose task failed on every attempt.
type TaskFailedError struct {
	Job       string
	BatchTime time.Time
	Stage     string
	Partition int
	Attempts  int
	Err       error // the last attempt's error
}

func (e *TaskFailedError) Error() string {
	bt := ""
	if !e.BatchTime.IsZero() {
		bt = " of batch " + e.BatchTime.UTC().Format("2006-01-02T15:04:05.000Z")
	}
	return fmt.Sprintf("job %s%s: %s partition %d failed %d times, last: %v", e.Job, bt, e.Stage, e.Partition, e.Attempts, e.Err)
}

func (e *TaskFailedError) Unwrap() error { return e.Err }

// Action is what the core asks its driver loop to do.
type Action interface{ isAction() }

// Launch asks for a task to be run on an executor slot.
type Launch struct{ Task *Task }

// JobDone reports that a job finished, successfully when Err is nil.
type JobDone struct {
	Job     *Job
	Err     error
	Metrics JobMetrics
}

// Reported hands the reports of an accepted successful task to the driver.
type Reported struct {
	Task    *Task
	Reports map[string][]byte
}

func (Launch) isAction()   {}
func (JobDone) isAction()  {}
func (Reported) isAction() {}

// Core is the scheduler's state machine: it takes events (job submitted,
// task finished, executor lost) and returns actions (launch a task, job
// done). It does no I/O and reads no clock, so every path is tested by
// feeding it events.
type Core struct {
	planner     *planner
	maxAttempts int
	nextJob     int64
	nextTask    int64

	jobs    map[int64]*jobState
	tasks   map[int64]*Task          // running tasks
	outputs map[int64]map[int]string // shuffle id -> map partition -> executor
}

type jobState struct {
	job     *Job
	result  *Stage
	runs    map[int]*stageRun // active or waiting stages by id
	done    map[int]bool      // finished result partitions
	metrics map[int]*StageMetrics
}

type stageRun struct {
	stage    *Stage
	waiting  bool         // waiting for parent stages
	pending  map[int]bool // partitions still to finish
	running  map[int]bool // partitions with an attempt in flight
	failures map[int]int  // failed attempts per partition
	// epoch counts the times the stage was set back by lost shuffle
	// output. A fetch failure of a task launched in an earlier epoch is
	// about output that was lost before the setback (or recomputed since):
	// it neither sets the stage back again nor forgets that output.
	epoch int
}

// NewCore returns a core. cached reports whether every partition of a cached
// node is stored (nil: nothing is).
func NewCore(maxAttempts int, cached func(*rdd.Node) bool) *Core {
	if maxAttempts <= 0 {
		maxAttempts = DefaultMaxAttempts
	}
	return &Core{
		planner:     newPlanner(cached),
		maxAttempts: maxAttempts,
		jobs:        map[int64]*jobState{},
		tasks:       map[int64]*Task{},
		outputs:     map[int64]map[int]string{},
	}
}

// Submit plans a job and returns the launches of its first tasks.
func (c *Core) Submit(job *Job) []Action {
	c.nextJob++
	job.ID = c.nextJob
	job.done = make(chan struct{})
	js := &jobState{job: job, runs: map[int]*stageRun{}, done: map[int]bool{}, metrics: map[int]*StageMetrics{}}
	js.result = c.planner.resultStage(job.Final)
	c.jobs[job.ID] = js
	var acts []Action
	if job.Final.Parts == 0 {
		return c.finish(js, nil, acts)
	}
	return c.submitStage(js, js.result, acts)
}

// available reports whether a stage's output is complete.
func (c *Core) available(js *jobState, s *Stage) bool {
	if s.IsShuffleMap() {
		return len(c.missingMaps(s)) == 0
	}
	return len(js.done) == s.NumTasks
}

func (c *Core) missingMaps(s *Stage) []int {
	outs := c.outputs[s.Shuffle.ID]
	var missing []int
	for p := 0; p < s.NumTasks; p++ {
		if _, ok := outs[p]; !ok {
			missing = append(missing, p)
		}
	}
	return missing
}

// submitStage runs s if its parents are available, else submits the
// missing parents and leaves s waiting.
func (c *Core) submitStage(js *jobState, s *Stage, acts []Action) []Action {
	run := js.runs[s.ID]
	if run == nil {
		run = &stageRun{stage: s, pending: map[int]bool{}, running: map[int]bool{}, failures: map[int]int{}}
		js.runs[s.ID] = run
	}
	var missingParents bool
	for _, p := range s.Parents {
		if !c.available(js, p) {
			missingParents = true
			if pr := js.runs[p.ID]; pr == nil || !pr.active() {
				acts = c.submitStage(js, p, acts)
			}
		}
	}
	if missingParents {
		run.waiting = true
		return acts
	}
	run.waiting = false
	var parts []int
	if s.IsShuffleMap() {
		parts = c.missingMaps(s)
	} else {
		for p := 0; p < s.NumTasks; p++ {
			if !js.done[p] {
				parts = append(parts, p)
			}
		}
	}
	for _, p := range parts {
		run.pending[p] = true
		if !run.running[p] {
			acts = c.launch(js, run, p, acts)
		}
	}
	if len(run.pending) == 0 && len(run.running) == 0 {
		delete(js.runs, s.ID)
	}
	return acts
}

func (r *stageRun) active() bool { return r.waiting || len(r.pending) > 0 || len(r.running) > 0 }

func (c *Core) launch(js *jobState, run *stageRun, part int, acts []Action) []Action {
	c.nextTask++
	t := &Task{ID: c.nextTask, Job: js.job, Stage: run.stage, Partition: part, Attempt: run.failures[part], epoch: run.epoch}
	for _, p := range run.stage.Parents {
		if t.Inputs == nil {
			t.Inputs = map[int64][]string{}
		}
		locs := make([]string, p.NumTasks)
		for mp, e := range c.outputs[p.Shuffle.ID] {
			locs[mp] = e
		}
		t.Inputs[p.Shuffle.ID] = locs
	}
	c.tasks[t.ID] = t
	run.running[part] = true
	return append(acts, Launch{Task: t})
}

func (js *jobState) stageMetrics(s *Stage) *StageMetrics {
	m := js.metrics[s.ID]
	if m == nil {
		m = &StageMetrics{StageID: s.ID, Name: s.Name()}
		js.metrics[s.ID] = m
	}
	return m
}

// Completed handles a task's result. Results of tasks the core does not know
// (stale attempts, fenced executors, finished jobs) are released and ignored.
func (c *Core) Completed(res TaskResult) []Action {
	t, ok := c.tasks[res.TaskID]
	if !ok {
		if res.Result != nil {
			res.Result.Release()
		}
		return nil
	}
	delete(c.tasks, res.TaskID)
	js := c.jobs[t.Job.ID]
	run := js.runs[t.Stage.ID]
	if run == nil { // the stage was abandoned
		if res.Result != nil {
			res.Result.Release()
		}
		return nil
	}
	delete(run.running, t.Partition)
	m := js.stageMetrics(t.Stage)
	if res.Err != nil {
		return c.failed(js, run, t, res, m)
	}
	var acts []Action
	if len(res.Reports) > 0 {
		acts = append(acts, Reported{Task: t, Reports: res.Reports})
	}
	m.Tasks++
	m.TaskTime += res.Metrics.Duration
	m.MaxTaskTime = max(m.MaxTaskTime, res.Metrics.Duration)
	m.RecordsRead += res.Metrics.RecordsRead
	delete(run.pending, t.Partition)
	if t.Stage.IsShuffleMap() {
		outs := c.outputs[t.Stage.Shuffle.ID]
		if outs == nil {
			outs = map[int]string{}
			c.outputs[t.Stage.Shuffle.ID] = outs
		}
		outs[t.Partition] = res.Executor
	} else {
		var err error
		if !js.done[t.Partition] {
			js.done[t.Partition] = true
			if js.job.OnResult != nil {
				err = js.job.OnResult(t.Partition, res.Result)
			}
		}
		if res.Result != nil {
			res.Result.Release()
		}
		if err != nil {
			return c.finish(js, fmt.Errorf("job %s: handle result of partition %d: %w", js.job.Desc, t.Partition, err), acts)
		}
		if c.available(js, js.result) {
			return c.finish(js, nil, acts)
		}
	}
	if !run.active() {
		delete(js.runs, t.Stage.ID)
		if t.Stage.IsShuffleMap() && !c.available(js, t.Stage) {
			// Output lost while the stage ran (executor lost): run it again.
			return c.submitStage(js, t.Stage, acts)
		}
		acts = c.resumeWaiting(js, acts)
	}
	return acts
}

// resumeWaiting submits every waiting stage whose parents became available.
func (c *Core) resumeWaiting(js *jobState, acts []Action) []Action {
	var ids []int
	for id, r := range js.runs {
		if r.waiting {
			ids = append(ids, id)
		}
	}
	sort.Ints(ids)
	for _, id := range ids {
		if r := js.runs[id]; r != nil && r.waiting {
			acts = c.submitStage(js, r.stage, acts)
		}
	}
	return acts
}

func (c *Core) failed(js *jobState, run *stageRun, t *Task, res TaskResult, m *StageMetrics) []Action {
	var acts []Action
	if res.Result != nil {
		res.Result.Release()
	}
	m.Failed++
	if ff, ok := rdd.IsFetchFailed(res.Err); ok {
		if t.epoch < run.epoch {
			// Launched before the stage was last set back: retry the
			// partition, after the parents again if they are not back yet.
			if run.waiting {
				return acts
			}
			return c.launch(js, run, t.Partition, acts)
		}
		// The parent's map output is gone: forget it, run the parent stage
		// for what is missing, and retry this stage after it.
		run.epoch++
		if outs := c.outputs[ff.ShuffleID]; outs != nil {
			delete(outs, ff.MapPart)
		}
		m.Resubmits++
		if m.Resubmits > maxStageResubmits {
			return c.finish(js, &TaskFailedError{Job: js.job.Desc, BatchTime: js.job.BatchTime, Stage: t.Stage.String(),
				Partition: t.Partition, Attempts: m.Resubmits, Err: res.Err}, acts)
		}
		return c.submitStage(js, t.Stage, acts)
	}
	if !errors.Is(res.Err, ErrExecutorLost) {
		run.failures[t.Partition]++
		if n := run.failures[t.Partition]; n >= c.maxAttempts {
			return c.finish(js, &TaskFailedError{Job: js.job.Desc, BatchTime: js.job.BatchTime, Stage: t.Stage.String(),
				Partition: t.Partition, Attempts: n, Err: res.Err}, acts)
		}
	}
	if run.waiting {
		return acts // relaunched when the stage resumes
	}
	return c.launch(js, run, t.Partition, acts)
}

// ExecutorLost forgets the map outputs stored on an executor. Stages that
// need them find out through fetch failures and are resubmitted then; the
// backend reports the executor's running tasks as failed with ErrExecutorLost.
func (c *Core) ExecutorLost(executor string) []Action {
	for _, outs := range c.outputs {
		for p, e := range outs {
			if e == executor {
				delete(outs, p)
			}
		}
	}
	return nil
}

// RemoveShuffles forgets the outputs of shuffles whose data was deleted.
func (c *Core) RemoveShuffles(ids ...int64) {
	for _, id := range ids {
		delete(c.outputs, id)
	}
	c.planner.forget(ids...)
}

func (c *Core) finish(js *jobState, err error, acts []Action) []Action {
	delete(c.jobs, js.job.ID)
	js.job.finished.Store(true)
	if js.job.done != nil {
		close(js.job.done)
	}
	for id, t := range c.tasks {
		if t.Job == js.job {
			delete(c.tasks, id) // their results will be ignored
		}
	}
	var jm JobMetrics
	ids := make([]int, 0, len(js.metrics))
	for id := range js.metrics {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	for _, id := range ids {
		jm.Stages = append(jm.Stages, *js.metrics[id])
	}
	return append(acts, JobDone{Job: js.job, Err: err, Metrics: jm})
}

// Running returns the number of tasks in flight.
func (c *Core) Running() int { return len(c.tasks) }
