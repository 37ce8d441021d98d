package dstream

import (
	"fmt"
	"time"

	"github.com/sluicehq/sluice/rdd"
)

// KV is a key-value pair, the element of keyed streams.
type KV[K comparable, V any] = rdd.KV[K, V]

// Pair holds two values; joins and cogroups produce it.
type Pair[A, B any] = rdd.Pair[A, B]

// streamBase is the untyped part of a DStream: its place in the graph.
type streamBase struct {
	ctx      *Context
	id       int
	name     string // operator and call site, "map@job.go:12"
	slide    time.Duration
	parents  []*streamBase
	remember time.Duration // how long generated RDDs are kept
	lookback time.Duration // how far before a batch this stream reads its parents (windows)
	persist  bool          // keep generated RDDs' partitions: a window reads each several times
	static   bool          // a Dataset's stream: the same data at every batch time, joinable with any slide
	validate func() error
	forget   func(before time.Time)
	// stateSize, if set, reports the keys and bytes held by a stateful operator.
	stateSize func() (keys, bytes int64)
	// lateDropped, if set, reports the records an event-time operator dropped.
	lateDropped func() int64
	// skipped, if set, reports (and forgets) what a source skipped in batch t.
	skipped func(t time.Time) (files, lines int64)
	// inputBuffered, if set, reports the bytes a receiver holds: its column
	// for the next batch plus batches' input not yet released.
	inputBuffered func() int64
}

// DStream is a discretized stream: a sequence of RDDs, one per batch
// interval (or per slide interval, for windowed streams). Operators on it are
// functions, because Go methods cannot take type parameters.
type DStream[T any] struct {
	b         *streamBase
	compute   func(t time.Time) (*rdd.RDD[T], error)
	generated map[time.Time]*rdd.RDD[T]
}

// Context returns the stream's context.
func (s *DStream[T]) Context() *Context { return s.b.ctx }

// Name returns the operator name and call site of the stream.
func (s *DStream[T]) Name() string { return s.b.name }

// SlideDuration returns the interval at which the stream produces RDDs.
func (s *DStream[T]) SlideDuration() time.Duration { return s.b.slide }

func newStream[T any](ctx *Context, op string, slide time.Duration, parents []*streamBase, compute func(t time.Time) (*rdd.RDD[T], error)) *DStream[T] {
	s := &DStream[T]{
		b:         &streamBase{ctx: ctx, name: op + "@" + callSite(), slide: slide, parents: parents},
		compute:   compute,
		generated: map[time.Time]*rdd.RDD[T]{},
	}
	s.b.forget = func(before time.Time) {
		for t, r := range s.generated {
			if !t.After(before) {
				delete(s.generated, t)
				// Partitions this stream persisted go with it.
				if r != nil && r.Node().Cached {
					ctx.dropCached(r.Node().ID)
				}
			}
		}
	}
	ctx.addStream(s.b)
	return s
}

// derive makes a stream with the parent's slide that computes its RDD from
// the parent's RDD at the same time.
func derive[T, U any](parent *DStream[T], op string, f func(r *rdd.RDD[T]) *rdd.RDD[U]) *DStream[U] {
	site := callSite()
	return newStream(parent.b.ctx, op, parent.b.slide, []*streamBase{parent.b}, func(t time.Time) (*rdd.RDD[U], error) {
		r, err := parent.rddAt(t)
		if err != nil || r == nil {
			return nil, err
		}
		out := f(r)
		if out != nil && out.Node() != r.Node() {
			out.Node().Site = site
		}
		return out, nil
	})
}

// rddAt returns the stream's RDD for batch time t, computing it once. It
// returns nil at times the stream produces nothing (not a multiple of its
// slide, or before the start).
func (s *DStream[T]) rddAt(t time.Time) (*rdd.RDD[T], error) {
	if r, ok := s.generated[t]; ok {
		return r, nil
	}
	ctx := s.b.ctx
	d := t.Sub(ctx.zeroTime)
	if d <= 0 || d%s.b.slide != 0 {
		return nil, nil
	}
	r, err := s.compute(t)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.b.name, err)
	}
	if r != nil && s.b.persist {
		r.Persist()
	}
	s.generated[t] = r
	return r, nil
}

// inputStream is a source: it cuts its input at each batch time.
type inputStream interface {
	base() *streamBase
	start() error
	stop()
	// inputAt fixes the input of batch t and returns its record count. It
	// is called once per batch, in time order, before any RDD at t is built.
	inputAt(t time.Time) (int64, error)
	// quiesce stops a receiver reading, keeping what it received for the
	// next batch, and reports whether it holds input no batch took yet.
	quiesce() bool
}
