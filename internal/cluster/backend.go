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
	"sort"
	"sync"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	"github.com/sluicehq/sluice/rdd"
	"github.com/sluicehq/sluice/scheduler"
)

// BackendConfig configures a RemoteBackend.
type BackendConfig struct {
	// Driver is the coordinator, asked for the live executors.
	Driver sluicev1.DriverClient
	// Executor returns a client for the executor at addr (pooled).
	Executor func(addr string) (sluicev1.ExecutorClient, error)
	// Request describes a task for the wire; the backend adds the epoch.
	Request func(t *scheduler.Task) (*sluicev1.TaskRequest, error)
	// Decode turns a result task's Arrow IPC bytes into a record.
	Decode func(t *scheduler.Task, ipc []byte) (arrow.Record, error)
	// Lost is told when an executor (by address) is gone with its shuffle
	// outputs. It must not call back into the backend.
	Lost func(addr string)
	// Refresh is how often the executor list is fetched. Default 500ms.
	Refresh time.Duration
	Log     *slog.Logger
}

// RemoteBackend is the scheduler.Backend of a job driver: it runs tasks on
// the cluster's executors, as many at once as they have slots. Executors are
// named by their address, which is also where their shuffle outputs are
// fetched from. An executor that fails a call, or leaves the coordinator's
// list, or comes back with a new epoch, is lost: its running tasks fail with
// scheduler.ErrExecutorLost and the scheduler forgets its shuffle outputs.
type RemoteBackend struct {
	cfg    BackendConfig
	report func(scheduler.TaskResult)

	mu     sync.Mutex // guards everything below; never held while calling out
	execs  map[string]*remoteExec
	queue  []*scheduler.Task
	closed bool
	// placed pins each partition of operator state to the executor that
	// first ran it ("state/partition" -> address): the state lives there.
	placed map[string]string

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
	// avoidUntil keeps tasks off an executor whose call just failed, until
	// the coordinator either drops it (lost) or it proves alive again.
	avoidUntil time.Time
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
	return &RemoteBackend{cfg: cfg, execs: map[string]*remoteExec{}, placed: map[string]string{}, ctx: ctx, cancel: cancel, kick: make(chan struct{}, 1)}
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
		seen[in.GetAddress()] = true
		e := b.execs[in.GetAddress()]
		if e != nil && e.epoch != in.GetEpoch() {
			lost = append(lost, e.addr) // restarted: what it held is gone
			e = nil
		}
		if e == nil {
			e = &remoteExec{id: in.GetExecutorId(), addr: in.GetAddress(), epoch: in.GetEpoch()}
			b.execs[e.addr] = e
			b.cfg.Log.Info("cluster: executor joined", slog.String("executor", e.id), slog.String("addr", e.addr), slog.Int("slots", int(in.GetSlots())))
		}
		e.slots, e.draining = int(in.GetSlots()), in.GetDraining()
	}
	for addr, e := range b.execs {
		if !seen[addr] {
			lost = append(lost, addr)
			delete(b.execs, addr)
			b.cfg.Log.Warn("cluster: executor lost", slog.String("executor", e.id), slog.String("addr", addr))
		}
	}
	b.mu.Unlock()
	for _, addr := range lost {
		b.cfg.Lost(addr)
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

// dispatch starts queued tasks on executors with free slots, least loaded
// first (ties by address, so placement is stable). A task of a stage that
// uses operator state goes to the executor holding that state's partition,
// and waits for it if it is busy.
func (b *RemoteBackend) dispatch() {
	var fail []*scheduler.Task
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
			fail = append(fail, t)
		case e == nil:
			keep = append(keep, t)
		default:
			e.running++
			b.wg.Go(func() { b.run(t, e) })
		}
	}
	clear(b.queue[len(keep):])
	b.queue = keep
	b.mu.Unlock()
	for _, t := range fail {
		// Reported from another goroutine: dispatch may run in the
		// scheduler's own loop (Launch), which reads the reports.
		b.wg.Go(func() {
			b.report(scheduler.TaskResult{TaskID: t.ID, Err: fmt.Errorf(
				"cluster: %s: partition %d of operator state %q was on an executor that is gone; state cannot be recovered before checkpoints (issue 5/6)",
				t, t.Partition, scheduler.StateOf(t.Stage))})
		})
	}
}

// pick chooses an executor for t (nil: none free now). lost reports that
// t's state partition lived on an executor that is gone.
func (b *RemoteBackend) pick(t *scheduler.Task) (e *remoteExec, lost bool) {
	state := scheduler.StateOf(t.Stage)
	key := fmt.Sprintf("%s/%d", state, t.Partition)
	if state != "" {
		if addr, ok := b.placed[key]; ok {
			e := b.execs[addr]
			if e == nil {
				return nil, true
			}
			if e.running < e.slots && !time.Now().Before(e.avoidUntil) {
				return e, false
			}
			return nil, false
		}
	}
	var free []*remoteExec
	now := time.Now()
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
		return free[i].addr < free[j].addr
	})
	if state != "" {
		b.placed[key] = free[0].addr
	}
	return free[0], false
}

// CommitState tells every executor to commit the operator state batch bt
// wrote. An executor that cannot be reached fails the commit: its state is
// lost.
func (b *RemoteBackend) CommitState(ctx context.Context, jobID string, bt time.Time, reports map[string][]byte) error {
	b.mu.Lock()
	holders := map[string]bool{}
	for _, addr := range b.placed {
		holders[addr] = true
	}
	b.mu.Unlock()
	var errs []error
	for addr := range holders {
		client, err := b.cfg.Executor(addr)
		if err == nil {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err = client.CommitState(cctx, &sluicev1.CommitStateRequest{JobId: jobID, BatchTimeUnixNano: bt.UnixNano(), Reports: reports})
			cancel()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("commit state on %s: %w", addr, err))
		}
	}
	return errors.Join(errs...)
}

// run runs one task on e and reports it.
func (b *RemoteBackend) run(t *scheduler.Task, e *remoteExec) {
	res := scheduler.TaskResult{TaskID: t.ID, Executor: e.addr}
	defer func() {
		b.mu.Lock()
		e.running--
		b.mu.Unlock()
		b.report(res)
		b.dispatch()
	}()
	req, err := b.cfg.Request(t)
	if err != nil {
		res.Err = err
		return
	}
	req.ExecutorEpoch = e.epoch
	client, err := b.cfg.Executor(e.addr)
	if err != nil {
		res.Err = fmt.Errorf("%w: %s: %v", scheduler.ErrExecutorLost, e.addr, err)
		return
	}
	// A task of a job that ended (failed, or abandoned) is killed: its
	// call is cancelled, which the executor passes on to the task.
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	go func() { // ends with the task (ctx) at the latest
		select {
		case <-t.Job.Done():
			kctx, kcancel := context.WithTimeout(ctx, 2*time.Second)
			defer kcancel()
			client.KillTask(kctx, &sluicev1.KillTaskRequest{TaskId: t.ID})
			cancel()
		case <-ctx.Done():
		}
	}()
	resp, err := client.RunTask(ctx, req)
	if err != nil {
		res.Err = fmt.Errorf("%w: %s: %v", scheduler.ErrExecutorLost, e.addr, err)
		b.suspect(e)
		return
	}
	if !b.current(e, resp.GetExecutorEpoch()) {
		// The executor was declared lost (fenced) while the task ran.
		res.Err = fmt.Errorf("%w: %s: result from a fenced epoch %d dropped", scheduler.ErrExecutorLost, e.addr, resp.GetExecutorEpoch())
		return
	}
	res.Metrics = scheduler.TaskMetrics{Duration: time.Duration(resp.GetDurationNs()), RecordsRead: resp.GetRecordsRead()}
	res.Reports = resp.GetReports()
	switch {
	case resp.GetFetchFailed():
		res.Err = &rdd.FetchFailedError{ShuffleID: resp.GetFetchFailedShuffle(), MapPart: int(resp.GetFetchFailedMap()), Reason: resp.GetError()}
	case resp.GetError() != "":
		res.Err = errors.New(resp.GetError())
	case len(resp.GetResultIpc()) > 0:
		res.Result, res.Err = b.cfg.Decode(t, resp.GetResultIpc())
	}
}

// current reports whether e is still the registered executor at its address
// with the given epoch.
func (b *RemoteBackend) current(e *remoteExec, epoch int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	cur := b.execs[e.addr]
	return cur == e && e.epoch == epoch
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

// Stop implements scheduler.Backend: it waits for tasks in flight.
func (b *RemoteBackend) Stop() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cancel()
	b.wg.Wait()
}
