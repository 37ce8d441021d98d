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

// resolver finds tasks' jobs in an executor's copy of the graph. Its lock
// is never held across I/O: generating a batch builds lineage only, and the
// driver's input is fetched inside the tasks that read it.
type resolver struct {
	c     *Context
	pool  *cluster.Pool
	jobID string

	mu         sync.Mutex
	blocksAddr string // the job driver's JobDriver service
	started    bool
	batches    map[time.Time]*batch
	latest     time.Time
	// inputParts holds the partition counts of the driver's input batches,
	// as tasks list them: the lineage of a batch is rebuilt from them,
	// whatever batches this process saw before. partsMu guards it (taken
	// under mu, by generation).
	partsMu    sync.Mutex
	inputParts map[inputKey]int
	// Shuffle outputs this process wrote, by batch: the driver forgets a
	// batch's shuffles once it is done, so they are deleted then.
	written map[time.Time][]int64
	prune   func(ids []int64)
	// snapshot is the checkpoint snapshot state partitions restart from
	// (tasks name it; zero: none); restore loads each partition once.
	snapshot time.Time
	restore  restorer
}

func (r *resolver) snapshotTime() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.snapshot
}

type inputKey struct {
	input int
	t     int64 // batch time, unix nanoseconds
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
// the state this process wrote for it becomes the committed state; at a
// checkpoint, the partitions named are sent to the job driver.
func (r *resolver) Commit(ctx context.Context, bt time.Time, reports map[string][]byte, snapshot []string) error {
	r.c.onReports(nil, reports)
	for _, op := range r.c.stateful {
		op.commit(bt)
	}
	if len(snapshot) > 0 {
		return r.c.sendSnapshot(ctx, bt, snapshot)
	}
	return nil
}

// inputPartsOf returns the partition count of a driver input batch, false
// if no task listed it (the source had no input then).
func (r *resolver) inputPartsOf(input int, t time.Time) (int, bool) {
	r.partsMu.Lock()
	defer r.partsMu.Unlock()
	n, ok := r.inputParts[inputKey{input, t.UnixNano()}]
	return n, ok
}

func (r *resolver) driverAddr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.blocksAddr
}

// Resolve implements cluster.Resolver: it generates the batch (once) and
// rebuilds the job's function from its action. No output function runs.
func (r *resolver) Resolve(ctx context.Context, spec cluster.TaskSpec) (cluster.Resolved, error) {
	c := r.c
	bt := spec.BatchTime
	r.mu.Lock()
	if spec.DriverAddr != "" {
		r.blocksAddr = spec.DriverAddr
	}
	if !spec.StateSnapshot.IsZero() {
		r.snapshot = spec.StateSnapshot
	}
	if !r.started {
		if err := c.start(spec.Zero); err != nil {
			r.mu.Unlock()
			return cluster.Resolved{}, err
		}
		r.started = true
	}
	if !spec.Zero.Equal(c.zeroTime) {
		r.mu.Unlock()
		return cluster.Resolved{}, fmt.Errorf("dstream: task of a job started at %v sent to an executor process of a job started at %v", spec.Zero, c.zeroTime)
	}
	if err := c.checkBatchTime(bt); err != nil {
		r.mu.Unlock()
		return cluster.Resolved{}, err
	}
	r.partsMu.Lock()
	for _, in := range spec.Inputs {
		r.inputParts[inputKey{int(in.GetInput()), in.GetBatchTimeUnixNano()}] = int(in.GetPartitions())
	}
	r.partsMu.Unlock()
	b := r.batches[bt]
	if b == nil {
		b = c.generate(bt)
		r.batches[bt] = b
		if bt.After(r.latest) {
			r.latest = bt
			// Batches run one after another: once batch t is sent, the
			// ones before it are done, and only windows look back.
			c.cleanup(bt.Add(-c.cfg.BatchInterval))
			horizon := bt.Add(-c.maxRemember - c.cfg.BatchInterval)
			for t := range r.batches {
				if !t.After(horizon) {
					delete(r.batches, t)
				}
			}
			r.partsMu.Lock()
			for k := range r.inputParts {
				if k.t <= horizon.UnixNano() {
					delete(r.inputParts, k)
				}
			}
			r.partsMu.Unlock()
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
	if spec.JobIndex < 0 || spec.JobIndex >= len(b.jobs) {
		return cluster.Resolved{}, fmt.Errorf("%w: batch %s has %d jobs in this executor's graph, not job %d: the executor's job builds a different graph",
			cluster.ErrGraphMismatch, fmtTime(bt), len(b.jobs), spec.JobIndex)
	}
	j := b.jobs[spec.JobIndex]
	final, fn, err := j.resolve(action{kind: spec.Action, arg: spec.ActionArg}, spec.JobIndex, spec.JobSub)
	if err != nil {
		return cluster.Resolved{}, fmt.Errorf("%s: %w", j.op.name, err)
	}
	return cluster.Resolved{Final: final, Func: fn}, nil
}

// batchInputs lists, in the driver role, the driver-held input batches the
// lineage of batch t reads, for the tasks of t: executors rebuild the same
// lineage from them. Called by generate with graphMu held.
func (c *Context) noteBatchInputs(t time.Time, finals []*rdd.Node) {
	if c.role != roleDriver {
		return
	}
	var refs []*sluicev1.InputRef
	seen := map[*rdd.Node]bool{}
	for _, f := range finals {
		for _, n := range scheduler.Walk(f) {
			if ref, ok := c.inputNodes[n.ID]; ok && !seen[n] {
				seen[n] = true
				refs = append(refs, ref)
			}
		}
	}
	c.inputsMu.Lock()
	if c.batchInputs == nil {
		c.batchInputs = map[time.Time][]*sluicev1.InputRef{}
	}
	c.batchInputs[t] = refs
	c.inputsMu.Unlock()
}

func (c *Context) inputsOf(t time.Time) []*sluicev1.InputRef {
	c.inputsMu.Lock()
	defer c.inputsMu.Unlock()
	return c.batchInputs[t]
}

// forgetBatchInputs drops the input lists of batches up to before.
func (c *Context) forgetBatchInputs(before time.Time) {
	c.inputsMu.Lock()
	defer c.inputsMu.Unlock()
	for t := range c.batchInputs {
		if !t.After(before) {
			delete(c.batchInputs, t)
		}
	}
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
		c.role, c.clusterAddr = roleDriver, env.DriverAddr
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
					req.Inputs = c.inputsOf(t.Job.BatchTime)
					req.Parallelism = int32(c.Parallelism())
					req.DriverAttempt = int32(env.Attempt)
					if s := c.restoreSnapshotOf(); !s.IsZero() {
						req.StateSnapshotUnixNano = s.UnixNano()
					}
				}
				return req, err
			},
			Decode: func(_ *scheduler.Task, b []byte) (arrow.Record, error) { return cluster.DecodeIPC(b, c.cfg.Allocator) },
			Lost: func(id string) {
				if t := c.obs.tracker.Load(); t != nil {
					t.executorLost(id)
				}
				if s := c.schedRef.Load(); s != nil {
					s.ExecutorLost(id)
				}
			},
			StateLocations: func() map[string]scheduler.Location {
				if s := c.schedRef.Load(); s != nil {
					return s.StateLocations()
				}
				return nil
			},
			Log: log,
		})
		c.backend = rb
		c.obs.remote.Store(rb)
		c.obs.clusterJob = env.JobID
		stopUI, err := c.serveClusterUI(log)
		if err != nil {
			return err
		}
		defer stopUI()
		c.commitRemote = func(ctx context.Context, t time.Time, reports map[string][]byte, snapshot bool) error {
			return rb.CommitState(ctx, env.JobID, t, reports, snapshot)
		}
		return c.Run(ctx)
	case roleExecutor:
		c.role = roleExecutor
		c.resolver = &resolver{c: c, batches: map[time.Time]*batch{}, inputParts: map[inputKey]int{}, pool: pool, jobID: env.JobID}
		c.setBroadcastFetcher(c.fetchBroadcast)
		defer c.Stop()
		srvOpts, err := cluster.ServerOptionsFromEnv()
		if err != nil {
			return err
		}
		store, shuffles, err := cluster.NewExecutorShuffle(env, pool)
		if err != nil {
			return err
		}
		defer store.WaitRemovals()
		c.resolver.prune = func(ids []int64) { store.RemoveShufflesLater(env.JobID, ids...) }
		srv := grpc.NewServer(srvOpts...)
		sluicev1.RegisterExecutorServer(srv, cluster.NewTaskServer(cluster.TaskServerConfig{
			Resolver: c.resolver,
			Shuffle:  shuffles,
			// The context's own store: partitions go when their stream
			// forgets its RDDs, as in the driver.
			Blocks: contextBlocks{c},
			Alloc:  c.cfg.Allocator,
			Wrote:  c.resolver.wrote,
		}))
		return cluster.ServeUnix(ctx, env.TaskSocket, srv, log)
	}
	return nil
}

// inputServer serves, in the driver role, the input the job's sources
// received, to executors (the JobDriver service).
type inputServer struct {
	sluicev1.UnimplementedJobDriverServer
	c     *Context
	jobID string // the job this driver runs; requests name it
}

// checkJob refuses a request that names another job: an executor of two
// jobs must never be served (or write) the wrong one's data.
func (s *inputServer) checkJob(id string) error {
	if id == "" {
		return status.Error(codes.InvalidArgument, "the job id is empty: name the job this driver runs")
	}
	if id != s.jobID {
		return status.Errorf(codes.NotFound, "this is the job driver of job %q, not of %s", s.jobID, cluster.Quote(id))
	}
	return nil
}

// recordsSource is an input stream whose records live in this process.
type recordsSource interface {
	recordsAt(t time.Time) ([]arrow.Record, bool)
}

func (s *inputServer) FetchInput(req *sluicev1.FetchInputRequest, stream sluicev1.JobDriver_FetchInputServer) error {
	if err := s.checkJob(req.GetJobId()); err != nil {
		return err
	}
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
	one := int(req.GetPartition())
	if req.GetOnePartition() && (one < 0 || one >= len(recs)) {
		return status.Errorf(codes.InvalidArgument, "partition %d of the input of %s at %s: it has %d", one, c.inputs[i].base().name, fmtTime(t), len(recs))
	}
	for p, r := range recs {
		if req.GetOnePartition() && p != one {
			continue
		}
		var b []byte
		if r != nil {
			var err error
			if b, err = cluster.EncodeIPC(r, c.cfg.Allocator); err != nil {
				return status.Errorf(codes.Internal, "encode input: %v", err)
			}
		}
		size := int64(len(b))
		for first := true; first || len(b) > 0; first = false {
			n := min(len(b), cluster.ChunkBytes)
			ch := &sluicev1.InputChunk{Partition: int32(p), Partitions: int32(len(recs)), Data: b[:n], Last: n == len(b)}
			if first {
				ch.Size = size
			}
			if err := stream.Send(ch); err != nil {
				return err
			}
			b = b[n:]
		}
	}
	return nil
}

// contextBlocks is the block store of an executor process's context (set
// when the context starts, at its first task).
type contextBlocks struct{ c *Context }

func (b contextBlocks) Get(id int64, part int) (arrow.Record, bool) { return b.c.blocks.Get(id, part) }
func (b contextBlocks) Put(id int64, part int, rec arrow.Record)    { b.c.blocks.Put(id, part, rec) }

// FetchBroadcast implements sluicev1.JobDriverServer: a broadcast value, as
// the driver encoded it, in chunks.
func (s *inputServer) FetchBroadcast(req *sluicev1.FetchBroadcastRequest, stream sluicev1.JobDriver_FetchBroadcastServer) error {
	if err := s.checkJob(req.GetJobId()); err != nil {
		return err
	}
	b, err := s.c.broadcastBytes(req.GetName())
	if err != nil {
		return status.Error(codes.NotFound, err.Error())
	}
	for first := true; first || len(b) > 0; first = false {
		n := min(len(b), cluster.ChunkBytes)
		if err := stream.Send(&sluicev1.Chunk{Data: b[:n]}); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// maxBroadcastBytes bounds a broadcast value an executor accepts.
const maxBroadcastBytes = 1 << 30

// fetchBroadcast gets, in the executor role, a broadcast value from the job's
// driver.
func (c *Context) fetchBroadcast(name string) ([]byte, error) {
	addr := c.resolver.driverAddr()
	if addr == "" {
		return nil, fmt.Errorf("dstream: broadcast %q read before any task came: no driver address to fetch it from", name)
	}
	conn, err := c.resolver.pool.Conn(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	stream, err := sluicev1.NewJobDriverClient(conn).FetchBroadcast(ctx, &sluicev1.FetchBroadcastRequest{JobId: c.resolver.jobID, Name: name})
	if err != nil {
		return nil, fmt.Errorf("dstream: fetch broadcast %q from the driver: %w", name, err)
	}
	var b []byte
	for {
		ch, err := stream.Recv()
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return nil, fmt.Errorf("dstream: fetch broadcast %q from the driver: %w", name, err)
		}
		if len(b)+len(ch.GetData()) > maxBroadcastBytes {
			return nil, fmt.Errorf("dstream: broadcast %q is over %d bytes", name, maxBroadcastBytes)
		}
		b = append(b, ch.GetData()...)
	}
}

// fetchInput gets, in the executor role, one source's input of batch t from
// the job's driver: partition part of it (the records of the others nil),
// or every partition when part < 0.
// maxInputPrealloc bounds the buffer fetchInput allocates for a partition
// from the size its first chunk announces.
const maxInputPrealloc = 256 << 20

func (c *Context) fetchInput(ctx context.Context, input int, t time.Time, part int) ([]arrow.Record, int64, error) {
	addr := c.resolver.driverAddr()
	if addr == "" {
		return nil, 0, fmt.Errorf("dstream: no address to fetch the driver's input from")
	}
	conn, err := c.resolver.pool.Conn(addr)
	if err != nil {
		return nil, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	stream, err := sluicev1.NewJobDriverClient(conn).FetchInput(ctx, &sluicev1.FetchInputRequest{
		JobId: c.resolver.jobID, Input: int32(input), BatchTimeUnixNano: t.UnixNano(),
		OnePartition: part >= 0, Partition: int32(max(part, 0)),
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
	var want, n int64 // the partition's announced size; rows
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
		if p < 0 || p >= len(recs) || int(ch.GetPartitions()) != len(recs) || part >= 0 && p != part {
			return fail(fmt.Errorf("chunk for partition %d of %d", p, ch.GetPartitions()))
		}
		if buf == nil {
			want = ch.GetSize()
			if want > int64(len(ch.GetData())) {
				// Announced on the first chunk: one allocation of the
				// payload, not a doubling buffer (at most
				// maxInputPrealloc; a larger one grows as it comes).
				buf = make([]byte, 0, min(want, maxInputPrealloc))
			}
		}
		buf = append(buf, ch.GetData()...)
		if !ch.GetLast() {
			continue
		}
		if want > 0 && int64(len(buf)) != want {
			return fail(fmt.Errorf("partition %d: %d bytes, its first chunk announced %d", p, len(buf), want))
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
	sluicev1.RegisterJobDriverServer(srv, &inputServer{c: c, jobID: env.JobID})
	done := make(chan struct{})
	go func() { // owned by runCluster, which calls stop
		defer close(done)
		srv.Serve(lis)
	}()
	return lis.Addr().String(), func() { srv.Stop(); <-done }, nil
}
