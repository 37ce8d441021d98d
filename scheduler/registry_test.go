package scheduler

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/sluicehq/sluice/rdd"
)

// The registry of executor-held data (issue 4/11): operator state placed at
// an executor incarnation, dropped when that incarnation goes, and jobs
// that need lost state failing loudly instead of running on empty state.

// stateful returns a one-stage lineage whose tasks use operator state name.
func stateful(name string, parts int) *rdd.Node {
	n := rdd.Map(words("queue", parts), strings.ToUpper).Node()
	n.State = name
	return n
}

// okAt reports the task done on executor e, incarnation inc.
func (ct *coreTest) okAt(key, e string, inc int64) []string {
	ct.t.Helper()
	t := ct.task(key)
	res := TaskResult{TaskID: t.ID, Executor: e, Incarnation: inc}
	if !t.Stage.IsShuffleMap() {
		res.Result = ct.record(t.Partition)
	}
	return ct.completed(res)
}

func TestCoreStatePlacedByItsFirstTask(t *testing.T) {
	ct := newCoreTest(t, nil)
	j := ct.job(stateful("totals", 2))
	ct.expect("submit", ct.submit(j), "launch 0/0#0", "launch 0/1#0")
	if at := ct.live["0/0"].StateAt; !at.IsZero() || ct.live["0/0"].State != "totals" {
		t.Fatalf("first task: state %q at %v, want totals placed nowhere yet", ct.live["0/0"].State, at)
	}
	ct.okAt("0/0", "e1", 7)
	ct.expect("done", ct.okAt("0/1", "e2", 3), "done 1 ok")

	j2 := ct.job(stateful("totals", 2))
	ct.expect("next batch", ct.submit(j2), "launch 1/0#0", "launch 1/1#0")
	if got := ct.live["1/0"].StateAt; got != (Location{"e1", 7}) {
		t.Errorf("partition 0 placed at %v, want e1#7", got)
	}
	if got := ct.live["1/1"].StateAt; got != (Location{"e2", 3}) {
		t.Errorf("partition 1 placed at %v, want e2#3", got)
	}
	if locs := ct.c.StateLocations(); len(locs) != 2 || locs["totals/1"] != (Location{"e2", 3}) {
		t.Errorf("StateLocations = %v", locs)
	}
}

func TestCoreLostStateFailsTheJobs(t *testing.T) {
	ct := newCoreTest(t, nil)
	j := ct.job(stateful("totals", 2))
	ct.submit(j)
	ct.okAt("0/0", "e1", 1)
	ct.okAt("0/1", "e2", 1)

	j2 := ct.job(stateful("totals", 2))
	ct.expect("next batch", ct.submit(j2), "launch 1/0#0", "launch 1/1#0")
	ct.expect("e1 lost", ct.lost("e1"), "kill 1/0", "kill 1/1", "done 2 error")
	var sl *StateLostError
	if err := ct.dones[j2.ID].Err; !errors.As(err, &sl) || sl.State != "totals" || sl.Partition != 0 || sl.Holder != (Location{"e1", 1}) {
		t.Fatalf("error %v, want state totals partition 0 lost at e1#1", err)
	}
	ct.expect("late results are dropped", ct.okAt("1/1", "e2", 1))
	ct.task("1/0")

	j3 := ct.job(stateful("totals", 2))
	ct.expect("a later batch fails at once", ct.submit(j3), "done 3 error")
	if err := ct.dones[j3.ID].Err; !strings.Contains(err.Error(), `operator state "totals"`) || !strings.Contains(err.Error(), "executor lost") {
		t.Errorf("error %v does not name the state and why it is gone", err)
	}
	j4 := ct.job(words("queue", 1).Node())
	ct.expect("stateless jobs go on", ct.submit(j4), "launch 3/0#0")
	ct.task("3/0")
}

func TestCoreIncarnationChangeDropsWhatItHeld(t *testing.T) {
	ct := newCoreTest(t, nil)
	j := ct.job(stateful("s", 1))
	ct.submit(j)
	ct.expect("placed", ct.okAt("0/0", "e1", 1<<20|1), "done 1 ok")

	// The map outputs of a shuffle on e1's first incarnation.
	_, final := oneShuffle(1)
	j2 := ct.job(final)
	ct.submit(j2)
	ct.okAt("2/0", "e1", 1<<20|1)
	ct.okAt("2/1", "e2", 5)
	ct.expect("maps done", ct.okAt("2/2", "e1", 1<<20|1), "launch 1/0#0")
	// A result from e1's next incarnation (its job process restarted).
	ct.expect("new incarnation", ct.okAt("1/0", "e1", 1<<20|2), "done 2 ok")
	if len(ct.c.outputs[final.Deps[0].Parent.Deps[0].Shuffle.ID]) != 1 {
		t.Errorf("outputs after the incarnation change: %v, want only e2's", ct.c.outputs)
	}
	j3 := ct.job(stateful("s", 1))
	ct.expect("state lost with the old incarnation", ct.submit(j3), "done 3 error")
	if err := ct.dones[j3.ID].Err; !strings.Contains(err.Error(), "replaced by") {
		t.Errorf("error %v does not say the incarnation changed", err)
	}
}

func TestCoreResultOfAReplacedIncarnationIsLost(t *testing.T) {
	ct := newCoreTest(t, nil)
	j := ct.job(words("queue", 2).Node())
	ct.submit(j)
	ct.okAt("0/0", "e1", 2)
	// e1's old incarnation answers after its new one did.
	ct.expect("stale", ct.okAt("0/1", "e1", 1), "launch 0/1#1")
	ct.expect("done", ct.okAt("0/1", "e2", 1), "done 1 ok")
	if got := ct.results[j.ID][1]; got != 1 {
		t.Errorf("partition 1 delivered %d times", got)
	}
}

func TestCoreExecutorLossesAreBounded(t *testing.T) {
	ct := newCoreTest(t, nil)
	j := ct.job(words("queue", 1).Node())
	j.Desc = "print@job.go:3"
	ct.submit(j)
	for range DefaultMaxExecutorLosses - 1 {
		ct.fail("0/0", ErrExecutorLost)
	}
	ct.expect("last loss", ct.fail("0/0", ErrExecutorLost), "done 1 error")
	var tf *TaskFailedError
	if err := ct.dones[j.ID].Err; !errors.As(err, &tf) || tf.Attempts != DefaultMaxExecutorLosses || !strings.Contains(err.Error(), "executor was lost on each of 4 attempts") {
		t.Errorf("error %v", err)
	}
}

func TestCoreFatalFailsAtOnce(t *testing.T) {
	ct := newCoreTest(t, nil)
	j := ct.job(words("queue", 2).Node())
	ct.submit(j)
	ct.expect("fatal", ct.fail("0/0", Fatal(errors.New("graph mismatch"))), "kill 0/1", "done 1 error")
	if err := ct.dones[j.ID].Err; !IsFatal(err) || !strings.Contains(err.Error(), "graph mismatch") {
		t.Errorf("error %v", err)
	}
}

func TestCoreCancel(t *testing.T) {
	ct := newCoreTest(t, nil)
	j := ct.job(words("queue", 2).Node())
	ct.submit(j)
	ct.expect("cancel", ct.render(ct.c.Cancel(j.ID, errors.New("stop timed out"))), "kill 0/0", "kill 0/1", "done 1 error")
	if ct.c.Running() != 0 {
		t.Errorf("%d tasks still counted as running", ct.c.Running())
	}
	ct.expect("late result", ct.okAt("0/0", "e1", 1))
	ct.expect("cancel again", ct.render(ct.c.Cancel(j.ID, errors.New("again"))))
	ct.task("0/1")
}

// stuckBackend never finishes a task; it records kills.
type stuckBackend struct {
	mu     sync.Mutex
	killed []*Task
	report func(TaskResult)
	tasks  []*Task
}

func (b *stuckBackend) Start(report func(TaskResult)) { b.report = report }
func (b *stuckBackend) Launch(t *Task) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tasks = append(b.tasks, t)
}
func (b *stuckBackend) Kill(t *Task) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.killed = append(b.killed, t)
}
func (b *stuckBackend) Stop() {}

// An abandoned RunJob cancels its job: the core forgets it, its tasks are
// killed, and Close does not wait for them.
func TestSchedulerAbandonedJobIsCancelled(t *testing.T) {
	b := &stuckBackend{}
	s, err := New(Config{Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	job := &Job{Final: words("queue", 3).Node(), Desc: "stuck"}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := s.RunJob(ctx, job); errc <- err }()
	for {
		b.mu.Lock()
		n := len(b.tasks)
		b.mu.Unlock()
		if n == 3 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("RunJob: %v", err)
	}
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waits for the tasks of a cancelled job")
	}
	if !job.Finished() {
		t.Error("the cancelled job is not finished")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.killed) != 3 {
		t.Errorf("%d tasks killed, want 3", len(b.killed))
	}
}

// Local tasks see their context end when their job is cancelled.
func TestLocalTaskContextEndsWithItsJob(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	shuffle, blocks := rdd.NewMemShuffle(), rdd.NewMemBlocks()
	defer shuffle.Close()
	defer blocks.Close()
	s, err := New(Config{Backend: NewLocalBackend(1, mem, shuffle, blocks)})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	ended := make(chan struct{})
	job := &Job{Final: words("queue", 1).Node(), Desc: "blocks", Func: func(tc *rdd.TaskContext, part int) (arrow.Record, error) {
		close(started)
		<-tc.Ctx.Done()
		close(ended)
		return nil, tc.Ctx.Err()
	}}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-started; cancel() }()
	if _, err := s.RunJob(ctx, job); !errors.Is(err, context.Canceled) {
		t.Fatalf("RunJob: %v", err)
	}
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the task's context did not end with its job")
	}
	s.Close()
}
