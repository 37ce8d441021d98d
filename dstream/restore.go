package dstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sluicehq/sluice/internal/checkpoint"
	"github.com/sluicehq/sluice/internal/cluster"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	"github.com/sluicehq/sluice/scheduler"
)

// Checkpoints in a cluster (issue 7/11, cluster half). The job driver keeps
// the checkpoint directory, exactly as in local mode (input write-ahead log,
// metadata generations, snapshots); only the operator state lives elsewhere,
// in the job processes that hold its partitions. So:
//
//   - Snapshot: at a checkpoint batch, the job driver's CommitState names,
//     to each holder, the partitions it holds; the job process commits, then
//     sends their committed state to the job driver (JobDriver.PutState),
//     which writes it into the snapshot being taken. The job driver adds the
//     operator-wide parts it keeps itself (an event-time watermark) and
//     commits the snapshot only when every partition of every operator
//     arrived. The snapshot is thus durable on the job driver's disk, not
//     only on the executor that computed it.
//   - Restore: a restarted job driver (a new attempt, started by `driver
//     serve`) restores the newest snapshot S as in local mode and sends S
//     with every task (TaskRequest.state_snapshot). Executors replace a job
//     process of an older attempt, so a job process holds nothing from
//     before; before its first transaction on a state partition it fetches
//     that partition of S (JobDriver.FetchState) and loads it. Then the
//     batches after S replay from the recorded input, as in local mode.
//   - A lost state holder (scheduler.StateLostError, or a commit that
//     cannot reach it) ends the job driver with cluster.ExitRestart when the
//     job has a checkpoint: `driver serve` restarts it, which is the
//     recovery above.

// stateLost reports whether err means that operator state held by an
// executor is gone.
func stateLost(err error) bool {
	var sl *scheduler.StateLostError
	var ce *stateCommitError
	return errors.As(err, &sl) || errors.As(err, &ce)
}

// stateCommitError is a batch whose state could not be committed on its
// holders (one is gone): its state is lost as surely as a failed task's.
type stateCommitError struct{ err error }

func (e *stateCommitError) Error() string { return e.err.Error() }
func (e *stateCommitError) Unwrap() error { return e.err }

// snapshotDue reports whether batch t takes a state snapshot.
func (c *Context) snapshotDue(t time.Time) bool {
	ck := c.ckpt
	if ck == nil || len(c.stateful) == 0 {
		return false
	}
	ck.mu.Lock()
	defer ck.mu.Unlock()
	return t.Sub(ck.meta.Zero)%ck.interval == 0
}

// remoteSnapshot gathers, in the driver role, the parts executors send
// for the snapshot being taken.
type remoteSnapshot struct {
	mu   sync.Mutex
	t    time.Time // the snapshot in progress (zero: none)
	got  map[string]bool
	errs []error
}

// beginRemoteSnapshot starts the snapshot of batch t before its state is
// committed on the executors (which send their parts then).
func (c *Context) beginRemoteSnapshot(t time.Time) error {
	if err := c.ckpt.store.BeginSnapshot(t); err != nil {
		return err
	}
	rs := &c.ckpt.remote
	rs.mu.Lock()
	rs.t, rs.got, rs.errs = t, map[string]bool{}, nil
	rs.mu.Unlock()
	return nil
}

// putRemotePart stores one partition an executor sent.
func (c *Context) putRemotePart(t time.Time, sp checkpoint.StatePart) error {
	ck := c.ckpt
	if ck == nil {
		return errors.New("this job driver keeps no checkpoint")
	}
	rs := &ck.remote
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.t.IsZero() || !rs.t.Equal(t) {
		return fmt.Errorf("no snapshot of %s is being taken (now: %s)", fmtTime(t), fmtTime(rs.t))
	}
	if err := ck.store.PutState(t, sp); err != nil {
		rs.errs = append(rs.errs, err)
		return err
	}
	rs.got[sp.Op+"/"+strconv.Itoa(sp.Part)] = true
	return nil
}

// finishRemoteSnapshot adds the driver's own operator-wide parts and
// commits the snapshot if every partition arrived; otherwise it is
// abandoned (the older snapshot stays the newest) and the reason returned.
func (c *Context) finishRemoteSnapshot(t time.Time) (bool, error) {
	ck := c.ckpt
	rs := &ck.remote
	rs.mu.Lock()
	got, errs := rs.got, rs.errs
	rs.t, rs.got, rs.errs = time.Time{}, nil, nil
	rs.mu.Unlock()
	abort := func(err error) (bool, error) {
		ck.store.AbortSnapshot()
		return false, err
	}
	if len(errs) > 0 {
		return abort(errors.Join(errs...))
	}
	for _, op := range c.stateful {
		id := op.ckptOperator()
		for p := range id.Partitions {
			if !got[id.Name+"/"+strconv.Itoa(p)] {
				return abort(fmt.Errorf("partition %d of %s did not arrive from its executor", p, id.Name))
			}
		}
		parts, err := op.saveState() // the driver's: operator-wide parts only
		if err != nil {
			return abort(err)
		}
		for _, sp := range parts {
			if strings.Contains(sp.Op, "#") {
				if err := ck.store.PutState(t, sp); err != nil {
					return abort(err)
				}
			}
		}
	}
	if err := ck.store.CommitSnapshot(t); err != nil {
		return false, err
	}
	// Every partition was placed (and restored) before this batch could
	// commit: the restored snapshot's parts are not needed in memory.
	ck.restoredMu.Lock()
	ck.restoredParts = nil
	ck.restoredMu.Unlock()
	return true, nil
}

// PutState implements sluicev1.JobDriverServer: the committed state of the
// partitions a CommitState with snapshot named.
func (s *inputServer) PutState(stream sluicev1.JobDriver_PutStateServer) error {
	var buf []byte
	var cur *sluicev1.StateChunk // the first chunk of the partition in progress
	recv := cluster.IdleRecv(stream.Context(), "put state", stream.Recv)
	for {
		ch, err := recv()
		if err == io.EOF {
			if len(buf) > 0 {
				return status.Error(codes.InvalidArgument, "put state: the stream ended inside a partition")
			}
			return stream.SendAndClose(&sluicev1.PutStateResponse{})
		}
		if err != nil {
			return err
		}
		if err := s.checkJob(ch.GetJobId()); err != nil {
			return err
		}
		if cur == nil {
			cur = ch
		} else if ch.GetOp() != cur.GetOp() || ch.GetPart() != cur.GetPart() || ch.GetSnapshotUnixNano() != cur.GetSnapshotUnixNano() {
			return status.Errorf(codes.InvalidArgument, "put state: a chunk of partition %d of %s inside partition %d of %s: send each partition's chunks in a row, the last with last=true",
				ch.GetPart(), cluster.Quote(ch.GetOp()), cur.GetPart(), cluster.Quote(cur.GetOp()))
		}
		if len(buf)+len(ch.GetData()) > maxStatePartBytes {
			return status.Errorf(codes.ResourceExhausted, "put state: partition %d of %s is over %d bytes", ch.GetPart(), cluster.Quote(ch.GetOp()), maxStatePartBytes)
		}
		buf = append(buf, ch.GetData()...)
		if !ch.GetLast() {
			continue
		}
		sp := checkpoint.StatePart{Op: ch.GetOp(), Part: int(ch.GetPart()), Data: buf}
		buf, cur = nil, nil
		if err := s.c.checkStatePart(sp); err != nil {
			return status.Errorf(codes.InvalidArgument, "put state %s/%d: %v", cluster.Quote(sp.Op), sp.Part, err)
		}
		if err := s.c.putRemotePart(time.Unix(0, ch.GetSnapshotUnixNano()), sp); err != nil {
			return status.Errorf(codes.FailedPrecondition, "put state %s/%d: %v", cluster.Quote(sp.Op), sp.Part, err)
		}
	}
}

// checkStatePart checks that an executor's state partition is one this job
// has (a stateful operator's name and a partition in its range) and that
// its bytes are an intact Arrow IPC payload, before a snapshot keeps it.
func (c *Context) checkStatePart(sp checkpoint.StatePart) error {
	for _, op := range c.stateful {
		if id := op.ckptOperator(); id.Name == sp.Op {
			if sp.Part < 0 || sp.Part >= id.Partitions {
				return fmt.Errorf("partition %d out of range [0,%d)", sp.Part, id.Partitions)
			}
			return cluster.CheckIPC(sp.Data)
		}
	}
	return fmt.Errorf("this job has no stateful operator %s", cluster.Quote(sp.Op))
}

// maxStatePartBytes bounds one state partition in transit.
const maxStatePartBytes = 1 << 30

// FetchState implements sluicev1.JobDriverServer: one partition of the
// snapshot this job driver restored (with its operator's operator-wide
// parts).
func (s *inputServer) FetchState(req *sluicev1.FetchStateRequest, stream sluicev1.JobDriver_FetchStateServer) error {
	if err := s.checkJob(req.GetJobId()); err != nil {
		return err
	}
	parts, err := s.c.restoredParts(time.Unix(0, req.GetSnapshotUnixNano()))
	if err != nil {
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	found := false
	for _, sp := range parts {
		name, _, wide := strings.Cut(sp.Op, "#")
		if name != req.GetOp() || (!wide && sp.Part != int(req.GetPart())) {
			continue
		}
		found = found || !wide
		b := sp.Data
		for first := true; first || len(b) > 0; first = false {
			n := min(len(b), cluster.ChunkBytes)
			if err := stream.Send(&sluicev1.StateChunk{Op: sp.Op, Part: int32(sp.Part), Data: b[:n], Last: n == len(b), SnapshotUnixNano: req.GetSnapshotUnixNano()}); err != nil {
				return err
			}
			b = b[n:]
		}
	}
	if !found {
		return status.Errorf(codes.NotFound, "snapshot %s has no partition %d of %s", fmtTime(time.Unix(0, req.GetSnapshotUnixNano())), req.GetPart(), cluster.Quote(req.GetOp()))
	}
	return nil
}

// restoredParts returns the parts of the snapshot this job driver restored.
func (c *Context) restoredParts(t time.Time) ([]checkpoint.StatePart, error) {
	ck := c.ckpt
	if ck == nil || ck.restoredS.IsZero() || !ck.restoredS.Equal(t) {
		return nil, fmt.Errorf("this job driver did not restore snapshot %s", fmtTime(t))
	}
	ck.restoredMu.Lock()
	defer ck.restoredMu.Unlock()
	if ck.restoredParts == nil {
		parts, err := ck.store.ReadSnapshot(t)
		if err != nil {
			return nil, err
		}
		ck.restoredParts = parts
	}
	return ck.restoredParts, nil
}

// restoreSnapshotOf returns the snapshot this job driver's tasks restore
// state from (zero: none).
func (c *Context) restoreSnapshotOf() time.Time {
	if c.ckpt == nil {
		return time.Time{}
	}
	return c.ckpt.restoredS
}

// restorer loads, in a job process, state partitions from the snapshot the
// job driver restored, once per partition.
type restorer struct {
	mu   sync.Mutex
	done map[string]*restoreOnce
}

type restoreOnce struct {
	ready chan struct{}
	err   error
}

// restorePart loads partition part of op from the snapshot tasks name,
// unless this process did already (or tasks name none).
func (c *Context) restorePart(op statefulOp, part int) error {
	r := c.resolver
	if r == nil {
		return nil
	}
	snap := r.snapshotTime()
	if snap.IsZero() {
		return nil
	}
	name := op.ckptOperator().Name
	key := name + "/" + strconv.Itoa(part)
	rs := &r.restore
	rs.mu.Lock()
	if rs.done == nil {
		rs.done = map[string]*restoreOnce{}
	}
	o := rs.done[key]
	if o == nil {
		o = &restoreOnce{ready: make(chan struct{})}
		rs.done[key] = o
		rs.mu.Unlock()
		o.err = c.loadRemotePart(op, name, part, snap)
		if o.err != nil {
			rs.mu.Lock()
			delete(rs.done, key) // the next task tries again
			rs.mu.Unlock()
		}
		close(o.ready)
		return o.err
	}
	rs.mu.Unlock()
	<-o.ready
	return o.err
}

// loadRemotePart fetches and loads one partition.
func (c *Context) loadRemotePart(op statefulOp, name string, part int, snap time.Time) error {
	addr := c.resolver.driverAddr()
	conn, err := c.resolver.pool.Conn(addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	stream, err := sluicev1.NewJobDriverClient(conn).FetchState(ctx, &sluicev1.FetchStateRequest{
		JobId: c.resolver.jobID, SnapshotUnixNano: snap.UnixNano(), Op: name, Part: int32(part),
	})
	fail := func(err error) error {
		return fmt.Errorf("dstream: restore partition %d of %s from snapshot %s: %w", part, name, fmtTime(snap), err)
	}
	if err != nil {
		return fail(err)
	}
	var parts []checkpoint.StatePart
	var buf []byte
	for {
		ch, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fail(err)
		}
		if len(buf)+len(ch.GetData()) > maxStatePartBytes {
			return fail(fmt.Errorf("over %d bytes", maxStatePartBytes))
		}
		buf = append(buf, ch.GetData()...)
		if ch.GetLast() {
			parts = append(parts, checkpoint.StatePart{Op: ch.GetOp(), Part: int(ch.GetPart()), Data: buf})
			buf = nil
		}
	}
	if err := op.loadPart(part, parts); err != nil {
		return fail(err)
	}
	c.log.Info("state partition restored from the checkpoint", slog.String("op", name), slog.Int("partition", part), slog.String("snapshot", fmtTime(snap)))
	return nil
}

// sendSnapshot sends, in a job process, the committed state of the named
// partitions ("<operator>/<partition>") to the job driver.
func (c *Context) sendSnapshot(ctx context.Context, t time.Time, keys []string) error {
	byName := map[string]statefulOp{}
	for _, op := range c.stateful {
		byName[op.ckptOperator().Name] = op
	}
	addr := c.resolver.driverAddr()
	conn, err := c.resolver.pool.Conn(addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	stream, err := sluicev1.NewJobDriverClient(conn).PutState(ctx)
	if err != nil {
		return err
	}
	for _, key := range keys {
		i := strings.LastIndexByte(key, '/')
		part, perr := strconv.Atoi(key[i+1:])
		op := byName[key[:max(0, i)]]
		if i < 0 || perr != nil || op == nil {
			stream.CloseSend()
			return fmt.Errorf("snapshot: no state partition %q in this job", key)
		}
		sp, err := op.savePart(part)
		if err != nil {
			stream.CloseSend()
			return fmt.Errorf("snapshot %s: %w", key, err)
		}
		b := sp.Data
		for first := true; first || len(b) > 0; first = false {
			n := min(len(b), cluster.ChunkBytes)
			if err := stream.Send(&sluicev1.StateChunk{JobId: c.resolver.jobID, SnapshotUnixNano: t.UnixNano(), Op: sp.Op, Part: int32(sp.Part), Data: b[:n], Last: n == len(b)}); err != nil {
				_, err = stream.CloseAndRecv() // the server's reason
				return fmt.Errorf("snapshot %s: send to the job driver: %w", key, err)
			}
			b = b[n:]
		}
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		return fmt.Errorf("snapshot: the job driver: %w", err)
	}
	return nil
}
