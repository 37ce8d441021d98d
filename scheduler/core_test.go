package scheduler

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/sluicehq/sluice/rdd"
)

// These tests drive Core by hand: one goroutine, no backend, no clock. Each
// step feeds an event and compares the actions it returns, rendered as
// "launch <stage>/<partition>#<attempt>" and "done <job> ok|<error>".

// coreTest holds a Core, the tasks it has launched and not yet been told
// about, and a checked allocator for result records.
type coreTest struct {
	t    *testing.T
	c    *Core
	mem  *memory.CheckedAllocator
	live map[string]*Task // by "stage/partition"
	// results[job] counts OnResult calls per partition.
	results map[int64]map[int]int
	dones   map[int64]JobDone
}

func newCoreTest(t *testing.T, cached func(*rdd.Node) bool) *coreTest {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	t.Cleanup(func() { mem.AssertSize(t, 0) })
	return &coreTest{
		t:       t,
		c:       NewCore(0, cached),
		mem:     mem,
		live:    map[string]*Task{},
		results: map[int64]map[int]int{},
		dones:   map[int64]JobDone{},
	}
}

// job returns a job over final whose OnResult counts calls and checks that
// the record it gets holds the partition number.
func (ct *coreTest) job(final *rdd.Node) *Job {
	j := &Job{Final: final, Desc: "test@core_test.go"}
	j.OnResult = func(part int, rec arrow.Record) error {
		if got := rdd.Decode(rdd.CodecOf[int](), rec); !slices.Equal(got, []int{part}) {
			ct.t.Errorf("job %d partition %d: OnResult got %v", j.ID, part, got)
		}
		m := ct.results[j.ID]
		if m == nil {
			m = map[int]int{}
			ct.results[j.ID] = m
		}
		m[part]++
		return nil
	}
	return j
}

// render records the actions' tasks as live and describes them.
func (ct *coreTest) render(acts []Action) []string {
	var out []string
	for _, a := range acts {
		switch a := a.(type) {
		case Launch:
			key := fmt.Sprintf("%d/%d", a.Task.Stage.ID, a.Task.Partition)
			if old := ct.live[key]; old != nil && old.Job == a.Task.Job {
				ct.t.Errorf("%s launched while %s is in flight", a.Task, old)
			}
			ct.live[key] = a.Task
			out = append(out, fmt.Sprintf("launch %s#%d", key, a.Task.Attempt))
		case JobDone:
			if _, dup := ct.dones[a.Job.ID]; dup {
				ct.t.Errorf("job %d done twice", a.Job.ID)
			}
			ct.dones[a.Job.ID] = a
			if !a.Job.Finished() {
				ct.t.Errorf("job %d done but not Finished", a.Job.ID)
			}
			res := "ok"
			if a.Err != nil {
				res = "error"
			}
			out = append(out, fmt.Sprintf("done %d %s", a.Job.ID, res))
		case Kill:
			// The task stays live: its late result may still come.
			out = append(out, fmt.Sprintf("kill %d/%d", a.Task.Stage.ID, a.Task.Partition))
		default:
			ct.t.Fatalf("unknown action %T", a)
		}
	}
	return out
}

// expect compares the rendered actions with want, in order.
func (ct *coreTest) expect(step string, got []string, want ...string) {
	ct.t.Helper()
	if !slices.Equal(got, want) {
		ct.t.Fatalf("%s:\ngot  %q\nwant %q", step, got, want)
	}
}

// task returns the live task for "stage/partition" and forgets it.
func (ct *coreTest) task(key string) *Task {
	ct.t.Helper()
	t := ct.live[key]
	if t == nil {
		ct.t.Fatalf("no live task %s (live: %v)", key, slices.Sorted(maps.Keys(ct.live)))
	}
	delete(ct.live, key)
	return t
}

// submit submits j and renders the actions.
func (ct *coreTest) submit(j *Job) []string { return ct.render(ct.c.Submit(j)) }

// lost reports executor e lost and renders the actions.
func (ct *coreTest) lost(e string) []string { return ct.render(ct.c.ExecutorLost(e)) }

// completed feeds res and renders the actions.
func (ct *coreTest) completed(res TaskResult) []string { return ct.render(ct.c.Completed(res)) }

// ok reports the task done on executor e; a result task carries a record
// holding its partition number.
func (ct *coreTest) ok(key, e string) []string {
	t := ct.task(key)
	res := TaskResult{TaskID: t.ID, Executor: e, Metrics: TaskMetrics{Duration: time.Duration(t.Partition+1) * time.Millisecond, RecordsRead: 10}}
	if !t.Stage.IsShuffleMap() {
		res.Result = ct.record(t.Partition)
	}
	return ct.completed(res)
}

func (ct *coreTest) record(part int) arrow.Record {
	return rdd.Encode(ct.mem, rdd.CodecOf[int](), []int{part})
}

// fail reports the task failed with err.
func (ct *coreTest) fail(key string, err error) []string {
	t := ct.task(key)
	return ct.completed(TaskResult{TaskID: t.ID, Executor: "e1", Err: err})
}

// fetchFailed is the error a task reports when a map output is gone, wrapped
// as RunTask wraps it.
func fetchFailed(s *rdd.RDD[kv], mapPart int) error {
	ff := &rdd.FetchFailedError{ShuffleID: s.Node().Deps[0].Shuffle.ID, MapPart: mapPart, Reason: "map output missing"}
	return fmt.Errorf("stage x: %w", ff)
}

var errBoom = errors.New("boom")

// Stage ids are given in planning order: the result stage first, then its
// parents depth first. In the chain below the result stage is 0, the second
// shuffle's map stage 1 and the first shuffle's map stage 2.
func twoShuffles() (first, second *rdd.RDD[kv], final *rdd.Node) {
	first = rdd.ReduceByKey(pairsOf(words("queue", 2)), sum, 3)
	second = rdd.ReduceByKey(rdd.MapValues(first, double), sum, 2)
	return first, second, rdd.Filter(second, positive).Node()
}

func TestCoreLaunchesStagesAfterTheirParents(t *testing.T) {
	ct := newCoreTest(t, nil)
	_, _, final := twoShuffles()
	j := ct.job(final)
	ct.expect("submit", ct.submit(j), "launch 2/0#0", "launch 2/1#0")
	if j.ID != 1 {
		t.Fatalf("job id %d", j.ID)
	}
	ct.expect("first map task of stage 2", ct.ok("2/1", "e1"))
	ct.expect("stage 2 done", ct.ok("2/0", "e1"), "launch 1/0#0", "launch 1/1#0", "launch 1/2#0")
	ct.expect("stage 1 partial", ct.ok("1/2", "e1"))
	ct.expect("stage 1 partial", ct.ok("1/0", "e2"))
	if ct.c.Running() != 1 {
		t.Fatalf("running %d, want 1", ct.c.Running())
	}
	ct.expect("stage 1 done", ct.ok("1/1", "e1"), "launch 0/0#0", "launch 0/1#0")
	ct.expect("first result", ct.ok("0/1", "e1"))
	ct.expect("last result", ct.ok("0/0", "e1"), "done 1 ok")
	if d := ct.dones[j.ID]; d.Err != nil {
		t.Fatal(d.Err)
	}
	if got := ct.results[j.ID]; len(got) != 2 || got[0] != 1 || got[1] != 1 {
		t.Fatalf("OnResult calls %v", got)
	}
	if ct.c.Running() != 0 {
		t.Fatalf("running %d after the job", ct.c.Running())
	}
	m := ct.dones[j.ID].Metrics
	var names []string
	for _, s := range m.Stages {
		names = append(names, fmt.Sprintf("%d:%s tasks=%d max=%s", s.StageID, s.Name, s.Tasks, s.MaxTaskTime))
	}
	want := []string{
		"0:filter<-reduceByKey tasks=2 max=2ms",
		"1:mapValues<-reduceByKey tasks=3 max=3ms",
		"2:map<-queue tasks=2 max=2ms",
	}
	if !slices.Equal(names, want) {
		t.Fatalf("metrics\ngot  %q\nwant %q", names, want)
	}
	if got := m.RecordsRead(); got != 70 {
		t.Fatalf("records read %d, want 70", got)
	}
	if got := m.Stages[1].TaskTime; got != 6*time.Millisecond {
		t.Fatalf("stage 1 task time %s", got)
	}
}

func TestCoreRunsIndependentParentsTogether(t *testing.T) {
	ct := newCoreTest(t, nil)
	a := rdd.ReduceByKey(pairsOf(words("left", 1)), sum, 2)
	b := rdd.ReduceByKey(pairsOf(words("right", 2)), sum, 2)
	j := ct.job(rdd.Union(a, b).Node())
	// result 0 (4 tasks), a's map stage 1, b's map stage 2.
	ct.expect("submit", ct.submit(j), "launch 1/0#0", "launch 2/0#0", "launch 2/1#0")
	ct.expect("a done, b running", ct.ok("1/0", "e1"))
	ct.expect("b partial", ct.ok("2/0", "e1"))
	ct.expect("b done", ct.ok("2/1", "e1"), "launch 0/0#0", "launch 0/1#0", "launch 0/2#0", "launch 0/3#0")
	for p := range 3 {
		ct.expect("result", ct.ok(fmt.Sprintf("0/%d", p), "e1"))
	}
	ct.expect("result", ct.ok("0/3", "e1"), "done 1 ok")
}

func TestCoreSkipsComputedShuffleStages(t *testing.T) {
	t.Run("second job over a computed shuffle", func(t *testing.T) {
		ct := newCoreTest(t, nil)
		r := rdd.ReduceByKey(pairsOf(words("queue", 2)), sum, 2)
		j1 := ct.job(r.Node())
		ct.expect("submit 1", ct.submit(j1), "launch 1/0#0", "launch 1/1#0")
		ct.expect("map", ct.ok("1/0", "e1"))
		ct.expect("map", ct.ok("1/1", "e1"), "launch 0/0#0", "launch 0/1#0")
		ct.expect("result", ct.ok("0/0", "e1"))
		ct.expect("result", ct.ok("0/1", "e1"), "done 1 ok")

		// The second job's result stage is 2; the shuffle's stage 1 is
		// memoized and its outputs are all there.
		j2 := ct.job(rdd.MapValues(r, double).Node())
		ct.expect("submit 2", ct.submit(j2), "launch 2/0#0", "launch 2/1#0")
		ct.expect("result", ct.ok("2/0", "e1"))
		ct.expect("result", ct.ok("2/1", "e1"), "done 2 ok")
		if st := ct.dones[j2.ID].Metrics.Stages; len(st) != 1 || st[0].StageID != 2 {
			t.Fatalf("skipped stage in metrics: %+v", st)
		}
	})
	t.Run("second job over a shared upstream shuffle", func(t *testing.T) {
		ct := newCoreTest(t, nil)
		first, _, final := twoShuffles()
		j1 := ct.job(final)
		ct.expect("submit 1", ct.submit(j1), "launch 2/0#0", "launch 2/1#0")
		ct.expect("map", ct.ok("2/0", "e1"))
		ct.expect("map", ct.ok("2/1", "e1"), "launch 1/0#0", "launch 1/1#0", "launch 1/2#0")
		// A second job needs only the first shuffle, which is computed:
		// it starts with its result tasks while job 1 is still running.
		j2 := ct.job(rdd.Filter(first, positive).Node())
		ct.expect("submit 2", ct.submit(j2), "launch 3/0#0", "launch 3/1#0", "launch 3/2#0")
		for p := range 2 {
			ct.expect("job 2 result", ct.ok(fmt.Sprintf("3/%d", p), "e1"))
		}
		ct.expect("job 2 result", ct.ok("3/2", "e1"), "done 2 ok")
		ct.expect("map", ct.ok("1/0", "e1"))
		ct.expect("map", ct.ok("1/1", "e1"))
		ct.expect("map", ct.ok("1/2", "e1"), "launch 0/0#0", "launch 0/1#0")
		ct.expect("result", ct.ok("0/0", "e1"))
		ct.expect("result", ct.ok("0/1", "e1"), "done 1 ok")
	})
	t.Run("diamond in one job runs the shared shuffle once", func(t *testing.T) {
		ct := newCoreTest(t, nil)
		r := rdd.ReduceByKey(pairsOf(words("queue", 2)), sum, 3)
		a := rdd.ReduceByKey(rdd.MapValues(r, double), sum, 2)
		b := rdd.GroupByKey(rdd.Filter(r, positive), 2)
		j := ct.job(rdd.CoGroup(a, b, 2).Node())
		// Stages: 0 result (cogroup); 1 writes cogroup's first input (over
		// a), 2 writes a's shuffle, 3 writes r's shuffle; 4 writes
		// cogroup's second input (over b), 5 writes b's shuffle, whose
		// parent is stage 3 again.
		ct.expect("submit", ct.submit(j), "launch 3/0#0", "launch 3/1#0")
		ct.expect("r map", ct.ok("3/0", "e1"))
		ct.expect("r map", ct.ok("3/1", "e1"),
			"launch 2/0#0", "launch 2/1#0", "launch 2/2#0", "launch 5/0#0", "launch 5/1#0", "launch 5/2#0")
		ct.expect("a map", ct.ok("2/0", "e1"))
		ct.expect("a map", ct.ok("2/1", "e1"))
		ct.expect("a's maps done", ct.ok("2/2", "e1"), "launch 1/0#0", "launch 1/1#0")
		ct.expect("b map", ct.ok("5/0", "e1"))
		ct.expect("b map", ct.ok("5/1", "e1"))
		ct.expect("b's maps done", ct.ok("5/2", "e1"), "launch 4/0#0", "launch 4/1#0")
		ct.expect("ga map", ct.ok("1/0", "e1"))
		ct.expect("ga map", ct.ok("1/1", "e1"))
		ct.expect("gb map", ct.ok("4/0", "e1"))
		ct.expect("gb map", ct.ok("4/1", "e1"), "launch 0/0#0", "launch 0/1#0")
		ct.expect("result", ct.ok("0/0", "e1"))
		ct.expect("result", ct.ok("0/1", "e1"), "done 1 ok")
	})
}

func TestCoreRetriesFailedTasks(t *testing.T) {
	ct := newCoreTest(t, nil)
	r := rdd.ReduceByKey(pairsOf(words("queue", 2)), sum, 1)
	j := ct.job(r.Node())
	ct.expect("submit", ct.submit(j), "launch 1/0#0", "launch 1/1#0")
	ct.expect("map fails", ct.fail("1/1", errBoom), "launch 1/1#1")
	ct.expect("map ok", ct.ok("1/0", "e1"))
	ct.expect("map fails again", ct.fail("1/1", errBoom), "launch 1/1#2")
	ct.expect("map fails a third time", ct.fail("1/1", errBoom), "launch 1/1#3")
	ct.expect("last attempt succeeds", ct.ok("1/1", "e1"), "launch 0/0#0")
	ct.expect("result fails", ct.fail("0/0", errBoom), "launch 0/0#1")
	ct.expect("result", ct.ok("0/0", "e1"), "done 1 ok")
	m := ct.dones[j.ID].Metrics
	if m.Stages[0].Failed != 1 || m.Stages[1].Failed != 3 || m.Stages[1].Tasks != 2 {
		t.Fatalf("metrics %+v", m.Stages)
	}
}

func TestCoreFailsJobAfterMaxAttempts(t *testing.T) {
	ct := newCoreTest(t, nil)
	src := words("queue", 3)
	j := ct.job(rdd.Map(src, strings.ToUpper).Node())
	j.Desc = "print@job.go:7"
	j.BatchTime = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	ct.expect("submit", ct.submit(j), "launch 0/0#0", "launch 0/1#0", "launch 0/2#0")
	ct.expect("partition 0 ok", ct.ok("0/0", "e1"))
	for attempt := 1; attempt < DefaultMaxAttempts; attempt++ {
		ct.expect("failure", ct.fail("0/1", fmt.Errorf("attempt %d: %w", attempt-1, errBoom)), fmt.Sprintf("launch 0/1#%d", attempt))
	}
	ct.expect("last failure", ct.fail("0/1", fmt.Errorf("attempt 3: %w", errBoom)), "kill 0/2", "done 1 error")

	err := ct.dones[j.ID].Err
	var tf *TaskFailedError
	if !errors.As(err, &tf) {
		t.Fatalf("error %T %v, want *TaskFailedError", err, err)
	}
	if tf.Partition != 1 || tf.Attempts != 4 || !tf.BatchTime.Equal(j.BatchTime) || tf.Job != j.Desc {
		t.Fatalf("%+v", tf)
	}
	if !errors.Is(err, errBoom) {
		t.Fatalf("%v does not wrap the task's error", err)
	}
	for _, want := range []string{
		"job print@job.go:7 of batch 2024-05-06T07:08:09",
		": stage 0 (result, 3 tasks: map<-queue) partition 1 failed 4 times, last: attempt 3: boom",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	if ct.c.Running() != 0 {
		t.Fatalf("%d tasks still tracked after the job failed", ct.c.Running())
	}

	// Partition 2's task is still running somewhere; its late result is
	// released and ignored.
	ct.expect("late result", ct.ok("0/2", "e1"))
	if got := ct.results[j.ID]; len(got) != 1 || got[0] != 1 {
		t.Fatalf("OnResult calls %v", got)
	}
}

func TestCoreFailsJobWhenAShuffleMapTaskKeepsFailing(t *testing.T) {
	ct := newCoreTest(t, nil)
	r := rdd.ReduceByKey(pairsOf(words("queue", 2)), sum, 2)
	j := ct.job(r.Node())
	ct.expect("submit", ct.submit(j), "launch 1/0#0", "launch 1/1#0")
	for attempt := 1; attempt < DefaultMaxAttempts; attempt++ {
		ct.expect("failure", ct.fail("1/0", errBoom), fmt.Sprintf("launch 1/0#%d", attempt))
	}
	ct.expect("last failure", ct.fail("1/0", errBoom), "kill 1/1", "done 1 error")
	var tf *TaskFailedError
	if err := ct.dones[j.ID].Err; !errors.As(err, &tf) || !strings.Contains(tf.Stage, "map<-queue") || !strings.Contains(err.Error(), "(shuffle ") {
		t.Fatalf("error %v", err)
	}
	if strings.Contains(tf.Error(), "of batch") {
		t.Fatalf("zero batch time rendered: %v", tf)
	}
	ct.expect("late map result", ct.ok("1/1", "e1"))
}

func TestCoreMaxAttemptsIsConfigurable(t *testing.T) {
	ct := newCoreTest(t, nil)
	ct.c = NewCore(1, nil)
	j := ct.job(words("queue", 1).Node())
	ct.expect("submit", ct.submit(j), "launch 0/0#0")
	ct.expect("only attempt fails", ct.fail("0/0", errBoom), "done 1 error")
}

func TestCoreExecutorLostFailuresDoNotCount(t *testing.T) {
	ct := newCoreTest(t, nil)
	j := ct.job(words("queue", 1).Node())
	ct.expect("submit", ct.submit(j), "launch 0/0#0")
	attempt := 0
	for range DefaultMaxExecutorLosses - 1 {
		attempt++
		ct.expect("executor lost", ct.fail("0/0", fmt.Errorf("task 1: %w", ErrExecutorLost)), fmt.Sprintf("launch 0/0#%d", attempt))
	}
	for range DefaultMaxAttempts - 1 {
		attempt++
		ct.expect("failure", ct.fail("0/0", errBoom), fmt.Sprintf("launch 0/0#%d", attempt))
	}
	ct.expect("fourth real failure", ct.fail("0/0", errBoom), "done 1 error")
	var tf *TaskFailedError
	if err := ct.dones[j.ID].Err; !errors.As(err, &tf) || tf.Attempts != 4 {
		t.Fatalf("error %v", err)
	}
}

// oneShuffle is a 3-map, numReduce-partition shuffle read by the result
// stage: result stage 0, map stage 1.
func oneShuffle(numReduce int) (*rdd.RDD[kv], *rdd.Node) {
	r := rdd.ReduceByKey(pairsOf(words("queue", 3)), sum, numReduce)
	return r, rdd.MapValues(r, double).Node()
}

// runMaps submits j and completes its map tasks on the given executors.
func (ct *coreTest) runMaps(j *Job, executors ...string) []string {
	ct.t.Helper()
	ct.submit(j)
	var acts []string
	for p, e := range executors {
		acts = ct.ok(fmt.Sprintf("1/%d", p), e)
	}
	return acts
}

func TestCoreFetchFailureRecomputesOnlyTheMissingMapOutput(t *testing.T) {
	ct := newCoreTest(t, nil)
	r, final := oneShuffle(2)
	j := ct.job(final)
	ct.expect("maps done", ct.runMaps(j, "e1", "e2", "e3"), "launch 0/0#0", "launch 0/1#0")
	ct.expect("fetch failed", ct.fail("0/0", fetchFailed(r, 1)), "launch 1/1#0")
	// The other reduce task was launched before the resubmission and
	// fails on the same output: nothing more to do.
	ct.expect("second fetch failure", ct.fail("0/1", fetchFailed(r, 1)))
	ct.expect("map 1 recomputed", ct.ok("1/1", "e2"), "launch 0/0#0", "launch 0/1#0")
	ct.expect("result", ct.ok("0/0", "e1"))
	ct.expect("result", ct.ok("0/1", "e1"), "done 1 ok")
	st := ct.dones[j.ID].Metrics.Stages
	if st[0].Resubmits != 1 || st[0].Failed != 2 || st[0].Tasks != 2 || st[1].Tasks != 4 {
		t.Fatalf("metrics %+v", st)
	}
}

// A fetch failure forgets every map output the failed one's executor held:
// that executor is most likely dead, and the driver may learn it only
// seconds later.
func TestCoreFetchFailureForgetsEveryOutputOfItsExecutor(t *testing.T) {
	ct := newCoreTest(t, nil)
	r, final := oneShuffle(2)
	j := ct.job(final)
	ct.expect("maps done", ct.runMaps(j, "e1", "e1", "e2"), "launch 0/0#0", "launch 0/1#0")
	ct.expect("fetch failed", ct.fail("0/0", fetchFailed(r, 0)), "launch 1/0#0", "launch 1/1#0")
	ct.expect("the same executor's other output", ct.fail("0/1", fetchFailed(r, 1)))
	ct.ok("1/0", "e2")
	ct.expect("both recomputed", ct.ok("1/1", "e2"), "launch 0/0#0", "launch 0/1#0")
	ct.ok("0/0", "e2")
	ct.expect("result", ct.ok("0/1", "e2"), "done 1 ok")
	if st := ct.dones[j.ID].Metrics.Stages; st[0].Resubmits != 1 {
		t.Fatalf("resubmits %d, want 1", st[0].Resubmits)
	}
}

func TestCoreFetchFailureSeenByEveryReduceTaskResubmitsOnce(t *testing.T) {
	// One lost map output is seen by every reduce task that was running;
	// that is one setback for the stage, not one per task.
	const reducers = 2 * maxStageResubmits
	ct := newCoreTest(t, nil)
	r, final := oneShuffle(reducers)
	j := ct.job(final)
	ct.runMaps(j, "e1", "e2", "e3")
	ct.expect("first fetch failure", ct.fail("0/0", fetchFailed(r, 2)), "launch 1/2#0")
	for p := 1; p < reducers; p++ {
		ct.expect("later fetch failure", ct.fail(fmt.Sprintf("0/%d", p), fetchFailed(r, 2)))
	}
	var all []string
	for p := range reducers {
		all = append(all, fmt.Sprintf("launch 0/%d#0", p))
	}
	ct.expect("map 2 recomputed", ct.ok("1/2", "e1"), all...)
	for p := 1; p < reducers; p++ {
		ct.expect("result", ct.ok(fmt.Sprintf("0/%d", p), "e1"))
	}
	ct.expect("result", ct.ok("0/0", "e1"), "done 1 ok")
	if st := ct.dones[j.ID].Metrics.Stages; st[0].Resubmits != 1 {
		t.Fatalf("resubmits %d, want 1", st[0].Resubmits)
	}
}

func TestCoreLateFetchFailureAfterRecoveryKeepsTheNewOutput(t *testing.T) {
	ct := newCoreTest(t, nil)
	r, final := oneShuffle(2)
	j := ct.job(final)
	ct.runMaps(j, "e1", "e2", "e3")
	ct.expect("fetch failed", ct.fail("0/0", fetchFailed(r, 0)), "launch 1/0#0")
	ct.expect("map 0 recomputed", ct.ok("1/0", "e1"), "launch 0/0#0")
	// Reduce task 1 was launched before map 0 was lost and reports it
	// only now. Map 0 has been recomputed since: retry the task, keep the
	// output.
	ct.expect("stale fetch failure", ct.fail("0/1", fetchFailed(r, 0)), "launch 0/1#0")
	ct.expect("result", ct.ok("0/0", "e1"))
	ct.expect("result", ct.ok("0/1", "e1"), "done 1 ok")
	if st := ct.dones[j.ID].Metrics.Stages; st[0].Resubmits != 1 || st[1].Tasks != 4 {
		t.Fatalf("metrics %+v", st)
	}
}

func TestCoreFailsJobWhenShuffleOutputKeepsGettingLost(t *testing.T) {
	ct := newCoreTest(t, nil)
	r, final := oneShuffle(1)
	j := ct.job(final)
	ct.runMaps(j, "e1", "e2", "e3")
	for range maxStageResubmits {
		ct.expect("fetch failed", ct.fail("0/0", fetchFailed(r, 0)), "launch 1/0#0")
		ct.expect("map recomputed", ct.ok("1/0", "e1"), "launch 0/0#0")
	}
	ct.expect("one setback too many", ct.fail("0/0", fetchFailed(r, 0)), "done 1 error")
	var tf *TaskFailedError
	if err := ct.dones[j.ID].Err; !errors.As(err, &tf) || tf.Attempts != maxStageResubmits+1 {
		t.Fatalf("error %v", err)
	} else if _, ok := rdd.IsFetchFailed(err); !ok {
		t.Fatalf("%v does not wrap the fetch failure", err)
	}
}

func TestCoreFetchFailureInAMapStageRecomputesItsParent(t *testing.T) {
	ct := newCoreTest(t, nil)
	first, _, final := twoShuffles()
	j := ct.job(final)
	ct.expect("submit", ct.submit(j), "launch 2/0#0", "launch 2/1#0")
	ct.ok("2/0", "e1")
	ct.expect("stage 2 done", ct.ok("2/1", "e2"), "launch 1/0#0", "launch 1/1#0", "launch 1/2#0")
	ct.expect("stage 1 map done", ct.ok("1/0", "e1"))
	ct.expect("stage 1 fetch failure", ct.fail("1/1", fetchFailed(first, 1)), "launch 2/1#0")
	ct.expect("stage 2 recomputed, stage 1 waits for its running task", ct.ok("2/1", "e1"), "launch 1/1#0")
	ct.expect("stage 1 map done", ct.ok("1/2", "e1"))
	ct.expect("stage 1 done", ct.ok("1/1", "e1"), "launch 0/0#0", "launch 0/1#0")
	ct.ok("0/0", "e1")
	ct.expect("result", ct.ok("0/1", "e1"), "done 1 ok")
}

func TestCoreExecutorLost(t *testing.T) {
	t.Run("drops its map outputs", func(t *testing.T) {
		ct := newCoreTest(t, nil)
		r, final := oneShuffle(2)
		j := ct.job(final)
		ct.expect("maps", ct.runMaps(j, "e1", "e2", "e1"), "launch 0/0#0", "launch 0/1#0")
		ct.expect("e1 lost", ct.lost("e1"))
		ct.expect("e1's tasks fail", ct.fail("0/1", ErrExecutorLost), "launch 0/1#1")
		// Maps 0 and 2 were on e1: the fetch failure names one, both run.
		ct.expect("fetch failure", ct.fail("0/0", fetchFailed(r, 0)), "launch 1/0#0", "launch 1/2#0")
		ct.expect("stale fetch failure", ct.fail("0/1", fetchFailed(r, 2)))
		ct.ok("1/0", "e3")
		ct.expect("maps recomputed", ct.ok("1/2", "e3"), "launch 0/0#0", "launch 0/1#1")
		ct.ok("0/0", "e3")
		ct.expect("result", ct.ok("0/1", "e3"), "done 1 ok")
	})
	t.Run("a later job recomputes the lost outputs only", func(t *testing.T) {
		ct := newCoreTest(t, nil)
		r, final := oneShuffle(2)
		j1 := ct.job(final)
		ct.runMaps(j1, "e1", "e2", "e1")
		ct.ok("0/0", "e1")
		ct.expect("job 1", ct.ok("0/1", "e1"), "done 1 ok")
		ct.expect("e2 lost", ct.lost("e2"))
		j2 := ct.job(rdd.Filter(r, positive).Node())
		ct.expect("submit 2", ct.submit(j2), "launch 1/1#0")
		ct.expect("map 1", ct.ok("1/1", "e3"), "launch 2/0#0", "launch 2/1#0")
		ct.ok("2/0", "e1")
		ct.expect("job 2", ct.ok("2/1", "e1"), "done 2 ok")
	})
	t.Run("outputs lost while their stage runs are recomputed", func(t *testing.T) {
		ct := newCoreTest(t, nil)
		_, final := oneShuffle(2)
		j := ct.job(final)
		ct.expect("submit", ct.submit(j), "launch 1/0#0", "launch 1/1#0", "launch 1/2#0")
		ct.ok("1/0", "e1")
		ct.ok("1/1", "e2")
		ct.expect("e1 lost", ct.lost("e1"))
		ct.expect("last map task", ct.ok("1/2", "e2"), "launch 1/0#0")
		ct.expect("map 0 again", ct.ok("1/0", "e2"), "launch 0/0#0", "launch 0/1#0")
		ct.ok("0/0", "e2")
		ct.expect("result", ct.ok("0/1", "e2"), "done 1 ok")
	})
	t.Run("unknown executor", func(t *testing.T) {
		ct := newCoreTest(t, nil)
		ct.expect("lost", ct.lost("nobody"))
	})
}

func TestCoreIgnoresUnknownAndStaleResults(t *testing.T) {
	ct := newCoreTest(t, nil)
	j := ct.job(words("queue", 2).Node())
	ct.expect("submit", ct.submit(j), "launch 0/0#0", "launch 0/1#0")
	ct.expect("unknown task", ct.completed(TaskResult{TaskID: 999, Executor: "e1", Result: ct.record(0)}))
	ct.expect("unknown failed task", ct.completed(TaskResult{TaskID: 998, Err: errBoom}))

	t0 := ct.live["0/0"]
	ct.expect("partition 0", ct.ok("0/0", "e1"))
	// The same result again (a backend reporting twice): released, and
	// OnResult is not called a second time.
	ct.expect("duplicate", ct.completed(TaskResult{TaskID: t0.ID, Executor: "e1", Result: ct.record(0)}))
	ct.expect("duplicate failure", ct.completed(TaskResult{TaskID: t0.ID, Executor: "e1", Err: errBoom}))
	ct.expect("partition 1", ct.ok("0/1", "e1"), "done 1 ok")
	ct.expect("after the job", ct.completed(TaskResult{TaskID: t0.ID, Executor: "e1", Result: ct.record(0)}))
	if got := ct.results[j.ID]; got[0] != 1 || got[1] != 1 {
		t.Fatalf("OnResult calls %v", got)
	}
}

func TestCoreOnResultErrorFailsTheJob(t *testing.T) {
	ct := newCoreTest(t, nil)
	j := ct.job(words("queue", 3).Node())
	errSink := errors.New("sink full")
	calls := 0
	j.OnResult = func(part int, rec arrow.Record) error {
		calls++
		return errSink
	}
	ct.expect("submit", ct.submit(j), "launch 0/0#0", "launch 0/1#0", "launch 0/2#0")
	ct.expect("first result", ct.ok("0/1", "e1"), "kill 0/0", "kill 0/2", "done 1 error")
	err := ct.dones[j.ID].Err
	if !errors.Is(err, errSink) || !strings.Contains(err.Error(), "partition 1") {
		t.Fatalf("error %v", err)
	}
	ct.expect("late result", ct.ok("0/0", "e1"))
	ct.expect("late failure", ct.fail("0/2", errBoom))
	if calls != 1 {
		t.Fatalf("OnResult called %d times", calls)
	}
}

func TestCoreNilOnResultAndNilRecords(t *testing.T) {
	ct := newCoreTest(t, nil)
	j := &Job{Final: words("queue", 2).Node()}
	ct.expect("submit", ct.submit(j), "launch 0/0#0", "launch 0/1#0")
	ct.expect("record released without OnResult", ct.ok("0/0", "e1"))
	t1 := ct.task("0/1")
	ct.expect("no record", ct.completed(TaskResult{TaskID: t1.ID, Executor: "e1"}), "done 1 ok")
}

func TestCoreZeroPartitionJobFinishesAtOnce(t *testing.T) {
	ct := newCoreTest(t, nil)
	j := ct.job(rdd.Empty[string]("empty", 0).Node())
	ct.expect("submit", ct.submit(j), "done 1 ok")
	if ct.c.Running() != 0 || len(ct.results[j.ID]) != 0 {
		t.Fatal("zero-partition job ran something")
	}
	// A job over an empty shuffle input has nothing to map.
	j2 := ct.job(rdd.ReduceByKey(pairsOf(words("none", 0)), sum, 1).Node())
	ct.expect("submit", ct.submit(j2), "launch 1/0#0")
	ct.expect("result", ct.ok("1/0", "e1"), "done 2 ok")
}

func TestCoreJobsAreIndependent(t *testing.T) {
	ct := newCoreTest(t, nil)
	j1 := ct.job(words("a", 1).Node())
	j2 := ct.job(words("b", 1).Node())
	ct.expect("submit 1", ct.submit(j1), "launch 0/0#0")
	ct.expect("submit 2", ct.submit(j2), "launch 1/0#0")
	for range DefaultMaxAttempts - 1 {
		(ct.fail("0/0", errBoom))
	}
	ct.expect("job 1 fails", ct.fail("0/0", errBoom), "done 1 error")
	if j2.Finished() {
		t.Fatal("job 2 finished with job 1")
	}
	ct.expect("job 2 succeeds", ct.ok("1/0", "e1"), "done 2 ok")
}

func TestCoreCachedNodes(t *testing.T) {
	t.Run("a stored cached node cuts its lineage", func(t *testing.T) {
		stored := map[*rdd.Node]bool{}
		ct := newCoreTest(t, func(n *rdd.Node) bool { return stored[n] })
		r := rdd.ReduceByKey(pairsOf(words("queue", 2)), sum, 2)
		c := rdd.MapValues(r, double).Persist()
		j1 := ct.job(c.Node())
		ct.expect("not stored yet", ct.submit(j1), "launch 1/0#0", "launch 1/1#0")
		ct.ok("1/0", "e1")
		ct.ok("1/1", "e1")
		ct.ok("0/0", "e1")
		ct.ok("0/1", "e1")
		stored[c.Node()] = true
		// The shuffle's output is deleted; the cache makes it unneeded.
		ct.c.RemoveShuffles(r.Node().Deps[0].Shuffle.ID)
		j2 := ct.job(rdd.Filter(c, positive).Node())
		ct.expect("stored", ct.submit(j2), "launch 2/0#0", "launch 2/1#0")
		ct.ok("2/0", "e1")
		ct.expect("job 2", ct.ok("2/1", "e1"), "done 2 ok")
	})
	t.Run("a memoized stage drops parents the cache made unneeded", func(t *testing.T) {
		stored := map[*rdd.Node]bool{}
		ct := newCoreTest(t, func(n *rdd.Node) bool { return stored[n] })
		r := rdd.ReduceByKey(pairsOf(words("queue", 2)), sum, 2)
		c := rdd.MapValues(r, double).Persist()
		s := rdd.ReduceByKey(c, sum, 2)
		j1 := ct.job(s.Node())
		// Stages: 0 result, 1 writes s's shuffle (reads c), 2 writes r's.
		ct.expect("submit 1", ct.submit(j1), "launch 2/0#0", "launch 2/1#0")
		ct.ok("2/0", "e1")
		ct.expect("r's maps", ct.ok("2/1", "e1"), "launch 1/0#0", "launch 1/1#0")
		ct.ok("1/0", "e1")
		ct.expect("s's maps", ct.ok("1/1", "e2"), "launch 0/0#0", "launch 0/1#0")
		ct.ok("0/0", "e1")
		ct.expect("job 1", ct.ok("0/1", "e1"), "done 1 ok")

		// c is stored now, r's shuffle is cleaned up, and s's map output
		// on e2 is lost. Recomputing it reads c: r's stage must not run.
		stored[c.Node()] = true
		ct.c.RemoveShuffles(r.Node().Deps[0].Shuffle.ID)
		ct.lost("e2")
		j2 := ct.job(rdd.Filter(s, positive).Node())
		ct.expect("submit 2", ct.submit(j2), "launch 1/1#0")
		ct.expect("map recomputed from the cache", ct.ok("1/1", "e1"), "launch 3/0#0", "launch 3/1#0")
		ct.ok("3/0", "e1")
		ct.expect("job 2", ct.ok("3/1", "e1"), "done 2 ok")
	})
}

func TestCoreRemoveShufflesRecomputes(t *testing.T) {
	ct := newCoreTest(t, nil)
	r := rdd.ReduceByKey(pairsOf(words("queue", 1)), sum, 1)
	j1 := ct.job(r.Node())
	ct.expect("submit 1", ct.submit(j1), "launch 1/0#0")
	ct.expect("map", ct.ok("1/0", "e1"), "launch 0/0#0")
	ct.expect("job 1", ct.ok("0/0", "e1"), "done 1 ok")
	ct.c.RemoveShuffles(r.Node().Deps[0].Shuffle.ID)
	// Planned afresh: a new result stage 2 and map stage 3.
	j2 := ct.job(r.Node())
	ct.expect("submit 2", ct.submit(j2), "launch 3/0#0")
	ct.expect("map", ct.ok("3/0", "e1"), "launch 2/0#0")
	ct.expect("job 2", ct.ok("2/0", "e1"), "done 2 ok")
}

func TestCoreTaskInputsNameTheExecutorsOfMapOutputs(t *testing.T) {
	ct := newCoreTest(t, nil)
	r, final := oneShuffle(2)
	sid := r.Node().Deps[0].Shuffle.ID
	j := ct.job(final)
	ct.submit(j)
	if in := ct.live["1/0"].Inputs; in != nil {
		t.Fatalf("map task of a stage with no parents has inputs %v", in)
	}
	ct.ok("1/0", "e1")
	ct.ok("1/1", "e2")
	ct.expect("maps done", ct.ok("1/2", "e3"), "launch 0/0#0", "launch 0/1#0")
	for _, key := range []string{"0/0", "0/1"} {
		if got := ct.live[key].Inputs; len(got) != 1 || !slices.Equal(got[sid], []string{"e1", "e2", "e3"}) {
			t.Fatalf("%s inputs %v", key, got)
		}
	}
	ct.lost("e2")
	ct.expect("fetch failure", ct.fail("0/0", fetchFailed(r, 1)), "launch 1/1#0")
	ct.expect("stale fetch failure", ct.fail("0/1", fetchFailed(r, 1)))
	ct.expect("map 1 again", ct.ok("1/1", "e4"), "launch 0/0#0", "launch 0/1#0")
	for _, key := range []string{"0/0", "0/1"} {
		if got := ct.live[key].Inputs[sid]; !slices.Equal(got, []string{"e1", "e4", "e3"}) {
			t.Fatalf("%s inputs after recovery %v", key, got)
		}
	}
	ct.ok("0/0", "e1")
	ct.expect("result", ct.ok("0/1", "e1"), "done 1 ok")
}

// Each map output's bitmap of non-empty blocks reaches the tasks that read
// it, so they skip the empty ones; a bitmap of the wrong size, and the
// bitmap of an output that was lost and made again without one, are not
// passed on (the blocks are then fetched).
func TestCoreTaskInputsCarryNonEmptyBitmaps(t *testing.T) {
	ct := newCoreTest(t, nil)
	r, final := oneShuffle(2) // 3 map outputs, 2 reduce partitions
	sid := r.Node().Deps[0].Shuffle.ID
	ct.submit(ct.job(final))
	done := func(key, e string, bitmap []byte) []string {
		tk := ct.task(key)
		return ct.completed(TaskResult{TaskID: tk.ID, Executor: e, BlockNonEmpty: bitmap})
	}
	done("1/0", "e1", []byte{0b01})
	done("1/1", "e2", []byte{0b10})
	ct.expect("maps done", done("1/2", "e3", []byte{1, 2}), "launch 0/0#0", "launch 0/1#0")
	want := [][]byte{{0b01}, {0b10}, nil}
	for _, key := range []string{"0/0", "0/1"} {
		if got := ct.live[key].InputNonEmpty[sid]; !slices.EqualFunc(got, want, slices.Equal) {
			t.Fatalf("%s: bitmaps %v, want %v", key, got, want)
		}
	}
	ct.expect("fetch failure", ct.fail("0/0", fetchFailed(r, 0)), "launch 1/0#0")
	ct.expect("stale fetch failure", ct.fail("0/1", fetchFailed(r, 0)))
	ct.expect("map 0 again, no bitmap", done("1/0", "e4", nil), "launch 0/0#0", "launch 0/1#0")
	want = [][]byte{nil, {0b10}, nil}
	if got := ct.live["0/0"].InputNonEmpty[sid]; !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("after the rerun: bitmaps %v, want %v", got, want)
	}
	ct.ok("0/0", "e1")
	ct.expect("result", ct.ok("0/1", "e1"), "done 1 ok")
}
