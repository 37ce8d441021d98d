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

// Window returns a stream whose RDD at each slide time t holds every element
// of s from the batches in (t-window, t]. window and slide must be multiples
// of the batch interval.
func Window[T any](s *DStream[T], window, slide time.Duration) *DStream[T] {
	s.b.persist = true // each parent RDD is read by window/slide windows
	w := newStream(s.b.ctx, "window", slide, []*streamBase{s.b}, func(t time.Time) (*rdd.RDD[T], error) {
		rs, err := rddsIn(s, t.Add(-window), t)
		if err != nil {
			return nil, err
		}
		return unionOrEmpty(rs, "window"), nil
	})
	w.b.lookback = window
	w.b.validate = checkWindow(w.b, s.b, window, slide)
	return w
}

// CountByWindow counts the elements of each window.
func CountByWindow[T any](s *DStream[T], window, slide time.Duration) *DStream[int64] {
	return Count(Window(s, window, slide))
}

// ReduceByWindow combines the elements of each window with f (associative
// and commutative). Each batch is reduced once; windows combine the
// per-batch results.
func ReduceByWindow[T any](s *DStream[T], f func(T, T) T, window, slide time.Duration) *DStream[T] {
	return Reduce(Window(Reduce(s, f), window, slide), f)
}

// ReduceByKeyAndWindow merges the values of each key over each window with
// f (associative and commutative). Every batch is reduced by key once and
// kept for the length of the window; each window merges the per-batch
// results, so the raw records of a batch are read only once.
func ReduceByKeyAndWindow[K comparable, V any](s *DStream[KV[K, V]], f func(V, V) V, window, slide time.Duration) *DStream[KV[K, V]] {
	return ReduceByKey(Window(ReduceByKey(s, f), window, slide), f)
}

// CountByValueAndWindow counts each distinct element over each window.
func CountByValueAndWindow[T comparable](s *DStream[T], window, slide time.Duration) *DStream[KV[T, int64]] {
	return ReduceByKeyAndWindow(CountByValue(s), func(a, b int64) int64 { return a + b }, window, slide)
}

// GroupByKeyAndWindow collects the values of each key over each window.
func GroupByKeyAndWindow[K comparable, V any](s *DStream[KV[K, V]], window, slide time.Duration) *DStream[KV[K, []V]] {
	return GroupByKey(Window(s, window, slide))
}
