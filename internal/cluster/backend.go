// Package cluster is Sluice's cluster mode: the coordinator behind
// `driver serve`, the executor daemon behind `executor`, the scheduler
// backend a job driver uses to run tasks on executors, and the task server a
// job's executor process runs.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	"github.com/sluicehq/sluice/rdd"
	"github.com/sluicehq/sluice/scheduler"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// BackendConfig configures a RemoteBackend.
type BackendConfig struct {
	// Driver is the coordinator, asked for the live executors.
	Driver sluicev1.DriverClient
	// Executor returns a client for the executor at addr (pooled).
	Executor func(addr string) (sluicev1.ExecutorClient, error)
	// Request describes a task for the wire; the backend adds the epoch,
	// the required incarnation and the addresses of shuffle map outputs.
	Request func(t *scheduler.Task) (*sluicev1.TaskRequest, error)
	// Decode turns a result task's Arrow IPC bytes into a record.
	Decode func(t *scheduler.Task, ipc []byte) (arrow.Record, error)
	// Lost is told when an executor (by id) is gone with everything it
	// held. It must not call back into the backend.
	Lost func(id string)
	// StateLocations returns where the scheduler's registry has each
	// operator state partition (scheduler.Scheduler.StateLocations).
	StateLocations func() map[string]scheduler.Location
	// Refresh is how often the executor list is fetched. Default 500ms.
	Refresh time.Duration
	Log     *slog.Logger
}

// RemoteBackend is the scheduler.Backend of a job driver: it runs tasks on
// the cluster's executors, as many at once as they have slots. Executors are
// named by their stable id; an address is only where to reach one. An
// executor that leaves the coordinator's list, or comes back with a new
// epoch, is lost: its calls in flight are cancelled at once (their tasks
// fail with scheduler.ErrExecutorLost and run elsewhere) and the scheduler
// forgets everything it held.
type RemoteBackend struct {
	cfg    BackendConfig
	report func(scheduler.TaskResult)

	mu      sync.Mutex // guards everything below; never held while calling out
	execs   map[string]*remoteExec
	queue   []*scheduler.Task
	running map[int64]*remoteCall
	closed  bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan struct{}
}

type remoteExec struct {
	id       string
	addr     string
	epoch    int64
	slots    int
	running  int
	draining bool
	// ctx ends when the executor is declared lost: its calls end with it.
	ctx    context.Context
	cancel context.CancelFunc
	// avoidUntil keeps tasks off an executor whose call just failed, until
	// the coordinator either drops it (lost) or it proves alive again.
	avoidUntil time.Time
}

type remoteCall struct {
	task   *scheduler.Task
	exec   *remoteExec
	cancel context.CancelFunc
	// lostInput is set when the call was cancelled because an executor
	// holding one of the task's shuffle inputs was lost: the task would
	// wait on a fetch from it until gRPC gives up.
	lostInput *rdd.FetchFailedError
}

// NewRemoteBackend returns a backend; Start begins fetching executors.
func NewRemoteBackend(cfg BackendConfig) *RemoteBackend {
	if cfg.Refresh <= 0 {
		cfg.Refresh = 500 * time.Millisecond
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &RemoteBackend{cfg: cfg, execs: map[string]*remoteExec{}, running: map[int64]*remoteCall{}, ctx: ctx, cancel: cancel, kick: make(chan struct{}, 1)}
}

// Start implements scheduler.Backend. It starts the refresh goroutine,
// owned by the backend and waited for by Stop.
func (b *RemoteBackend) Start(report func(scheduler.TaskResult)) {
	b.report = report
	b.refresh() // know the executors before the first task
	b.wg.Go(func() {
		t := time.NewTicker(b.cfg.Refresh)
		defer t.Stop()
		for {
			select {
			case <-b.ctx.Done():
				return
			case <-t.C:
				b.refresh()
			case <-b.kick:
				b.refresh()
			}
		}
	})
}

// Executors returns the number of executors tasks can go to.
func (b *RemoteBackend) Executors() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, e := range b.execs {
		if !e.draining {
			n++
		}
	}
	return n
}

func (b *RemoteBackend) refresh() {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	resp, err := b.cfg.Driver.ListExecutors(ctx, &sluicev1.ListExecutorsRequest{})
	if err != nil {
		if b.ctx.Err() == nil {
			b.cfg.Log.Warn("cluster: cannot list executors", slog.Any("err", err))
		}
		return
	}
	var lost []string
	b.mu.Lock()
	seen := map[string]bool{}
	for _, in := range resp.GetExecutors() {
		id := in.GetExecutorId()
		seen[id] = true
		e := b.execs[id]
		if e != nil && (e.epoch != in.GetEpoch() || e.addr != in.GetAddress()) {
			// Re-registered: a new incarnation; what it held is gone.
			b.cfg.Log.Warn("cluster: executor re-registered: what it held is lost", slog.String("executor", id),
				slog.Int64("old_epoch", e.epoch), slog.Int64("epoch", in.GetEpoch()))
			e.cancel()
			lost = append(lost, id)
			e = nil
		}
		if e == nil {
			e = &remoteExec{id: id, addr: in.GetAddress(), epoch: in.GetEpoch()}
			e.ctx, e.cancel = context.WithCancel(b.ctx)
			b.execs[id] = e
			b.cfg.Log.Info("cluster: executor joined", slog.String("executor", id), slog.String("addr", e.addr), slog.Int("slots", int(in.GetSlots())))
		}
		e.slots, e.draining = int(in.GetSlots()), in.GetDraining()
	}
	for id, e := range b.execs {
		if !seen[id] {
			lost = append(lost, id)
			delete(b.execs, id)
			e.cancel() // its calls in flight fail now, not when gRPC gives up
			b.cfg.Log.Warn("cluster: executor lost", slog.String("executor", id), slog.String("addr", e.addr))
		}
	}
	b.mu.Unlock()
	for _, id := range lost {
		b.cfg.Lost(id) // the scheduler forgets its outputs before the failures below come
	}
	if len(lost) > 0 {
		// Tasks elsewhere that read shuffle output of a lost executor would
		// wait on their fetch from it until gRPC gives up: stop them now,
		// failing as that fetch would.
		b.mu.Lock()
		for _, rc := range b.running {
			if rc.lostInput == nil {
				if ff := lostInput(rc.task, lost); ff != nil {
					rc.lostInput = ff
					rc.cancel()
				}
			}
		}
		b.mu.Unlock()
	}
	b.dispatch()
}

// Launch implements scheduler.Backend.
func (b *RemoteBackend) Launch(t *scheduler.Task) {
	b.mu.Lock()
	b.queue = append(b.queue, t)
	b.mu.Unlock()
	b.dispatch()
}

// Kill implements scheduler.Killer: the task's call is cancelled, and the
// executor is told to stop it (by job and task, since task ids are unique
// only within a job).
func (b *RemoteBackend) Kill(t *scheduler.Task) {
	b.mu.Lock()
	rc := b.running[t.ID]
	b.mu.Unlock()
	if rc == nil || rc.task != t {
		return // still queued: dispatch drops tasks of finished jobs
	}
	rc.cancel()
}

// dispatch starts queued tasks on executors with free slots, least loaded
// first (ties by id, so placement is stable). A task that reads operator
// state goes to the executor holding that state's partition, and waits for
// it if it is busy.
func (b *RemoteBackend) dispatch() {
	var gone []*scheduler.Task
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	keep := b.queue[:0]
	for _, t := range b.queue {
		if t.Job.Finished() {
			continue
		}
		e, lost := b.pick(t)
		switch {
		case lost:
			gone = append(gone, t)
		case e == nil:
			keep = append(keep, t)
		default:
			e.running++
			ctx, cancel := context.WithCancel(e.ctx)
			b.running[t.ID] = &remoteCall{task: t, exec: e, cancel: cancel}
			b.wg.Go(func() { b.run(ctx, t, e) })
		}
	}
	clear(b.queue[len(keep):])
	b.queue = keep
	b.mu.Unlock()
	for _, t := range gone {
		// The executor holding the task's state is gone: the scheduler
		// learns it (and fails the job naming the state) before the task's
		// failure comes back. Reported from another goroutine: dispatch may
		// run in the scheduler's own loop (Launch), which reads the reports.
		b.wg.Go(func() {
			b.cfg.Lost(t.StateAt.Executor)
			b.report(scheduler.TaskResult{TaskID: t.ID, Err: fmt.Errorf("%w: %s: executor %s holding partition %d of operator state %q is gone",
				scheduler.ErrExecutorLost, t, t.StateAt.Executor, t.Partition, t.State)})
		})
	}
}

// pick chooses an executor for t (nil: none free now). lost reports that
// t's state partition lives on an executor that is gone.
func (b *RemoteBackend) pick(t *scheduler.Task) (e *remoteExec, lost bool) {
	if !t.StateAt.IsZero() {
		e := b.execs[t.StateAt.Executor]
		if e == nil {
			return nil, true
		}
		if e.running < e.slots && !time.Now().Before(e.avoidUntil) {
			return e, false
		}
		return nil, false
	}
	now := time.Now()
	if !t.Prefer.IsZero() {
		// The task reads cached partitions held there: wait for a slot
		// while the holder is healthy (elsewhere it would recompute them).
		if e := b.execs[t.Prefer.Executor]; e != nil && !e.draining && !now.Before(e.avoidUntil) {
			if e.running < e.slots {
				return e, false
			}
			return nil, false
		}
	}
	var free []*remoteExec
	for _, e := range b.execs {
		if !e.draining && e.running < e.slots && !now.Before(e.avoidUntil) {
			free = append(free, e)
		}
	}
	if len(free) == 0 {
		return nil, false
	}
	sort.Slice(free, func(i, j int) bool {
		fi, fj := free[i].slots-free[i].running, free[j].slots-free[j].running
		if fi != fj {
			return fi > fj
		}
		return free[i].id < free[j].id
	})
	return free[0], false
}

// Slots returns the task slots of the executors tasks can go to.
func (b *RemoteBackend) Slots() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, e := range b.execs {
		if !e.draining {
			n += e.slots
		}
	}
	return n
}

// CommitState tells every executor holding operator state to commit what
// batch bt wrote there. The executor must still be the incarnation the state
// was placed on: a restarted one refuses, and an unreachable one fails the
// commit, so a batch never commits on lost state. With snapshot, each holder
// also sends the committed state of the partitions it holds to the job
// driver (JobDriver.PutState) before it answers: a checkpoint.
func (b *RemoteBackend) CommitState(ctx context.Context, jobID string, bt time.Time, reports map[string][]byte, snapshot bool) error {
	holders := map[scheduler.Location][]string{}
	for key, at := range b.cfg.StateLocations() {
		if snapshot {
			holders[at] = append(holders[at], key)
		} else {
			holders[at] = nil
		}
	}
	var errs []error
	for _, at := range slices.SortedFunc(maps.Keys(holders), func(a, b scheduler.Location) int { return strings.Compare(a.String(), b.String()) }) {
		b.mu.Lock()
		e := b.execs[at.Executor]
		b.mu.Unlock()
		if e == nil {
			errs = append(errs, fmt.Errorf("commit the operator state held by executor %s: it is gone, and the state with it", at))
			continue
		}
		client, err := b.cfg.Executor(e.addr)
		if err == nil {
			timeout := 10 * time.Second
			if snapshot {
				timeout = 5 * time.Minute // the holder sends its state to the job driver first
			}
			parts := holders[at]
			slices.Sort(parts)
			cctx, cancel := context.WithTimeout(ctx, timeout)
			_, err = client.CommitState(cctx, &sluicev1.CommitStateRequest{JobId: jobID, BatchTimeUnixNano: bt.UnixNano(), Reports: reports, Incarnation: at.Incarnation, Snapshot: parts})
			cancel()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("commit the operator state held by executor %s (%s): %w", at, e.addr, err))
		}
	}
	return errors.Join(errs...)
}

// run runs one task on e and reports it.
func (b *RemoteBackend) run(ctx context.Context, t *scheduler.Task, e *remoteExec) {
	res := scheduler.TaskResult{TaskID: t.ID, Executor: e.id}
	defer func() {
		b.mu.Lock()
		e.running--
		if rc := b.running[t.ID]; rc != nil && rc.task == t {
			rc.cancel()
			delete(b.running, t.ID)
		}
		b.mu.Unlock()
		if errors.Is(res.Err, scheduler.ErrExecutorLost) && !t.Job.Finished() && b.ctx.Err() == nil {
			b.cfg.Log.Warn("cluster: task's executor lost; retrying elsewhere", slog.String("task", t.String()),
				slog.String("executor", e.id), slog.Any("err", res.Err))
		}
		b.report(res)
		b.dispatch()
	}()
	req, err := b.cfg.Request(t)
	if err != nil {
		res.Err = scheduler.Fatal(err)
		return
	}
	req.ExecutorEpoch = e.epoch
	req.RequiredIncarnation = t.StateAt.Incarnation
	var nodes []*rdd.Node
	if len(t.Cached) > 0 || len(t.Job.Final.Deps) > 0 {
		nodes = scheduler.Walk(t.Job.Final)
	}
	if len(t.Cached) > 0 {
		ord := make(map[int64]int32, len(nodes))
		for i, n := range nodes {
			ord[n.ID] = int32(i)
		}
		for _, in := range t.Cached {
			if o, ok := ord[in.Block.Node]; ok && in.At.Executor == e.id {
				req.Cached = append(req.Cached, &sluicev1.CachedBlock{Ordinal: o, Partition: int32(in.Block.Part)})
			}
		}
	}
	b.mu.Lock()
	for _, in := range req.Shuffles {
		for i, id := range in.MapLocations {
			if x := b.execs[id]; x != nil {
				in.MapLocations[i] = x.addr
			} else {
				in.MapLocations[i] = "" // gone: the fetch fails, the map reruns
			}
		}
	}
	b.mu.Unlock()
	client, err := b.cfg.Executor(e.addr)
	if err != nil {
		res.Err = classify(e.id, err)
		return
	}
	// A killed task's call is cancelled; the executor is told too, so the
	// task's context ends there (its job is over, nobody waits for it).
	stopKill := context.AfterFunc(ctx, func() {
		if e.ctx.Err() != nil || !t.Job.Finished() {
			return
		}
		kctx, kcancel := context.WithTimeout(b.ctx, 2*time.Second)
		defer kcancel()
		client.KillTask(kctx, &sluicev1.KillTaskRequest{JobId: req.GetJobId(), TaskId: t.ID})
	})
	defer stopKill()
	resp, err := client.RunTask(ctx, req)
	// An executor shared with other jobs may have its slots taken by
	// theirs: wait for one there (a healthy executor, not a lost one),
	// for up to busyWait before the task is tried elsewhere.
	for wait, start := 10*time.Millisecond, time.Now(); isBusy(err) && time.Since(start) < busyWait && ctx.Err() == nil; wait = min(2*wait, 200*time.Millisecond) {
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-timer.C:
			resp, err = client.RunTask(ctx, req)
		}
		timer.Stop()
	}
	if err != nil {
		b.mu.Lock()
		var ff *rdd.FetchFailedError
		if rc := b.running[t.ID]; rc != nil && rc.task == t {
			ff = rc.lostInput
		}
		b.mu.Unlock()
		if ff != nil {
			res.Err = ff // the executor is fine; its input is gone
			return
		}
		res.Err = classify(e.id, err)
		if errors.Is(res.Err, scheduler.ErrExecutorLost) {
			b.suspect(e)
		}
		return
	}
	res.Incarnation = resp.GetIncarnation()
	if !b.current(e, resp.GetExecutorEpoch()) {
		// The executor was declared lost (fenced) while the task ran.
		res.Err = fmt.Errorf("%w: %s: result from a fenced epoch %d dropped", scheduler.ErrExecutorLost, e.id, resp.GetExecutorEpoch())
		return
	}
	res.Metrics = scheduler.TaskMetrics{Duration: time.Duration(resp.GetDurationNs()), RecordsRead: resp.GetRecordsRead()}
	res.BlockNonEmpty = resp.GetBlockNonempty()
	res.Reports = resp.GetReports()
	node := func(cb *sluicev1.CachedBlock) (rdd.BlockRef, bool) {
		o, p := int(cb.GetOrdinal()), int(cb.GetPartition())
		if o < 0 || o >= len(nodes) || p < 0 || p >= nodes[o].Parts {
			return rdd.BlockRef{}, false
		}
		return rdd.BlockRef{Node: nodes[o].ID, Part: p}, true
	}
	for _, cb := range resp.GetCachedPuts() {
		if b, ok := node(cb); ok && nodes[cb.GetOrdinal()].Cached {
			res.CachedPuts = append(res.CachedPuts, b)
		}
	}
	switch {
	case resp.GetCacheMissing() != nil:
		b, ok := node(resp.GetCacheMissing())
		if !ok {
			res.Err = fmt.Errorf("executor %s: %s (an unknown cached partition)", e.id, resp.GetError())
			break
		}
		res.Err = &rdd.CacheMissError{NodeID: b.Node, Part: b.Part, Op: nodes[resp.GetCacheMissing().GetOrdinal()].String()}
	case resp.GetFetchFailed():
		res.Err = &rdd.FetchFailedError{ShuffleID: resp.GetFetchFailedShuffle(), MapPart: int(resp.GetFetchFailedMap()), Reason: resp.GetError()}
	case resp.GetFatal() && t.StateAt.Incarnation != 0 && resp.GetIncarnation() != t.StateAt.Incarnation:
		// The job process holding the task's state is gone (the daemon
		// refused to run it elsewhere): the state is lost, which a job with
		// a checkpoint recovers from by restarting.
		res.Err = scheduler.Fatal(&scheduler.StateLostError{State: t.State, Partition: t.Partition, Holder: t.StateAt,
			Reason: fmt.Sprintf("executor %s: %s", e.id, resp.GetError())})
	case resp.GetFatal():
		res.Err = scheduler.Fatal(fmt.Errorf("executor %s: %s", e.id, resp.GetError()))
	case resp.GetError() != "":
		res.Err = errors.New(resp.GetError())
	case len(resp.GetResultIpc()) > 0:
		res.Result, res.Err = b.cfg.Decode(t, resp.GetResultIpc())
	}
}

// lostInput returns the fetch failure of a task that reads a shuffle map
// output held by one of the lost executors, nil if it reads none.
func lostInput(t *scheduler.Task, lost []string) *rdd.FetchFailedError {
	ids := make([]int64, 0, len(t.Inputs))
	for id := range t.Inputs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		for mp, holder := range t.Inputs[id] {
			if slices.Contains(lost, holder) {
				return &rdd.FetchFailedError{ShuffleID: id, MapPart: mp, Reason: "executor " + holder + " holding it was lost"}
			}
		}
	}
	return nil
}

// current reports whether e is still the registered executor with the given
// epoch.
func (b *RemoteBackend) current(e *remoteExec, epoch int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	cur := b.execs[e.id]
	return cur == e && e.epoch == epoch
}

// busyWait bounds how long a task waits for a slot on an executor whose
// slots other jobs' tasks hold.
const busyWait = 30 * time.Second

// isBusy reports whether RunTask was refused because every slot of the
// executor is taken (by tasks of other jobs: this job counts its own).
func isBusy(err error) bool {
	st, ok := status.FromError(err)
	return ok && st.Code() == codes.ResourceExhausted && strings.Contains(st.Message(), slotsBusy)
}

// suspect forces an executor list refresh after a failed call, so a dead
// executor is noticed without waiting for the next tick.
func (b *RemoteBackend) suspect(e *remoteExec) {
	b.mu.Lock()
	e.avoidUntil = time.Now().Add(3 * time.Second)
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// Stop implements scheduler.Backend: it cancels the calls in flight and
// waits for them.
func (b *RemoteBackend) Stop() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cancel()
	b.wg.Wait()
}
