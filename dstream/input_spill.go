package dstream

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/sluicehq/sluice/internal/checkpoint"
	"github.com/sluicehq/sluice/internal/cluster"
)

// Input kept for a window's sake lives in the write-ahead log, not in
// memory (issue 7/11). An input stream remembers every batch's records for
// as long as a window reads back (its remember duration: a 1 h window over
// 2,000 lines/s is about 1 GB). With a checkpoint directory every batch's
// records are in wal.db before the batch runs anyway, so the input keeps in
// memory only the batches likely to be read soon: those of the last
// `resident` span before the last finished batch (by default the longest
// slide of the graph: the batches that enter the next window) and the
// batches generated but not yet finished. Older batches leave recs at
// cleanup and their partition count goes to spilled; a task (or the job
// driver's FetchInput) that reads one again decodes its partition from the
// log, with no lock held across the read. checkpointBatch never deletes a
// batch's record while the stream still remembers it (the bound is the
// longest remember duration back from the batch).
//
// Without a checkpoint directory, in the executor role and for planned
// sources (their records are a few rows of plan) nothing changes: recs
// holds every remembered batch.

// spill is an input's write-ahead log state; its maps are guarded by the
// input's mu.
type spill struct {
	// wal is the log batches are read back from; nil: nothing is spilled.
	wal *checkpoint.Store
	// resident is how far back from the last finished batch records stay
	// in memory.
	resident time.Duration
	// logged are the remembered batches whose record is in the log: only
	// they may leave memory.
	logged map[time.Time]bool
	// spilled are the remembered batches whose records left memory, with
	// their partition counts.
	spilled map[time.Time]int
}

// inputResidentSpan, if positive, overrides the resident span of every
// input (tests; a Config field would make it a user knob).
var inputResidentSpan time.Duration

// startSpill decides, when the context starts, whether this input spills:
// local mode or a cluster's job driver, with a checkpoint directory.
func (in *input[T]) startSpill() {
	c := in.s.b.ctx
	if c.ckpt == nil || in.planned {
		return
	}
	in.spill.wal = c.ckpt.store
	span := c.cfg.BatchInterval
	for _, s := range c.streams {
		span = max(span, s.slide)
	}
	if inputResidentSpan > 0 {
		span = inputResidentSpan
	}
	in.spill.resident = span
	if c.role == "" {
		// A window over the input persists the parent's RDDs so that it
		// reads each once; a persisted copy of the input would hold every
		// batch of the window in memory again. Reading the input is
		// cheap (memory or the log), so local mode does not persist it.
		// (In a cluster the executors cache it, not the job driver.)
		in.s.b.persist = false
	}
}

// markLogged records that the log holds batch t's input (after the
// batch's synced write, or for input read from the log).
func (in *input[T]) markLogged(t time.Time) {
	if in.spill.wal == nil {
		return
	}
	in.mu.Lock()
	in.spill.logged[t] = true
	in.mu.Unlock()
}

// spillThrough runs when the stream forgets the batches at or before
// `before` (cleanup, with in.mu held): the bookkeeping of forgotten batches
// goes, and the remembered batches older than the resident span before the
// finished batch leave memory.
func (in *input[T]) spillThrough(before time.Time) {
	sp := &in.spill
	for t := range sp.spilled {
		if !t.After(before) {
			delete(sp.spilled, t)
		}
	}
	for t := range sp.logged {
		if !t.After(before) {
			delete(sp.logged, t)
		}
	}
	if sp.wal == nil {
		return
	}
	// cleanup(done) forgets before = done - remember.
	through := before.Add(in.s.b.remember - sp.resident)
	for t, rs := range in.recs {
		if t.After(through) || !sp.logged[t] {
			continue
		}
		releaseAll(rs)
		delete(in.recs, t)
		sp.spilled[t] = len(rs)
	}
}

// residentBatches returns how many batches' input (records or Go values)
// is in memory and how many were spilled to the log (tests).
func (in *input[T]) residentBatches() (inMemory, spilled int) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.recs) + len(in.vals), len(in.spill.spilled)
}

// partAt returns partition part of batch t's input, retained (the caller
// releases): from memory, or read back from the log.
func (in *input[T]) partAt(t time.Time, part int) (arrow.Record, error) {
	in.mu.Lock()
	recs, ok := in.recs[t]
	parts, spilled := len(recs), false
	if ok && part < len(recs) {
		r := recs[part]
		if r != nil {
			r.Retain()
		}
		in.mu.Unlock()
		return r, nil
	}
	if !ok {
		parts, spilled = in.spill.spilled[t]
	}
	in.mu.Unlock()
	switch {
	case !ok && !spilled:
		return nil, fmt.Errorf("dstream: the input of %s at %s is no longer remembered", in.s.b.name, fmtTime(t))
	case part >= parts:
		return nil, fmt.Errorf("dstream: input %s of %s has %d partitions, not %d", in.s.b.name, fmtTime(t), parts, part+1)
	}
	b, err := in.readLog(t)
	if err != nil {
		return nil, err
	}
	ipcs, _, err := splitRecord(b)
	if err != nil {
		return nil, fmt.Errorf("recorded input of %s at %s: %w", in.s.b.name, fmtTime(t), err)
	}
	if part >= len(ipcs) {
		return nil, fmt.Errorf("recorded input of %s at %s: %d partitions, not %d", in.s.b.name, fmtTime(t), len(ipcs), part+1)
	}
	if ipcs[part] == nil {
		return nil, nil
	}
	r, err := cluster.DecodeIPC(ipcs[part], in.s.b.ctx.cfg.Allocator)
	if err != nil {
		return nil, fmt.Errorf("recorded input of %s at %s: %w", in.s.b.name, fmtTime(t), err)
	}
	return r, nil
}

// readBack returns every partition of a spilled batch's input, decoded
// from the log (the caller releases them).
func (in *input[T]) readBack(t time.Time) ([]arrow.Record, error) {
	b, err := in.readLog(t)
	if err != nil {
		return nil, err
	}
	recs, _, _, err := in.decodeRecord(b)
	if err != nil {
		return nil, fmt.Errorf("batch %s: %w", fmtTime(t), err)
	}
	return recs, nil
}

// readLog reads this input's write-ahead record of batch t.
func (in *input[T]) readLog(t time.Time) ([]byte, error) {
	b, ok, err := in.spill.wal.ReadInputOf(t, in.walName())
	if err != nil {
		return nil, fmt.Errorf("dstream: input %s: %w", in.s.b.name, err)
	}
	if !ok {
		return nil, fmt.Errorf("dstream: input %s: batch %s left memory but the write-ahead log has no record of it", in.s.b.name, fmtTime(t))
	}
	return b, nil
}

// splitRecord splits a write-ahead record (recordAt's format: a count, then
// per record its length and framed Arrow IPC bytes, length 0 for none;
// then the source's extra) into the records' bytes (nil: no record) and the
// extra, without decoding them.
func splitRecord(b []byte) (ipcs [][]byte, extra []byte, err error) {
	if len(b) < 4 {
		return nil, nil, fmt.Errorf("truncated")
	}
	n := int(binary.BigEndian.Uint32(b))
	b = b[4:]
	ipcs = make([][]byte, 0, min(n, 1<<16))
	for range n {
		if len(b) < 8 {
			return nil, nil, fmt.Errorf("truncated")
		}
		l := binary.BigEndian.Uint64(b)
		b = b[8:]
		if l == 0 {
			ipcs = append(ipcs, nil)
			continue
		}
		if uint64(len(b)) < l {
			return nil, nil, fmt.Errorf("truncated")
		}
		ipcs = append(ipcs, b[:l:l])
		b = b[l:]
	}
	return ipcs, b, nil
}
