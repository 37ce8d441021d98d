package cluster

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	"github.com/sluicehq/sluice/rdd"
	"github.com/sluicehq/sluice/scheduler"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// listDriver answers ListExecutors with the executors it is given.
type listDriver struct {
	sluicev1.DriverClient
	mu    sync.Mutex
	execs []*sluicev1.ExecutorInfo
}

func (d *listDriver) ListExecutors(context.Context, *sluicev1.ListExecutorsRequest, ...grpc.CallOption) (*sluicev1.ListExecutorsResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return &sluicev1.ListExecutorsResponse{Executors: d.execs}, nil
}

func (d *listDriver) set(execs ...*sluicev1.ExecutorInfo) {
	d.mu.Lock()
	d.execs = execs
	d.mu.Unlock()
}

// blockingExecutor runs every task until its call is cancelled.
type blockingExecutor struct {
	sluicev1.ExecutorClient
	started chan struct{}
}

func (e *blockingExecutor) RunTask(ctx context.Context, _ *sluicev1.TaskRequest, _ ...grpc.CallOption) (*sluicev1.TaskResponse, error) {
	close(e.started)
	<-ctx.Done()
	return nil, ctx.Err()
}

func (e *blockingExecutor) KillTask(context.Context, *sluicev1.KillTaskRequest, ...grpc.CallOption) (*sluicev1.KillTaskResponse, error) {
	return &sluicev1.KillTaskResponse{}, nil
}

// A task on a healthy executor that reads map output of an executor that is
// lost is stopped at once and fails as the fetch would (a fetch failure, so
// the map output is recomputed), instead of waiting for gRPC to give up on
// the lost executor.
func TestRemoteBackendStopsTasksReadingALostExecutor(t *testing.T) {
	drv := &listDriver{}
	drv.set(&sluicev1.ExecutorInfo{ExecutorId: "e0", Address: "a0", Slots: 1, Epoch: 1},
		&sluicev1.ExecutorInfo{ExecutorId: "e1", Address: "a1", Slots: 1, Epoch: 2})
	e1 := &blockingExecutor{started: make(chan struct{})}
	var lostMu sync.Mutex
	var lost []string
	b := NewRemoteBackend(BackendConfig{
		Driver: drv,
		Executor: func(addr string) (sluicev1.ExecutorClient, error) {
			return e1, nil
		},
		Request: func(t *scheduler.Task) (*sluicev1.TaskRequest, error) {
			return &sluicev1.TaskRequest{JobId: "j", TaskId: t.ID}, nil
		},
		Lost: func(id string) {
			lostMu.Lock()
			lost = append(lost, id)
			lostMu.Unlock()
		},
		StateLocations: func() map[string]scheduler.Location { return nil },
		Refresh:        time.Hour, // refreshed by hand
	})
	results := make(chan scheduler.TaskResult, 1)
	b.Start(func(r scheduler.TaskResult) { results <- r })
	defer b.Stop()
	node := &rdd.Node{ID: 1, Op: "reduce", Parts: 1}
	job := &scheduler.Job{Final: node, Desc: "t"}
	task := &scheduler.Task{ID: 9, Job: job, Stage: &scheduler.Stage{Node: node, NumTasks: 1}, Inputs: map[int64][]string{7: {"e1", "e0"}}}
	// e0 is busy, so the task goes to e1.
	b.mu.Lock()
	b.execs["e0"].running = 1
	b.mu.Unlock()
	b.Launch(task)
	select {
	case <-e1.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the task never started on e1")
	}
	drv.set(&sluicev1.ExecutorInfo{ExecutorId: "e1", Address: "a1", Slots: 1, Epoch: 2})
	b.refresh()
	select {
	case r := <-results:
		ff, ok := rdd.IsFetchFailed(r.Err)
		if !ok || ff.ShuffleID != 7 || ff.MapPart != 1 {
			t.Fatalf("result error %v, want a fetch failure of shuffle 7 map 1", r.Err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the task reading the lost executor's output was not stopped")
	}
	lostMu.Lock()
	defer lostMu.Unlock()
	if len(lost) != 1 || lost[0] != "e0" {
		t.Errorf("lost executors reported: %v", lost)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if e := b.execs["e1"]; e == nil || !e.avoidUntil.IsZero() {
		t.Errorf("the healthy executor was suspected: %+v", e)
	}
}

// A lost executor's own calls end at once, as executor-lost failures
// (retried elsewhere), instead of when gRPC gives up on the connection.
func TestRemoteBackendFailsALostExecutorsCalls(t *testing.T) {
	drv := &listDriver{}
	drv.set(&sluicev1.ExecutorInfo{ExecutorId: "e0", Address: "a0", Slots: 1, Epoch: 1})
	e0 := &blockingExecutor{started: make(chan struct{})}
	b := NewRemoteBackend(BackendConfig{
		Driver:   drv,
		Executor: func(string) (sluicev1.ExecutorClient, error) { return e0, nil },
		Request: func(t *scheduler.Task) (*sluicev1.TaskRequest, error) {
			return &sluicev1.TaskRequest{JobId: "j", TaskId: t.ID}, nil
		},
		Lost:           func(string) {},
		StateLocations: func() map[string]scheduler.Location { return nil },
		Refresh:        time.Hour,
	})
	results := make(chan scheduler.TaskResult, 1)
	b.Start(func(r scheduler.TaskResult) { results <- r })
	defer b.Stop()
	node := &rdd.Node{ID: 1, Op: "map", Parts: 1}
	b.Launch(&scheduler.Task{ID: 3, Job: &scheduler.Job{Final: node, Desc: "t"}, Stage: &scheduler.Stage{Node: node, NumTasks: 1}})
	select {
	case <-e0.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the task never started")
	}
	drv.set() // e0 missed its heartbeats
	b.refresh()
	select {
	case r := <-results:
		if !errors.Is(r.Err, scheduler.ErrExecutorLost) {
			t.Fatalf("result error %v, want executor lost", r.Err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the lost executor's call was not ended")
	}
}

// refusingExecutor answers every task as a daemon whose job process holding
// the task's state is gone: fatal, incarnation 0.
type refusingExecutor struct{ sluicev1.ExecutorClient }

func (refusingExecutor) RunTask(_ context.Context, req *sluicev1.TaskRequest, _ ...grpc.CallOption) (*sluicev1.TaskResponse, error) {
	return &sluicev1.TaskResponse{TaskId: req.GetTaskId(), ExecutorEpoch: 1, Fatal: true,
		Error: "the task needs operator state held by incarnation 1048577 of job j's process, which is gone (now 0): the state is lost"}, nil
}

// A task whose state holder's job process is gone fails with a
// StateLostError (so that a checkpointed job restarts to recover it), not
// a plain fatal task error; a fatal error of a task without state stays
// what it was.
func TestRemoteBackendStateHolderGoneIsStateLost(t *testing.T) {
	drv := &listDriver{}
	drv.set(&sluicev1.ExecutorInfo{ExecutorId: "e0", Address: "a0", Slots: 1, Epoch: 1})
	b := NewRemoteBackend(BackendConfig{
		Driver:   drv,
		Executor: func(string) (sluicev1.ExecutorClient, error) { return refusingExecutor{}, nil },
		Request: func(t *scheduler.Task) (*sluicev1.TaskRequest, error) {
			return &sluicev1.TaskRequest{JobId: "j", TaskId: t.ID}, nil
		},
		Lost:           func(string) {},
		StateLocations: func() map[string]scheduler.Location { return nil },
		Refresh:        time.Hour,
	})
	results := make(chan scheduler.TaskResult, 2)
	b.Start(func(r scheduler.TaskResult) { results <- r })
	defer b.Stop()
	node := &rdd.Node{ID: 1, Op: "updateStateByKey(totals)", Parts: 2, State: "totals"}
	for i, at := range []scheduler.Location{{Executor: "e0", Incarnation: 1048577}, {}} {
		task := &scheduler.Task{ID: int64(i), Job: &scheduler.Job{Final: node, Desc: "t"}, Stage: &scheduler.Stage{Node: node, NumTasks: 2}, Partition: i}
		if at.Incarnation != 0 {
			task.State, task.StateAt = "totals", at
		}
		b.Launch(task)
		var r scheduler.TaskResult
		select {
		case r = <-results:
		case <-time.After(10 * time.Second):
			t.Fatal("no result")
		}
		var sl *scheduler.StateLostError
		if got := errors.As(r.Err, &sl); got != (at.Incarnation != 0) || !scheduler.IsFatal(r.Err) {
			t.Errorf("task %d (state at %v): error %v; a StateLostError: %v, want %v; fatal: %v", i, at, r.Err, got, at.Incarnation != 0, scheduler.IsFatal(r.Err))
		}
		if sl != nil && (sl.State != "totals" || sl.Partition != 0 || sl.Holder != at) {
			t.Errorf("StateLostError %+v does not name the state, partition and holder", sl)
		}
	}
}

// busyExecutor refuses the first tasks as a daemon whose slots other jobs'
// tasks hold, then runs them.
type busyExecutor struct {
	sluicev1.ExecutorClient
	mu      sync.Mutex
	refusal int // refusals left
	calls   int
}

func (e *busyExecutor) RunTask(_ context.Context, req *sluicev1.TaskRequest, _ ...grpc.CallOption) (*sluicev1.TaskResponse, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls++
	if e.refusal > 0 {
		e.refusal--
		return nil, status.Errorf(codes.ResourceExhausted, "executor has 1 %s", slotsBusy)
	}
	return &sluicev1.TaskResponse{TaskId: req.GetTaskId(), ExecutorEpoch: 1}, nil
}

// An executor whose slots are taken by another job's tasks is busy, not
// lost: the task waits for a slot there and succeeds, with no loss counted
// and no executor avoided.
func TestRemoteBackendWaitsForABusyExecutor(t *testing.T) {
	drv := &listDriver{}
	drv.set(&sluicev1.ExecutorInfo{ExecutorId: "e0", Address: "a0", Slots: 1, Epoch: 1})
	e0 := &busyExecutor{refusal: 5}
	b := NewRemoteBackend(BackendConfig{
		Driver:   drv,
		Executor: func(string) (sluicev1.ExecutorClient, error) { return e0, nil },
		Request: func(t *scheduler.Task) (*sluicev1.TaskRequest, error) {
			return &sluicev1.TaskRequest{JobId: "j", TaskId: t.ID}, nil
		},
		Lost:           func(string) {},
		StateLocations: func() map[string]scheduler.Location { return nil },
		Refresh:        time.Hour,
	})
	results := make(chan scheduler.TaskResult, 1)
	b.Start(func(r scheduler.TaskResult) { results <- r })
	defer b.Stop()
	node := &rdd.Node{ID: 1, Op: "map", Parts: 1}
	b.Launch(&scheduler.Task{ID: 7, Job: &scheduler.Job{Final: node, Desc: "t"}, Stage: &scheduler.Stage{Node: node, NumTasks: 1}})
	select {
	case r := <-results:
		if r.Err != nil {
			t.Fatalf("task on a busy executor: %v, want success once a slot is free", r.Err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no result")
	}
	e0.mu.Lock()
	calls := e0.calls
	e0.mu.Unlock()
	b.mu.Lock()
	avoided := time.Now().Before(b.execs["e0"].avoidUntil)
	b.mu.Unlock()
	if calls != 6 || avoided {
		t.Fatalf("%d calls (want 6: five refused, one run); executor avoided: %v", calls, avoided)
	}
}
