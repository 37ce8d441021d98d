package dstream

import (
	"encoding/binary"
	"fmt"
	"iter"
	"maps"
	"sort"
	"sync"
	"time"

	"github.com/sluicehq/sluice/internal/checkpoint"
	"github.com/sluicehq/sluice/rdd"
)

// EventWindow is one emitted event-time window of one key.
type EventWindow[K comparable, V any] struct {
	Key   K
	Start time.Time
	End   time.Time
	Value V
}

// EventTimeSpec configures ReduceByKeyAndEventWindow, which groups records into windows by a timestamp taken
// from each record (event time), not by the batch they arrive in. Windows
// are aligned to multiples of the slide since the Unix epoch: a record with
// timestamp ts belongs to every window [start, start+Window) with start a
// multiple of Slide and start <= ts < start+Window (one window when Slide ==
// Window: tumbling).
//
// The watermark used by batch t is the largest timestamp seen in the batches
// before t minus AllowedLateness. Output semantics (append mode):
//   - a window's result is emitted exactly once, by the first batch whose
//     watermark is at or after the window's end, and its state is dropped;
//   - a record at or after the watermark updates its windows, so a record
//     up to AllowedLateness older than the newest one seen still counts;
//   - a record before the watermark is dropped (all its windows are already
//     emitted or about to be) and counted: see Dropped and the batch log's
//     late_dropped.
//
// A window closes one batch after the batch that moved the watermark past
// its end, since each batch uses the watermark of the batches before it.
type EventTimeSpec[K comparable, V any] struct {
	// Name identifies the operator's state; unique and stable.
	Name string
	// Timestamp returns a record's event time.
	Timestamp func(KV[K, V]) time.Time
	// Window is the window length; Slide the distance between window
	// starts (0 means Window: tumbling windows). Slide must divide Window.
	Window, Slide time.Duration
	// AllowedLateness is how far behind the newest timestamp seen a record
	// may be and still be counted.
	AllowedLateness time.Duration
	// Reduce merges two values of one key and window (associative and
	// commutative).
	Reduce func(V, V) V
	// Partitions is the number of state partitions (and of the shuffle
	// that feeds them); 0 means Config.Parallelism.
	Partitions int
}

// EventTimeStream is the output of ReduceByKeyAndEventWindow.
type EventTimeStream[K comparable, V any] struct {
	*DStream[EventWindow[K, V]]
	op *eventTimeOp
}

// Dropped returns how many records arrived behind the watermark and were
// dropped, over all committed batches.
func (s *EventTimeStream[K, V]) Dropped() int64 {
	s.op.mu.Lock()
	defer s.op.mu.Unlock()
	return s.op.dropped
}

// Watermark returns the watermark the next batch will use (zero before any
// record was seen).
func (s *EventTimeStream[K, V]) Watermark() time.Time {
	s.op.mu.Lock()
	defer s.op.mu.Unlock()
	return s.op.watermark()
}

// eventTimeOp holds the watermark bookkeeping: what each task of the batch
// in flight saw, folded in when the batch commits.
type eventTimeOp struct {
	lateness time.Duration
	mu       sync.Mutex
	maxEvent time.Time
	dropped  int64
	// By batch time in Unix ns: times decoded from reports carry another
	// location than the batch's own, and time.Time map keys compare it.
	pending map[int64]map[int]taskEvents // batch -> partition -> figures
	wmAt    map[int64]time.Time          // the watermark each batch used
}

// watermarkFor returns the watermark of batch t: fixed by the first task of
// the batch, which runs after the previous batch committed, so that every
// task and every recomputation of the batch uses the same one.
func (o *eventTimeOp) watermarkFor(t time.Time) time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	wm, ok := o.wmAt[t.UnixNano()]
	if !ok {
		wm = o.watermark()
		o.wmAt[t.UnixNano()] = wm
	}
	return wm
}

type taskEvents struct {
	maxEvent time.Time
	dropped  int64
}

func (o *eventTimeOp) watermark() time.Time {
	if o.maxEvent.IsZero() {
		return time.Time{}
	}
	return o.maxEvent.Add(-o.lateness)
}

func (o *eventTimeOp) report(t time.Time, part int, ev taskEvents) {
	o.mu.Lock()
	defer o.mu.Unlock()
	bt := t.UnixNano()
	if o.pending[bt] == nil {
		o.pending[bt] = map[int]taskEvents{}
	}
	o.pending[bt][part] = ev // a retry replaces its earlier attempt
}

// encode lays the figures out as: has-event flag, newest event time (Unix
// ns), dropped count.
func (ev taskEvents) encode() []byte {
	b := []byte{0}
	var ns int64
	if !ev.maxEvent.IsZero() {
		b[0], ns = 1, ev.maxEvent.UnixNano()
	}
	b = binary.LittleEndian.AppendUint64(b, uint64(ns))
	return binary.LittleEndian.AppendUint64(b, uint64(ev.dropped))
}

func decodeTaskEvents(b []byte) (taskEvents, error) {
	if len(b) != 17 {
		return taskEvents{}, fmt.Errorf("event-time report of %d bytes, want 17", len(b))
	}
	var ev taskEvents
	if b[0] == 1 {
		ev.maxEvent = time.Unix(0, int64(binary.LittleEndian.Uint64(b[1:])))
	}
	ev.dropped = int64(binary.LittleEndian.Uint64(b[9:]))
	return ev, nil
}

// reportKey names one task's event-time figures: operator, batch, partition.
func reportKey(name string, t time.Time, part int) string {
	return fmt.Sprintf("eventWindow/%d/%d/%s", t.UnixNano(), part, name)
}

func (o *eventTimeOp) commit(t time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	bt := t.UnixNano()
	for _, ev := range o.pending[bt] {
		if ev.maxEvent.After(o.maxEvent) {
			o.maxEvent = ev.maxEvent
		}
		o.dropped += ev.dropped
	}
	for p := range o.pending {
		if p <= bt {
			delete(o.pending, p)
		}
	}
	for w := range o.wmAt {
		if w < bt {
			delete(o.wmAt, w)
		}
	}
}

// encodeCommitted encodes what the committed batches folded in: the
// newest event time and the dropped count (a taskEvents record).
func (o *eventTimeOp) encodeCommitted() []byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	return taskEvents{maxEvent: o.maxEvent, dropped: o.dropped}.encode()
}

func (o *eventTimeOp) decodeCommitted(b []byte) error {
	ev, err := decodeTaskEvents(b)
	if err != nil {
		return fmt.Errorf("watermark: %w", err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.maxEvent, o.dropped = ev.maxEvent, ev.dropped
	o.pending = map[int64]map[int]taskEvents{}
	o.wmAt = map[int64]time.Time{}
	return nil
}

// ReduceByKeyAndEventWindow aggregates each key's values per event-time
// window, with a watermark and allowed lateness; see the package notes on
// event time above for when windows are emitted.
func ReduceByKeyAndEventWindow[K comparable, V any](s *DStream[KV[K, V]], spec EventTimeSpec[K, V]) *EventTimeStream[K, V] {
	if spec.Timestamp == nil || spec.Reduce == nil {
		panic("dstream: ReduceByKeyAndEventWindow: EventTimeSpec.Timestamp and Reduce are required")
	}
	ctx := s.b.ctx
	n := ctx.Parallelism()
	if spec.Partitions != 0 {
		n = numParts(ctx, []ShuffleOption{Partitions(spec.Partitions)})
	}
	win, slide := spec.Window, spec.Slide
	if slide == 0 {
		slide = win
	}
	// State per key: its open windows by start (Unix nanoseconds).
	store := newStateStore[K, map[int64]V](spec.Name, n)
	op := &eventTimeOp{lateness: spec.AllowedLateness, pending: map[int64]map[int]taskEvents{}, wmAt: map[int64]time.Time{}}
	out := keyedState(s, "eventWindow", spec.Name, store, func(tc *rdd.TaskContext, t time.Time, x *txn[K, map[int64]V], in iter.Seq[KV[K, []V]], yield func(EventWindow[K, V]) bool) error {
		wm := op.watermarkFor(t)
		var ev taskEvents
		for kv := range in {
			e, ok := x.get(kv.Key)
			var wins map[int64]V
			if ok {
				wins = maps.Clone(e.value) // the committed map stays as it was
			} else {
				wins = map[int64]V{}
			}
			changed := false
			for _, v := range kv.Value {
				ts := spec.Timestamp(KV[K, V]{Key: kv.Key, Value: v})
				if !wm.IsZero() && ts.Before(wm) {
					ev.dropped++
					continue
				}
				if ts.After(ev.maxEvent) {
					ev.maxEvent = ts
				}
				for _, start := range windowStarts(ts, win, slide) {
					if cur, ok := wins[start]; ok {
						wins[start] = spec.Reduce(cur, v)
					} else {
						wins[start] = v
					}
					changed = true
				}
			}
			if changed {
				x.set(kv.Key, stateEntry[map[int64]V]{value: wins, touched: t})
			}
		}
		if !wm.IsZero() {
			if err := emitClosed(x, wm, win, yield); err != nil {
				return err
			}
		}
		// The figures travel with the task's result to the driver, where
		// the watermark is kept (see Context.onReports).
		tc.Report(reportKey(spec.Name, t, x.part), ev.encode())
		return nil
	})
	out.b.validate = func() error {
		switch {
		case win <= 0:
			return fmt.Errorf("%s: window %v must be > 0", out.b.name, win)
		case slide < 0 || win%slide != 0:
			return fmt.Errorf("%s: slide %v must divide the window %v", out.b.name, spec.Slide, win)
		case spec.AllowedLateness < 0:
			return fmt.Errorf("%s: allowed lateness %v must be >= 0", out.b.name, spec.AllowedLateness)
		}
		return nil
	}
	out.b.stateSize = stateSizeOf(ctx, store)
	out.b.lateDropped = func() int64 {
		op.mu.Lock()
		defer op.mu.Unlock()
		return op.dropped
	}
	ctx.registerReporter("eventWindow/", spec.Name, func(t time.Time, part int, b []byte) error {
		ev, err := decodeTaskEvents(b)
		if err == nil {
			op.report(t, part, ev)
		}
		return err
	})
	sop := storeCheckpoint(ctx, &statefulStream[EventWindow[K, V]]{
		s: out, name: "eventWindow(" + spec.Name + ")",
		commit_: func(t time.Time) {
			store.commit(t, nil)
			op.commit(t)
		},
	}, fmt.Sprintf("eventWindow(window=%v,slide=%v)", win, slide), store)
	save, load := sop.save, sop.load
	sop.save = func() ([]checkpoint.StatePart, error) {
		parts, err := save()
		if err != nil {
			return nil, err
		}
		return append(parts, checkpoint.StatePart{Op: spec.Name + "#watermark", Data: op.encodeCommitted()}), nil
	}
	watermark := func(parts []checkpoint.StatePart) error {
		for _, p := range parts {
			if p.Op == spec.Name+"#watermark" {
				if err := op.decodeCommitted(p.Data); err != nil {
					return err
				}
			}
		}
		return nil
	}
	sop.load = func(parts []checkpoint.StatePart) error {
		if err := watermark(parts); err != nil {
			return err
		}
		return load(parts)
	}
	loadPt := sop.loadPt
	sop.loadPt = func(part int, parts []checkpoint.StatePart) error {
		if err := watermark(parts); err != nil {
			return err
		}
		return loadPt(part, parts)
	}
	ctx.registerStateful(spec.Name, out.b, sop)
	return &EventTimeStream[K, V]{DStream: out, op: op}
}

// windowStarts returns the starts (Unix ns) of the windows containing ts.
func windowStarts(ts time.Time, win, slide time.Duration) []int64 {
	ns := ts.UnixNano()
	last := ns - mod(ns, int64(slide))
	var starts []int64
	for st := last; st > ns-int64(win); st -= int64(slide) {
		starts = append(starts, st)
	}
	return starts
}

func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

// emitClosed emits and drops every window of the partition whose end is at
// or before the watermark, in key-hash then start order.
func emitClosed[K comparable, V any](x *txn[K, map[int64]V], wm time.Time, win time.Duration, yield func(EventWindow[K, V]) bool) error {
	type closed struct {
		key  K
		wins map[int64]V
	}
	var due []closed
	x.each(func(k K, e stateEntry[map[int64]V]) bool {
		for start := range e.value {
			if !time.Unix(0, start).Add(win).After(wm) {
				due = append(due, closed{k, e.value})
				break
			}
		}
		return true
	})
	for _, c := range due {
		e, _ := x.get(c.key)
		left := maps.Clone(e.value)
		var starts []int64
		for start := range left {
			if !time.Unix(0, start).Add(win).After(wm) {
				starts = append(starts, start)
			}
		}
		sort.Slice(starts, func(i, j int) bool { return starts[i] < starts[j] })
		for _, start := range starts {
			st := time.Unix(0, start).UTC()
			yield(EventWindow[K, V]{Key: c.key, Start: st, End: st.Add(win), Value: left[start]})
			delete(left, start)
		}
		if len(left) == 0 {
			x.remove(c.key)
		} else {
			x.set(c.key, stateEntry[map[int64]V]{value: left, touched: e.touched})
		}
	}
	return nil
}
