package dstream

import (
	"fmt"
	"iter"
	"time"

	"github.com/sluicehq/sluice/internal/checkpoint"
	"github.com/sluicehq/sluice/rdd"
)

// statefulOp is an operator that keeps state across batches. Its RDD is
// computed in every batch (even if no output reads it that batch) and its
// state commits after the batch's outputs are done.
type statefulOp interface {
	// force returns a job that computes the operator's RDD at t, nil if
	// the operator produces nothing at t.
	force(t time.Time) (*outputJob, error)
	commit(t time.Time)
	// begin loads the initial state when the context starts.
	begin()
	// ckptOperator names and types the operator for checkpoints.
	ckptOperator() checkpoint.Operator
	// saveState encodes the committed state (checkpoint.go).
	saveState() ([]checkpoint.StatePart, error)
	// loadState replaces the committed state with a snapshot's.
	loadState(parts []checkpoint.StatePart) error
	// savePart encodes one partition's committed state (a job process's
	// part of a cluster snapshot: restore.go).
	savePart(part int) (checkpoint.StatePart, error)
	// loadPart replaces one partition's committed state with the
	// snapshot's; parts holds that partition and the operator-wide parts.
	loadPart(part int, parts []checkpoint.StatePart) error
}

// registerStateful adds op to the context. The op's name must be unique:
// checkpoints key state by it.
func (c *Context) registerStateful(name string, b *streamBase, op statefulOp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != created {
		panic(fmt.Sprintf("dstream: cannot add stateful operator %q after the context started", name))
	}
	if c.statefulNames == nil {
		c.statefulNames = map[string]bool{}
	}
	if name == "" {
		c.graphErrs = append(c.graphErrs, fmt.Errorf("%s: a stateful operator needs a name: checkpoints and metrics key on it, so it must not change when code moves", b.name))
	} else if c.statefulNames[name] {
		c.graphErrs = append(c.graphErrs, fmt.Errorf("%s: the stateful operator name %q is used twice; names must be unique in a job", b.name, name))
	}
	c.statefulNames[name] = true
	c.stateful = append(c.stateful, op)
}

// forceJob makes a job that computes every partition of r and discards the
// values (the RDD is persisted, so outputs that read it later do not
// recompute it).
func forceJob[T any](name string, r *rdd.RDD[T]) *outputJob {
	return newOutputJob(&outputOp{name: name}, r, nil, func(b *Batch, r *rdd.RDD[T]) error {
		return runAction(b, r, action{kind: actForce}, nil)
	})
}

// keyedState makes the stream of a stateful operator over s: at every batch
// the parent's values are grouped by key into the state's partitions (the
// same placement as the store's), and f runs once per partition with a
// transaction on that partition of store, which is finished (the batch's
// delta recorded) when f returns. The RDD is persisted: recomputing it
// after its batch committed would read newer state.
func keyedState[K comparable, V, S, U any](s *DStream[KV[K, V]], op, name string, store *stateStore[K, S],
	f func(tc *rdd.TaskContext, t time.Time, x *txn[K, S], in iter.Seq[KV[K, []V]], yield func(U) bool) error) *DStream[U] {
	n := len(store.parts)
	return newStream(s.b.ctx, op, s.b.slide, []*streamBase{s.b}, func(t time.Time) (*rdd.RDD[U], error) {
		parent, err := s.rddAt(t)
		if err != nil {
			return nil, err
		}
		if parent == nil {
			parent = rdd.Empty[KV[K, V]](op, 0)
		}
		grouped := rdd.GroupByKey(parent, n)
		r := rdd.MapPartitionsWithContext(grouped, op+"("+name+")", rdd.CodecOf[U](),
			func(tc *rdd.TaskContext, part int, in iter.Seq[KV[K, []V]], yield func(U) bool) error {
				x, err := store.begin(part, t)
				if err != nil {
					return err
				}
				if err := f(tc, t, x, in, yield); err != nil {
					return err
				}
				x.finish(tc)
				return nil
			})
		r.Node().State = name
		return r.Persist(), nil
	})
}

// State is a key's state as seen by a MapWithState function.
type State[S any] struct {
	value     S
	exists    bool
	timingOut bool
	updated   bool
	removed   bool
}

// Exists reports whether the key has state.
func (s *State[S]) Exists() bool { return s.exists }

// Get returns the state (the zero value if none).
func (s *State[S]) Get() S { return s.value }

// Update sets the state. It panics when the key is timing out: a timed-out
// key is removed after its last call.
func (s *State[S]) Update(v S) {
	if s.timingOut {
		panic("dstream: State.Update on a key that is timing out; its state is removed after this call")
	}
	s.value, s.exists, s.updated, s.removed = v, true, true, false
}

// Remove deletes the state.
func (s *State[S]) Remove() {
	var zero S
	s.value, s.exists, s.removed, s.updated = zero, false, true, false
}

// IsTimingOut reports whether this call is the last one for an idle key:
// the function is called once with no value, then the key's state is removed.
func (s *State[S]) IsTimingOut() bool { return s.timingOut }

// StateSpec configures MapWithState.
type StateSpec[K comparable, V, S, U any] struct {
	// Name identifies the operator's state; it must be unique in the job
	// and stable across versions of it (checkpoints key on it).
	Name string
	// Func is called once for every value of a key in the batch (value is
	// present), and once for a key that timed out (value is absent and
	// state.IsTimingOut() is true). It returns an output element and
	// whether to emit it.
	Func func(key K, value Option[V], state *State[S]) (U, bool)
	// Timeout, if > 0, removes a key that received no data for longer than
	// it (strictly), after a last call with IsTimingOut.
	Timeout time.Duration
	// Initial is the state before the first batch.
	Initial []KV[K, S]
	// Partitions is the number of state partitions (and of the shuffle
	// that feeds them); 0 means Config.Parallelism.
	Partitions int
}

// MapWithStateStream is the output of MapWithState: the emitted elements,
// plus access to the state itself.
type MapWithStateStream[K comparable, S, U any] struct {
	*DStream[U]
	store     *stateStore[K, S]
	state     *DStream[U]
	snapshots func() *DStream[KV[K, S]]
}

// Snapshots returns a stream of the whole state after each batch.
func (m *MapWithStateStream[K, S, U]) Snapshots() *DStream[KV[K, S]] { return m.snapshots() }

// MapWithState runs spec.Func over every (key, value) of every batch with
// the key's state. Only keys with new data (and keys timing out) are
// touched. State is partitioned like the input's shuffle by key.
func MapWithState[K comparable, V, S, U any](s *DStream[KV[K, V]], spec StateSpec[K, V, S, U]) *MapWithStateStream[K, S, U] {
	if spec.Func == nil {
		panic("dstream: MapWithState: StateSpec.Func is nil")
	}
	ctx := s.b.ctx
	n := ctx.Parallelism()
	if spec.Partitions != 0 {
		n = numParts(ctx, []ShuffleOption{Partitions(spec.Partitions)})
	}
	store := newStateStore[K, S](spec.Name, n)
	timeout := spec.Timeout
	wake := func(_ K, e stateEntry[S]) time.Time {
		if timeout <= 0 {
			return time.Time{}
		}
		return e.touched.Add(timeout + 1) // due once t - touched > timeout
	}
	out := keyedState(s, "mapWithState", spec.Name, store, func(_ *rdd.TaskContext, t time.Time, x *txn[K, S], in iter.Seq[KV[K, []V]], yield func(U) bool) error {
		seen := map[K]bool{}
		for kv := range in {
			e, ok := x.get(kv.Key)
			st := State[S]{value: e.value, exists: ok}
			for _, v := range kv.Value {
				st.updated, st.removed = false, false
				u, emit := spec.Func(kv.Key, rdd.Some(v), &st)
				if emit && !yield(u) {
					return fmt.Errorf("mapWithState(%s): output stopped early", spec.Name)
				}
			}
			switch {
			case st.exists:
				x.set(kv.Key, stateEntry[S]{value: st.value, touched: t})
			case ok:
				x.remove(kv.Key)
			}
			if timeout > 0 {
				seen[kv.Key] = true
			}
		}
		if timeout > 0 && x.due() {
			var expired []KV[K, S]
			x.each(func(k K, e stateEntry[S]) bool {
				if !seen[k] && t.Sub(e.touched) > timeout {
					expired = append(expired, KV[K, S]{Key: k, Value: e.value})
				}
				return true
			})
			for _, kv := range expired {
				st := State[S]{value: kv.Value, exists: true, timingOut: true}
				u, emit := spec.Func(kv.Key, Option[V]{}, &st)
				if emit && !yield(u) {
					return fmt.Errorf("mapWithState(%s): output stopped early", spec.Name)
				}
				x.remove(kv.Key)
			}
		}
		return nil
	})
	out.b.stateSize = stateSizeOf(ctx, store)
	ms := &MapWithStateStream[K, S, U]{DStream: out, store: store, state: out}
	var snaps *DStream[KV[K, S]]
	ms.snapshots = func() *DStream[KV[K, S]] {
		if snaps == nil {
			snaps = snapshotStream(out, store)
		}
		return snaps
	}
	op := storeCheckpoint(ctx, &statefulStream[U]{
		s: out, name: "mapWithState(" + spec.Name + ")",
		commit_: func(t time.Time) { store.commit(t, wake) },
		start: func() {
			store.load(spec.Initial, ctx.zeroTime)
			store.rewake(wake) // the first wake time
		},
	}, "mapWithState", store)
	load, loadPt := op.load, op.loadPt
	op.load = func(parts []checkpoint.StatePart) error {
		if err := load(parts); err != nil {
			return err
		}
		store.rewake(wake) // the wake times of the restored keys
		return nil
	}
	op.loadPt = func(part int, parts []checkpoint.StatePart) error {
		if err := loadPt(part, parts); err != nil {
			return err
		}
		store.rewake(wake, part)
		return nil
	}
	ctx.registerStateful(spec.Name, out.b, op)
	return ms
}

// snapshotStream emits a store's whole state after each batch of the stateful
// stream s (whose partitions it reads first, so the batch's delta exists).
func snapshotStream[K comparable, S, U any](s *DStream[U], store *stateStore[K, S]) *DStream[KV[K, S]] {
	return derive(s, "stateSnapshots", func(r *rdd.RDD[U]) *rdd.RDD[KV[K, S]] {
		return rdd.MapPartitionsWithContext(r, "stateSnapshots", rdd.CodecOf[KV[K, S]](),
			func(tc *rdd.TaskContext, part int, in iter.Seq[U], yield func(KV[K, S]) bool) error {
				for range in { // compute (or read) the stateful partition first
				}
				t := tc.BatchTime
				x, err := store.begin(part, t)
				if err != nil {
					return err
				}
				x.delta = store.parts[part].deltaAt(t)
				x.each(func(k K, e stateEntry[S]) bool { return yield(KV[K, S]{Key: k, Value: e.value}) })
				return nil
			})
	})
}

// statefulStream adapts a stateful DStream to statefulOp.
type statefulStream[U any] struct {
	s       *DStream[U]
	name    string
	commit_ func(t time.Time)
	start   func()
	id      checkpoint.Operator
	save    func() ([]checkpoint.StatePart, error)
	load    func(parts []checkpoint.StatePart) error
	savePt  func(part int) (checkpoint.StatePart, error)
	loadPt  func(part int, parts []checkpoint.StatePart) error
}

func (f *statefulStream[U]) ckptOperator() checkpoint.Operator            { return f.id }
func (f *statefulStream[U]) saveState() ([]checkpoint.StatePart, error)   { return f.save() }
func (f *statefulStream[U]) loadState(parts []checkpoint.StatePart) error { return f.load(parts) }
func (f *statefulStream[U]) savePart(part int) (checkpoint.StatePart, error) {
	return f.savePt(part)
}
func (f *statefulStream[U]) loadPart(part int, parts []checkpoint.StatePart) error {
	return f.loadPt(part, parts)
}

// storeCheckpoint fills in a keyed-state operator's checkpoint functions.
func storeCheckpoint[K comparable, S, U any](ctx *Context, f *statefulStream[U], kind string, store *stateStore[K, S]) *statefulStream[U] {
	f.id = ckptOperatorOf[K, S](kind, store.name, len(store.parts))
	f.save = func() ([]checkpoint.StatePart, error) { return store.saveParts(ctx.cfg.Allocator) }
	f.load = func(parts []checkpoint.StatePart) error { return store.loadParts(ctx.cfg.Allocator, parts) }
	f.savePt = func(part int) (checkpoint.StatePart, error) { return store.savePart(ctx.cfg.Allocator, part) }
	f.loadPt = func(part int, parts []checkpoint.StatePart) error {
		return store.loadPart(ctx.cfg.Allocator, part, parts)
	}
	store.restore = func(part int) error { return ctx.restorePart(f, part) }
	return f
}

func (f *statefulStream[U]) force(t time.Time) (*outputJob, error) {
	r, err := f.s.rddAt(t)
	if err != nil || r == nil {
		return nil, err
	}
	return forceJob(f.name, r), nil
}

func (f *statefulStream[U]) commit(t time.Time) { f.commit_(t) }

func (f *statefulStream[U]) begin() {
	if f.start != nil {
		f.start()
	}
}

// UpdateStateByKey keeps a state per key: at every batch, update is called
// for every key that has new values or state, with the batch's values of the
// key (possibly none) and its state; returning false as the second result
// removes the key. The stream holds the whole state after each batch.
// WithInitialState sets the state before the first batch, Partitions the
// number of state partitions.
func UpdateStateByKey[K comparable, V, S any](s *DStream[KV[K, V]], name string, update func(values []V, state S, exists bool) (S, bool), opts ...ShuffleOption) *DStream[KV[K, S]] {
	ctx := s.b.ctx
	n := numParts(ctx, opts)
	initial := initialState[K, S](ctx, "updateStateByKey("+name+")", opts)
	store := newStateStore[K, S](name, n)
	out := keyedState(s, "updateStateByKey", name, store, func(_ *rdd.TaskContext, t time.Time, x *txn[K, S], in iter.Seq[KV[K, []V]], yield func(KV[K, S]) bool) error {
		for kv := range in {
			e, ok := x.get(kv.Key)
			if ns, keep := update(kv.Value, e.value, ok); keep {
				x.set(kv.Key, stateEntry[S]{value: ns, touched: t})
			} else if ok {
				x.remove(kv.Key)
			}
		}
		// Keys with no data: update them in place. A key with data was set
		// above (changed) or removed (not visited), or never existed.
		x.walk(func(k K, e stateEntry[S], changed bool) bool {
			if !changed {
				if ns, keep := update(nil, e.value, true); keep {
					x.set(k, stateEntry[S]{value: ns, touched: t})
				} else {
					x.remove(k)
				}
			}
			return true
		})
		var stopped bool
		x.each(func(k K, e stateEntry[S]) bool {
			stopped = !yield(KV[K, S]{Key: k, Value: e.value})
			return !stopped
		})
		return nil
	})
	out.b.stateSize = stateSizeOf(ctx, store)
	ctx.registerStateful(name, out.b, storeCheckpoint(ctx, &statefulStream[KV[K, S]]{
		s: out, name: "updateStateByKey(" + name + ")",
		commit_: func(t time.Time) { store.commit(t, nil) },
		start:   func() { store.load(initial, ctx.zeroTime) },
	}, "updateStateByKey", store))
	return out
}
