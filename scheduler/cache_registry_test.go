package scheduler

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/sluicehq/sluice/rdd"
)

// The registry of cached partitions executors hold (issue 4/11): tasks
// report what they cached, the planner reads a node held everywhere instead
// of walking its lineage (so a window does not recompute old batches), tasks
// go to the holders, and a holder lost, restarted or missing a partition
// makes the planner walk the lineage again.

// batchRDD is one batch's persisted per-key counts: a shuffle whose output
// is deleted once the batch is done, as dstream does.
func batchRDD(name string) *rdd.RDD[kv] {
	return rdd.ReduceByKey(pairsOf(words(name, 2)), sum, 2).Persist()
}

// mapTasks returns the live tasks of the job writing shuffle id.
func (ct *coreTest) mapTasks(j *Job, shuffle int64) []*Task {
	var out []*Task
	for _, t := range ct.live {
		if t.Job == j && t.Stage.IsShuffleMap() && t.Stage.Shuffle.ID == shuffle {
			out = append(out, t)
		}
	}
	return out
}

// okCached reports t done at e#inc, having cached puts.
func (ct *coreTest) okCached(t *Task, e string, inc int64, puts ...rdd.BlockRef) []string {
	ct.t.Helper()
	delete(ct.live, fmt.Sprintf("%d/%d", t.Stage.ID, t.Partition))
	res := TaskResult{TaskID: t.ID, Executor: e, Incarnation: inc, CachedPuts: puts}
	if !t.Stage.IsShuffleMap() {
		res.Result = ct.record(t.Partition)
	}
	return ct.completed(res)
}

// runBatch runs a job over b to the end: its map tasks on e1, its result
// tasks caching partition p on execs[p]; then the shuffle is deleted.
func (ct *coreTest) runBatch(b *rdd.RDD[kv], execs ...string) {
	ct.t.Helper()
	j := ct.job(b.Node())
	ct.submit(j)
	shuffle := b.Node().Deps[0].Shuffle.ID
	for _, t := range ct.mapTasks(j, shuffle) {
		ct.okCached(t, "e1", 1)
	}
	for p := 0; p < 2; p++ {
		t := ct.task(fmt.Sprintf("%d/%d", ct.c.jobs[j.ID].result.ID, p))
		ct.okCached(t, execs[p], 1, rdd.BlockRef{Node: b.Node().ID, Part: p})
	}
	if ct.dones[j.ID].Err != nil || ct.dones[j.ID].Job == nil {
		ct.t.Fatalf("batch job: %+v", ct.dones[j.ID])
	}
	ct.c.RemoveShuffles(shuffle)
}

func TestCoreCachedPartitionsAreNotRecomputed(t *testing.T) {
	ct := newCoreTest(t, nil)
	b1 := batchRDD("b1")
	ct.runBatch(b1, "e1", "e2")
	if got := ct.c.CachedLocations(); got[Location{"e1", 1}] != 1 || got[Location{"e2", 1}] != 1 {
		t.Fatalf("CachedLocations = %v, want one partition on each executor", got)
	}

	// The window over batches 1 and 2: batch 1's lineage is not planned
	// (its shuffle is gone and nothing needs it), only batch 2's.
	b2 := batchRDD("b2")
	w := ct.job(rdd.Union(b1, b2).Node())
	ct.submit(w)
	if n := len(ct.mapTasks(w, b1.Node().Deps[0].Shuffle.ID)); n != 0 {
		t.Fatalf("batch 1's map stage launched %d tasks: its cached partitions are recomputed", n)
	}
	b2maps := ct.mapTasks(w, b2.Node().Deps[0].Shuffle.ID)
	if len(b2maps) != 2 {
		t.Fatalf("batch 2's map stage launched %d tasks, want 2", len(b2maps))
	}
	for _, mt := range b2maps {
		ct.okCached(mt, "e1", 1)
	}
	rs := ct.c.jobs[w.ID].result.ID
	for p, want := range []Location{{"e1", 1}, {"e2", 1}} {
		task := ct.task(fmt.Sprintf("%d/%d", rs, p))
		if task.Prefer != want || len(task.Cached) != 1 || task.Cached[0].Block != (rdd.BlockRef{Node: b1.Node().ID, Part: p}) {
			t.Errorf("window partition %d: prefer %v, cached %v; want batch 1's partition %d at %v", p, task.Prefer, task.Cached, p, want)
		}
	}
	for p := 2; p < 4; p++ {
		if task := ct.task(fmt.Sprintf("%d/%d", rs, p)); !task.Prefer.IsZero() || len(task.Cached) != 0 {
			t.Errorf("window partition %d (batch 2, not cached yet): prefer %v, cached %v", p, task.Prefer, task.Cached)
		}
	}
}

func TestCoreCachedPartitionsGoWithTheirExecutor(t *testing.T) {
	for _, how := range []string{"lost", "new incarnation", "forgotten"} {
		t.Run(how, func(t *testing.T) {
			ct := newCoreTest(t, nil)
			b1 := batchRDD("b1")
			ct.runBatch(b1, "e1", "e2")
			switch how {
			case "lost":
				ct.lost("e1")
			case "new incarnation":
				// Any result from e1's next incarnation drops what it held.
				j := ct.job(words("other", 1).Node())
				ct.submit(j)
				ct.okCached(ct.task(fmt.Sprintf("%d/0", ct.c.jobs[j.ID].result.ID)), "e1", 2)
			case "forgotten":
				ct.c.ForgetCached(b1.Node().ID)
			}
			j := ct.job(b1.Node())
			ct.submit(j)
			if n := len(ct.mapTasks(j, b1.Node().Deps[0].Shuffle.ID)); n != 2 {
				t.Fatalf("after the cache is gone (%s), batch 1's map stage launched %d tasks, want 2", how, n)
			}
		})
	}
}

func TestCoreCacheMissPlansTheLineage(t *testing.T) {
	ct := newCoreTest(t, nil)
	b1 := batchRDD("b1")
	ct.runBatch(b1, "e1", "e2")
	j := ct.job(b1.Node())
	ct.submit(j)
	rs := ct.c.jobs[j.ID].result.ID
	if n := len(ct.live); n != 2 {
		t.Fatalf("%d tasks launched, want the 2 result tasks", n)
	}
	// e1's process no longer has partition 0 (its stream forgot it): the
	// task fails with a miss, and the lineage is planned for it.
	task := ct.task(fmt.Sprintf("%d/0", rs))
	delete(ct.live, fmt.Sprintf("%d/0", rs))
	ct.completed(TaskResult{TaskID: task.ID, Executor: "e1", Incarnation: 1,
		Err: fmt.Errorf("stage x: %w", &rdd.CacheMissError{NodeID: b1.Node().ID, Part: 0, Op: "reduceByKey"})})
	maps := ct.mapTasks(j, b1.Node().Deps[0].Shuffle.ID)
	if len(maps) != 2 {
		t.Fatalf("after a cache miss, batch 1's map stage launched %d tasks, want 2", len(maps))
	}
	for _, mt := range maps {
		ct.okCached(mt, "e1", 1)
	}
	retry := ct.task(fmt.Sprintf("%d/0", rs))
	if retry.Attempt != 0 || len(retry.Cached) != 0 {
		t.Errorf("retried partition 0: attempt %d, cached %v; want it computed from the lineage", retry.Attempt, retry.Cached)
	}
	ct.okCached(retry, "e1", 1, rdd.BlockRef{Node: b1.Node().ID, Part: 0})
	ct.okCached(ct.task(fmt.Sprintf("%d/1", rs)), "e2", 1)
	if d := ct.dones[j.ID]; d.Job == nil || d.Err != nil {
		t.Fatalf("job: %+v", d)
	}
}

// A task that read a cached partition through its lineage on another
// executor (the holder was busy or suspected) finds that lineage's shuffle
// gone: a fetch failure of a shuffle the stage does not read. The core
// stops relying on those partitions and plans the lineage.
func TestCoreFetchFailureOutsideThePlanReplans(t *testing.T) {
	ct := newCoreTest(t, nil)
	b1 := batchRDD("b1")
	ct.runBatch(b1, "e1", "e2")
	j := ct.job(b1.Node())
	ct.submit(j)
	rs := ct.c.jobs[j.ID].result.ID
	task := ct.task(fmt.Sprintf("%d/1", rs))
	delete(ct.live, fmt.Sprintf("%d/1", rs))
	ct.completed(TaskResult{TaskID: task.ID, Executor: "e1", Incarnation: 1, Err: fetchFailed(b1, 0)})
	if n := len(ct.mapTasks(j, b1.Node().Deps[0].Shuffle.ID)); n != 2 {
		t.Fatalf("batch 1's map stage launched %d tasks, want 2", n)
	}
	if got := ct.c.CachedLocations(); got[Location{"e2", 1}] != 0 || got[Location{"e1", 1}] != 1 {
		t.Errorf("CachedLocations = %v: want e2's partition forgotten, e1's kept", got)
	}
}

func TestNarrowParents(t *testing.T) {
	a, b := words("a", 2), words("b", 3)
	u := rdd.Union(a, b)
	m := rdd.Map(u, func(s string) string { return s })
	cases := []struct {
		n    *rdd.Node
		part int
		want []NodePart
	}{
		{m.Node(), 3, []NodePart{{u.Node(), 3}}},
		{u.Node(), 1, []NodePart{{a.Node(), 1}}},
		{u.Node(), 2, []NodePart{{b.Node(), 0}}},
		{u.Node(), 4, []NodePart{{b.Node(), 2}}},
		{a.Node(), 0, nil},
	}
	for _, c := range cases {
		got := NarrowParents(c.n, c.part)
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("NarrowParents(%s, %d) = %v, want %v", c.n, c.part, got, c.want)
		}
	}
}

// An executor holding a window's cached partitions stops taking tasks (its
// calls failed: lost, but not yet dropped by the coordinator), so every
// window task that was to read from it runs elsewhere and finds the old
// batch's shuffle gone. Found by a fault campaign (e2e, kill -9 of an
// executor under a 6 s window): each such failure was a setback of its
// own, the fifth failed the job. The first one forgets every partition
// that executor holds (as a lost map output forgets all of its executor's
// outputs), and the others, launched before that setback, do not count.
func TestCoreUnusableHolderOfManyCachedPartitionsSetsBackOnce(t *testing.T) {
	ct := newCoreTest(t, nil)
	var batches []*rdd.RDD[kv]
	for i := range 6 {
		b := batchRDD(fmt.Sprintf("b%d", i))
		ct.runBatch(b, "e1", "e2") // partition 0 on e1, 1 on e2
		batches = append(batches, b)
	}
	w := ct.job(rdd.Union(batches...).Node())
	ct.submit(w)
	rs := ct.c.jobs[w.ID].result.ID
	if n := len(ct.live); n != 12 {
		t.Fatalf("%d tasks launched, want the window's 12", n)
	}
	// The tasks reading e2's partitions (the odd ones) ran on e1 and
	// computed the lineage: each fails on its batch's deleted shuffle.
	for i := range batches {
		key := fmt.Sprintf("%d/%d", rs, 2*i+1)
		task := ct.task(key)
		if len(task.Cached) != 1 || task.Cached[0].At.Executor != "e2" {
			t.Fatalf("task %s reads %v, want one partition on e2", key, task.Cached)
		}
		ct.completed(TaskResult{TaskID: task.ID, Executor: "e1", Incarnation: 1, Err: fetchFailed(batches[i], 1)})
		if d := ct.dones[w.ID]; d.Err != nil {
			t.Fatalf("after %d fetch failures outside the plan, the job failed: %v", i+1, d.Err)
		}
	}
	if got := ct.c.CachedLocations(); got[Location{"e2", 1}] != 0 {
		t.Errorf("CachedLocations = %v: e2's partitions are still relied on", got)
	}
	// What remains runs: the lineage of e2's partitions, then the window.
	for len(ct.live) > 0 {
		for _, key := range slices.Sorted(maps.Keys(ct.live)) {
			ct.okCached(ct.task(key), "e1", 1)
		}
	}
	if d := ct.dones[w.ID]; d.Job == nil || d.Err != nil {
		t.Fatalf("window job: %+v", d)
	}
}
