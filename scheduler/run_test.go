package scheduler

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/sluicehq/sluice/rdd"
)

// here returns the file:line of its caller, as rdd records operator sites.
func here() string {
	_, file, line, _ := runtime.Caller(1)
	return fmt.Sprintf("%s:%d", filepath.Base(file), line)
}

// local is a Scheduler on a LocalBackend with a checked allocator. When the
// test ends it closes the scheduler, frees the shuffle and block stores,
// asserts that no Arrow memory is outstanding and that no scheduler
// goroutine is left.
type local struct {
	s   *Scheduler
	mem *memory.CheckedAllocator
	sh  *rdd.MemShuffle
	bl  *rdd.MemBlocks
	// inputs are the source records, released after Close: tasks of a
	// failed or abandoned job may still read them after RunJob returns.
	inputs []arrow.Record
}

func newLocal(t *testing.T, slots int, cached func(*rdd.Node) bool) *local {
	t.Helper()
	l := &local{mem: memory.NewCheckedAllocator(memory.NewGoAllocator()), sh: rdd.NewMemShuffle(), bl: rdd.NewMemBlocks()}
	s, err := New(Config{Backend: NewLocalBackend(slots, l.mem, l.sh, l.bl), Cached: cached})
	if err != nil {
		t.Fatal(err)
	}
	l.s = s
	t.Cleanup(func() { checkNoGoroutines(t) })
	t.Cleanup(func() { l.mem.AssertSize(t, 0) })
	t.Cleanup(func() {
		s.Close()
		l.sh.Close()
		l.bl.Close()
		for _, r := range l.inputs {
			r.Release()
		}
	})
	return l
}

// source makes a source RDD of the given partitions from Arrow records,
// released when the test ends.
func source[T any](l *local, op string, parts ...[]T) *rdd.RDD[T] {
	c := rdd.CodecOf[T]()
	var recs []arrow.Record
	for _, p := range parts {
		recs = append(recs, rdd.Encode(l.mem, c, p))
	}
	l.inputs = append(l.inputs, recs...)
	return rdd.FromRecords(op, c, recs)
}

// collectJob returns a job that brings every value of r to the driver,
// passing each (in no defined order) to keep.
func collectJob[T any](r *rdd.RDD[T], keep func(T)) *Job {
	c := r.Codec()
	return &Job{
		Final: r.Node(),
		Desc:  "collect@run_test.go",
		Func: func(tc *rdd.TaskContext, part int) (arrow.Record, error) {
			b := rdd.NewBuilder(tc.Alloc, c)
			defer b.Release()
			if err := r.Iterate(tc, part, func(v T) bool { b.Append(v); return true }); err != nil {
				return nil, err
			}
			return b.NewRecord(), nil
		},
		OnResult: func(part int, rec arrow.Record) error {
			rdd.ForEach(c, rec, func(v T) bool { keep(v); return true })
			return nil
		},
	}
}

// counts runs a job over r and sums its pairs by key.
func counts(t *testing.T, l *local, r *rdd.RDD[kv]) (map[string]int, JobMetrics) {
	t.Helper()
	got := map[string]int{}
	m, err := l.s.RunJob(context.Background(), collectJob(r, func(p kv) { got[strings.Clone(p.Key)] += p.Value }))
	if err != nil {
		t.Fatal(err)
	}
	return got, m
}

func wordCount(r *rdd.RDD[string], parts int) *rdd.RDD[kv] {
	return rdd.ReduceByKey(pairsOf(rdd.FlatMap(r, strings.Fields)), sum, parts)
}

// checkNoGoroutines fails if a goroutine of a Scheduler or LocalBackend is
// still alive. Goroutines that were told to stop may take a moment to be
// gone from the runtime's list after they have finished their work, so it
// looks again a few times, as goleak does.
func checkNoGoroutines(t *testing.T) {
	t.Helper()
	var left []string
	for range 500 {
		left = left[:0]
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "sluice/scheduler.(*Scheduler)") || strings.Contains(g, "sluice/scheduler.(*LocalBackend)") ||
				strings.Contains(g, "sluice/scheduler.New.") || strings.Contains(g, "sluice/scheduler.RunTask") {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			return
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("%d scheduler goroutines left:\n%s", len(left), strings.Join(left, "\n\n"))
}

// stage returns the metrics of the job's stage whose name starts with prefix.
func stage(t *testing.T, m JobMetrics, prefix string) StageMetrics {
	t.Helper()
	for _, s := range m.Stages {
		if strings.HasPrefix(s.Name, prefix) {
			return s
		}
	}
	t.Fatalf("no stage %s… in %+v", prefix, m.Stages)
	return StageMetrics{}
}

var wordLines = [][]string{{"a b c", "a a"}, {"b c d"}, {}, {"d d e", "a"}}

var wordCounts = map[string]int{"a": 4, "b": 2, "c": 2, "d": 3, "e": 1}

func TestRunTask(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	sh, bl := rdd.NewMemShuffle(), rdd.NewMemBlocks()
	defer sh.Close()
	defer bl.Close()
	newTC := func() *rdd.TaskContext {
		return &rdd.TaskContext{Ctx: context.Background(), Alloc: mem, Shuffle: sh, Blocks: bl}
	}
	src := rdd.Generate("gen", 2, func(part int, yield func(string) bool) {
		for _, w := range []string{"x", "y", "boom"}[part:] {
			if !yield(w) {
				return
			}
		}
	})
	r := rdd.ReduceByKey(pairsOf(src), sum, 2)
	final := rdd.MapValues(r, double)
	shuffleID := r.Node().Deps[0].Shuffle.ID
	job := collectJob(final, func(kv) {})
	job.BatchTime = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	result := PlanStages(final.Node())
	mapStage := result.Parents[0]

	t.Run("result task before its map outputs", func(t *testing.T) {
		res := RunTask(newTC(), &Task{ID: 1, Job: job, Stage: result, Partition: 0})
		ff, ok := rdd.IsFetchFailed(res.Err)
		if !ok || ff.ShuffleID != shuffleID || ff.MapPart != 0 || res.Result != nil {
			t.Fatalf("got %+v", res)
		}
		if !strings.Contains(res.Err.Error(), result.String()) {
			t.Fatalf("error %q does not name the stage", res.Err)
		}
	})
	t.Run("map tasks", func(t *testing.T) {
		for p := range 2 {
			tc := newTC()
			res := RunTask(tc, &Task{ID: int64(2 + p), Job: job, Stage: mapStage, Partition: p, Attempt: 1})
			if res.Err != nil || res.Result != nil || res.TaskID != int64(2+p) {
				t.Fatalf("got %+v", res)
			}
			if !sh.HasMapOutput(shuffleID, p) {
				t.Fatalf("map output %d not stored", p)
			}
			if tc.StageID != mapStage.ID || tc.Partition != p || tc.Attempt != 1 || !tc.BatchTime.Equal(job.BatchTime) {
				t.Fatalf("task context %+v", tc)
			}
			if want := int64(3 - p); res.Metrics.RecordsRead != want {
				t.Fatalf("records read %d, want %d", res.Metrics.RecordsRead, want)
			}
		}
	})
	t.Run("result tasks", func(t *testing.T) {
		got := map[string]int{}
		for p := range 2 {
			res := RunTask(newTC(), &Task{ID: int64(4 + p), Job: job, Stage: result, Partition: p})
			if res.Err != nil || res.Result == nil {
				t.Fatalf("got %+v", res)
			}
			for _, kv := range rdd.Decode(final.Codec(), res.Result) {
				got[kv.Key] += kv.Value
			}
			res.Result.Release()
		}
		if want := map[string]int{"x": 2, "y": 4, "boom": 4}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("got %v want %v", got, want)
		}
	})
	t.Run("panic in an operator", func(t *testing.T) {
		f := func(w string) string {
			if w == "boom" {
				panic("kaboom")
			}
			return w
		}
		bad, site := rdd.Map(src, f), here()
		badJob := collectJob(bad, func(string) {})
		res := RunTask(newTC(), &Task{ID: 6, Job: badJob, Stage: PlanStages(bad.Node()), Partition: 1})
		var pe *PanicError
		if !errors.As(res.Err, &pe) || res.Result != nil {
			t.Fatalf("got %+v", res)
		}
		if pe.Op != "map@"+site || pe.Value != "kaboom" || !strings.Contains(pe.Stack, "run_test.go") {
			t.Fatalf("panic error %q %v\n%s", pe.Op, pe.Value, pe.Stack)
		}
		if !strings.HasPrefix(pe.Error(), "panic in map@"+site+": kaboom\n") {
			t.Fatalf("message %q", pe.Error())
		}
	})
	t.Run("panic in a map-side combine", func(t *testing.T) {
		// The reduce function runs on the map side of the shuffle, in the
		// map stage, whose pipeline does not hold the reduceByKey node:
		// the panic still names reduceByKey, not the stage's last map.
		badSum := func(a, b int) int {
			if a+b > 1 {
				panic("overflow")
			}
			return a + b
		}
		dup := rdd.Generate("gen", 1, func(part int, yield func(string) bool) { yield("k"); yield("k") })
		red, site := rdd.ReduceByKey(pairsOf(dup), badSum, 1), here()
		st := PlanStages(red.Node()).Parents[0]
		res := RunTask(newTC(), &Task{ID: 8, Job: collectJob(red, func(kv) {}), Stage: st, Partition: 0})
		var pe *PanicError
		if !errors.As(res.Err, &pe) || pe.Op != "reduceByKey@"+site || pe.Value != "overflow" {
			t.Fatalf("got %+v", res.Err)
		}
	})
	t.Run("panic outside operators", func(t *testing.T) {
		stage := PlanStages(src.Node())
		j := &Job{Final: src.Node(), Func: func(tc *rdd.TaskContext, part int) (arrow.Record, error) {
			b := rdd.NewBuilder(tc.Alloc, rdd.CodecOf[int]())
			defer b.Release()
			b.Append(1)
			panic(errBoom)
		}}
		res := RunTask(newTC(), &Task{ID: 7, Job: j, Stage: stage, Partition: 0})
		var pe *PanicError
		if !errors.As(res.Err, &pe) || pe.Op != "gen" || pe.Value != errBoom {
			t.Fatalf("got %+v", res.Err)
		}
	})
	t.Run("an error releases the record", func(t *testing.T) {
		stage := PlanStages(src.Node())
		j := &Job{Final: src.Node(), Func: func(tc *rdd.TaskContext, part int) (arrow.Record, error) {
			return rdd.Encode(tc.Alloc, rdd.CodecOf[int](), []int{1, 2}), errBoom
		}}
		res := RunTask(newTC(), &Task{ID: 8, Job: j, Stage: stage, Partition: 0})
		if !errors.Is(res.Err, errBoom) || res.Result != nil {
			t.Fatalf("got %+v", res)
		}
	})
}

func TestNewNeedsABackend(t *testing.T) {
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "Backend") {
		t.Fatalf("err %v", err)
	}
}

func TestSchedulerWordCount(t *testing.T) {
	l := newLocal(t, 3, nil)
	r := wordCount(source(l, "queue", wordLines...), 2)
	got, m := counts(t, l, r)
	if fmt.Sprint(got) != fmt.Sprint(wordCounts) {
		t.Fatalf("got %v want %v", got, wordCounts)
	}
	res, mp := stage(t, m, "reduceByKey"), stage(t, m, "map<-")
	if len(m.Stages) != 2 || mp.Tasks != 4 || res.Tasks != 2 || mp.RecordsRead != 5 || res.RecordsRead != 9 {
		t.Fatalf("metrics %+v", m.Stages)
	}
}

func TestSchedulerPanicFailsTheJob(t *testing.T) {
	l := newLocal(t, 4, nil)
	src := source(l, "queue", []string{"a", "b"}, []string{"boom"}, []string{"c"})
	var booms atomic.Int32
	f := func(w string) string {
		if w == "boom" {
			booms.Add(1)
			panic(fmt.Sprintf("bad word %q", w))
		}
		return strings.ToUpper(w)
	}
	upper, site := rdd.Map(src, f), here()
	job := collectJob(upper, func(string) {})
	job.Desc = "print@job.go:9"
	job.BatchTime = time.Date(2024, 3, 4, 5, 6, 7, 0, time.UTC)
	_, err := l.s.RunJob(context.Background(), job)

	var tf *TaskFailedError
	if !errors.As(err, &tf) {
		t.Fatalf("error %T %v, want *TaskFailedError", err, err)
	}
	if tf.Attempts != DefaultMaxAttempts || tf.Partition != 1 || !tf.BatchTime.Equal(job.BatchTime) {
		t.Fatalf("%+v", tf)
	}
	var pe *PanicError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v does not wrap a *PanicError", err)
	}
	if pe.Op != "map@"+site || pe.Value != `bad word "boom"` {
		t.Fatalf("panic in %q: %v", pe.Op, pe.Value)
	}
	for _, want := range []string{"print@job.go:9", "2024-03-04T05:06:07", "map<-queue", "partition 1", "4 times", "map@" + site} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if n := booms.Load(); n != DefaultMaxAttempts {
		t.Fatalf("function ran %d times on the bad partition", n)
	}
	// The scheduler is still usable.
	got, _ := counts(t, l, wordCount(source(l, "queue", wordLines...), 3))
	if fmt.Sprint(got) != fmt.Sprint(wordCounts) {
		t.Fatalf("got %v", got)
	}
}

func TestSchedulerRecoversFromALostMapOutput(t *testing.T) {
	const reducers = 8
	l := newLocal(t, reducers, nil)
	var mapRuns atomic.Int32
	lines := rdd.Map(source(l, "queue", wordLines...), func(s string) string { mapRuns.Add(1); return s })
	r := wordCount(lines, reducers)
	first, _ := counts(t, l, r)
	if fmt.Sprint(first) != fmt.Sprint(wordCounts) {
		t.Fatalf("first job: got %v", first)
	}
	// Two jobs share r's shuffle. Its map output 1 is lost between them;
	// every reduce task of the second job fails to fetch it.
	shuffleID := r.Node().Deps[0].Shuffle.ID
	l.sh.DropMapOutput(shuffleID, 1)
	mapRuns.Store(0)
	got, m := counts(t, l, rdd.MapValues(r, double))
	for k, v := range wordCounts {
		if got[k] != 2*v {
			t.Errorf("%s: got %d want %d (all %v)", k, got[k], 2*v, got)
		}
	}
	if len(m.Stages) != 2 {
		t.Fatalf("metrics %+v", m.Stages)
	}
	res, mp := stage(t, m, "mapValues<-"), stage(t, m, "map<-")
	if res.Resubmits != 1 || res.Tasks != reducers || mp.Tasks != 1 || mp.Failed != 0 {
		t.Fatalf("result stage %+v, map stage %+v", res, mp)
	}
	if n := mapRuns.Load(); n != int32(len(wordLines[1])) {
		t.Fatalf("source lines read again: %d, want only map partition 1's %d", n, len(wordLines[1]))
	}
	if !l.sh.HasMapOutput(shuffleID, 1) {
		t.Fatal("map output 1 not restored")
	}
}

func TestSchedulerForgetShuffles(t *testing.T) {
	l := newLocal(t, 2, nil)
	r := wordCount(source(l, "queue", wordLines...), 2)
	counts(t, l, r)
	shuffleID := r.Node().Deps[0].Shuffle.ID
	l.sh.Remove(shuffleID)
	l.s.ForgetShuffles(shuffleID)
	got, m := counts(t, l, r)
	if fmt.Sprint(got) != fmt.Sprint(wordCounts) {
		t.Fatalf("got %v", got)
	}
	if len(m.Stages) != 2 || stage(t, m, "map<-").Tasks != len(wordLines) || stage(t, m, "reduceByKey").Resubmits != 0 {
		t.Fatalf("shuffle not recomputed up front: %+v", m.Stages)
	}
}

func TestSchedulerExecutorLost(t *testing.T) {
	l := newLocal(t, 2, nil)
	r := wordCount(source(l, "queue", wordLines...), 2)
	counts(t, l, r)
	// The core forgets every map output of the lost executor, so the next
	// job recomputes the shuffle before its result stage instead of
	// finding out through fetch failures.
	l.s.ExecutorLost(LocalID)
	got, m := counts(t, l, rdd.MapValues(r, double))
	for k, v := range wordCounts {
		if got[k] != 2*v {
			t.Errorf("%s: got %d want %d", k, got[k], 2*v)
		}
	}
	if stage(t, m, "map<-").Tasks != len(wordLines) || stage(t, m, "mapValues").Resubmits != 0 {
		t.Fatalf("metrics %+v", m.Stages)
	}
	l.s.Close()
	l.s.ExecutorLost(LocalID) // returns at once after Close
}

func TestSchedulerReadsStoredCachedPartitions(t *testing.T) {
	var l *local
	stored := func(n *rdd.Node) bool {
		for p := range n.Parts {
			rec, ok := l.bl.Get(n.ID, p)
			if !ok {
				return false
			}
			rec.Release()
		}
		return true
	}
	l = newLocal(t, 2, stored)
	var reads atomic.Int32
	lines := rdd.Map(source(l, "queue", wordLines...), func(s string) string { reads.Add(1); return s })
	cached := rdd.MapValues(wordCount(lines, 2), double).Persist()
	counts(t, l, cached)
	// The shuffle under the cached RDD is cleaned up; the cache has what
	// later jobs need.
	shuffleID := cached.Node().Deps[0].Parent.Deps[0].Shuffle.ID
	l.sh.Remove(shuffleID)
	l.s.ForgetShuffles(shuffleID)
	reads.Store(0)
	got, m := counts(t, l, rdd.Filter(cached, positive))
	for k, v := range wordCounts {
		if got[k] != 2*v {
			t.Errorf("%s: got %d want %d", k, got[k], 2*v)
		}
	}
	if reads.Load() != 0 || len(m.Stages) != 1 {
		t.Fatalf("lineage recomputed: %d reads, stages %+v", reads.Load(), m.Stages)
	}
}

func TestSchedulerManyConcurrentJobs(t *testing.T) {
	l := newLocal(t, 4, nil)
	shared := wordCount(source(l, "queue", wordLines...), 3)
	const jobs = 24
	type outcome struct {
		got  map[string]int
		want map[string]int
		err  error
	}
	out := make([]outcome, jobs)
	var wg sync.WaitGroup
	for i := range jobs {
		// Each job has its own lineage; every third one also reads the
		// shared shuffle, which concurrent jobs may compute together.
		var r *rdd.RDD[kv]
		want := map[string]int{}
		if i%3 == 0 {
			r = rdd.MapValues(shared, func(v int) int { return v * i })
			for k, v := range wordCounts {
				want[k] = v * i
			}
		} else {
			n := 50 + i
			gen := rdd.Generate("gen", 1+i%5, func(part int, yield func(int) bool) {
				for v := part; v < n; v += 1 + i%5 {
					if !yield(v) {
						return
					}
				}
			})
			r = rdd.ReduceByKey(rdd.Map(gen, func(v int) kv { return kv{Key: fmt.Sprint(v % 7), Value: v} }), sum, 1+i%4)
			for v := range n {
				want[fmt.Sprint(v%7)] += v
			}
		}
		got := map[string]int{}
		out[i].want = want
		job := collectJob(r, func(p kv) { got[strings.Clone(p.Key)] += p.Value })
		wg.Go(func() {
			_, err := l.s.RunJob(context.Background(), job)
			out[i].got, out[i].err = got, err
		})
	}
	wg.Wait()
	for i, o := range out {
		if o.err != nil {
			t.Errorf("job %d: %v", i, o.err)
		} else if fmt.Sprint(o.got) != fmt.Sprint(o.want) {
			t.Errorf("job %d: got %v want %v", i, o.got, o.want)
		}
	}
}

// blocker makes tasks wait inside a user function until released.
type blocker struct {
	entered chan string
	release chan struct{}
}

func newBlocker() *blocker {
	return &blocker{entered: make(chan string, 16), release: make(chan struct{})}
}

func (b *blocker) wait(w string) {
	b.entered <- w
	<-b.release
}

func TestSchedulerCloseWaitsForTheRunningJob(t *testing.T) {
	l := newLocal(t, 2, nil)
	b := newBlocker()
	lines := rdd.Map(source(l, "queue", wordLines...), func(s string) string {
		if s == "b c d" {
			b.wait(s)
		}
		return s
	})
	var got map[string]int
	var err error
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		got = map[string]int{}
		_, err = l.s.RunJob(context.Background(), collectJob(wordCount(lines, 2), func(p kv) { got[strings.Clone(p.Key)] += p.Value }))
	}()
	<-b.entered
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		l.s.Close()
	}()
	close(b.release)
	<-closed
	<-ran
	if err != nil {
		t.Fatalf("job in flight when Close was called: %v", err)
	}
	if fmt.Sprint(got) != fmt.Sprint(wordCounts) {
		t.Fatalf("got %v", got)
	}
	if _, err := l.s.RunJob(context.Background(), collectJob(lines, func(string) {})); err == nil || !strings.Contains(err.Error(), "stopped") {
		t.Fatalf("RunJob after Close: %v", err)
	}
	l.s.ForgetShuffles(1) // returns at once
	l.s.Close()           // twice is fine
}

func TestSchedulerCloseWithStragglersOfAFailedJob(t *testing.T) {
	for i := range 20 { // the straggler's report races with the loop's end
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			l := newLocal(t, 3, nil)
			b := newBlocker()
			gate := make(chan struct{})
			src := source(l, "queue", []string{"slow"}, []string{"bad"}, []string{"slow"})
			words := rdd.Map(src, func(w string) string {
				switch w {
				case "slow":
					b.wait(w)
				case "bad":
					<-gate
					panic("bad")
				}
				return w
			})
			failed := make(chan error)
			go func() {
				_, err := l.s.RunJob(context.Background(), collectJob(words, func(string) {}))
				failed <- err
			}()
			// The bad task fails only once both slow tasks are running.
			<-b.entered
			<-b.entered
			close(gate)
			var pe *PanicError
			if err := <-failed; !errors.As(err, &pe) {
				t.Fatalf("err %v", err)
			}
			// Both slow tasks are still running: their results, records
			// included, must be released by Close.
			closed := make(chan struct{})
			go func() {
				defer close(closed)
				l.s.Close()
			}()
			close(b.release)
			<-closed
		})
	}
}

func TestSchedulerRunJobCancelledBeforeSubmission(t *testing.T) {
	l := newLocal(t, 1, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// The loop may take the submission or see the cancellation: either
	// way RunJob returns.
	_, err := l.s.RunJob(ctx, collectJob(source(l, "queue", []string{"a"}), func(string) {}))
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
}

func TestSchedulerRunJobReturnsWhenItsContextEnds(t *testing.T) {
	l := newLocal(t, 2, nil)
	b := newBlocker()
	lines := rdd.Map(source(l, "queue", wordLines...), func(s string) string {
		if s == "b c d" {
			b.wait(s)
		}
		return s
	})
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error)
	go func() {
		_, err := l.s.RunJob(ctx, collectJob(wordCount(lines, 2), func(kv) {}))
		ran <- err
	}()
	<-b.entered
	cancel()
	if err := <-ran; !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		l.s.Close()
	}()
	close(b.release)
	<-closed
}

func TestLocalBackendDropsTasksOfFinishedJobs(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	b := NewLocalBackend(1, mem, rdd.NewMemShuffle(), rdd.NewMemBlocks())
	var mu sync.Mutex
	var reported []int64
	src := rdd.Generate("gen", 2, func(part int, yield func(int) bool) { yield(part) })
	stage := PlanStages(src.Node())
	live := collectJob(src, func(int) {})
	done := collectJob(src, func(int) {})
	done.finished.Store(true)
	// Queue the tasks before the slot starts, so the order is fixed.
	b.Launch(&Task{ID: 1, Job: done, Stage: stage, Partition: 0})
	b.Launch(&Task{ID: 2, Job: live, Stage: stage, Partition: 1})
	b.Start(func(r TaskResult) {
		mu.Lock()
		defer mu.Unlock()
		if r.Executor != LocalID || r.Err != nil {
			t.Errorf("report %+v", r)
		}
		if r.Result != nil {
			r.Result.Release()
		}
		reported = append(reported, r.TaskID)
	})
	b.Stop()
	if !slices.Equal(reported, []int64{2}) {
		t.Fatalf("reported %v, want only task 2", reported)
	}
	checkNoGoroutines(t)
}
