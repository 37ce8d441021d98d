package scheduler

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/sluicehq/sluice/rdd"
)

// PanicError is a task failure caused by a panic in user code.
type PanicError struct {
	Op    string // the operator whose function panicked, "map@job.go:12"
	Value any
	Stack string
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("panic in %s: %v\n%s", e.Op, e.Value, e.Stack)
}

// blamed returns the node of stage s with the given ID (from
// TaskContext.CurrentID): one the stage pipelines, or the operator whose
// map side a shuffle map stage runs. Nil if none (0: no user function ran).
func blamed(s *Stage, id int64) *rdd.Node {
	if id == 0 {
		return nil
	}
	if s.Shuffle != nil && s.Shuffle.Child != nil && s.Shuffle.Child.ID == id {
		return s.Shuffle.Child
	}
	for _, n := range Walk(s.Node) {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// RunTask runs one task attempt in tc: it writes the map output of a shuffle
// map task, or computes a result task's partition. A panic in user code is
// returned as a *PanicError naming the operator.
func RunTask(tc *rdd.TaskContext, t *Task) (res TaskResult) {
	start := time.Now()
	res.TaskID = t.ID
	defer func() {
		if v := recover(); v != nil {
			op := t.Stage.Name()
			if n := blamed(t.Stage, tc.CurrentID()); n != nil {
				op = n.String()
			}
			res.Err = &PanicError{Op: op, Value: v, Stack: string(debug.Stack())}
			if res.Result != nil {
				res.Result.Release()
				res.Result = nil
			}
		}
		res.Metrics = TaskMetrics{Duration: time.Since(start), RecordsRead: tc.RecordsRead}
	}()
	tc.StageID = t.Stage.ID
	tc.Partition = t.Partition
	tc.Attempt = t.Attempt
	tc.BatchTime = t.Job.BatchTime
	var rec arrow.Record
	var err error
	if t.Stage.IsShuffleMap() {
		err = t.Stage.Shuffle.WriteMap(tc, t.Partition)
	} else {
		rec, err = t.Job.Func(tc, t.Partition)
	}
	if err != nil {
		if rec != nil {
			rec.Release()
		}
		res.Err = fmt.Errorf("%s: %w", t.Stage, err)
		return res
	}
	res.Result = rec
	res.Reports = tc.Reports
	return res
}

// Backend runs tasks on executor slots. Launch must not block; the backend
// reports every launched task once through the report function given to
// Start, except tasks of finished jobs, which it may drop unrun.
type Backend interface {
	Start(report func(TaskResult))
	Launch(t *Task)
	// Stop stops the slots after the tasks in flight finish and reports them.
	Stop()
}

// Killer is implemented by backends that can stop a running task early (a
// task of a job that failed or was cancelled); its result is then ignored.
type Killer interface {
	Kill(t *Task)
}

// Config configures a Scheduler.
type Config struct {
	Backend     Backend // required
	MaxAttempts int     // per task; 0 means DefaultMaxAttempts
	// Cached reports whether every partition of a cached node is stored.
	Cached func(*rdd.Node) bool
	// OnReports, if set, receives the reports of every accepted successful
	// task, in the scheduler's goroutine; it must not block.
	OnReports func(t *Task, reports map[string][]byte)
}

// Scheduler drives a Core from one goroutine: it feeds it submitted jobs and
// task results and carries out its actions.
type Scheduler struct {
	cfg     Config
	submit  chan submission
	results chan TaskResult
	remove  chan []int64
	lost    chan string
	cancel  chan cancelJob
	query   chan func(*Core)
	stop    chan struct{}
	done    chan struct{}
	close   sync.Once
}

type cancelJob struct {
	job *Job
	err error
}

type submission struct {
	job  *Job
	done chan JobDone
}

// New starts a scheduler loop; Close stops it.
func New(cfg Config) (*Scheduler, error) {
	if cfg.Backend == nil {
		return nil, fmt.Errorf("scheduler: Config.Backend is nil: give a backend (NewLocalBackend for local mode)")
	}
	s := &Scheduler{
		cfg:     cfg,
		submit:  make(chan submission),
		results: make(chan TaskResult, 64),
		remove:  make(chan []int64),
		lost:    make(chan string),
		cancel:  make(chan cancelJob),
		query:   make(chan func(*Core)),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	cfg.Backend.Start(func(r TaskResult) { s.results <- r })
	go s.loop()
	return s, nil
}

func (s *Scheduler) loop() {
	defer close(s.done)
	core := NewCore(s.cfg.MaxAttempts, s.cfg.Cached)
	waiters := map[int64]chan JobDone{}
	do := func(acts []Action) {
		for _, a := range acts {
			switch a := a.(type) {
			case Launch:
				s.cfg.Backend.Launch(a.Task)
			case JobDone:
				waiters[a.Job.ID] <- a
				delete(waiters, a.Job.ID)
			case Reported:
				if s.cfg.OnReports != nil {
					s.cfg.OnReports(a.Task, a.Reports)
				}
			case Kill:
				if k, ok := s.cfg.Backend.(Killer); ok {
					k.Kill(a.Task)
				}
			}
		}
	}
	stopping := false
	stopc := s.stop
	for {
		if stopping && core.Running() == 0 {
			return
		}
		select {
		case sub := <-s.submit:
			if stopping {
				sub.done <- JobDone{Job: sub.job, Err: fmt.Errorf("scheduler: stopped")}
				continue
			}
			acts := core.Submit(sub.job)
			waiters[sub.job.ID] = sub.done
			do(acts)
		case cj := <-s.cancel:
			if cj.job.ID != 0 {
				do(core.Cancel(cj.job.ID, cj.err))
			}
		case q := <-s.query:
			q(core)
		case r := <-s.results:
			do(core.Completed(r))
		case ids := <-s.remove:
			core.RemoveShuffles(ids...)
		case id := <-s.lost:
			do(core.ExecutorLost(id))
		case <-stopc:
			stopping = true
			stopc = nil
		}
	}
}

// RunJob submits job and waits for it to finish.
func (s *Scheduler) RunJob(ctx context.Context, job *Job) (JobMetrics, error) {
	sub := submission{job: job, done: make(chan JobDone, 1)}
	select {
	case s.submit <- sub:
	case <-s.done:
		return JobMetrics{}, fmt.Errorf("scheduler: stopped")
	case <-ctx.Done():
		return JobMetrics{}, ctx.Err()
	}
	select {
	case d := <-sub.done:
		return d.Metrics, d.Err
	case <-ctx.Done():
		// The job is cancelled: it ends in the core and its running tasks
		// are killed; results that still come are dropped.
		err := fmt.Errorf("scheduler: job %s abandoned: %w", job.Desc, ctx.Err())
		select {
		case s.cancel <- cancelJob{job: job, err: err}:
		case <-s.done:
		}
		return JobMetrics{}, err
	}
}

// StateLocations returns where every operator state partition lives (by
// "name/partition"), as the scheduler's registry knows it.
func (s *Scheduler) StateLocations() map[string]Location {
	out := make(chan map[string]Location, 1)
	select {
	case s.query <- func(c *Core) { out <- c.StateLocations() }:
		return <-out
	case <-s.done:
		return nil
	}
}

// ForgetCached tells the scheduler that the given nodes' cached partitions
// were dropped (their stream forgot them).
func (s *Scheduler) ForgetCached(ids ...int64) {
	select {
	case s.query <- func(c *Core) { c.ForgetCached(ids...) }:
	case <-s.done:
	}
}

// CachedLocations returns how many cached partitions each executor
// incarnation holds, as the scheduler's registry knows it.
func (s *Scheduler) CachedLocations() map[Location]int {
	out := make(chan map[Location]int, 1)
	select {
	case s.query <- func(c *Core) { out <- c.CachedLocations() }:
		return <-out
	case <-s.done:
		return nil
	}
}

// ForgetShuffles tells the scheduler that the given shuffles' outputs were deleted.
func (s *Scheduler) ForgetShuffles(ids ...int64) {
	select {
	case s.remove <- ids:
	case <-s.done:
	}
}

// ExecutorLost tells the scheduler that an executor is gone with the shuffle
// outputs it held (backends call it; the executor's running tasks are
// reported separately, failed with ErrExecutorLost).
func (s *Scheduler) ExecutorLost(id string) {
	select {
	case s.lost <- id:
	case <-s.done:
	}
}

// Close waits for tasks in flight, then stops the loop and the backend.
func (s *Scheduler) Close() {
	s.close.Do(s.shutdown)
}

func (s *Scheduler) shutdown() {
	close(s.stop)
	<-s.done
	// Tasks of failed jobs may still be running: drain their reports while
	// the backend stops.
	stopped := make(chan struct{})
	go func() { s.cfg.Backend.Stop(); close(stopped) }()
	for {
		select {
		case r := <-s.results:
			if r.Result != nil {
				r.Result.Release()
			}
		case <-stopped:
			// Reports sent before the slots stopped may still be
			// buffered: select picks among ready cases at random.
			for {
				select {
				case r := <-s.results:
					if r.Result != nil {
						r.Result.Release()
					}
				default:
					return
				}
			}
		}
	}
}
