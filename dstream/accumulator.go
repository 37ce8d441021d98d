package dstream

import (
	"fmt"
	"iter"
	"strconv"
	"sync"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/sluicehq/sluice/internal/cluster"
	"github.com/sluicehq/sluice/rdd"
)

// Task is the task running a user function, handed to the functions of
// MapWithTask, FlatMapWithTask and to sinks (PartitionInfo.Task), so that
// they can update accumulators.
type Task struct {
	tc      *rdd.TaskContext
	op      string    // stable id of the operator: s<stream id> or o<output index>.<job>
	node    *rdd.Node // the operator's lineage node, blamed for a panic
	time    time.Time // batch time of the RDD being computed
	part    int
	pending map[string]accPending // by accumulator name, in first-update order
	order   []string
}

type accPending interface {
	flush(task *Task) error
}

// Partition returns the partition the task computes.
func (t *Task) Partition() int { return t.part }

// Attempt returns the task's attempt number (0 for the first).
func (t *Task) Attempt() int { return t.tc.Attempt }

// BatchTime returns the time of the batch whose data the task computes.
func (t *Task) BatchTime() time.Time { return t.time }

func newTask(tc *rdd.TaskContext, op string, bt time.Time, part int) *Task {
	return &Task{tc: tc, op: op, time: bt, part: part}
}

// finish sends the task's accumulator updates to the driver with the
// task's result.
func (t *Task) finish() error {
	for _, name := range t.order {
		if err := t.pending[name].flush(t); err != nil {
			return err
		}
	}
	t.pending, t.order = nil, nil
	return nil
}

// Number is the constraint of Sum.
type Number interface {
	~int | ~int8 | ~int16 | ~int32 | ~int64 | ~uint | ~uint8 | ~uint16 | ~uint32 | ~uint64 | ~float32 | ~float64
}

// Sum adds two numbers: the merge function of a counter.
func Sum[T Number](a, b T) T { return a + b }

// Accumulator is a value that tasks add to and the driver reads (Spark's
// accumulators). Tasks update it through their Task; each task's updates
// are merged into the driver's value once, when the task succeeds:
//
//   - the updates of a failed task attempt never count;
//   - an operator's partition of a batch counts exactly once, however often
//     it is computed (task retries, a stage recomputed after a lost
//     executor, another output reading the same stream);
//   - a partition whose computation stopped early (Print reads only the
//     first elements) does not count; its full computation, if any, does.
//
// Reading Value in a task is an error: the value lives in the driver.
type Accumulator[T any] struct {
	ctx   *Context
	name  string
	merge func(a, b T) T
	codec rdd.Codec[rdd.KV[string, T]]

	mu     sync.Mutex
	value  T
	seen   map[string]time.Time // "<batch ns>/<op>/<partition>" counted, by batch time
	newest time.Time
}

// NewAccumulator makes an accumulator whose updates are combined with
// merge, which must be associative and commutative; its value starts at
// T's zero value. name must be unique in the job and the same in every
// process (it keys the updates tasks send):
//
//	bad := dstream.NewAccumulator(ctx, "bad-lines", dstream.Sum[int64])
//	recs := dstream.FlatMapWithTask(lines, func(task *dstream.Task, l string) []Rec {
//		r, err := parse(l)
//		if err != nil {
//			bad.Add(task, 1)
//			return nil
//		}
//		return []Rec{r}
//	})
//	// later, on the driver (in a ForeachRDD function, or after Run): bad.Value()
func NewAccumulator[T any](ctx *Context, name string, merge func(a, b T) T) *Accumulator[T] {
	a := &Accumulator[T]{ctx: ctx, name: name, merge: merge, codec: rdd.CodecOf[rdd.KV[string, T]](), seen: map[string]time.Time{}}
	ctx.mu.Lock()
	_, dup := ctx.reporters["acc/"+name]
	switch {
	case merge == nil:
		ctx.graphErrs = append(ctx.graphErrs, fmt.Errorf("accumulator %q at %s: the merge function is nil", name, callSite()))
	case name == "":
		ctx.graphErrs = append(ctx.graphErrs, fmt.Errorf("accumulator at %s: a name is needed: tasks' updates are keyed by it", callSite()))
	case dup:
		ctx.graphErrs = append(ctx.graphErrs, fmt.Errorf("accumulator %q at %s: the name is used twice; names must be unique in a job", name, callSite()))
	}
	ctx.mu.Unlock()
	ctx.registerReporter("acc/", name, a.report)
	return a
}

// Name returns the accumulator's name.
func (a *Accumulator[T]) Name() string { return a.name }

// Value returns the merged updates of every task that succeeded so far. It
// is read on the driver: in ForeachRDD functions, or after the job.
func (a *Accumulator[T]) Value() T {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.value
}

// Add merges v into the task's update of the accumulator, sent to the
// driver when the task succeeds.
func (a *Accumulator[T]) Add(task *Task, v T) {
	if task == nil {
		panic(fmt.Sprintf("dstream: accumulator %q: Add with a nil Task; update accumulators from MapWithTask, FlatMapWithTask or a Sink", a.name))
	}
	if p, ok := task.pending[a.name]; ok {
		ap := p.(*accPart[T])
		ap.v = a.merge(ap.v, v)
		return
	}
	if task.pending == nil {
		task.pending = map[string]accPending{}
	}
	task.pending[a.name] = &accPart[T]{acc: a, v: v}
	task.order = append(task.order, a.name)
}

// accPart is one task's update of one accumulator from one operator.
type accPart[T any] struct {
	acc *Accumulator[T]
	v   T
}

// flush adds the update to the task's report for the accumulator: a list of
// (operator/partition, value), one per operator that updated it in the task.
func (p *accPart[T]) flush(task *Task) error {
	a := p.acc
	key := "acc/" + strconv.FormatInt(task.time.UnixNano(), 10) + "/" + strconv.Itoa(task.tc.Partition) + "/" + a.name
	mem := task.tc.Alloc
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	var entries []rdd.KV[string, T]
	if old, ok := task.tc.Reports[key]; ok {
		var err error
		if entries, err = a.decode(old, mem); err != nil {
			return err
		}
	}
	id := task.op + "/" + strconv.Itoa(task.part)
	merged := false
	for i := range entries {
		if entries[i].Key == id {
			entries[i].Value, merged = a.merge(entries[i].Value, p.v), true
		}
	}
	if !merged {
		entries = append(entries, rdd.KV[string, T]{Key: id, Value: p.v})
	}
	rec := rdd.Encode(mem, a.codec, entries)
	defer rec.Release()
	b, err := cluster.EncodeIPC(rec, mem)
	if err != nil {
		return fmt.Errorf("accumulator %q: encode the task's update: %w", a.name, err)
	}
	task.tc.Report(key, b)
	return nil
}

func (a *Accumulator[T]) decode(b []byte, mem memory.Allocator) ([]rdd.KV[string, T], error) {
	rec, err := cluster.DecodeIPC(b, mem)
	if err != nil {
		return nil, fmt.Errorf("accumulator %q: %w", a.name, err)
	}
	defer rec.Release()
	vals := rdd.Decode(a.codec, rec)
	for i := range vals {
		vals[i] = rdd.Clone(vals[i])
	}
	return vals, nil
}

// report merges a successful task's update on the driver, once per
// operator partition and batch.
func (a *Accumulator[T]) report(t time.Time, _ int, b []byte) error {
	entries, err := a.decode(b, a.ctx.cfg.Allocator)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	prefix := strconv.FormatInt(t.UnixNano(), 10) + "/"
	for _, e := range entries {
		k := prefix + e.Key
		if _, ok := a.seen[k]; ok {
			continue
		}
		a.seen[k] = t
		a.value = a.merge(a.value, e.Value)
	}
	if t.After(a.newest) {
		a.newest = t
		// A batch's RDDs are recomputed at most as long as a window
		// reaches back: forget what is older than twice that.
		keep := 2 * (a.ctx.maxRemember + a.ctx.cfg.BatchInterval)
		for k, bt := range a.seen {
			if bt.Before(t.Add(-keep)) {
				delete(a.seen, k)
			}
		}
	}
	return nil
}

// deriveTask makes a stream computed partition by partition with a Task,
// whose accumulator updates are sent when the partition was fully
// computed.
func deriveTask[T, U any](parent *DStream[T], op string, f func(task *Task, in iter.Seq[T], yield func(U) bool) bool) *DStream[U] {
	site := callSite()
	var out *DStream[U]
	out = newStream(parent.b.ctx, op, parent.b.slide, []*streamBase{parent.b}, func(t time.Time) (*rdd.RDD[U], error) {
		r, err := parent.rddAt(t)
		if err != nil || r == nil {
			return nil, err
		}
		id := "s" + strconv.Itoa(out.b.id)
		var node *rdd.Node
		res := rdd.MapPartitionsWithContext(r, op, rdd.CodecOf[U](), func(tc *rdd.TaskContext, part int, in iter.Seq[T], yield func(U) bool) error {
			task := newTask(tc, id, t, part)
			task.node = node
			if f(task, in, yield) {
				return task.finish()
			}
			return nil // stopped early: the updates do not count
		})
		node = res.Node()
		node.Site = site
		return res, nil
	})
	return out
}

// MapWithTask is Map for a function that updates accumulators through the
// running Task.
func MapWithTask[T, U any](s *DStream[T], f func(task *Task, v T) U) *DStream[U] {
	return deriveTask(s, "map", func(task *Task, in iter.Seq[T], yield func(U) bool) bool {
		for v := range in {
			task.tc.SetCurrent(task.node)
			if !yield(f(task, v)) {
				return false
			}
		}
		return true
	})
}

// FlatMapWithTask is FlatMap for a function that updates accumulators
// through the running Task.
func FlatMapWithTask[T, U any](s *DStream[T], f func(task *Task, v T) []U) *DStream[U] {
	return deriveTask(s, "flatMap", func(task *Task, in iter.Seq[T], yield func(U) bool) bool {
		for v := range in {
			task.tc.SetCurrent(task.node)
			for _, u := range f(task, v) {
				if !yield(u) {
					return false
				}
			}
		}
		return true
	})
}
