package dstream

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"google.golang.org/grpc"

	"github.com/sluicehq/sluice/internal/cluster"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	"github.com/sluicehq/sluice/rdd"
	"github.com/sluicehq/sluice/scheduler"
)

// Cluster roles. A job binary submitted with `driver submit` runs twice over:
// once as the job's driver (started by `driver serve`, SLUICE_ROLE=driver),
// which generates batches and schedules their tasks on the executors, and
// once per executor (started by the executor daemon, SLUICE_ROLE=executor),
// which rebuilds the same graph and runs the tasks it is sent. Every process
// runs the user's main up to Main, so closures need no serialization: a task
// names its job by batch time and place, and its stage by ordinals in the
// lineage (see scheduler.Walk), checked against a fingerprint.

const (
	roleLocal    = ""
	roleDriver   = "driver"
	roleExecutor = "executor"
)

// clusterCheck refuses, when the job runs in a cluster role, the parts of a
// graph that cluster mode does not support yet.
func (c *Context) clusterCheck() error {
	if c.role == roleLocal {
		return nil
	}
	for _, in := range c.inputs {
		if l, ok := in.(interface{ localOnly() bool }); ok && l.localOnly() {
			return fmt.Errorf("dstream: %s keeps its input in the driver process, which cluster mode does not ship to executors yet; use it in local mode (--master local[N]), or a source whose tasks read their input themselves (Rate)", in.base().name)
		}
	}
	return nil
}

// resolver finds tasks' jobs in an executor's copy of the graph.
type resolver struct {
	c       *Context
	mu      sync.Mutex
	started bool
	batches map[time.Time]*batch
	latest  time.Time
	// Shuffle outputs this process wrote, by batch: the driver forgets a
	// batch's shuffles once it is done, so they are deleted then.
	written map[time.Time][]int64
	prune   func(ids []int64)
}

func (r *resolver) wrote(bt time.Time, id int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.written == nil {
		r.written = map[time.Time][]int64{}
	}
	r.written[bt] = append(r.written[bt], id)
}

// Commit implements cluster.Resolver: the batch's outputs all succeeded, so
// the state this process wrote for it becomes the committed state.
func (r *resolver) Commit(bt time.Time, reports map[string][]byte) error {
	r.c.onReports(nil, reports)
	for _, op := range r.c.stateful {
		op.commit(bt)
	}
	return nil
}

// Resolve implements cluster.Resolver: it generates the batch (once) and
// runs the output's function in capture mode up to the wanted job.
func (r *resolver) Resolve(ctx context.Context, zero, bt time.Time, index, sub int) (cluster.Resolved, error) {
	c := r.c
	r.mu.Lock()
	if !r.started {
		if err := c.start(zero); err != nil {
			r.mu.Unlock()
			return cluster.Resolved{}, err
		}
		r.started = true
	}
	if !zero.Equal(c.zeroTime) {
		r.mu.Unlock()
		return cluster.Resolved{}, fmt.Errorf("dstream: task of a job started at %v sent to an executor process of a job started at %v", zero, c.zeroTime)
	}
	if err := c.checkBatchTime(bt); err != nil {
		r.mu.Unlock()
		return cluster.Resolved{}, err
	}
	b := r.batches[bt]
	if b == nil {
		b = c.generate(bt)
		r.batches[bt] = b
		if bt.After(r.latest) {
			r.latest = bt
			// Batches run one after another: once batch t is sent, the
			// ones before it are done, and only windows look back.
			c.cleanup(bt.Add(-c.cfg.BatchInterval))
			for t := range r.batches {
				if !t.After(bt.Add(-c.maxRemember - c.cfg.BatchInterval)) {
					delete(r.batches, t)
				}
			}
			for t, ids := range r.written {
				if t.Before(bt) && r.prune != nil {
					r.prune(ids)
					delete(r.written, t)
				}
			}
		}
	}
	r.mu.Unlock()
	if b.genErr != nil {
		return cluster.Resolved{}, b.genErr
	}
	if index < 0 || index >= len(b.jobs) {
		return cluster.Resolved{}, fmt.Errorf("dstream: batch %s has %d jobs in this executor's graph, not job %d: the executor's job builds a different graph", fmtTime(bt), len(b.jobs), index)
	}
	j := b.jobs[index]
	cp := &capture{sub: sub}
	_ = j.run(&Batch{ctx: ctx, sc: c, time: bt, op: j.op.name, index: index, capture: cp})
	if cp.final == nil {
		return cluster.Resolved{}, fmt.Errorf("dstream: %s: cluster mode runs only the first job of an output's function per batch (job %d asked)", j.op.name, sub)
	}
	return cluster.Resolved{Final: cp.final, Func: cp.fn}, nil
}

// runCluster runs the job in the cluster role its environment names.
func (c *Context) runCluster(ctx context.Context, env cluster.Env) error {
	if err := env.Validate(); err != nil {
		return err
	}
	log := c.cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With(slog.String("job", env.JobID), slog.String("role", env.Role))
	dial, err := cluster.ClientOptionsFromEnv()
	if err != nil {
		return err
	}
	pool := cluster.NewPool(dial...)
	defer pool.Close()
	switch env.Role {
	case roleDriver:
		conn, err := pool.Conn(env.DriverAddr)
		if err != nil {
			return fmt.Errorf("dstream: connect to the driver at %s: %w", env.DriverAddr, err)
		}
		c.role = roleDriver
		args := append([]string(nil), c.args...)
		rb := cluster.NewRemoteBackend(cluster.BackendConfig{
			Driver:   sluicev1.NewDriverClient(conn),
			Executor: pool.Executor,
			Request: func(t *scheduler.Task) (*sluicev1.TaskRequest, error) {
				return cluster.Request(env.JobID, env.BinarySHA, args, c.zeroTime, t)
			},
			Decode: func(_ *scheduler.Task, b []byte) (arrow.Record, error) { return cluster.DecodeIPC(b, c.cfg.Allocator) },
			Lost: func(addr string) {
				if s := c.schedRef.Load(); s != nil {
					s.ExecutorLost(addr)
				}
			},
			Log: log,
		})
		c.backend = rb
		c.commitRemote = func(ctx context.Context, t time.Time, reports map[string][]byte) error {
			return rb.CommitState(ctx, env.JobID, t, reports)
		}
		return c.Run(ctx)
	case roleExecutor:
		c.role = roleExecutor
		c.resolver = &resolver{c: c, batches: map[time.Time]*batch{}}
		defer c.Stop()
		srvOpts, err := cluster.ServerOptionsFromEnv()
		if err != nil {
			return err
		}
		store, shuffles, err := cluster.NewExecutorShuffle(env, pool)
		if err != nil {
			return err
		}
		c.resolver.prune = func(ids []int64) { store.RemoveShuffles(env.JobID, ids...) }
		blocks := rdd.NewMemBlocks()
		defer blocks.Close()
		srv := grpc.NewServer(srvOpts...)
		sluicev1.RegisterExecutorServer(srv, cluster.NewTaskServer(cluster.TaskServerConfig{
			Resolver: c.resolver,
			Shuffle:  shuffles,
			Blocks:   blocks,
			Alloc:    c.cfg.Allocator,
			Wrote:    c.resolver.wrote,
		}))
		return cluster.ServeUnix(ctx, env.TaskSocket, srv, log)
	}
	return nil
}
