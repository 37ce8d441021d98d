package dstream

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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

// The roles ("" is local mode).
const (
	roleDriver   = "driver"
	roleExecutor = "executor"
)

// resolver finds tasks' jobs in an executor's copy of the graph.
type resolver struct {
	c          *Context
	pool       *cluster.Pool
	jobID      string
	blocksAddr string // the job driver's JobDriver service
	mu         sync.Mutex
	started    bool
	batches    map[time.Time]*batch
	latest     time.Time
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
func (r *resolver) Resolve(ctx context.Context, zero, bt time.Time, index, sub int, blocksAddr string) (cluster.Resolved, error) {
	c := r.c
	r.mu.Lock()
	r.blocksAddr = blocksAddr
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
		blocksAddr, stopInputs, err := c.serveInputs(env, log)
		if err != nil {
			return err
		}
		defer stopInputs()
		rb := cluster.NewRemoteBackend(cluster.BackendConfig{
			Driver:   sluicev1.NewDriverClient(conn),
			Executor: pool.Executor,
			Request: func(t *scheduler.Task) (*sluicev1.TaskRequest, error) {
				req, err := cluster.Request(env.JobID, env.BinarySHA, args, c.zeroTime, t)
				if req != nil {
					req.DriverBlocksAddress = blocksAddr
				}
				return req, err
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
		c.resolver = &resolver{c: c, batches: map[time.Time]*batch{}, pool: pool, jobID: env.JobID}
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

// inputServer serves, in the driver role, the input the job's sources
// received, to executors (the JobDriver service).
type inputServer struct {
	sluicev1.UnimplementedJobDriverServer
	c *Context
}

// recordsSource is an input stream whose records live in this process.
type recordsSource interface {
	recordsAt(t time.Time) ([]arrow.Record, bool)
}

func (s *inputServer) FetchInput(req *sluicev1.FetchInputRequest, stream sluicev1.JobDriver_FetchInputServer) error {
	c := s.c
	i := int(req.GetInput())
	if i < 0 || i >= len(c.inputs) {
		return status.Errorf(codes.InvalidArgument, "input %d out of range [0,%d)", i, len(c.inputs))
	}
	src, ok := c.inputs[i].(recordsSource)
	if !ok {
		return status.Errorf(codes.InvalidArgument, "input %d (%s) keeps no records", i, c.inputs[i].base().name)
	}
	t := time.Unix(0, req.GetBatchTimeUnixNano())
	recs, ok := src.recordsAt(t)
	if !ok {
		return status.Errorf(codes.NotFound, "the input of %s at %s is no longer remembered", c.inputs[i].base().name, fmtTime(t))
	}
	defer func() {
		for _, r := range recs {
			if r != nil {
				r.Release()
			}
		}
	}()
	if len(recs) == 0 {
		return stream.Send(&sluicev1.InputChunk{Partitions: 0, Last: true})
	}
	for p, r := range recs {
		var b []byte
		if r != nil {
			var err error
			if b, err = cluster.EncodeIPC(r, c.cfg.Allocator); err != nil {
				return status.Errorf(codes.Internal, "encode input: %v", err)
			}
		}
		for first := true; first || len(b) > 0; first = false {
			n := min(len(b), cluster.ChunkBytes)
			if err := stream.Send(&sluicev1.InputChunk{Partition: int32(p), Partitions: int32(len(recs)), Data: b[:n], Last: n == len(b)}); err != nil {
				return err
			}
			b = b[n:]
		}
	}
	return nil
}

// fetchInput gets, in the executor role, one source's input of batch t from
// the job's driver.
func (c *Context) fetchInput(input int, t time.Time) ([]arrow.Record, int64, error) {
	addr := c.resolver.blocksAddr
	if addr == "" {
		return nil, 0, fmt.Errorf("dstream: no address to fetch the driver's input from")
	}
	conn, err := c.resolver.pool.Conn(addr)
	if err != nil {
		return nil, 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	stream, err := sluicev1.NewJobDriverClient(conn).FetchInput(ctx, &sluicev1.FetchInputRequest{
		JobId: c.resolver.jobID, Input: int32(input), BatchTimeUnixNano: t.UnixNano(),
	})
	if err != nil {
		return nil, 0, err
	}
	var recs []arrow.Record
	fail := func(err error) ([]arrow.Record, int64, error) {
		for _, r := range recs {
			if r != nil {
				r.Release()
			}
		}
		return nil, 0, fmt.Errorf("dstream: fetch input %d of %s from the driver: %w", input, fmtTime(t), err)
	}
	var buf []byte
	var n int64
	for {
		ch, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fail(err)
		}
		if ch.GetPartitions() == 0 {
			continue
		}
		if recs == nil {
			recs = make([]arrow.Record, ch.GetPartitions())
		}
		p := int(ch.GetPartition())
		if p < 0 || p >= len(recs) || int(ch.GetPartitions()) != len(recs) {
			return fail(fmt.Errorf("chunk for partition %d of %d", p, ch.GetPartitions()))
		}
		buf = append(buf, ch.GetData()...)
		if !ch.GetLast() {
			continue
		}
		if len(buf) > 0 {
			rec, err := cluster.DecodeIPC(buf, c.cfg.Allocator)
			if err != nil {
				return fail(err)
			}
			recs[p] = rec
			n += rec.NumRows()
		}
		buf = nil
	}
	return recs, n, nil
}

// serveInputs starts the JobDriver service on the host the coordinator is
// reached at (the job driver runs beside it), on a free port.
func (c *Context) serveInputs(env cluster.Env, log *slog.Logger) (addr string, stop func(), err error) {
	host, _, err := net.SplitHostPort(env.DriverAddr)
	if err != nil {
		return "", nil, fmt.Errorf("dstream: SLUICE_DRIVER_ADDR %q: %w", env.DriverAddr, err)
	}
	lis, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", nil, fmt.Errorf("dstream: serve input to executors: %w", err)
	}
	secret, err := cluster.SecretFromEnv()
	if err == nil {
		secret, err = secret.WithTLS(cluster.TLSFromEnv())
	}
	if err != nil {
		lis.Close()
		return "", nil, err
	}
	srv := grpc.NewServer(secret.ServerOptions(log)...)
	sluicev1.RegisterJobDriverServer(srv, &inputServer{c: c})
	done := make(chan struct{})
	go func() { // owned by runCluster, which calls stop
		defer close(done)
		srv.Serve(lis)
	}()
	return lis.Addr().String(), func() { srv.Stop(); <-done }, nil
}
