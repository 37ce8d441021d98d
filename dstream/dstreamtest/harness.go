// Package dstreamtest runs streaming jobs in-process for tests, in the spirit
// of net/http/httptest: feed each batch's input, step the batch clock by
// hand, and read what every output received per batch.
//
//	h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second})
//	lines := dstreamtest.Input(h, []string{"a b"}, []string{"b"})
//	counts := dstream.CountByValue(dstream.FlatMap(lines, strings.Fields))
//	out := dstreamtest.Output(h, counts)
//	h.Run(2)
//	out.Batch(0) // the first batch's elements
//
// Outside a test (an Example, a tool) Open makes a harness that reports
// errors instead of failing a test, and Close stops it.
//
// The harness uses a checked Arrow allocator and fails the test (or Close
// returns an error) if any buffer is still allocated at the end.
package dstreamtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/rdd"
)

// Start is the zero time of every harness: batch i (from 0) runs at
// Start + (i+1) * batch interval.
var Start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Harness drives one streaming context batch by batch.
type Harness struct {
	t       testing.TB
	Ctx     *dstream.Context
	Stdout  *bytes.Buffer // what Print wrote
	mem     *memory.CheckedAllocator
	started bool
	batches int
	Infos   []dstream.BatchInfo
}

// New makes a harness that fails t on errors and stops at the end of the
// test. cfg.Master defaults to local[2]; Stdout and Allocator are set by
// the harness, and Logger defaults to discarding.
func New(t testing.TB, cfg dstream.Config) *Harness {
	t.Helper()
	h, err := Open(cfg)
	if err != nil {
		t.Fatalf("dstreamtest: %v", err)
	}
	h.t = t
	t.Cleanup(func() {
		h.Ctx.Stop()
		h.mem.AssertSize(t, 0)
	})
	return h
}

// Open makes a harness outside a test: Run returns batch errors instead of
// failing a test, and Close must be called at the end.
func Open(cfg dstream.Config) (*Harness, error) {
	if cfg.Master == "" {
		cfg.Master = "local[2]"
	}
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	out := &bytes.Buffer{}
	cfg.Allocator = mem
	cfg.Stdout = out
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, err := dstream.New(cfg)
	if err != nil {
		return nil, err
	}
	return &Harness{Ctx: ctx, Stdout: out, mem: mem}, nil
}

// Close stops the harness's context and reports Arrow memory still
// allocated (a leak) as an error. Harnesses made by New close themselves.
func (h *Harness) Close() error {
	h.Ctx.Stop()
	if n := h.mem.CurrentAlloc(); n != 0 {
		return fmt.Errorf("dstreamtest: %d bytes of Arrow memory still allocated after Close", n)
	}
	return nil
}

// Input returns a stream whose batch i holds batches[i]; later batches are
// empty. More input can be pushed on the returned queue with PushInput.
func Input[T any](h *Harness, batches ...[]T) *dstream.DStream[T] {
	return InputQueue(h, batches...).Stream()
}

// InputQueue is Input that also returns the queue, to push more batches.
func InputQueue[T any](h *Harness, batches ...[]T) *dstream.Queue[T] {
	q := dstream.NewQueue[T](h.Ctx)
	for _, b := range batches {
		q.Push(b...)
	}
	return q
}

// Run runs the next n batches. On a batch error it fails the test (New), or
// returns the error (Open); it returns nil otherwise.
func (h *Harness) Run(n int) error {
	if h.t != nil {
		h.t.Helper()
	}
	for i := 0; i < n; i++ {
		if _, err := h.Step(); err != nil {
			err = fmt.Errorf("dstreamtest: batch %d: %w", h.batches-1, err)
			if h.t != nil {
				h.t.Fatal(err)
			}
			return err
		}
	}
	return nil
}

// Step runs the next batch and returns its figures and error.
func (h *Harness) Step() (dstream.BatchInfo, error) {
	if !h.started {
		if err := h.Ctx.StartManual(Start); err != nil {
			return dstream.BatchInfo{}, err
		}
		h.started = true
	}
	h.batches++
	info, err := h.Ctx.RunBatch(context.Background(), h.BatchTime(h.batches-1))
	h.Infos = append(h.Infos, info)
	return info, err
}

// BatchTime returns the time of batch i (from 0).
func (h *Harness) BatchTime(i int) time.Time {
	return Start.Add(time.Duration(i+1) * h.Ctx.BatchInterval())
}

// Collector holds what an output received, per batch time.
type Collector[T any] struct {
	h   *Harness
	mu  sync.Mutex
	got map[time.Time][]T
}

// Output registers an output on s that collects every batch's elements.
func Output[T any](h *Harness, s *dstream.DStream[T]) *Collector[T] {
	c := &Collector[T]{h: h, got: map[time.Time][]T{}}
	dstream.ForeachRDD(s, func(b *dstream.Batch, r *rdd.RDD[T]) error {
		vals, err := dstream.Collect(b, r)
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.got[b.Time()] = vals
		c.mu.Unlock()
		return nil
	})
	return c
}

// Batch returns the elements of batch i (from 0), nil if the stream
// produced no RDD then.
func (c *Collector[T]) Batch(i int) []T {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.got[c.h.BatchTime(i)]
}

// Has reports whether the stream produced an RDD in batch i.
func (c *Collector[T]) Has(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.got[c.h.BatchTime(i)]
	return ok
}
