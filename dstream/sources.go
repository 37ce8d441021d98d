package dstream

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	"github.com/sluicehq/sluice/rdd"
)

// input is the common part of sources that hold their input as Arrow
// records: cut fixes the records of a batch, which live until the stream
// forgets the batch.
type input[T any] struct {
	s       *DStream[T]
	startFn func() error
	stopFn  func()
	// quiesceFn, set by receivers, stops reading and keeps what was
	// received for the next cut (a graceful stop's last batch); it
	// reports whether anything was received since the last cut.
	quiesceFn func() bool
	cut       func(t time.Time) ([]arrow.Record, int64, error)
	index     int // place among the context's inputs
	op        string
	planned   bool // a planned source (source_planned.go)
	// extra, if set, adds source state to the write-ahead record of batch
	// t (the directory source's names read, a planned source's position);
	// restoreExtra takes it back and may return the batch's record count
	// (-1: the rows of its records). resume, if set, receives the extra
	// of the newest recorded batch when a run restarts (checkpoint.go).
	extra        func(t time.Time) []byte
	restoreExtra func(t time.Time, b []byte) (int64, error)
	resume       func(b []byte) error
	mu           sync.Mutex
	recs         map[time.Time][]arrow.Record // the batches' records in memory
	// vals holds, instead of records, the batches of a source that keeps
	// Go values (the queue, in local mode with no checkpoint: setVals),
	// one slice per partition. Tasks read them with no Arrow copy.
	vals map[time.Time][][]T
	// spill is the write-ahead log's part (input_spill.go): with a
	// checkpoint directory, records of batches older than the resident
	// span leave recs and are read back from the log when needed.
	spill spill
	// fetching holds, in the executor role, the fetches of input
	// partitions from the driver in flight, so that concurrent tasks fetch
	// each once; got marks the partitions of recs[t] fetched (a nil record
	// is an empty partition).
	fetching map[fetchKey]*inputFetch
	got      map[time.Time][]bool
	// forgotten is the newest batch time the stream forgot (zero if none):
	// a fetch of such a batch that finishes late is handed to its task
	// and not kept.
	forgotten time.Time
	// fetchHook, if set (tests), replaces the fetch from the driver.
	fetchHook func(ctx context.Context, t time.Time, part int) ([]arrow.Record, int64, error)
}

type fetchKey struct {
	t    time.Time
	part int
}

type inputFetch struct {
	done chan struct{}
	err  error
	// canceled: the fetch failed because the context of the task that
	// ran it ended; a task waiting for it fetches again with its own.
	canceled bool
}

func newInput[T any](ctx *Context, op string, cut func(t time.Time) ([]arrow.Record, int64, error)) *input[T] {
	in := &input[T]{op: op, cut: cut, recs: map[time.Time][]arrow.Record{}, fetching: map[fetchKey]*inputFetch{}, got: map[time.Time][]bool{},
		spill: spill{logged: map[time.Time]bool{}, spilled: map[time.Time]int{}}}
	codec := rdd.CodecOf[T]()
	in.s = newStream(ctx, op, ctx.cfg.BatchInterval, nil, func(t time.Time) (*rdd.RDD[T], error) {
		var r *rdd.RDD[T]
		if ctx.role == roleExecutor {
			// The input is in the job's driver: the task that reads a
			// partition fetches the batch (once per process).
			parts, ok := ctx.resolver.inputPartsOf(in.index, t)
			if !ok {
				return nil, nil // the driver had no input then
			}
			r = rdd.FromRecordFunc(op, codec, parts, func(tc *rdd.TaskContext, part int) (arrow.Record, error) {
				return in.fetched(tc.Ctx, t, part)
			})
		} else {
			in.mu.Lock()
			if vs, ok := in.vals[t]; ok {
				in.mu.Unlock()
				r = rdd.FromSliceFunc(op, len(vs), func(_ *rdd.TaskContext, part int) ([]T, error) {
					return in.valsAt(t, part)
				})
				r.Node().Site = in.s.b.name[len(op)+1:]
				return r, nil
			}
			recs, ok := in.recs[t]
			parts, spilled := len(recs), false
			if !ok {
				parts, spilled = in.spill.spilled[t]
			}
			in.mu.Unlock()
			if !ok && !spilled {
				return nil, nil // before the stream started
			}
			// Each task takes its partition (retained) from memory or,
			// once a window's older batches left memory, from the log
			// (input_spill.go); a task reading a batch that was released
			// fails naming it instead of reading freed buffers.
			r = rdd.FromRecordFunc(op, codec, parts, func(tc *rdd.TaskContext, part int) (arrow.Record, error) {
				return in.partAt(t, part)
			})
			ctx.inputNodes[r.Node().ID] = &sluicev1.InputRef{Input: int32(in.index), BatchTimeUnixNano: t.UnixNano(), Partitions: int32(parts)}
		}
		r.Node().Site = in.s.b.name[len(op)+1:]
		return r, nil
	})
	forget := in.s.b.forget
	in.s.b.forget = func(before time.Time) {
		forget(before)
		in.mu.Lock()
		defer in.mu.Unlock()
		if before.After(in.forgotten) {
			in.forgotten = before
		}
		for t, rs := range in.recs {
			if !t.After(before) {
				releaseAll(rs) // nil for empty partitions, and those an executor did not fetch
				delete(in.recs, t)
				delete(in.got, t)
			}
		}
		for t := range in.vals {
			if !t.After(before) {
				delete(in.vals, t)
			}
		}
		in.spillThrough(before)
	}
	ctx.mu.Lock()
	in.index = len(ctx.inputs)
	ctx.inputs = append(ctx.inputs, in)
	ctx.mu.Unlock()
	return in
}

func (in *input[T]) base() *streamBase { return in.s.b }

// releaseDone releases the records of batch t, which just succeeded, when
// no window reads this input back (its remember is one slide): cleanup
// would keep them until the next batch is done, and a receiver would then
// hold two batches instead of one. A failed batch keeps them that long, as
// tasks of a failed job may still be running. An RDD of the input kept by
// user code past its batch then fails when read ("no longer remembered"),
// as in Spark once a batch's blocks are cleared.
func (in *input[T]) releaseDone(t time.Time) {
	if in.s.b.remember != in.s.b.slide {
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if rs, ok := in.recs[t]; ok {
		releaseAll(rs)
		delete(in.recs, t)
	}
	delete(in.vals, t)
}

// keepsValues reports whether a source that can keep its input as Go
// values should: in local mode (the tasks run in this process) and with no
// checkpoint (whose write-ahead log stores records). Elsewhere the input
// is encoded, to be served to executors or logged.
func (in *input[T]) keepsValues() bool {
	c := in.s.b.ctx
	return c.role == "" && c.ckpt == nil
}

// setVals makes vals, split into partitions, batch t's input.
func (in *input[T]) setVals(t time.Time, vals []T, parts int) {
	var ps [][]T
	if len(vals) > 0 {
		parts = max(1, min(parts, len(vals)))
		ps = make([][]T, parts)
		for p := range ps {
			ps[p] = vals[p*len(vals)/parts : (p+1)*len(vals)/parts]
		}
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.vals == nil {
		in.vals = map[time.Time][][]T{}
	}
	in.vals[t] = ps
}

// valsAt returns partition part of batch t's Go values.
func (in *input[T]) valsAt(t time.Time, part int) ([]T, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	vs, ok := in.vals[t]
	switch {
	case !ok:
		return nil, fmt.Errorf("dstream: the input of %s at %s is no longer remembered", in.s.b.name, fmtTime(t))
	case part >= len(vs):
		return nil, fmt.Errorf("dstream: input %s of %s has %d partitions, not %d", in.s.b.name, fmtTime(t), len(vs), part+1)
	}
	return vs[part], nil
}

// recordsAt returns the input of batch t, retained (the caller releases),
// and whether the batch is still remembered. A batch that left memory is
// read back from the write-ahead log, with no lock held.
func (in *input[T]) recordsAt(t time.Time) ([]arrow.Record, bool) {
	in.mu.Lock()
	var recs []arrow.Record
	found, spilled := false, false
	for bt, rs := range in.recs { // Equal, not ==: t may carry another location
		if bt.Equal(t) {
			recs, found = rs, true
		}
	}
	if !found {
		for bt := range in.spill.spilled {
			if bt.Equal(t) {
				t, spilled = bt, true
			}
		}
	}
	if found {
		for _, r := range recs {
			if r != nil {
				r.Retain()
			}
		}
	}
	in.mu.Unlock()
	if spilled {
		recs, err := in.readBack(t)
		if err != nil {
			// The caller (the job driver's FetchInput) reports a batch it
			// cannot serve; the cause is in the log.
			in.s.b.ctx.log.Error("read back spilled input", slog.String("input", in.s.b.name), slog.String("batch", fmtTime(t)), slog.Any("err", err))
			return nil, false
		}
		return recs, true
	}
	return recs, found
}

func (in *input[T]) start() error {
	if in.s.b.ctx.role == roleExecutor {
		return nil // the driver receives the input; executors fetch it
	}
	in.startSpill()
	if in.startFn != nil {
		return in.startFn()
	}
	return nil
}

func (in *input[T]) stop() {
	if in.stopFn != nil {
		in.stopFn()
	}
}

func (in *input[T]) quiesce() bool {
	if in.quiesceFn == nil {
		return false
	}
	return in.quiesceFn()
}

// fetched returns partition part of batch t's input in the executor role,
// retained, fetching that partition from the driver if this process has
// not yet (each executor fetches the partitions its tasks read, not the
// whole batch).
func (in *input[T]) fetched(ctx context.Context, t time.Time, part int) (arrow.Record, error) {
	key := fetchKey{t, part}
	for {
		in.mu.Lock()
		if recs, ok := in.recs[t]; ok {
			if part >= len(recs) {
				in.mu.Unlock()
				return nil, fmt.Errorf("dstream: input %s of %s has %d partitions, not %d", in.s.b.name, fmtTime(t), len(recs), part+1)
			}
			if in.got[t][part] {
				defer in.mu.Unlock()
				if recs[part] != nil {
					recs[part].Retain()
				}
				return recs[part], nil
			}
		}
		f := in.fetching[key]
		if f == nil {
			f = &inputFetch{done: make(chan struct{})}
			in.fetching[key] = f
			in.mu.Unlock()
			recs, _, err := in.fetchInput(ctx, t, part)
			in.mu.Lock()
			var own arrow.Record // the partition, when it is not kept
			var handed bool
			if err == nil {
				own, handed, err = in.keepFetched(t, part, recs)
			}
			f.err, f.canceled = err, err != nil && ctx.Err() != nil
			delete(in.fetching, key)
			close(f.done)
			in.mu.Unlock()
			if err != nil || handed {
				return own, err
			}
			continue
		}
		in.mu.Unlock()
		select {
		case <-f.done:
			// A fetch that ended with its task's context is not this
			// task's failure: loop and fetch again.
			if f.err != nil && !f.canceled {
				return nil, f.err
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// fetchInput fetches partition part of batch t from the job's driver
// (fetchHook replaces it in tests).
func (in *input[T]) fetchInput(ctx context.Context, t time.Time, part int) ([]arrow.Record, int64, error) {
	if in.fetchHook != nil {
		return in.fetchHook(ctx, t, part)
	}
	return in.s.b.ctx.fetchInput(ctx, in.index, t, part)
}

// keepFetched stores partition part of batch t, fetched with the batch's
// other partitions nil (in.mu held). A batch with no input at all has no
// partitions: nothing to keep. A batch the stream already forgot (a task
// that finished fetching after its batch was done) is not kept: the
// partition is handed to the task alone (own, nil if empty), and nothing
// else holds it.
func (in *input[T]) keepFetched(t time.Time, part int, recs []arrow.Record) (own arrow.Record, handed bool, err error) {
	for p, r := range recs {
		if p != part && r != nil {
			r.Release() // not asked for
		}
	}
	if !in.forgotten.IsZero() && !t.After(in.forgotten) {
		if part >= len(recs) {
			return nil, false, fmt.Errorf("dstream: input %s of %s has %d partitions, not %d", in.s.b.name, fmtTime(t), len(recs), part+1)
		}
		return recs[part], true, nil
	}
	if len(recs) == 0 {
		if _, ok := in.recs[t]; !ok {
			in.recs[t] = nil
			in.got[t] = nil
		}
		return nil, false, nil
	}
	have, ok := in.recs[t]
	if !ok {
		have = make([]arrow.Record, len(recs))
		in.recs[t] = have
		in.got[t] = make([]bool, len(recs))
	}
	if len(have) != len(recs) {
		if recs[part] != nil {
			recs[part].Release()
		}
		return nil, false, fmt.Errorf("dstream: input %s of %s: the driver now says %d partitions, before %d", in.s.b.name, fmtTime(t), len(recs), len(have))
	}
	if in.got[t][part] { // a racing fetch kept it first
		if recs[part] != nil {
			recs[part].Release()
		}
		return nil, false, nil
	}
	have[part], in.got[t][part] = recs[part], true
	return nil, false, nil
}

func (in *input[T]) inputAt(t time.Time) (int64, error) {
	if in.s.b.ctx.role == roleExecutor {
		return 0, nil // read from the driver by the tasks that need it
	}
	recs, n, err := in.cut(t)
	if err != nil {
		return 0, err
	}
	if recs == nil {
		in.mu.Lock()
		_, kept := in.vals[t]
		in.mu.Unlock()
		if kept {
			return n, nil // the source kept Go values (setVals)
		}
	}
	in.mu.Lock()
	in.recs[t] = recs
	in.mu.Unlock()
	return n, nil
}

// split encodes vals into at most parts records of near-equal size.
func split[T any](ctx *Context, vals []T, parts int) []arrow.Record {
	if len(vals) == 0 {
		return nil
	}
	parts = max(1, min(parts, len(vals)))
	codec := rdd.CodecOf[T]()
	out := make([]arrow.Record, parts)
	enc := func(p int) {
		lo, hi := p*len(vals)/parts, (p+1)*len(vals)/parts
		out[p] = rdd.Encode(ctx.cfg.Allocator, codec, vals[lo:hi])
	}
	if len(vals) < 1<<14 {
		for p := range out {
			enc(p)
		}
		return out
	}
	// Large batches: encode the partitions in parallel, one goroutine each
	// (owned and waited for here).
	var wg sync.WaitGroup
	for p := range out {
		wg.Go(func() { enc(p) })
	}
	wg.Wait()
	return out
}

// Queue is an in-memory source for tests and demos: every batch takes the
// next pushed slice (or, with TakeAll, everything pushed so far).
type Queue[T any] struct {
	in      *input[T]
	mu      sync.Mutex
	pending [][]T
	takeAll bool
}

// NewQueue makes a queue source.
func NewQueue[T any](ctx *Context) *Queue[T] {
	q := &Queue[T]{}
	q.in = newInput[T](ctx, "queue", func(t time.Time) ([]arrow.Record, int64, error) {
		q.mu.Lock()
		var vals []T
		switch {
		case len(q.pending) == 0:
		case q.takeAll:
			for _, p := range q.pending {
				vals = append(vals, p...)
			}
			q.pending = nil
		default:
			vals = q.pending[0]
			q.pending[0] = nil // the batch's records hold the input now; let the slice go
			q.pending = q.pending[1:]
		}
		q.mu.Unlock()
		if q.in.keepsValues() {
			// Local mode: the tasks read the pushed values themselves,
			// as Spark's queueStream gives its RDDs to local tasks.
			q.in.setVals(t, vals, ctx.Parallelism())
			return nil, int64(len(vals)), nil
		}
		return split(ctx, vals, ctx.Parallelism()), int64(len(vals)), nil
	})
	return q
}

// TakeAll makes every batch take everything pushed since the last one.
func (q *Queue[T]) TakeAll() *Queue[T] { q.takeAll = true; return q }

// Push queues the input of one batch. The queue keeps vals, not a copy:
// do not modify them until their batch is done (in local mode without a
// checkpoint the batch's tasks read them in place).
func (q *Queue[T]) Push(vals ...T) {
	q.mu.Lock()
	q.pending = append(q.pending, vals)
	q.mu.Unlock()
}

// Len returns the number of pushed slices not yet taken by a batch.
func (q *Queue[T]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}

// Stream returns the queue's stream.
func (q *Queue[T]) Stream() *DStream[T] { return q.in.s }

// Rate is a source of sequential int64 values at a fixed rate, for
// benchmarks and demos: batch k (k = 1, 2, ...) holds the values
// [(k-1)*n, k*n) where n = rowsPerSecond * batch interval. Values are
// generated in the tasks, deterministically, so nothing is stored.
func Rate(ctx *Context, rowsPerSecond int64) *DStream[int64] {
	if rowsPerSecond < 0 {
		panic(fmt.Sprintf("dstream: Rate(%d): rows per second must be >= 0", rowsPerSecond))
	}
	interval := ctx.cfg.BatchInterval
	perBatch := rowsPerSecond * int64(interval) / int64(time.Second)
	var s *DStream[int64]
	in := &rateInput{perBatch: perBatch}
	s = newStream(ctx, "rate", interval, nil, func(t time.Time) (*rdd.RDD[int64], error) {
		k := int64(t.Sub(ctx.zeroTime) / interval)
		first := (k - 1) * perBatch
		parts := ctx.Parallelism()
		r := rdd.Generate("rate", parts, func(p int, yield func(int64) bool) {
			lo, hi := first+int64(p)*perBatch/int64(parts), first+int64(p+1)*perBatch/int64(parts)
			for v := lo; v < hi; v++ {
				if !yield(v) {
					return
				}
			}
		})
		return r, nil
	})
	in.s = s.b
	ctx.mu.Lock()
	ctx.inputs = append(ctx.inputs, in)
	ctx.mu.Unlock()
	return s
}

type rateInput struct {
	s        *streamBase
	perBatch int64
}

func (r *rateInput) base() *streamBase                { return r.s }
func (r *rateInput) start() error                     { return nil }
func (r *rateInput) stop()                            {}
func (r *rateInput) quiesce() bool                    { return false }
func (r *rateInput) inputAt(time.Time) (int64, error) { return r.perBatch, nil }

// describesItself reports whether the input describes its batches itself
// (a planned source, through the batch hooks): the batch does not list it
// again.
func (in *input[T]) describesItself() bool { return in.planned }
