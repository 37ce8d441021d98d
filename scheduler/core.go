package scheduler

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/sluicehq/sluice/rdd"
)

// DefaultMaxAttempts is how many times a task is tried before its job fails.
const DefaultMaxAttempts = 4

// DefaultMaxExecutorLosses is how many times one task may fail because its
// executor was lost (or its call failed) before its job fails: a task that
// keeps killing its executor must not be retried forever.
const DefaultMaxExecutorLosses = 4

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
	// Action and ActionArg name what Func computes ("take" 10, "count"...),
	// so that an executor rebuilds Func from its own copy of the graph.
	Action    string
	ActionArg int64
	Func      ResultFunc
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
	// each map partition's output, and InputNonEmpty each map output's
	// bitmap of the reduce partitions it has rows for (nil: unknown), so
	// that the task fetches no empty block.
	Inputs        map[int64][]string
	InputNonEmpty map[int64][][]byte
	// State is the operator state the task reads and writes ("" for none),
	// and StateAt where that state's partition lives: the task must run on
	// that executor incarnation (zero Location: anywhere; the first
	// successful task places the partition).
	State   string
	StateAt Location
	// Cached lists the cached partitions the plan has this task read
	// instead of computing their lineage, with where they are held, and
	// Prefer the executor holding most of them: the backend runs the task
	// there while that executor is alive (zero: anywhere).
	Cached []CachedInput
	Prefer Location
}

// CachedInput is a cached partition a task reads and the executor holding it.
type CachedInput struct {
	Block rdd.BlockRef
	At    Location
}

// Location is where executor-held data lives: an executor's stable id and
// its incarnation, which changes whenever the executor's process restarts
// or re-registers. Data of an earlier incarnation is gone.
type Location struct {
	Executor    string
	Incarnation int64
}

// IsZero reports whether l names no executor.
func (l Location) IsZero() bool { return l.Executor == "" }

func (l Location) String() string { return fmt.Sprintf("%s#%d", l.Executor, l.Incarnation) }

func (t *Task) String() string {
	return fmt.Sprintf("task %d (job %d, stage %d, partition %d, attempt %d)", t.ID, t.Job.ID, t.Stage.ID, t.Partition, t.Attempt)
}

// TaskResult is what an executor reports for a task.
type TaskResult struct {
	TaskID   int64
	Executor string // the executor's stable id
	// Incarnation identifies the executor process that ran the task; a
	// change of incarnation means everything the executor held is gone.
	Incarnation int64
	Err         error
	Result      arrow.Record // result tasks only; owned by the receiver
	Metrics     TaskMetrics
	Reports     map[string][]byte // rdd.TaskContext.Reports of a successful attempt
	// CachedPuts are the cached partitions the task stored where it ran
	// (rdd.TaskContext.CachedPuts, in the driver's node ids); a backend
	// whose executors' caches the driver cannot read reports them, and the
	// core registers them at the executor.
	CachedPuts []rdd.BlockRef
	// BlockNonEmpty is, for a shuffle map task, the bitmap of the reduce
	// partitions its output has rows for (bit r of byte r/8); nil when the
	// backend does not know. Tasks reading the output skip empty blocks.
	BlockNonEmpty []byte
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
// failures do not count against the task's attempts, but against their own
// limit (DefaultMaxExecutorLosses).
var ErrExecutorLost = errors.New("scheduler: executor lost")

// FatalError wraps a task failure that no retry can fix (the executor runs
// another graph, authentication failed, operator state is lost): the job
// fails at once with it.
type FatalError struct{ Err error }

func (e *FatalError) Error() string { return e.Err.Error() }
func (e *FatalError) Unwrap() error { return e.Err }

// Fatal marks err as fatal for its job.
func Fatal(err error) error { return &FatalError{Err: err} }

// IsFatal reports whether err is (or wraps) a FatalError.
func IsFatal(err error) bool {
	var f *FatalError
	return errors.As(err, &f)
}

// StateLostError fails a job whose operator state partition was held by an
// executor incarnation that is gone: running on would start from empty state
// and commit wrong results.
type StateLostError struct {
	State     string // the stateful operator's name
	Partition int
	Holder    Location
	Reason    string
}

func (e *StateLostError) Error() string {
	return fmt.Sprintf("scheduler: partition %d of operator state %q was held by executor %s, which is gone (%s); the job stops instead of continuing from empty state (with --checkpoint, driver serve restarts it from its checkpoint)",
		e.Partition, e.State, e.Holder, e.Reason)
}

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

// Kill asks the backend to stop a running task of a finished job.
type Kill struct{ Task *Task }

func (Launch) isAction()   {}
func (Kill) isAction()     {}
func (JobDone) isAction()  {}
func (Reported) isAction() {}

// Core is the scheduler's state machine: it takes events (job submitted,
// task finished, executor lost) and returns actions (launch a task, job
// done). It does no I/O and reads no clock, so every path is tested by
// feeding it events.
type Core struct {
	planner     *planner
	maxAttempts int
	maxLosses   int
	nextJob     int64
	nextTask    int64

	jobs    map[int64]*jobState
	tasks   map[int64]*Task          // running tasks
	outputs map[int64]map[int]string // shuffle id -> map partition -> executor
	// nonEmpty holds, beside outputs, each map output's bitmap of the
	// reduce partitions it has rows for (TaskResult.BlockNonEmpty; nil:
	// unknown). It is written with its outputs entry and read only for map
	// partitions outputs has, so an entry outputs forgot is never read.
	nonEmpty map[int64]map[int][]byte

	// The registry of executor-held data beside the shuffle outputs:
	// incarnations is the current incarnation of every executor seen, state
	// where each operator state partition ("name/partition") lives, and
	// lostState why a partition is gone.
	incarnations map[string]int64
	state        map[string]Location
	lostState    map[string]*StateLostError
	// blocks holds where executors keep cached partitions (reported by
	// their tasks): the planner reads a node every partition of which is
	// held instead of walking its lineage, and tasks go to the holders.
	blocks map[rdd.BlockRef]Location
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
	losses   map[int]int  // attempts per partition whose executor was lost
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
	c := &Core{
		maxAttempts:  maxAttempts,
		maxLosses:    DefaultMaxExecutorLosses,
		jobs:         map[int64]*jobState{},
		tasks:        map[int64]*Task{},
		outputs:      map[int64]map[int]string{},
		nonEmpty:     map[int64]map[int][]byte{},
		incarnations: map[string]int64{},
		state:        map[string]Location{},
		lostState:    map[string]*StateLostError{},
		blocks:       map[rdd.BlockRef]Location{},
	}
	c.planner = newPlanner(func(n *rdd.Node) bool {
		return (cached != nil && cached(n)) || c.heldEverywhere(n)
	})
	return c
}

// heldEverywhere reports whether executors hold every partition of n.
func (c *Core) heldEverywhere(n *rdd.Node) bool {
	if len(c.blocks) == 0 {
		return false
	}
	for p := 0; p < n.Parts; p++ {
		if _, ok := c.blocks[rdd.BlockRef{Node: n.ID, Part: p}]; !ok {
			return false
		}
	}
	return true
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
		run = &stageRun{stage: s, pending: map[int]bool{}, running: map[int]bool{}, failures: map[int]int{}, losses: map[int]int{}}
		js.runs[s.ID] = run
	}
	// Plan the parents again: cached partitions registered or dropped
	// since the stage was planned change which shuffles it reads.
	c.planner.refresh(s)
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
	if err := c.stateLost(s); err != nil {
		return c.finish(js, err, acts)
	}
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
	t := &Task{ID: c.nextTask, Job: js.job, Stage: run.stage, Partition: part, Attempt: run.failures[part] + run.losses[part], epoch: run.epoch}
	if t.State = StateOf(run.stage); t.State != "" {
		t.StateAt = c.state[stateKey(t.State, part)]
	}
	t.Cached, t.Prefer = c.cachedInputs(run.stage, part)
	for _, p := range run.stage.Parents {
		if t.Inputs == nil {
			t.Inputs = map[int64][]string{}
		}
		locs := make([]string, p.NumTasks)
		var nonEmpty [][]byte
		for mp, e := range c.outputs[p.Shuffle.ID] {
			locs[mp] = e
			if b := c.nonEmpty[p.Shuffle.ID][mp]; b != nil {
				if nonEmpty == nil {
					nonEmpty = make([][]byte, p.NumTasks)
				}
				nonEmpty[mp] = b
			}
		}
		t.Inputs[p.Shuffle.ID] = locs
		if nonEmpty != nil {
			if t.InputNonEmpty == nil {
				t.InputNonEmpty = map[int64][][]byte{}
			}
			t.InputNonEmpty[p.Shuffle.ID] = nonEmpty
		}
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
	var acts []Action
	if res.Executor != "" {
		acts = c.seen(res.Executor, res.Incarnation, acts)
		if res.Err == nil && res.Incarnation != c.incarnations[res.Executor] {
			// A result from an incarnation that was replaced while the
			// task ran: what it wrote is gone with it.
			res.Err = fmt.Errorf("%w: result from %s, replaced by incarnation %d", ErrExecutorLost,
				Location{res.Executor, res.Incarnation}, c.incarnations[res.Executor])
		}
	}
	js := c.jobs[t.Job.ID]
	if js == nil { // the job failed on this result's incarnation change
		if res.Result != nil {
			res.Result.Release()
		}
		return acts
	}
	run := js.runs[t.Stage.ID]
	if run == nil { // the stage was abandoned
		if res.Result != nil {
			res.Result.Release()
		}
		return acts
	}
	delete(run.running, t.Partition)
	m := js.stageMetrics(t.Stage)
	if res.Err != nil {
		return append(acts, c.failed(js, run, t, res, m)...)
	}
	if t.State != "" {
		key := stateKey(t.State, t.Partition)
		at := Location{res.Executor, res.Incarnation}
		if cur, ok := c.state[key]; !ok {
			c.state[key] = at
		} else if cur != at {
			// The backend must run state tasks where their state lives.
			if res.Result != nil {
				res.Result.Release()
			}
			return c.finish(js, &StateLostError{State: t.State, Partition: t.Partition, Holder: cur,
				Reason: fmt.Sprintf("a task ran on %s instead", at)}, acts)
		}
	}
	if res.Executor != "" {
		at := Location{res.Executor, res.Incarnation}
		for _, b := range res.CachedPuts {
			c.blocks[b] = at
		}
	}
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
		ne := c.nonEmpty[t.Stage.Shuffle.ID]
		if ne == nil {
			ne = map[int][]byte{}
			c.nonEmpty[t.Stage.Shuffle.ID] = ne
		}
		b := res.BlockNonEmpty
		if len(b) != (t.Stage.Shuffle.NumReduce+7)/8 {
			b = nil // not a bitmap of this shuffle: unknown
		}
		ne[t.Partition] = b // nil (unknown) replaces an older attempt's
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
	var miss *rdd.CacheMissError
	if errors.As(res.Err, &miss) {
		// The executor does not have a partition the plan has it read:
		// forget that it holds it, and plan the stage again (its lineage
		// now, or another holder).
		b := rdd.BlockRef{Node: miss.NodeID, Part: miss.Part}
		if at, ok := c.blocks[b]; ok && at.Executor == res.Executor {
			delete(c.blocks, b)
		}
		return c.replan(js, run, t, m, res.Err, acts)
	}
	if ff, ok := rdd.IsFetchFailed(res.Err); ok && !readsShuffle(t.Stage, ff.ShuffleID) {
		// The task computed the lineage of a cached partition it was to
		// read from another executor, and that lineage's shuffle output is
		// gone: plan the lineage instead. When the task ran away from the
		// executor it preferred (the holder of most of its inputs), the
		// backend found that holder unable to take it (its calls failed,
		// it drains, it is gone): forget every partition it holds, as a
		// lost map output forgets all of its executor's outputs, or each
		// of its partitions costs a setback of its own. Otherwise only the
		// partitions this task could not read.
		for _, in := range t.Cached {
			switch {
			case in.At.Executor == res.Executor:
			case in.At.Executor == t.Prefer.Executor:
				c.forgetBlocksOf(in.At.Executor)
			default:
				delete(c.blocks, in.Block)
			}
		}
		return c.replan(js, run, t, m, res.Err, acts)
	}
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
		// for what is missing, and retry this stage after it. Every output
		// its executor held is forgotten with it (as Spark does): the
		// usual cause is that executor's death, which the driver may learn
		// only seconds later, and one setback per lost map output would
		// exhaust the stage's resubmits.
		run.epoch++
		if outs := c.outputs[ff.ShuffleID]; outs != nil {
			if holder, ok := outs[ff.MapPart]; ok && holder != "" && holder != LocalID {
				c.forgetOutputsOf(holder)
			}
			delete(outs, ff.MapPart)
		}
		return c.setBack(js, t, m, res.Err, acts)
	}
	switch {
	case IsFatal(res.Err):
		return c.finish(js, &TaskFailedError{Job: js.job.Desc, BatchTime: js.job.BatchTime, Stage: t.Stage.String(),
			Partition: t.Partition, Attempts: run.failures[t.Partition] + run.losses[t.Partition] + 1, Err: res.Err}, acts)
	case errors.Is(res.Err, ErrExecutorLost):
		run.losses[t.Partition]++
		if n := run.losses[t.Partition]; n >= c.maxLosses {
			return c.finish(js, &TaskFailedError{Job: js.job.Desc, BatchTime: js.job.BatchTime, Stage: t.Stage.String(),
				Partition: t.Partition, Attempts: n, Err: fmt.Errorf("its executor was lost on each of %d attempts (does the task crash its executor process?), last: %w", n, res.Err)}, acts)
		}
	default:
		run.failures[t.Partition]++
		if n := run.failures[t.Partition]; n >= c.maxAttempts {
			return c.finish(js, &TaskFailedError{Job: js.job.Desc, BatchTime: js.job.BatchTime, Stage: t.Stage.String(),
				Partition: t.Partition, Attempts: n, Err: res.Err}, acts)
		}
	}
	if err := c.stateLost(t.Stage); err != nil {
		return c.finish(js, err, acts)
	}
	if run.waiting {
		return acts // relaunched when the stage resumes
	}
	if len(t.Cached) > 0 {
		// The cached partitions it was to read may be gone with their
		// executor: submitting the stage plans their lineage if so.
		return c.submitStage(js, t.Stage, acts)
	}
	return c.launch(js, run, t.Partition, acts)
}

// replan sets stage s back (with c.setBack) after a task found that the
// cached partitions it was planned to read are not there: the stage is
// planned again around what the registry now holds. A task launched before
// the stage was last set back (its epoch is older) planned with what was
// known then: its failure does not count, so that one unusable holder of
// many partitions is one setback, not one per partition.
func (c *Core) replan(js *jobState, run *stageRun, t *Task, m *StageMetrics, err error, acts []Action) []Action {
	if t.epoch < run.epoch {
		if run.waiting {
			return acts // relaunched when the stage resumes
		}
		return c.submitStage(js, t.Stage, acts)
	}
	run.epoch++
	return c.setBack(js, t, m, err, acts)
}

// forgetBlocksOf forgets every cached partition executor holds (any
// incarnation).
func (c *Core) forgetBlocksOf(executor string) {
	for b, at := range c.blocks {
		if at.Executor == executor {
			delete(c.blocks, b)
		}
	}
}

// forgetOutputsOf forgets every shuffle map output executor holds.
func (c *Core) forgetOutputsOf(executor string) {
	for _, outs := range c.outputs {
		for p, e := range outs {
			if e == executor {
				delete(outs, p)
			}
		}
	}
}

// setBack counts one more setback of t's stage (input it needs was lost or
// could not be read where it ran) and submits the stage again, which plans
// what is missing; past maxStageResubmits the job fails.
func (c *Core) setBack(js *jobState, t *Task, m *StageMetrics, err error, acts []Action) []Action {
	m.Resubmits++
	if m.Resubmits > maxStageResubmits {
		return c.finish(js, &TaskFailedError{Job: js.job.Desc, BatchTime: js.job.BatchTime, Stage: t.Stage.String(),
			Partition: t.Partition, Attempts: m.Resubmits, Err: err}, acts)
	}
	return c.submitStage(js, t.Stage, acts)
}

// readsShuffle reports whether stage s reads the output of shuffle id
// directly (it is one of its planned parents).
func readsShuffle(s *Stage, id int64) bool {
	for _, p := range s.Parents {
		if p.Shuffle.ID == id {
			return true
		}
	}
	return false
}

// cachedInputs returns the cached partitions executors hold that partition
// part of stage s reads (walking its narrow lineage, not past a held
// partition), and the executor holding most of them.
func (c *Core) cachedInputs(s *Stage, part int) ([]CachedInput, Location) {
	if len(c.blocks) == 0 {
		return nil, Location{}
	}
	var out []CachedInput
	seen := map[rdd.BlockRef]bool{}
	var walk func(n *rdd.Node, p int)
	walk = func(n *rdd.Node, p int) {
		b := rdd.BlockRef{Node: n.ID, Part: p}
		if seen[b] {
			return
		}
		seen[b] = true
		if n.Cached {
			if at, ok := c.blocks[b]; ok {
				out = append(out, CachedInput{Block: b, At: at})
				return
			}
		}
		for _, np := range NarrowParents(n, p) {
			walk(np.Node, np.Part)
		}
	}
	walk(s.Node, part)
	if len(out) == 0 {
		return nil, Location{}
	}
	votes := map[Location]int{}
	var best Location
	for _, in := range out {
		votes[in.At]++
		if n := votes[in.At]; n > votes[best] || (n == votes[best] && in.At.String() < best.String()) {
			best = in.At
		}
	}
	return out, best
}

// ExecutorLost forgets everything an executor held: its map outputs (stages
// that need them find out through fetch failures and are resubmitted then)
// and its operator state partitions (jobs that need them fail with a
// *StateLostError). The backend reports the executor's running tasks as
// failed with ErrExecutorLost.
func (c *Core) ExecutorLost(executor string) []Action {
	return c.drop(executor, "executor lost", nil)
}

// seen records the incarnation an executor reported; a new one means the
// executor restarted (or re-registered) and lost what it held.
func (c *Core) seen(executor string, inc int64, acts []Action) []Action {
	cur, ok := c.incarnations[executor]
	switch {
	case !ok:
		c.incarnations[executor] = inc
	case inc > cur:
		acts = c.drop(executor, fmt.Sprintf("incarnation %d replaced by %d", cur, inc), acts)
		c.incarnations[executor] = inc
	}
	return acts
}

// drop forgets what executor held and fails the jobs that need its state.
func (c *Core) drop(executor, reason string, acts []Action) []Action {
	c.forgetBlocksOf(executor)
	c.forgetOutputsOf(executor)
	for key, at := range c.state {
		if at.Executor == executor {
			name, part := splitStateKey(key)
			c.lostState[key] = &StateLostError{State: name, Partition: part, Holder: at, Reason: reason}
			delete(c.state, key)
		}
	}
	if len(c.lostState) == 0 {
		return acts
	}
	ids := make([]int64, 0, len(c.jobs))
	for id := range c.jobs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		js := c.jobs[id]
		for _, run := range js.runs {
			if err := c.stateLost(run.stage); err != nil {
				acts = c.finish(js, err, acts)
				break
			}
		}
	}
	return acts
}

// stateLost returns the error of a stage whose operator state lost a
// partition, nil if it has none or all of it is there.
func (c *Core) stateLost(s *Stage) error {
	name := StateOf(s)
	if name == "" {
		return nil
	}
	for p := 0; p < s.NumTasks; p++ {
		if err := c.lostState[stateKey(name, p)]; err != nil {
			return err
		}
	}
	return nil
}

func stateKey(name string, part int) string { return name + "/" + strconv.Itoa(part) }

func splitStateKey(key string) (string, int) {
	i := strings.LastIndexByte(key, '/')
	p, _ := strconv.Atoi(key[i+1:])
	return key[:i], p
}

// StateLocations returns where every operator state partition lives, by
// "name/partition": the executors a batch's state commit goes to.
func (c *Core) StateLocations() map[string]Location { return maps.Clone(c.state) }

// Cancel ends a job that its submitter abandoned (a stop timeout, a
// cancelled context): it fails with err and its running tasks are killed.
func (c *Core) Cancel(jobID int64, err error) []Action {
	js := c.jobs[jobID]
	if js == nil {
		return nil
	}
	return c.finish(js, err, nil)
}

// ForgetCached forgets every cached partition of the given nodes (their
// stream forgot them; executors drop them from their block stores too).
func (c *Core) ForgetCached(nodeIDs ...int64) {
	if len(c.blocks) == 0 {
		return
	}
	ids := map[int64]bool{}
	for _, id := range nodeIDs {
		ids[id] = true
	}
	for b := range c.blocks {
		if ids[b.Node] {
			delete(c.blocks, b)
		}
	}
}

// CachedLocations returns, per executor incarnation, how many cached
// partitions it holds.
func (c *Core) CachedLocations() map[Location]int {
	out := map[Location]int{}
	for _, at := range c.blocks {
		out[at]++
	}
	return out
}

// RemoveShuffles forgets the outputs of shuffles whose data was deleted.
func (c *Core) RemoveShuffles(ids ...int64) {
	for _, id := range ids {
		delete(c.outputs, id)
		delete(c.nonEmpty, id)
	}
	c.planner.forget(ids...)
}

func (c *Core) finish(js *jobState, err error, acts []Action) []Action {
	delete(c.jobs, js.job.ID)
	js.job.finished.Store(true)
	if js.job.done != nil {
		close(js.job.done)
	}
	var kill []int64
	for id, t := range c.tasks {
		if t.Job == js.job {
			kill = append(kill, id)
		}
	}
	slices.Sort(kill)
	for _, id := range kill {
		acts = append(acts, Kill{Task: c.tasks[id]})
		delete(c.tasks, id) // their results will be ignored
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
