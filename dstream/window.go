package dstream

import (
	"fmt"
	"time"

	"github.com/sluicehq/sluice/rdd"
)

// checkWindow validates window and slide durations against the batch
// interval and the parent's slide, when the graph is built (Start).
func checkWindow(b *streamBase, parent *streamBase, window, slide time.Duration) func() error {
	return func() error {
		bi := b.ctx.cfg.BatchInterval
		switch {
		case window <= 0:
			return fmt.Errorf("%s: window %v must be > 0", b.name, window)
		case slide <= 0:
			return fmt.Errorf("%s: slide %v must be > 0", b.name, slide)
		case window%bi != 0:
			return fmt.Errorf("%s: window %v is not a multiple of the batch interval %v", b.name, window, bi)
		case slide%bi != 0:
			return fmt.Errorf("%s: slide %v is not a multiple of the batch interval %v", b.name, slide, bi)
		case window%parent.slide != 0:
			return fmt.Errorf("%s: window %v is not a multiple of the parent stream's slide %v", b.name, window, parent.slide)
		case slide%parent.slide != 0:
			return fmt.Errorf("%s: slide %v is not a multiple of the parent stream's slide %v", b.name, slide, parent.slide)
		}
		return nil
	}
}

// rddsIn returns the parent's RDDs at its batch times in (from, to].
func rddsIn[T any](s *DStream[T], from, to time.Time) ([]*rdd.RDD[T], error) {
	var rs []*rdd.RDD[T]
	step := s.b.slide
	if step <= 0 {
		return nil, nil
	}
	// The first parent time after from.
	t := to
	for t.Sub(from) > step {
		t = t.Add(-step)
	}
	for ; !t.After(to); t = t.Add(step) {
		if !t.After(from) {
			continue
		}
		r, err := s.rddAt(t)
		if err != nil {
			return nil, err
		}
		if r != nil {
			rs = append(rs, r)
		}
	}
	return rs, nil
}

func unionOrEmpty[T any](rs []*rdd.RDD[T], op string) *rdd.RDD[T] {
	if len(rs) == 0 {
		return rdd.Empty[T](op, 0)
	}
	if len(rs) == 1 {
		return rs[0]
	}
	return rdd.Union(rs...)
}

// windowSlide returns the slide a window operator uses: the one given, or
// the parent's slide (the batch interval for a source) when none or 0 is.
func windowSlide(parent *streamBase, slide []time.Duration) time.Duration {
	if len(slide) > 0 && slide[0] != 0 {
		return slide[0]
	}
	return parent.slide
}

// checkSlideArgs reports a Window call given more than one slide.
func checkSlideArgs(b *streamBase, slide []time.Duration, next func() error) func() error {
	return func() error {
		if len(slide) > 1 {
			return fmt.Errorf("%s: %d slide durations given; pass at most one", b.name, len(slide))
		}
		return next()
	}
}

// Window returns a stream whose RDD at each slide time t holds every element
// of s from the batches in (t-window, t]. window and slide must be multiples
// of the batch interval. Without a slide (or with 0) the window slides by
// s's slide, the batch interval for a source: Window(s, 30*time.Second)
// produces, every batch, the last 30 seconds.
func Window[T any](s *DStream[T], window time.Duration, slide ...time.Duration) *DStream[T] {
	sl := windowSlide(s.b, slide)
	s.b.persist = true // each parent RDD is read by window/slide windows
	w := newStream(s.b.ctx, "window", sl, []*streamBase{s.b}, func(t time.Time) (*rdd.RDD[T], error) {
		rs, err := rddsIn(s, t.Add(-window), t)
		if err != nil {
			return nil, err
		}
		return unionOrEmpty(rs, "window"), nil
	})
	w.b.lookback = window
	w.b.validate = checkSlideArgs(w.b, slide, checkWindow(w.b, s.b, window, sl))
	return w
}

// CountByWindow counts the elements of each window (slide as for Window).
func CountByWindow[T any](s *DStream[T], window time.Duration, slide ...time.Duration) *DStream[int64] {
	return Count(Window(s, window, slide...))
}

// ReduceByWindow combines the elements of each window with f (associative
// and commutative); slide as for Window. Each batch is reduced once;
// windows combine the per-batch results.
func ReduceByWindow[T any](s *DStream[T], f func(T, T) T, window time.Duration, slide ...time.Duration) *DStream[T] {
	return Reduce(Window(Reduce(s, f), window, slide...), f)
}

// ReduceByKeyAndWindow merges the values of each key over each window with
// f (associative and commutative). A slide of 0 means s's slide (the batch
// interval for a source). Every batch is reduced by key once and kept for
// the length of the window; each window merges the per-batch results, so
// the raw records of a batch are read only once. Options apply to both
// shuffles.
func ReduceByKeyAndWindow[K comparable, V any](s *DStream[KV[K, V]], f func(V, V) V, window, slide time.Duration, opts ...ShuffleOption) *DStream[KV[K, V]] {
	return ReduceByKey(Window(ReduceByKey(s, f, opts...), window, slide), f, opts...)
}

// CountByValueAndWindow counts each distinct element over each window (a
// slide of 0 means s's slide).
func CountByValueAndWindow[T comparable](s *DStream[T], window, slide time.Duration, opts ...ShuffleOption) *DStream[KV[T, int64]] {
	return ReduceByKeyAndWindow(CountByValue(s, opts...), func(a, b int64) int64 { return a + b }, window, slide, opts...)
}

// GroupByKeyAndWindow collects the values of each key over each window (a
// slide of 0 means s's slide).
func GroupByKeyAndWindow[K comparable, V any](s *DStream[KV[K, V]], window, slide time.Duration, opts ...ShuffleOption) *DStream[KV[K, []V]] {
	return GroupByKey(Window(s, window, slide), opts...)
}
