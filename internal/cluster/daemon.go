package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DaemonConfig configures the executor daemon behind `executor`.
type DaemonConfig struct {
	ID         string // default: host name and port
	DriverAddr string
	Advertise  string // the address other processes reach this executor at
	WorkDir    string
	Slots      int
	Secret     Secret
	SecretFile string
	// DrainGrace is how long a stopping executor keeps serving shuffle
	// blocks after its last task. Default 10s.
	DrainGrace time.Duration
	// OrphanGrace is how long the driver may not answer before the job
	// processes and job data are deleted. Default DefaultOrphanGrace.
	OrphanGrace time.Duration
	Log         *slog.Logger
	// JobLog receives the stderr of the job processes, whole lines (their
	// log lines name the job and role=executor), as a Spark executor's
	// stderr holds its tasks' logs. Nil: only the last lines are kept, for
	// the error of a process that died.
	JobLog io.Writer
}

// Daemon is an executor: it registers with the coordinator, runs each job's
// tasks in a process of the job's own binary, and serves shuffle blocks.
type Daemon struct {
	sluicev1.UnimplementedExecutorServer
	cfg    DaemonConfig
	pool   *Pool
	store  *ShuffleStore
	driver sluicev1.DriverClient
	// shuffleSrv serves this executor's shuffle blocks; set before the
	// heartbeats start.
	shuffleSrv *ShuffleServer

	mu       sync.Mutex
	epoch    int64
	running  int
	draining bool
	jobs     map[string]*jobProc
	gens     map[string]int64              // job processes started, by job
	killers  map[string]context.CancelFunc // running tasks by "job/task"
	binMu    sync.Mutex                    // serializes binary downloads
	lock     *os.File                      // holds the work directory (lockWorkDir)
	contact  contact                       // when the driver last answered
	idle     *sync.Cond
}

type jobProc struct {
	gen int64 // the job's process count on this daemon: part of the incarnation
	// attempt is the job driver attempt the process serves: a task of a
	// newer attempt (a restarted job driver) replaces the process.
	attempt int32
	cmd     *exec.Cmd
	socket  string
	conn    *grpc.ClientConn
	done    chan struct{}
	stderr  *tailBuffer
	ready   chan struct{}
	err     error
}

// NewDaemon checks cfg and prepares the work directory.
func NewDaemon(cfg DaemonConfig) (*Daemon, error) {
	switch {
	case cfg.DriverAddr == "":
		return nil, errors.New("cluster: the executor needs the driver's address (--driver HOST:PORT)")
	case cfg.WorkDir == "":
		return nil, errors.New("cluster: the executor needs a work directory (--work-dir)")
	case cfg.Slots <= 0:
		return nil, fmt.Errorf("cluster: --slots %d: must be > 0", cfg.Slots)
	case cfg.Advertise == "":
		return nil, errors.New("cluster: the executor needs the address it is reached at")
	}
	if cfg.ID == "" {
		cfg.ID = DefaultExecutorID(cfg.Advertise)
	}
	if err := checkExecutor(cfg.ID, cfg.Advertise, cfg.Slots); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	cfg.WorkDir = abs(cfg.WorkDir) // job processes run in other directories
	if cfg.DrainGrace <= 0 {
		cfg.DrainGrace = 10 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	cfg.Log = cfg.Log.With(slog.String("executor", cfg.ID))
	lock, err := lockWorkDir(cfg.WorkDir)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok && lock != nil {
			lock.Close()
		}
	}()
	// Shuffle files left by an earlier daemon on this work directory are
	// of job processes that died with it: no driver reads them again (it
	// drops every output of an earlier incarnation), so they go now.
	if ents, _ := os.ReadDir(filepath.Join(cfg.WorkDir, "shuffle")); len(ents) > 0 {
		if err := os.RemoveAll(filepath.Join(cfg.WorkDir, "shuffle")); err != nil {
			return nil, fmt.Errorf("cluster: work directory: remove an earlier executor's shuffle files: %w", err)
		}
		cfg.Log.Info("executor: removed an earlier executor's shuffle files", slog.Int("jobs", len(ents)))
	}
	for _, d := range []string{"binaries", "jobs", "shuffle"} {
		if err := os.MkdirAll(filepath.Join(cfg.WorkDir, d), 0o755); err != nil {
			return nil, fmt.Errorf("cluster: work directory: %w", err)
		}
	}
	store, err := NewShuffleStore(filepath.Join(cfg.WorkDir, "shuffle"), nil)
	if err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, pool: NewPool(cfg.Secret.DialOptions()...), store: store, jobs: map[string]*jobProc{}, gens: map[string]int64{},
		killers: map[string]context.CancelFunc{}, lock: lock}
	d.idle = sync.NewCond(&d.mu)
	ok = true
	return d, nil
}

// Close releases the work directory (Run does when it returns), for a
// daemon that is not run.
func (d *Daemon) Close() {
	if d.lock != nil {
		d.lock.Close()
		d.lock = nil
	}
}

// Run serves on lis and keeps the executor registered until ctx is done;
// then it drains: no new tasks, running ones finish, shuffle blocks stay
// available for DrainGrace, and the job processes are stopped.
func (d *Daemon) Run(ctx context.Context, lis net.Listener) error {
	defer d.Close()
	conn, err := d.pool.Conn(d.cfg.DriverAddr)
	if err != nil {
		return err
	}
	d.driver = d.watchDriver(sluicev1.NewDriverClient(conn))
	srv := grpc.NewServer(d.cfg.Secret.ServerOptions(d.cfg.Log)...)
	sluicev1.RegisterExecutorServer(srv, d)
	d.shuffleSrv = &ShuffleServer{Store: d.store}
	sluicev1.RegisterShuffleServer(srv, d.shuffleSrv)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			d.cfg.Log.Error("executor: serve", slog.Any("err", err))
		}
	})
	hbCtx, stopHB := context.WithCancel(context.Background())
	wg.Go(func() { d.heartbeats(hbCtx) })
	wg.Go(func() { d.reapOrphans(hbCtx) })

	<-ctx.Done()
	d.cfg.Log.Info("executor: draining")
	d.mu.Lock()
	d.draining = true
	for d.running > 0 {
		d.idle.Wait()
	}
	d.mu.Unlock()
	d.heartbeat(context.Background()) // tell the coordinator at once
	time.Sleep(d.cfg.DrainGrace)
	stopHB()
	d.stopJobs()
	srv.GracefulStop()
	wg.Wait()
	d.pool.Close()
	d.cfg.Log.Info("executor: stopped")
	return nil
}

func (d *Daemon) register(ctx context.Context) error {
	resp, err := d.driver.RegisterExecutor(ctx, &sluicev1.RegisterExecutorRequest{
		ExecutorId: d.cfg.ID, Address: d.cfg.Advertise, Slots: int32(d.cfg.Slots),
		Platform: &sluicev1.Platform{Goos: runtime.GOOS, Goarch: runtime.GOARCH},
	})
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.epoch = resp.GetEpoch()
	d.mu.Unlock()
	d.cfg.Log.Info("executor: registered", slog.String("driver", d.cfg.DriverAddr), slog.Int64("epoch", resp.GetEpoch()))
	return nil
}

// heartbeats registers (retrying with backoff) and heartbeats every second.
func (d *Daemon) heartbeats(ctx context.Context) {
	backoff := 200 * time.Millisecond
	registered := false
	for ctx.Err() == nil {
		if !registered {
			if err := d.register(ctx); err != nil {
				d.cfg.Log.Warn("executor: cannot register; retrying", slog.Any("err", err))
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
			registered, backoff = true, 200*time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		if rereg := d.heartbeat(ctx); rereg {
			registered = false
		}
	}
}

func (d *Daemon) heartbeat(ctx context.Context) (reregister bool) {
	d.mu.Lock()
	req := &sluicev1.HeartbeatRequest{ExecutorId: d.cfg.ID, Epoch: d.epoch, RunningTasks: int32(d.running), Draining: d.draining}
	if d.shuffleSrv != nil {
		req.ShuffleBytesServed = d.shuffleSrv.Served.Load()
	}
	d.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	resp, err := d.driver.Heartbeat(cctx, req)
	if err != nil {
		return false
	}
	return resp.GetReregister()
}

// RunTask implements sluicev1.ExecutorServer: it makes sure the job's
// binary and process are there and forwards the task to the process.
// slotsBusy ends the refusal of a task by an executor whose slots are all
// taken (RemoteBackend waits for one: isBusy).
const slotsBusy = "slots, all busy"

func (d *Daemon) RunTask(ctx context.Context, req *sluicev1.TaskRequest) (*sluicev1.TaskResponse, error) {
	d.mu.Lock()
	if d.draining {
		d.mu.Unlock()
		return nil, status.Error(codes.Unavailable, "executor is draining")
	}
	if d.running >= d.cfg.Slots {
		d.mu.Unlock()
		return nil, status.Errorf(codes.ResourceExhausted, "executor has %d %s", d.cfg.Slots, slotsBusy)
	}
	d.running++
	epoch := d.epoch
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.running--
		d.idle.Broadcast()
		d.mu.Unlock()
	}()
	if err := checkID("job id", req.GetJobId()); err != nil {
		return nil, err
	}
	if err := checkSHA(req.GetBinarySha256()); err != nil {
		return nil, err
	}
	if req.GetRequiredIncarnation() != 0 {
		// The task reads operator state held by one incarnation of the
		// job's process: never start a fresh process (empty state) for it.
		d.mu.Lock()
		p := d.jobs[req.GetJobId()]
		d.mu.Unlock()
		inc := int64(0)
		if p != nil && p.alive() {
			inc = incarnation(epoch, p.gen)
		}
		if inc != req.GetRequiredIncarnation() {
			return &sluicev1.TaskResponse{TaskId: req.GetTaskId(), ExecutorEpoch: epoch, Incarnation: inc, Fatal: true, Error: fmt.Sprintf(
				"executor %s: the task needs operator state held by incarnation %d of job %s's process, which is gone (now %d): the state is lost",
				d.cfg.ID, req.GetRequiredIncarnation(), req.GetJobId(), inc)}, nil
		}
	}
	bin, err := d.binary(ctx, req.GetBinarySha256())
	if err != nil {
		return &sluicev1.TaskResponse{TaskId: req.GetTaskId(), Error: protoString(err.Error()), ExecutorEpoch: epoch}, nil
	}
	p, err := d.process(req.GetJobId(), bin, req.GetArgs(), req.GetParallelism(), max(1, req.GetDriverAttempt()))
	var stale *staleAttemptError
	if errors.As(err, &stale) {
		return &sluicev1.TaskResponse{TaskId: req.GetTaskId(), Error: protoString(err.Error()), ExecutorEpoch: epoch, Fatal: true}, nil
	}
	if err != nil {
		return &sluicev1.TaskResponse{TaskId: req.GetTaskId(), Error: protoString(err.Error()), ExecutorEpoch: epoch}, nil
	}
	inc := incarnation(epoch, p.gen)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	key := killKey(req.GetJobId(), req.GetTaskId())
	d.mu.Lock()
	d.killers[key] = cancel
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.killers, key)
		d.mu.Unlock()
	}()
	resp, err := sluicev1.NewExecutorClient(p.conn).RunTask(ctx, req)
	if err != nil {
		if !p.alive() {
			// The job process died under the task: this incarnation and
			// whatever it held are gone.
			return nil, status.Errorf(codes.Unavailable, "executor %s: job process (incarnation %d) died: %s", d.cfg.ID, inc, p.stderr.last())
		}
		return nil, err
	}
	resp.ExecutorEpoch = epoch
	resp.Incarnation = inc
	return resp, nil
}

// maxUnixPath is the longest unix socket path used as is (sun_path holds
// 108 bytes on Linux, 104 on BSDs, with the terminating zero).
const maxUnixPath = 100

// incarnation identifies one job process of one registration of a daemon:
// it changes whenever the daemon restarts or re-registers (a new epoch) or
// the job's process is started again, and only grows.
func incarnation(epoch, gen int64) int64 { return epoch<<20 | gen&(1<<20-1) }

func killKey(job string, task int64) string { return job + "/" + strconv.FormatInt(task, 10) }

// alive reports whether the process started and has not exited.
func (p *jobProc) alive() bool {
	select {
	case <-p.ready:
	default:
		return true // starting
	}
	if p.err != nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// binary returns the path of a job binary, downloading it from the
// coordinator and checking its SHA-256 before it is ever executed.
func (d *Daemon) binary(ctx context.Context, sha string) (string, error) {
	if err := checkSHA(sha); err != nil {
		return "", err
	}
	path := filepath.Join(d.cfg.WorkDir, "binaries", sha)
	d.binMu.Lock()
	defer d.binMu.Unlock()
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	stream, err := d.driver.FetchBinary(ctx, &sluicev1.FetchBinaryRequest{Sha256: sha})
	if err != nil {
		return "", fmt.Errorf("fetch job binary: %w", err)
	}
	err = receiveBinary(path, sha, 0, MaxBinaryBytes, func() ([]byte, error) {
		c, err := stream.Recv()
		return c.GetData(), err
	})
	var mismatch *hashMismatch
	if errors.As(err, &mismatch) {
		d.cfg.Log.Error("executor: job binary hash mismatch: refusing to run it", slog.String("want", sha), slog.String("got", mismatch.gotSHA))
	}
	if err != nil {
		return "", fmt.Errorf("fetch job binary: %w", err)
	}
	return path, nil
}

// process returns the job's task process, starting it if needed.
// staleAttemptError refuses a task of a job driver attempt older than the
// one the job's process serves: a restarted job driver replaced it.
type staleAttemptError struct {
	job           string
	got, replaced int32
}

func (e *staleAttemptError) Error() string {
	return fmt.Sprintf("job %s: task from job driver attempt %d, but attempt %d has replaced it", e.job, e.got, e.replaced)
}

func (d *Daemon) process(job, bin string, args []string, parallelism int32, attempt int32) (*jobProc, error) {
	d.mu.Lock()
	p := d.jobs[job]
	if p != nil && p.attempt < attempt {
		// A newer attempt replaces the job's process and everything it
		// holds: only on the coordinator's word that the job is there.
		d.mu.Unlock()
		if err := d.checkAttempt(job, attempt); err != nil {
			return nil, err
		}
		d.mu.Lock()
		p = d.jobs[job]
	}
	var replaced *jobProc
	if p != nil && p.attempt > attempt {
		d.mu.Unlock()
		return nil, &staleAttemptError{job: job, got: attempt, replaced: p.attempt}
	}
	if p != nil && p.attempt < attempt {
		// A restarted job driver: its tasks start from its checkpoint, so
		// nothing the old attempt's process holds (state, cached
		// partitions, shuffle files named by the old driver's ids) may be
		// read. Stop it before the new one takes its socket.
		replaced, p = p, nil
		delete(d.jobs, job)
	}
	died := false
	if p != nil {
		select {
		case <-p.done: // it died: start another
			go func(old *jobProc) { // its start may still be finishing
				<-old.ready
				if old.conn != nil {
					old.conn.Close()
				}
			}(p)
			p, died = nil, true
		default:
		}
	}
	if p == nil {
		d.gens[job]++
		p = &jobProc{gen: d.gens[job], attempt: attempt, ready: make(chan struct{}), done: make(chan struct{}), stderr: &tailBuffer{}}
		d.jobs[job] = p
		d.mu.Unlock()
		switch {
		case replaced != nil:
			stopProc(replaced)
			d.store.RemoveJob(job)
			d.cfg.Log.Info("executor: job driver restarted; job process replaced", slog.String("job", job), slog.Int("attempt", int(attempt)))
		case died:
			// The new process is a new incarnation: the driver drops
			// every output of the dead one, and only the dead one knew
			// which of its shuffle files to delete.
			d.store.RemoveJob(job)
		}
		p.err = d.start(job, bin, args, parallelism, p)
		close(p.ready)
	} else {
		d.mu.Unlock()
	}
	<-p.ready
	if p.err != nil {
		d.mu.Lock()
		if d.jobs[job] == p {
			delete(d.jobs, job)
		}
		d.mu.Unlock()
		return nil, p.err
	}
	return p, nil
}

// checkAttempt asks the coordinator whether job has reached driver attempt
// attempt. A coordinator that cannot be asked does not block a restart.
func (d *Daemon) checkAttempt(job string, attempt int32) error {
	if d.driver == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := d.driver.JobStatus(ctx, &sluicev1.JobStatusRequest{JobId: job})
	switch {
	case status.Code(err) == codes.NotFound:
		return fmt.Errorf("job %s: a task of driver attempt %d, but the coordinator has no such job: its process is not replaced", job, attempt)
	case err != nil:
		d.cfg.Log.Warn("executor: cannot confirm a job driver's new attempt with the coordinator", slog.String("job", job), slog.Any("err", err))
		return nil
	case info.GetAttempt() < attempt:
		return fmt.Errorf("job %s: a task of driver attempt %d, but the coordinator's job is at attempt %d: its process is not replaced", job, attempt, info.GetAttempt())
	}
	return nil
}

func (d *Daemon) start(job, bin string, args []string, parallelism int32, p *jobProc) error {
	if err := verifyBinary(bin); err != nil {
		d.cfg.Log.Error("executor: cached job binary changed: refusing to run it", slog.Any("err", err))
		return err
	}
	dir := filepath.Join(d.cfg.WorkDir, "jobs", job)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	p.socket = filepath.Join(dir, "task.sock")
	if len(p.socket) > maxUnixPath {
		// A unix socket path is limited to ~108 bytes: a deep work
		// directory gets a short, unique name in the temp directory.
		sum := sha256.Sum256([]byte(p.socket))
		p.socket = filepath.Join(os.TempDir(), "sluice-"+hex.EncodeToString(sum[:8])+".sock")
	}
	os.Remove(p.socket)
	var cmd *exec.Cmd
	var lines *lineWriter
	if d.cfg.JobLog != nil {
		lines = &lineWriter{w: d.cfg.JobLog}
	}
	for try := 1; ; try++ {
		cmd = exec.Command(bin, args...)
		cmd.Dir = dir
		cmd.Stdout = io.Discard
		cmd.Stderr = p.stderr
		if lines != nil {
			cmd.Stderr = io.MultiWriter(p.stderr, lines)
		}
		cmd.Env = append(os.Environ(),
			"SLUICE_ROLE=executor",
			"SLUICE_JOB_ID="+job,
			"SLUICE_TASK_SOCKET="+p.socket,
			"SLUICE_SHUFFLE_DIR="+d.store.dir,
			"SLUICE_EXECUTOR_ID="+d.cfg.ID,
			"SLUICE_EXECUTOR_ADDR="+d.cfg.Advertise,
			"SLUICE_PARALLELISM="+strconv.Itoa(int(parallelism)),
		)
		cmd.Env = append(cmd.Env, d.cfg.Secret.Env(d.cfg.SecretFile)...)
		dieWithParent(cmd)
		err := cmd.Start()
		if err == nil {
			break
		}
		// ETXTBSY: see Coordinator.launch (a binary just written, whose
		// descriptor a concurrently forked child still holds).
		if !errors.Is(err, syscall.ETXTBSY) || try == 5 {
			return fmt.Errorf("start job process: %w", err)
		}
		time.Sleep(time.Duration(try) * 20 * time.Millisecond)
	}
	p.cmd = cmd
	go func() { // owned by the job process; stopJobs waits on done
		cmd.Wait()
		if lines != nil {
			lines.flush() // a last line without its newline
		}
		close(p.done)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.Dial("unix", p.socket); err == nil {
			c.Close()
			break
		}
		select {
		case <-p.done:
			return fmt.Errorf("job process exited before serving tasks: %s", p.stderr.last())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			return fmt.Errorf("job process did not serve tasks within 30s: %s", p.stderr.last())
		}
	}
	conn, err := grpc.NewClient("unix://"+p.socket, d.cfg.Secret.Local().DialOptions()...)
	if err != nil {
		cmd.Process.Kill()
		return err
	}
	p.conn = conn
	d.cfg.Log.Info("executor: job process started", slog.String("job", job), slog.Int("pid", cmd.Process.Pid))
	return nil
}

// KillTask implements sluicev1.ExecutorServer: it cancels the task's call
// into its job process, whose task context is then done (shuffle fetches
// and sources stop; a user function runs until it returns).
func (d *Daemon) KillTask(_ context.Context, req *sluicev1.KillTaskRequest) (*sluicev1.KillTaskResponse, error) {
	if err := checkID("job id", req.GetJobId()); err != nil {
		return nil, err
	}
	d.mu.Lock()
	kill := d.killers[killKey(req.GetJobId(), req.GetTaskId())]
	d.mu.Unlock()
	if kill == nil {
		return nil, status.Errorf(codes.NotFound, "task %d of job %q is not running here", req.GetTaskId(), req.GetJobId())
	}
	kill()
	return &sluicev1.KillTaskResponse{}, nil
}

// CommitState implements sluicev1.ExecutorServer: it passes the commit on
// to the job's process, if this executor runs one.
func (d *Daemon) CommitState(ctx context.Context, req *sluicev1.CommitStateRequest) (*sluicev1.CommitStateResponse, error) {
	if err := checkID("job id", req.GetJobId()); err != nil {
		return nil, err
	}
	for _, key := range req.GetSnapshot() { // "<operator>/<partition>"
		i := strings.LastIndexByte(key, '/')
		if n, err := strconv.Atoi(key[i+1:]); i <= 0 || err != nil || n < 0 {
			return nil, invalidArgument("commit state: snapshot partition %s is not <operator>/<partition>", Quote(key))
		}
	}
	d.mu.Lock()
	p := d.jobs[req.GetJobId()]
	epoch := d.epoch
	d.mu.Unlock()
	var inc int64
	if p != nil {
		select {
		case <-p.ready: // a process still starting
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		if p.alive() && p.conn != nil {
			inc = incarnation(epoch, p.gen)
		}
	}
	if inc == 0 || inc != req.GetIncarnation() {
		// Committing elsewhere than where the batch's state was written
		// would commit nothing and report success: refuse.
		return nil, status.Errorf(codes.FailedPrecondition, "executor %s: job %s's operator state was held by incarnation %d, this is %d: the state is lost",
			d.cfg.ID, req.GetJobId(), req.GetIncarnation(), inc)
	}
	return sluicev1.NewExecutorClient(p.conn).CommitState(ctx, req)
}

// EndJob implements sluicev1.ExecutorServer.
func (d *Daemon) EndJob(_ context.Context, req *sluicev1.EndJobRequest) (*sluicev1.EndJobResponse, error) {
	job := req.GetJobId()
	if err := checkID("job id", job); err != nil {
		return nil, err
	}
	d.mu.Lock()
	p := d.jobs[job]
	delete(d.jobs, job)
	d.mu.Unlock()
	if p != nil {
		stopProc(p)
	}
	os.RemoveAll(filepath.Join(d.cfg.WorkDir, "jobs", job))
	d.store.RemoveJob(job)
	d.dropUnusedBinaries()
	return &sluicev1.EndJobResponse{}, nil
}

func (d *Daemon) stopJobs() {
	d.mu.Lock()
	procs := d.jobs
	d.jobs = map[string]*jobProc{}
	d.mu.Unlock()
	for _, p := range procs {
		stopProc(p)
	}
}

func stopProc(p *jobProc) {
	<-p.ready
	if p.socket != "" {
		defer os.Remove(p.socket)
	}
	if p.conn != nil {
		p.conn.Close()
	}
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// lineWriter passes what a process writes on to w a whole line at a time
// (a line over maxLogLine goes in pieces), so that the lines of processes
// writing at once do not interleave within a line.
type lineWriter struct {
	w    io.Writer
	part []byte
	cut  bool // the last piece passed on was of a long line, ended for its length
}

const maxLogLine = 64 << 10

func (l *lineWriter) Write(b []byte) (int, error) {
	n := len(b)
	if l.cut && len(b) > 0 {
		l.cut = false
		if b[0] == '\n' {
			b = b[1:] // the long line's end: its last piece has its newline
		}
	}
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			l.part = append(l.part, b...)
			if len(l.part) >= maxLogLine {
				l.flush()
				l.cut = true
			}
			break
		}
		if len(l.part) > 0 {
			l.part = append(l.part, b[:i+1]...)
			l.w.Write(l.part)
			l.part = l.part[:0]
		} else {
			l.w.Write(b[:i+1])
		}
		b = b[i+1:]
	}
	return n, nil // the process's output never fails for want of a log
}

func (l *lineWriter) flush() {
	if len(l.part) > 0 {
		l.w.Write(append(l.part, '\n'))
		l.part = l.part[:0]
	}
}

// tailBuffer keeps the end of a process's stderr for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if len(t.buf) > 8<<10 {
		t.buf = t.buf[len(t.buf)-4<<10:]
	}
	return len(b), nil
}

func (t *tailBuffer) last() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(string(t.buf)), "\n")
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	return strings.Join(lines, " | ")
}
