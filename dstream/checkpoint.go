package dstream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/sluicehq/sluice/internal/checkpoint"
	"github.com/sluicehq/sluice/internal/cluster"
	"github.com/sluicehq/sluice/rdd"
)

// Checkpoints in local mode (issue 7/11): a run with Config.Checkpoint (or
// --checkpoint DIR) records, in that directory,
//   - every batch's input before the batch is scheduled (the write-ahead
//     log: the Arrow records each input cut for the batch; for a planned
//     source that is its plan, e.g. Kafka offset ranges, and the plan's
//     Next, which a restart hands to PlannedSource.Resume),
//   - after every completed batch, a metadata generation (graph
//     fingerprint, zero time, last completed batch, snapshots),
//   - every checkpoint interval, a snapshot of every stateful operator's
//     committed state as of the batch.
//
// A run with the same directory restores the newest good snapshot S,
// regenerates the input of the batches windows still read back to, replays
// the batches after S with their recorded input, and goes on from there:
// the batch times missed while the job was down are generated one after the
// other (every batch time exists), each with the input that arrived.

// ckpt is the checkpoint runtime of a context (nil without a directory).
type ckpt struct {
	store    *checkpoint.Store
	interval time.Duration
	log      *slog.Logger

	mu        sync.Mutex // guards the fields below
	meta      checkpoint.Meta
	replay    map[int64]map[string][]byte // recorded input of batches to replay, by batch ns
	replayTo  time.Time                   // the last batch to replay (zero: none)
	restoredS time.Time                   // the snapshot restored (zero: none)
	// from is the batch the run starts after: the snapshot restored, the
	// last completed batch of a job without state, or the zero time.
	from time.Time

	// Cluster (restore.go): the snapshot taken from executors, and the
	// restored snapshot's parts, served to them.
	remote        remoteSnapshot
	restoredMu    sync.Mutex
	restoredParts []checkpoint.StatePart
}

// walInput is an input whose per-batch records the write-ahead log keeps.
type walInput interface {
	// walName names the input in the log: stable while the graph is.
	walName() string
	// recordAt encodes the input of batch t (nil: nothing to record).
	recordAt(t time.Time) ([]byte, error)
	// restoreAt installs recorded input as batch t's and returns its
	// record count.
	restoreAt(t time.Time, b []byte) (int64, error)
	// markLogged tells the input that the log holds batch t's record, so
	// its records may leave memory (input_spill.go).
	markLogged(t time.Time)
}

// cannotResume reports a planned source that has no Resume hook: its
// planner would restart from its own start positions, not after the
// recorded plans.
func (in *input[T]) cannotResume() bool { return in.planned && in.resume == nil }

func (in *input[T]) walName() string {
	return strconv.Itoa(in.index) + ":" + in.op
}

// recordAt encodes batch t's records: a count, then per record its
// length and framed Arrow IPC bytes (length 0: no record).
func (in *input[T]) recordAt(t time.Time) ([]byte, error) {
	in.mu.Lock()
	recs := in.recs[t]
	in.mu.Unlock()
	out := binary.BigEndian.AppendUint32(nil, uint32(len(recs)))
	for _, r := range recs {
		if r == nil {
			out = binary.BigEndian.AppendUint64(out, 0)
			continue
		}
		b, err := cluster.EncodeIPC(r, memory.DefaultAllocator)
		if err != nil {
			return nil, err
		}
		out = binary.BigEndian.AppendUint64(out, uint64(len(b)))
		out = append(out, b...)
	}
	if in.extra != nil {
		out = append(out, in.extra(t)...)
	}
	return out, nil
}

func (in *input[T]) restoreAt(t time.Time, b []byte) (int64, error) {
	// The log's times are Unix times; batch times (the memo keys) are the
	// zero time plus an offset, in its location: a key in another location
	// is another map key, and windows after a restart would not find the
	// batches restored for them.
	z := in.s.b.ctx.zeroTime
	t = z.Add(t.Sub(z))
	if in.spill.wal != nil && !t.After(in.s.b.ctx.ckpt.from) {
		// A batch before the restart point, restored for the windows
		// that read back into it: it stays in the log (input_spill.go).
		return in.restoreSpilled(t, b)
	}
	recs, rest, rows, err := in.decodeRecord(b)
	if err != nil {
		return 0, err
	}
	if in.restoreExtra != nil {
		n, err := in.restoreExtra(t, rest)
		if err != nil {
			releaseAll(recs)
			return 0, fmt.Errorf("recorded input of %s: %w", in.s.b.name, err)
		}
		if n >= 0 {
			rows = n
		}
	}
	in.mu.Lock()
	if old, ok := in.recs[t]; ok {
		releaseAll(old)
	}
	in.recs[t] = recs
	delete(in.spill.spilled, t)
	in.mu.Unlock()
	in.markLogged(t) // it came from the log
	return rows, nil
}

// restoreSpilled installs recorded input as batch t's without decoding
// its records: they stay in the log until a task reads them. Its record
// count is the source's (restoreExtra), or 0: no batch reports it.
func (in *input[T]) restoreSpilled(t time.Time, b []byte) (int64, error) {
	ipcs, rest, err := splitRecord(b)
	if err != nil {
		return 0, fmt.Errorf("recorded input of %s: %s", in.s.b.name, err)
	}
	var rows int64
	if in.restoreExtra != nil {
		n, err := in.restoreExtra(t, rest)
		if err != nil {
			return 0, fmt.Errorf("recorded input of %s: %w", in.s.b.name, err)
		}
		rows = max(n, 0)
	}
	in.mu.Lock()
	if old, ok := in.recs[t]; ok {
		releaseAll(old)
		delete(in.recs, t)
	}
	in.spill.spilled[t] = len(ipcs)
	in.spill.logged[t] = true
	in.mu.Unlock()
	return rows, nil
}

// resumeFrom gives a source with a resume hook the extra of its newest
// recorded batch.
func (in *input[T]) resumeFrom(b []byte) error {
	if in.resume == nil {
		return nil
	}
	recs, rest, _, err := in.decodeRecord(b)
	if err != nil {
		return err
	}
	releaseAll(recs)
	if err := in.resume(rest); err != nil {
		return fmt.Errorf("resume %s: %w", in.s.b.name, err)
	}
	return nil
}

// decodeRecord splits a write-ahead record into its Arrow records (the
// caller releases them), the extra bytes after them, and their rows.
func (in *input[T]) decodeRecord(b []byte) (recs []arrow.Record, extra []byte, rows int64, err error) {
	mem := in.s.b.ctx.cfg.Allocator
	bad := func(why string) error {
		releaseAll(recs)
		return fmt.Errorf("recorded input of %s: %s", in.s.b.name, why)
	}
	ipcs, extra, err := splitRecord(b)
	if err != nil {
		return nil, nil, 0, bad(err.Error())
	}
	recs = make([]arrow.Record, 0, len(ipcs))
	for _, p := range ipcs {
		if p == nil {
			recs = append(recs, nil)
			continue
		}
		r, err := cluster.DecodeIPC(p, mem)
		if err != nil {
			return nil, nil, 0, bad(err.Error())
		}
		recs = append(recs, r)
		rows += r.NumRows()
	}
	return recs, extra, rows, nil
}

func releaseAll(recs []arrow.Record) {
	for _, r := range recs {
		if r != nil {
			r.Release()
		}
	}
}

// defaultCheckpointInterval is the smallest multiple of every stateful
// stream's slide (and of the batch interval) of at least 10 s.
func (c *Context) defaultCheckpointInterval() time.Duration {
	step := c.cfg.BatchInterval
	for _, s := range c.streams {
		if s.slide > 0 {
			step = lcm(step, s.slide)
		}
	}
	n := (10*time.Second + step - 1) / step
	return max(1, n) * step
}

func lcm(a, b time.Duration) time.Duration {
	x, y := a, b
	for y != 0 {
		x, y = y, x%y
	}
	return a / x * b
}

// fingerprint lists the stateful operators, and the config a restart must
// keep.
func (c *Context) fingerprint() ([]checkpoint.Operator, map[string]string) {
	ops := make([]checkpoint.Operator, 0, len(c.stateful))
	for _, op := range c.stateful {
		ops = append(ops, op.ckptOperator())
	}
	var ins []string
	for _, in := range c.inputs {
		if w, ok := in.(walInput); ok {
			ins = append(ins, w.walName())
		} else {
			op, _, _ := strings.Cut(in.base().name, "@")
			ins = append(ins, strconv.Itoa(len(ins))+":"+op)
		}
	}
	return ops, map[string]string{
		"batch_interval": c.cfg.BatchInterval.String(),
		"inputs":         strings.Join(ins, ","),
	}
}

// adoptCheckpointPartitions makes a job that did not choose its partition
// count (Config.Parallelism, --partitions) resume with the one its
// checkpoint was written with: its state is partitioned by key, and the
// default (the task slots, a cluster's slots at submission) may have
// changed since (a cluster that grew), as Spark's recovered graph keeps its
// partitioners. It runs before the graph is built, in the driver only.
func (c *Context) adoptCheckpointPartitions() error {
	if c.cfg.Checkpoint == "" || c.partitionsChosen || os.Getenv("SLUICE_ROLE") == roleExecutor {
		return nil
	}
	if _, err := os.Stat(c.cfg.Checkpoint); errors.Is(err, fs.ErrNotExist) {
		return nil // a first run
	}
	store, err := checkpoint.Open(checkpoint.Config{Dir: c.cfg.Checkpoint, Logger: c.logger()})
	if err != nil {
		return err
	}
	m, ok, err := store.LoadMeta()
	store.Close()
	if err != nil || !ok || m.Partitions <= 0 || m.Partitions == c.Parallelism() {
		return err
	}
	c.logger().Info("resuming with the checkpoint's partition count", slog.Int("partitions", m.Partitions),
		slog.Int("default_now", c.Parallelism()), slog.String("checkpoint", c.cfg.Checkpoint))
	c.cfg.Parallelism = m.Partitions
	return nil
}

// openCheckpoint opens the directory and decides where the run starts: the
// zero time (a new one, or the checkpoint's), and what to restore and
// replay. It runs before start (the graph is complete, the runtime not
// started).
func (c *Context) openCheckpoint(now time.Time) (zero time.Time, err error) {
	log := c.cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	for _, in := range c.inputs {
		if p, ok := in.(interface{ cannotResume() bool }); ok && p.cannotResume() {
			// Its planner would start from its own start positions, not
			// after the replayed plans.
			return time.Time{}, fmt.Errorf("dstream: --checkpoint %s: the planned source %s has no PlannedSource.Resume, so it cannot resume from a checkpoint: give it one, or run without --checkpoint", c.cfg.Checkpoint, in.base().name)
		}
	}
	store, err := checkpoint.Open(checkpoint.Config{Dir: c.cfg.Checkpoint, Logger: log})
	if err != nil {
		return time.Time{}, err
	}
	ck := &ckpt{store: store, log: log, interval: c.cfg.CheckpointInterval, replay: map[int64]map[string][]byte{}}
	if ck.interval == 0 {
		ck.interval = c.defaultCheckpointInterval()
	}
	fail := func(err error) (time.Time, error) {
		store.Close()
		return time.Time{}, err
	}
	ops, conf := c.fingerprint()
	m, ok, err := store.LoadMeta()
	if err != nil {
		return fail(err)
	}
	if !ok {
		zero = now.Truncate(c.cfg.BatchInterval)
		ck.meta = checkpoint.Meta{Job: c.cfg.AppName, Operators: ops, Config: conf, Zero: zero, Partitions: c.Parallelism()}
		// The input of batches no metadata mentions is from a run that
		// completed nothing; it is not replayed.
		if err := store.DeleteInputThrough(time.Unix(1<<62, 0)); err != nil {
			return fail(err)
		}
		if err := store.SaveMeta(ck.meta); err != nil {
			return fail(err)
		}
		ck.from = zero
		c.ckpt = ck
		return zero, nil
	}
	if err := checkpoint.Compatible(m.Operators, ops); err != nil {
		return fail(fmt.Errorf("dstream: --checkpoint %s was written by an incompatible job: %w", c.cfg.Checkpoint, err))
	}
	for k, was := range m.Config {
		if now := conf[k]; now != was {
			return fail(fmt.Errorf("dstream: --checkpoint %s: %s was %q, now %q: a restart must keep it (or use another --checkpoint directory)", c.cfg.Checkpoint, k, was, now))
		}
	}
	m.Operators, m.Config, m.Partitions = ops, conf, c.Parallelism()
	ck.meta = m
	zero = m.Zero
	// The newest readable snapshot no newer than the last completed batch.
	var snap time.Time
	for _, s := range store.Snapshots() {
		if !s.Time.After(m.Completed) {
			snap = s.Time
			break
		}
	}
	if snap.IsZero() && len(m.Snapshots) > 0 {
		return fail(fmt.Errorf("dstream: --checkpoint %s: %w: the metadata lists state snapshots %v but none is readable; refusing to start from empty state: restore the directory from a copy or move it aside", c.cfg.Checkpoint, checkpoint.ErrDamaged, m.Snapshots))
	}
	ck.restoredS = snap
	times, err := store.InputTimes()
	if err != nil {
		return fail(err)
	}
	from := snap
	switch {
	case len(c.stateful) == 0:
		from = m.Completed // nothing to restore: replay only what did not complete
		if from.IsZero() {
			from = zero
		}
	case from.IsZero():
		from = zero // replay from the initial state
	}
	ck.from = from
	// Replay every batch after the snapshot that has recorded input; a
	// batch after the snapshot with no record cannot be replayed unless it
	// was never generated (then it is generated afresh).
	for _, t := range times {
		if t.After(from) {
			in, _, err := store.ReadInput(t)
			if err != nil {
				return fail(fmt.Errorf("dstream: --checkpoint %s: %w; the batch cannot be replayed: restore the directory from a copy or move it aside", c.cfg.Checkpoint, err))
			}
			ck.replay[t.UnixNano()] = in
			if t.After(ck.replayTo) {
				ck.replayTo = t
			}
		}
	}
	if m.Completed.After(from) {
		for t := from.Add(c.cfg.BatchInterval); !t.After(m.Completed); t = t.Add(c.cfg.BatchInterval) {
			if _, ok := ck.replay[t.UnixNano()]; !ok {
				return fail(fmt.Errorf("dstream: --checkpoint %s: %w: batch %s completed but its recorded input is missing from the write-ahead log; refusing to skip it: restore the directory from a copy or move it aside", c.cfg.Checkpoint, checkpoint.ErrDamaged, fmtTime(t)))
			}
		}
	}
	c.ckpt = ck
	return zero, nil
}

// restoreCheckpoint loads the snapshot into the stateful operators and
// regenerates the input of the batches at or before it that windows still
// read. It runs after start (the operators loaded their initial state).
func (c *Context) restoreCheckpoint() error {
	ck := c.ckpt
	if ck == nil {
		return nil
	}
	if err := c.resumeInputs(); err != nil {
		return err
	}
	if ck.meta.Completed.IsZero() {
		return nil
	}
	if !ck.restoredS.IsZero() {
		parts, err := ck.store.ReadSnapshot(ck.restoredS)
		if err != nil {
			return fmt.Errorf("dstream: --checkpoint %s: %w", c.cfg.Checkpoint, err)
		}
		if c.role == roleDriver {
			// The job processes load the partitions (restore.go); the job
			// driver keeps the operator-wide parts (a watermark) itself.
			ck.restoredMu.Lock()
			ck.restoredParts = parts
			ck.restoredMu.Unlock()
			parts = slices.DeleteFunc(slices.Clone(parts), func(p checkpoint.StatePart) bool { return !strings.Contains(p.Op, "#") })
		}
		byOp := map[string][]checkpoint.StatePart{}
		for _, p := range parts {
			name, _, _ := strings.Cut(p.Op, "#")
			byOp[name] = append(byOp[name], p)
		}
		for _, op := range c.stateful {
			id := op.ckptOperator()
			if err := op.loadState(byOp[id.Name]); err != nil {
				return fmt.Errorf("dstream: --checkpoint %s: restore %s: %w", c.cfg.Checkpoint, id.Name, err)
			}
		}
	}
	// Input of batches at or before the snapshot that windows read back.
	times, err := ck.store.InputTimes()
	if err != nil {
		return err
	}
	from := ck.from
	c.graphMu.Lock()
	defer c.graphMu.Unlock()
	for _, t := range times {
		if t.After(from) || !t.After(from.Add(-c.maxRemember)) {
			continue
		}
		rec, _, err := ck.store.ReadInput(t)
		if err != nil {
			return fmt.Errorf("dstream: --checkpoint %s: %w", c.cfg.Checkpoint, err)
		}
		if _, err := c.restoreInputs(t, rec); err != nil {
			return err
		}
	}
	c.log.Info("restored from checkpoint", slog.String("dir", c.cfg.Checkpoint),
		slog.String("snapshot", fmtTime(ck.restoredS)), slog.String("completed", fmtTime(ck.meta.Completed)),
		slog.Int("replay_batches", len(ck.replay)))
	return nil
}

// resumeInputs gives every input with a resume hook (a planned source)
// its position after the newest batch the write-ahead log holds, so that
// the first batch planned afresh starts right after the last one recorded
// (replayed or completed). Without a record the source keeps its start
// positions: nothing was planned that a restart must follow.
func (c *Context) resumeInputs() error {
	ck := c.ckpt
	times, err := ck.store.InputTimes()
	if err != nil || len(times) == 0 {
		return err
	}
	newest := slices.MaxFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	rec, _, err := ck.store.ReadInput(newest)
	if err != nil {
		return fmt.Errorf("dstream: --checkpoint %s: %w", c.cfg.Checkpoint, err)
	}
	for _, in := range c.inputs {
		r, ok := in.(interface {
			walInput
			resumeFrom(b []byte) error
		})
		if !ok {
			continue
		}
		b, ok := rec[r.walName()]
		if !ok {
			continue
		}
		if err := r.resumeFrom(b); err != nil {
			return fmt.Errorf("dstream: --checkpoint %s: batch %s: %w", c.cfg.Checkpoint, fmtTime(newest), err)
		}
		c.log.Info("resumed after the newest recorded batch", slog.String("input", in.base().name), slog.String("batch", fmtTime(newest)))
	}
	return nil
}

// restoreInputs installs recorded input for batch t (graphMu held).
func (c *Context) restoreInputs(t time.Time, rec map[string][]byte) (int64, error) {
	var n int64
	for _, in := range c.inputs {
		w, ok := in.(walInput)
		if !ok {
			if _, err := in.inputAt(t); err != nil { // deterministic (Rate)
				return 0, err
			}
			continue
		}
		b, ok := rec[w.walName()]
		if !ok {
			continue // the batch had nothing from this input
		}
		k, err := w.restoreAt(t, b)
		if err != nil {
			return 0, fmt.Errorf("dstream: batch %s: %w", fmtTime(t), err)
		}
		n += k
	}
	return n, nil
}

// recordedInput returns the recorded input of a batch to replay.
func (ck *ckpt) recordedInput(t time.Time) (map[string][]byte, bool) {
	if ck == nil {
		return nil, false
	}
	ck.mu.Lock()
	defer ck.mu.Unlock()
	rec, ok := ck.replay[t.UnixNano()]
	if ok {
		delete(ck.replay, t.UnixNano())
	}
	return rec, ok
}

// logInput writes batch t's input to the write-ahead log (graphMu held).
func (c *Context) logInput(t time.Time) error {
	rec := map[string][]byte{}
	for _, in := range c.inputs {
		if w, ok := in.(walInput); ok {
			b, err := w.recordAt(t)
			if err != nil {
				return fmt.Errorf("encode input %s: %w", in.base().name, err)
			}
			rec[w.walName()] = b
		}
	}
	if err := c.ckpt.store.WriteInput(t, rec); err != nil {
		return err
	}
	for _, in := range c.inputs {
		if w, ok := in.(walInput); ok {
			w.markLogged(t)
		}
	}
	return nil
}

// checkpointBatch runs after batch t committed: a snapshot every
// checkpoint interval, then the metadata generation naming t completed,
// then the log entries no restart needs any more are deleted.
func (c *Context) checkpointBatch(t time.Time) error {
	ck := c.ckpt
	ck.mu.Lock()
	defer ck.mu.Unlock()
	m := ck.meta
	m.Completed = t
	if len(c.stateful) > 0 && t.Sub(m.Zero)%ck.interval == 0 {
		took, err := c.takeSnapshot(t)
		if err != nil {
			return err
		}
		if took {
			m.Snapshots = append(m.Snapshots, t)
		}
	}
	if len(m.Snapshots) > 2 {
		m.Snapshots = m.Snapshots[len(m.Snapshots)-2:]
	}
	if err := ck.store.SaveMeta(m); err != nil {
		return err
	}
	ck.meta = m
	// Keep the input a restart from the older snapshot replays or reads,
	// and the input the running job's windows still read back: inputs
	// keep in memory only their last batches (input_spill.go), and a
	// window at a batch after t reads back less than the longest remember
	// duration before it. keepFrom is at most t, so deleting through
	// keepFrom - maxRemember covers both (TestWindowInputSpillsToTheLog
	// with state, TestWindowOverSocketInputSpills without).
	var keepFrom time.Time
	switch {
	case len(m.Snapshots) == 2:
		keepFrom = m.Snapshots[0]
	case len(c.stateful) == 0:
		keepFrom = t
	}
	if !keepFrom.IsZero() {
		if err := ck.store.DeleteInputThrough(keepFrom.Add(-c.maxRemember)); err != nil {
			return err
		}
	}
	return nil
}

// takeSnapshot writes every stateful operator's committed state as of t
// and reports whether the snapshot exists. In a cluster the executors sent
// their partitions during the commit; a snapshot that misses some is
// abandoned with a warning (the older one stays the newest, and the input
// after it is kept), not a failed batch.
func (c *Context) takeSnapshot(t time.Time) (bool, error) {
	if c.role != roleDriver {
		return true, c.snapshot(t)
	}
	ok, err := c.finishRemoteSnapshot(t)
	if err != nil {
		c.log.Warn("checkpoint: snapshot abandoned", slog.String("batch", fmtTime(t)), slog.Any("err", err))
		return false, nil
	}
	return ok, nil
}

// snapshot writes every stateful operator's committed state as of t.
func (c *Context) snapshot(t time.Time) error {
	st := c.ckpt.store
	if err := st.BeginSnapshot(t); err != nil {
		return err
	}
	for _, op := range c.stateful {
		parts, err := op.saveState()
		if err == nil {
			err = st.PutState(t, parts...)
		}
		if err != nil {
			st.AbortSnapshot()
			return fmt.Errorf("snapshot %s: %w", op.ckptOperator().Name, err)
		}
	}
	return st.CommitSnapshot(t)
}

// closeCheckpoint closes the directory.
func (c *Context) closeCheckpoint() {
	if c.ckpt != nil {
		if err := c.ckpt.store.Close(); err != nil {
			c.log.Warn("checkpoint: close", slog.Any("err", err))
		}
		c.ckpt = nil
	}
}

// ckptOperatorOf fingerprints a keyed-state operator.
func ckptOperatorOf[K comparable, S any](kind, name string, parts int) checkpoint.Operator {
	return checkpoint.Operator{Name: name, Type: fmt.Sprintf("%s[%v,%v]", kind, reflect.TypeFor[K](), reflect.TypeFor[S]()), Partitions: parts}
}

// stateRow is one key's committed state in a snapshot.
type stateRow[K comparable, S any] = KV[K, Pair[S, int64]]

// saveParts encodes every partition's committed state (Arrow IPC).
func (st *stateStore[K, S]) saveParts(mem memory.Allocator) ([]checkpoint.StatePart, error) {
	out := make([]checkpoint.StatePart, 0, len(st.parts))
	for i := range st.parts {
		sp, err := st.savePart(mem, i)
		if err != nil {
			return nil, err
		}
		out = append(out, sp)
	}
	return out, nil
}

// savePart encodes partition i's committed state.
func (st *stateStore[K, S]) savePart(mem memory.Allocator, i int) (checkpoint.StatePart, error) {
	if i < 0 || i >= len(st.parts) {
		return checkpoint.StatePart{}, fmt.Errorf("state %s: partition %d out of range [0,%d)", st.name, i, len(st.parts))
	}
	codec := rdd.CodecOf[stateRow[K, S]]()
	p := st.parts[i]
	p.mu.Lock()
	rows := make([]stateRow[K, S], len(p.keys))
	for j, k := range p.keys {
		rows[j] = stateRow[K, S]{Key: k, Value: Pair[S, int64]{First: p.vals[j], Second: p.touched[j]}}
	}
	rec := rdd.Encode(mem, codec, rows) // copies keys out of the arena
	p.mu.Unlock()
	b, err := cluster.EncodeIPC(rec, mem)
	rec.Release()
	if err != nil {
		return checkpoint.StatePart{}, err
	}
	return checkpoint.StatePart{Op: st.name, Part: i, Data: b}, nil
}

// decodeRows decodes the rows of the snapshot parts of this store that
// keep selects.
func (st *stateStore[K, S]) decodeRows(mem memory.Allocator, parts []checkpoint.StatePart, keep func(part int) bool) ([]stateRow[K, S], error) {
	codec := rdd.CodecOf[stateRow[K, S]]()
	var rows []stateRow[K, S]
	for _, sp := range parts {
		if sp.Op != st.name || !keep(sp.Part) {
			continue
		}
		rec, err := cluster.DecodeIPC(sp.Data, mem)
		if err != nil {
			return nil, fmt.Errorf("partition %d: %w", sp.Part, err)
		}
		rows = append(rows, rdd.Decode(codec, rec)...)
		rec.Release() // set clones what it keeps; Go-heap buffers stay valid
	}
	return rows, nil
}

// loadParts replaces the committed state with the snapshot's.
func (st *stateStore[K, S]) loadParts(mem memory.Allocator, parts []checkpoint.StatePart) error {
	rows, err := st.decodeRows(mem, parts, func(int) bool { return true })
	if err != nil {
		return err
	}
	ds := make([]*stateDelta[K, S], len(st.parts))
	for i, p := range st.parts {
		ds[i] = p.reset()
	}
	for _, r := range rows {
		i := st.partOf(r.Key)
		p := st.parts[i]
		p.mu.Lock()
		ds[i].set(p, r.Key, stateEntry[S]{value: r.Value.First, touched: unpackTime(r.Value.Second)})
		p.mu.Unlock()
	}
	for i, p := range st.parts {
		p.mu.Lock()
		p.apply(ds[i])
		p.mu.Unlock()
	}
	return nil
}

// loadPart replaces partition part's committed state with the snapshot's
// (a job process restoring the partitions it is given, one by one).
func (st *stateStore[K, S]) loadPart(mem memory.Allocator, part int, parts []checkpoint.StatePart) error {
	if part < 0 || part >= len(st.parts) {
		return fmt.Errorf("state %s: partition %d out of range [0,%d)", st.name, part, len(st.parts))
	}
	rows, err := st.decodeRows(mem, parts, func(p int) bool { return p == part })
	if err != nil {
		return err
	}
	p := st.parts[part]
	d := p.reset()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range rows {
		if i := st.partOf(r.Key); i != part {
			return fmt.Errorf("state %s: the snapshot's partition %d holds a key of partition %d: it was written with another partitioning", st.name, part, i)
		}
		d.set(p, r.Key, stateEntry[S]{value: r.Value.First, touched: unpackTime(r.Value.Second)})
	}
	p.apply(d)
	return nil
}

// reset empties the committed state and returns a delta against it.
func (p *statePart[K, S]) reset() *stateDelta[K, S] {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hashes, p.keys, p.vals, p.touched = nil, nil, nil, nil
	p.index = hashIndex{}
	p.gen++
	p.deltas = map[time.Time]*stateDelta[K, S]{}
	return p.newDelta()
}
