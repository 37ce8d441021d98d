package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// MaxBinaryBytes bounds an uploaded job binary.
const MaxBinaryBytes = 512 << 20

// CoordinatorConfig configures the coordinator behind `driver serve`.
type CoordinatorConfig struct {
	StateDir   string // binaries and job logs live here
	Advertise  string // the address job drivers and executors reach the coordinator at
	Secret     Secret
	SecretFile string // passed to job drivers, if the secret came from a file
	// HeartbeatInterval is what executors are told; three missed intervals
	// declare an executor lost. Default 1s.
	HeartbeatInterval time.Duration
	// StopTimeout bounds how long jobs get to stop when the coordinator
	// stops, before they are killed. Default 30s.
	StopTimeout time.Duration
	// MaxRestarts bounds the restarts of one job's driver within
	// RestartWindow; one more death fails the job. Default 10; negative:
	// never restart.
	MaxRestarts int
	// RestartWindow is the window of MaxRestarts. Default 10 minutes.
	RestartWindow time.Duration
	// RestartBackoff is the wait before the first restart of a job's
	// driver; it doubles with each restart in a row, up to 4s. Default 500ms.
	RestartBackoff time.Duration
	// LockTimeout bounds the wait for the job registry
	// (STATE-DIR/registry.db) when another process holds it. Default 1s.
	LockTimeout time.Duration
	Log         *slog.Logger
}

// Defaults of CoordinatorConfig.
const (
	DefaultMaxRestarts   = 10
	DefaultRestartWindow = 10 * time.Minute
	maxRestartBackoff    = 4 * time.Second
	// stableRun: a job driver that ran this long before it died is
	// restarted after the first backoff again.
	stableRun = time.Minute
)

// Coordinator is the Driver service: executor registry, job binaries and
// the jobs' driver processes. Its job registry is kept in
// STATE-DIR/registry.db (registry.go): a new coordinator on the same state
// directory lists the old one's jobs and starts again those that ran.
//
// Lock order: jobRec.persist, then Coordinator.mu. Registry writes (synced
// bbolt commits) are made without mu held.
type Coordinator struct {
	sluicev1.UnimplementedDriverServer
	cfg CoordinatorConfig
	reg *registry

	mu        sync.Mutex
	epoch     int64
	execs     map[string]*execRec
	lost      []lostExec // the last executors declared lost, oldest first (the web UI)
	jobs      map[string]*jobRec
	recovered []*jobRec // jobs of an earlier coordinator, started again by Run
	// submitting counts the submissions in flight by binary: their file
	// must outlive the end of other jobs of the same binary.
	submitting map[string]int
	closing    bool             // Run's context ended: no job is started or restarted any more
	quit       chan struct{}    // closed when closing is set
	wg         sync.WaitGroup   // job supervisors (supervise)
	now        func() time.Time // the clock of heartbeats, expiry and the restart window: time.Now but in tests
}

type execRec struct {
	info     *sluicev1.ExecutorInfo
	platform *sluicev1.Platform
	lastSeen time.Time
}

type jobRec struct {
	info *sluicev1.JobInfo
	cmd  *exec.Cmd     // the current (or last) driver process; nil before the first start
	done chan struct{} // closed when the job's supervisor returns
	// What a restart needs, and why the job restarts.
	path          string // its binary
	args          []string
	parallelism   int
	restarts      []time.Time // within the restart window
	stopRequested bool        // StopJob: never restarted
	cause         string      // why its last process ended
	wake          chan struct{}
	// persist orders the job's registry writes: the newest state is
	// written last.
	persist sync.Mutex
	// uiSocket is where the job's driver serves its API (coordui.go).
	uiSocket string
	summary  string // where its driver writes its last summary (SummaryPath)
	uiOnce   sync.Once
	ui       *http.Client
}

// NewCoordinator checks cfg and prepares the state directory.
func NewCoordinator(cfg CoordinatorConfig) (*Coordinator, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("cluster: the coordinator needs a state directory (--state-dir)")
	}
	if cfg.Advertise == "" {
		return nil, errors.New("cluster: the coordinator needs the address it is reached at")
	}
	cfg.StateDir = abs(cfg.StateDir) // job drivers run in other directories
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = time.Second
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 30 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.MaxRestarts == 0 {
		cfg.MaxRestarts = DefaultMaxRestarts
	}
	if cfg.RestartWindow <= 0 {
		cfg.RestartWindow = DefaultRestartWindow
	}
	if cfg.RestartBackoff <= 0 {
		cfg.RestartBackoff = 500 * time.Millisecond
	}
	if cfg.LockTimeout <= 0 {
		cfg.LockTimeout = time.Second
	}
	for _, d := range []string{"binaries", "jobs"} {
		if err := os.MkdirAll(filepath.Join(cfg.StateDir, d), 0o755); err != nil {
			return nil, fmt.Errorf("cluster: state directory: %w", err)
		}
	}
	reg, err := openRegistry(cfg.StateDir, cfg.LockTimeout)
	if err != nil {
		return nil, err
	}
	c := &Coordinator{cfg: cfg, reg: reg, execs: map[string]*execRec{}, jobs: map[string]*jobRec{}, submitting: map[string]int{}, quit: make(chan struct{}), now: time.Now}
	if err := c.recover(); err != nil {
		reg.close()
		return nil, err
	}
	return c, nil
}

// recover lists the registry's jobs. Those that were not over when the
// last coordinator ended (their drivers died with it) are "restarting":
// Run starts them again, with the next attempt number and the same
// partition count. One whose binary is gone fails.
func (c *Coordinator) recover() error {
	recs, err := c.reg.load()
	if err != nil {
		return err
	}
	var failed []*jobRec
	for _, r := range recs {
		path := filepath.Join(c.cfg.StateDir, "binaries", r.SHA256)
		j := &jobRec{
			info: &sluicev1.JobInfo{JobId: r.ID, Name: r.Name, State: r.State, Sha256: r.SHA256, StartedUnixMs: r.StartedUnixMs,
				Error: r.Error, Attempt: int32(r.Attempt), Supervise: r.Supervise, Parallelism: int32(r.Parallelism)},
			done: make(chan struct{}), path: path, args: r.Args, parallelism: r.Parallelism,
			uiSocket: UISocketPath(filepath.Join(c.cfg.StateDir, "jobs", r.ID)), summary: SummaryPath(filepath.Join(c.cfg.StateDir, "jobs", r.ID)),
			wake: make(chan struct{}, 1),
		}
		for _, ms := range r.RestartsUnixMs {
			j.restarts = append(j.restarts, time.UnixMilli(ms))
		}
		c.jobs[r.ID] = j
		if jobEnded(r.State) {
			close(j.done)
			continue
		}
		if _, err := os.Stat(path); err != nil {
			j.info.State = "failed"
			j.info.Error = fmt.Sprintf("cannot start the job again after the coordinator restarted: its binary %s is gone (%v)", path, err)
			close(j.done)
			failed = append(failed, j)
			continue
		}
		was := r.State
		j.info.State = "restarting"
		j.cause = "the coordinator restarted (the job was " + was + ")"
		c.recovered = append(c.recovered, j)
	}
	for _, j := range failed {
		c.cfg.Log.Error("job failed", slog.String("job", j.info.GetJobId()), slog.String("err", j.info.GetError()))
		if err := c.save(j); err != nil {
			return err
		}
	}
	for _, j := range c.recovered {
		if err := c.save(j); err != nil {
			return err
		}
	}
	return nil
}

// jobEnded reports whether a job in state s is over for good.
func jobEnded(s string) bool { return s == "finished" || s == "failed" }

// Close releases the job registry. Call it after Run returned.
func (c *Coordinator) Close() error { return c.reg.close() }

// Run starts again the jobs an earlier coordinator left running and
// expires executors that miss their heartbeats until ctx is done, then
// stops every job (SIGTERM, then SIGKILL after StopTimeout) and waits.
// Jobs stopped that way stay "running" in the registry: the next
// coordinator on the state directory starts them again.
func (c *Coordinator) Run(ctx context.Context) {
	c.mu.Lock()
	recovered := c.recovered
	c.recovered = nil
	for _, j := range recovered {
		c.wg.Go(func() { c.supervise(j, nil) })
	}
	c.mu.Unlock()
	t := time.NewTicker(c.cfg.HeartbeatInterval / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			c.stopAll()
			return
		case <-t.C:
			c.expire(c.now())
		}
	}
}

func (c *Coordinator) expire(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, e := range c.execs {
		if now.Sub(e.lastSeen) > 3*c.cfg.HeartbeatInterval {
			delete(c.execs, id)
			c.lost = append(c.lost, lostExec{info: e.info, lastSeen: e.lastSeen})
			if len(c.lost) > maxLostExecutors {
				c.lost = c.lost[len(c.lost)-maxLostExecutors:]
			}
			c.cfg.Log.Warn("executor lost: missed heartbeats", slog.String("executor", id), slog.String("addr", e.info.GetAddress()))
		}
	}
}

func (c *Coordinator) stopAll() {
	c.mu.Lock()
	if !c.closing {
		c.closing = true
		close(c.quit)
	}
	var jobs []*jobRec
	for _, j := range c.jobs {
		if j.cmd != nil && j.cmd.Process != nil && !jobEnded(j.info.GetState()) {
			j.cmd.Process.Signal(syscall.SIGTERM)
			jobs = append(jobs, j)
		}
	}
	c.mu.Unlock()
	deadline := time.After(c.cfg.StopTimeout)
	for _, j := range jobs {
		select {
		case <-j.done:
		case <-deadline:
			c.mu.Lock()
			cmd := j.cmd
			c.mu.Unlock()
			cmd.Process.Kill()
			<-j.done
		}
	}
	c.wg.Wait()
}

// RegisterExecutor implements sluicev1.DriverServer.
func (c *Coordinator) RegisterExecutor(_ context.Context, req *sluicev1.RegisterExecutorRequest) (*sluicev1.RegisterExecutorResponse, error) {
	if err := checkExecutor(req.GetExecutorId(), req.GetAddress(), int(req.GetSlots())); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "register: %v", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	c.execs[req.GetExecutorId()] = &execRec{
		info:     &sluicev1.ExecutorInfo{ExecutorId: req.GetExecutorId(), Address: req.GetAddress(), Slots: req.GetSlots(), Epoch: c.epoch},
		platform: req.GetPlatform(),
		lastSeen: c.now(),
	}
	c.cfg.Log.Info("executor registered", slog.String("executor", req.GetExecutorId()), slog.String("addr", req.GetAddress()),
		slog.Int("slots", int(req.GetSlots())), slog.Int64("epoch", c.epoch))
	return &sluicev1.RegisterExecutorResponse{Epoch: c.epoch, HeartbeatIntervalMs: c.cfg.HeartbeatInterval.Milliseconds()}, nil
}

// Heartbeat implements sluicev1.DriverServer.
func (c *Coordinator) Heartbeat(_ context.Context, req *sluicev1.HeartbeatRequest) (*sluicev1.HeartbeatResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.execs[req.GetExecutorId()]
	if e == nil || e.info.GetEpoch() != req.GetEpoch() {
		return &sluicev1.HeartbeatResponse{Reregister: true}, nil
	}
	e.lastSeen = c.now()
	if req.GetDraining() && !e.info.GetDraining() {
		c.cfg.Log.Info("executor draining", slog.String("executor", req.GetExecutorId()))
	}
	e.info.Draining = req.GetDraining()
	e.info.ShuffleBytesServed = req.GetShuffleBytesServed()
	return &sluicev1.HeartbeatResponse{}, nil
}

// ListExecutors implements sluicev1.DriverServer.
func (c *Coordinator) ListExecutors(context.Context, *sluicev1.ListExecutorsRequest) (*sluicev1.ListExecutorsResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	resp := &sluicev1.ListExecutorsResponse{}
	for _, e := range c.execs {
		resp.Executors = append(resp.Executors, &sluicev1.ExecutorInfo{
			ExecutorId: e.info.GetExecutorId(), Address: e.info.GetAddress(), Slots: e.info.GetSlots(),
			Epoch: e.info.GetEpoch(), Draining: e.info.GetDraining(), ShuffleBytesServed: e.info.GetShuffleBytesServed(),
		})
	}
	sort.Slice(resp.Executors, func(i, j int) bool { return resp.Executors[i].ExecutorId < resp.Executors[j].ExecutorId })
	return resp, nil
}

func (c *Coordinator) binaryPath(sha string) (string, error) {
	if err := checkSHA(sha); err != nil {
		return "", err
	}
	return filepath.Join(c.cfg.StateDir, "binaries", sha), nil
}

// FetchBinary implements sluicev1.DriverServer.
func (c *Coordinator) FetchBinary(req *sluicev1.FetchBinaryRequest, stream sluicev1.Driver_FetchBinaryServer) error {
	path, err := c.binaryPath(req.GetSha256())
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return status.Errorf(codes.NotFound, "no job binary %s", req.GetSha256())
	}
	defer f.Close()
	buf := make([]byte, ChunkBytes)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if err := stream.Send(&sluicev1.Chunk{Data: buf[:n]}); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return status.Errorf(codes.Internal, "read binary: %v", err)
		}
	}
}

// SubmitJob implements sluicev1.DriverServer: it stores the binary
// (verified against the header's SHA-256) and starts the job's driver.
func (c *Coordinator) SubmitJob(stream sluicev1.Driver_SubmitJobServer) error {
	recv := IdleRecv(stream.Context(), "submit", stream.Recv)
	first, err := recv()
	if err == io.EOF {
		return status.Error(codes.InvalidArgument, "submit: the stream ended before the header: send a SubmitHeader, then the binary's bytes")
	}
	if err != nil {
		return err
	}
	h := first.GetHeader()
	if h == nil {
		return status.Error(codes.InvalidArgument, "submit: the first message must be the header")
	}
	path, err := c.binaryPath(h.GetSha256())
	if err != nil {
		return err
	}
	switch size := h.GetSize(); {
	case size <= 0:
		return status.Errorf(codes.InvalidArgument, "submit: binary size %d in the header: must be the binary's length in bytes, > 0", size)
	case size > MaxBinaryBytes:
		return status.Errorf(codes.ResourceExhausted, "submit: binary size %d: at most %d bytes", size, MaxBinaryBytes)
	}
	if err := checkHeader(h); err != nil {
		return err
	}
	if err := c.checkPlatform(h.GetPlatform()); err != nil {
		return err
	}
	// From here until the job is registered (or the submission fails), a
	// job of the same binary that ends must not delete the file.
	sha := h.GetSha256()
	c.mu.Lock()
	c.submitting[sha]++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.submitting[sha]--; c.submitting[sha] <= 0 {
			delete(c.submitting, sha)
		}
		c.dropBinaryLocked(sha) // unless a job that is not over, or another submission, has it
	}()
	var got int64
	err = receiveBinary(path, h.GetSha256(), h.GetSize(), MaxBinaryBytes, func() ([]byte, error) {
		m, err := recv()
		if err == nil && m.GetHeader() != nil {
			return nil, status.Errorf(codes.InvalidArgument, "submit: a second header after %d bytes of the binary: send one header, then only data", got)
		}
		got += int64(len(m.GetData()))
		return m.GetData(), err
	})
	var mismatch *hashMismatch
	if _, isStatus := status.FromError(err); err != nil && !isStatus {
		if errors.As(err, &mismatch) || errors.Is(err, errTooLarge) {
			return status.Errorf(codes.InvalidArgument, "submit: %v", err)
		}
		return status.Errorf(codes.Internal, "submit: %v", err)
	}
	if err != nil {
		return err // the stream's own error
	}
	id, err := c.startJob(h, path)
	if err != nil {
		switch {
		case errors.Is(err, syscall.ENOEXEC):
			return status.Errorf(codes.InvalidArgument, "submit: the binary cannot be executed (%v): submit a program built for this platform (GOOS=%s GOARCH=%s CGO_ENABLED=0 go build)", err, runtime.GOOS, runtime.GOARCH)
		case errors.Is(err, syscall.EACCES):
			return status.Errorf(codes.FailedPrecondition, "submit: the coordinator cannot execute binaries in %s (%v): is its state directory on a noexec mount?", filepath.Join(c.cfg.StateDir, "binaries"), err)
		}
		return status.Errorf(codes.Internal, "submit: start job: %v", err)
	}
	return stream.SendAndClose(&sluicev1.SubmitJobResponse{JobId: id})
}

// checkPlatform refuses a binary the executors cannot run.
func (c *Coordinator) checkPlatform(p *sluicev1.Platform) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.execs {
		ep := e.platform
		if ep == nil || p == nil {
			continue
		}
		if ep.GetGoos() != p.GetGoos() || ep.GetGoarch() != p.GetGoarch() {
			return status.Errorf(codes.FailedPrecondition,
				"submit: the binary is built for %s/%s but executor %s runs %s/%s; cross-compile it: GOOS=%s GOARCH=%s CGO_ENABLED=0 go build -o job ./yourjob",
				p.GetGoos(), p.GetGoarch(), e.info.GetExecutorId(), ep.GetGoos(), ep.GetGoarch(), ep.GetGoos(), ep.GetGoarch())
		}
	}
	return nil
}

// startJob registers a submitted job and starts its driver; the job's
// supervisor goroutine owns it from then on.
func (c *Coordinator) startJob(h *sluicev1.SubmitHeader, path string) (string, error) {
	n, err := c.reg.nextNumber()
	if err != nil {
		return "", err
	}
	id := fmt.Sprintf("job-%s-%d", time.Now().UTC().Format("20060102T150405"), n)
	name := h.GetName()
	if name == "" {
		name = filepath.Base(path)
	}
	par := c.parallelism()
	dir := filepath.Join(c.cfg.StateDir, "jobs", id)
	j := &jobRec{
		info: &sluicev1.JobInfo{JobId: id, Name: name, State: "starting", Sha256: h.GetSha256(), StartedUnixMs: time.Now().UnixMilli(),
			Attempt: 1, Supervise: h.GetSupervise(), Parallelism: int32(par)},
		done: make(chan struct{}), path: path, args: h.GetArgs(), parallelism: par,
		uiSocket: UISocketPath(dir), summary: SummaryPath(dir), wake: make(chan struct{}, 1),
	}
	// The record comes first: a coordinator that dies after the start
	// still knows the job.
	if err := c.save(j); err != nil {
		return "", err
	}
	p, err := c.launch(j, false)
	if err != nil {
		os.RemoveAll(dir)
		if derr := c.reg.delete(id); derr != nil {
			c.cfg.Log.Error("job registry", slog.Any("err", derr))
		}
		return "", err
	}
	c.cfg.Log.Info("job started", slog.String("job", id), slog.String("name", name), slog.Int("pid", p.cmd.Process.Pid),
		slog.Int("parallelism", par), slog.Bool("supervise", h.GetSupervise()))
	c.wg.Go(func() { c.supervise(j, p) })
	return id, nil
}

// proc is one running driver process of a job.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *os.File
}

// Why launch did not start a job's driver: the coordinator is stopping,
// or the job was stopped (StopJob) while it waited to restart.
var (
	errStopping   = errors.New("the coordinator is stopping")
	errJobStopped = errors.New("the job was stopped")
)

// launch starts attempt j.info.Attempt of a job's driver, in the job's
// directory, appending to its logs, and records the job as running. The
// process starts under mu, so that stopAll either sees it or prevents it.
func (c *Coordinator) launch(j *jobRec, restart bool) (*proc, error) {
	if err := verifyBinary(j.path); err != nil {
		return nil, err
	}
	id := j.info.GetJobId()
	dir := filepath.Join(c.cfg.StateDir, "jobs", id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	open := func(name string) (*os.File, error) {
		return os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	}
	stdout, err := open("stdout.log")
	if err != nil {
		return nil, err
	}
	stderr, err := open("stderr.log")
	if err != nil {
		stdout.Close()
		return nil, err
	}
	p := &proc{stdout: stdout, stderr: stderr}
	c.mu.Lock()
	attempt := max(1, int(j.info.GetAttempt()))
	for try := 1; ; try++ {
		p.cmd = exec.Command(j.path, j.args...)
		p.cmd.Dir = dir
		p.cmd.Stdout, p.cmd.Stderr = stdout, stderr
		p.cmd.Env = append(os.Environ(),
			"SLUICE_PARALLELISM="+strconv.Itoa(j.parallelism),
			"SLUICE_ROLE=driver",
			"SLUICE_DRIVER_ADDR="+c.cfg.Advertise,
			"SLUICE_JOB_ID="+id,
			"SLUICE_BINARY_SHA256="+j.info.GetSha256(),
			AttemptEnv+"="+strconv.Itoa(attempt),
			UISocketEnv+"="+j.uiSocket,
			SummaryEnv+"="+j.summary,
		)
		p.cmd.Env = append(p.cmd.Env, c.cfg.Secret.Env(c.cfg.SecretFile)...)
		dieWithParent(p.cmd)
		switch {
		case c.closing:
			err = errStopping
		case j.stopRequested:
			err = errJobStopped
		default:
			err = p.cmd.Start()
		}
		// ETXTBSY: a process forked at the moment another submission of
		// the same binary still had it open for writing holds that
		// descriptor until it execs (golang/go#22315); it is gone soon.
		if !errors.Is(err, syscall.ETXTBSY) || try == 5 {
			break
		}
		c.mu.Unlock()
		time.Sleep(time.Duration(try) * 20 * time.Millisecond)
		c.mu.Lock()
	}
	if err != nil {
		c.mu.Unlock()
		p.close()
		return nil, err
	}
	j.cmd = p.cmd
	j.info.State = "running"
	j.info.Error = ""
	c.jobs[id] = j
	if restart { // logged before anyone sees it running
		c.cfg.Log.Warn("job restarted", slog.String("job", id), slog.Int("attempt", attempt),
			slog.String("cause", j.cause), slog.Int("pid", p.cmd.Process.Pid))
	}
	c.mu.Unlock()
	if err := c.save(j); err != nil {
		c.cfg.Log.Error("job registry", slog.Any("err", err))
	}
	return p, nil
}

func (p *proc) close() {
	p.stdout.Close()
	p.stderr.Close()
}

// supervise owns a job's driver processes: it waits for the running one
// (p; nil for a job to start again after a coordinator restart) and, as
// the restart policy says (afterExit), starts the next after a backoff,
// until the job ends or the coordinator stops.
func (c *Coordinator) supervise(j *jobRec, p *proc) {
	defer close(j.done)
	backoff := c.cfg.RestartBackoff
	for {
		if p != nil {
			began := time.Now()
			err := p.cmd.Wait()
			p.close()
			removeUISocket(j.uiSocket)
			if !c.afterExit(j, err) {
				return
			}
			var ee *exec.ExitError
			if time.Since(began) > stableRun || (errors.As(err, &ee) && ee.ExitCode() == ExitRestart) {
				// Not a crash loop: it ran a while, or it asks to recover
				// its state (an executor was lost), which should be quick.
				backoff = c.cfg.RestartBackoff
			}
		}
		select {
		case <-time.After(backoff):
		case <-j.wake:
		case <-c.quit:
		}
		backoff = min(2*backoff, maxRestartBackoff)
		c.mu.Lock()
		closing, stopped := c.closing, j.stopRequested
		if !closing && !stopped {
			j.info.Attempt++
		}
		c.mu.Unlock()
		if closing {
			return // still "restarting" in the registry: the next coordinator starts it
		}
		if stopped {
			c.end(j, "finished", "stopped while restarting")
			return
		}
		var err error
		if p, err = c.launch(j, true); err != nil {
			switch {
			case errors.Is(err, errStopping):
				return
			case errors.Is(err, errJobStopped):
				c.end(j, "finished", "stopped while restarting")
				return
			}
			c.end(j, "failed", fmt.Sprintf("restart (attempt %d) after %s: %v", c.attemptOf(j), c.causeOf(j), err))
			return
		}
	}
}

func (c *Coordinator) attemptOf(j *jobRec) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int(j.info.GetAttempt())
}

func (c *Coordinator) causeOf(j *jobRec) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return j.cause
}

// afterExit applies the restart policy to a job whose driver process ended
// with err, and reports whether to start it again. Exit 0, or any end
// after StopJob, ends the job; ExitUsage fails it; ExitRestart restarts
// it; another exit or a signal restarts a supervised job and fails any
// other. Restarts are bounded by MaxRestarts in RestartWindow. When the
// coordinator is stopping, the job ends here but stays running in the
// registry, and nothing is ended on the executors: the next coordinator
// starts it again.
func (c *Coordinator) afterExit(j *jobRec, err error) (restart bool) {
	id := j.info.GetJobId()
	cause := "exit status 0"
	if err != nil {
		cause = err.Error()
		if l := lastLine(filepath.Join(c.cfg.StateDir, "jobs", id, "stderr.log")); l != "" {
			cause += ": " + l
		}
	}
	code := -1
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode() // -1 when killed by a signal
	}
	c.mu.Lock()
	j.cause = cause
	switch {
	case j.stopRequested && err == nil:
		c.mu.Unlock()
		c.end(j, "finished", "")
		return false
	case j.stopRequested:
		c.mu.Unlock()
		c.end(j, "failed", cause)
		return false
	case c.closing:
		j.info.State, j.info.Error = "finished", ""
		if err != nil {
			j.info.State, j.info.Error = "failed", cause
		}
		c.mu.Unlock()
		c.cfg.Log.Info("job driver ended with the coordinator", slog.String("job", id), slog.String("exit", cause))
		return false
	case err == nil:
		c.mu.Unlock()
		c.end(j, "finished", "")
		return false
	case code == ExitUsage:
		c.mu.Unlock()
		c.end(j, "failed", cause+" (a usage error: not restarted)")
		return false
	case code != ExitRestart && !j.info.GetSupervise():
		c.mu.Unlock()
		c.end(j, "failed", cause)
		return false
	}
	now := c.now()
	kept := j.restarts[:0]
	for _, t := range j.restarts {
		if now.Sub(t) < c.cfg.RestartWindow {
			kept = append(kept, t)
		}
	}
	j.restarts = kept
	if len(j.restarts) >= c.cfg.MaxRestarts {
		n := len(j.restarts)
		c.mu.Unlock()
		c.end(j, "failed", fmt.Sprintf("%s; not restarted: restarted %d times in the last %v already (--max-restarts %d)",
			cause, n, c.cfg.RestartWindow, max(0, c.cfg.MaxRestarts)))
		return false
	}
	j.restarts = append(j.restarts, now)
	j.info.State = "restarting"
	j.info.Error = "restarting after: " + cause
	c.mu.Unlock()
	c.cfg.Log.Warn("job driver died: restarting it", slog.String("job", id), slog.String("exit", cause))
	if err := c.save(j); err != nil {
		c.cfg.Log.Error("job registry", slog.Any("err", err))
	}
	return true
}

// end records that a job is over: its state and error, in memory and in
// the registry; its binary is deleted unless another job uses it, and the
// executors are told to drop the job.
func (c *Coordinator) end(j *jobRec, state, msg string) {
	c.mu.Lock()
	j.info.State, j.info.Error = state, msg
	c.dropBinaryLocked(j.info.GetSha256()) // with the state: a submission after "finished" keeps its copy
	c.mu.Unlock()
	id := j.info.GetJobId()
	if err := c.save(j); err != nil {
		c.cfg.Log.Error("job registry", slog.Any("err", err))
	}
	if state == "failed" {
		c.cfg.Log.Info("job ended", slog.String("job", id), slog.String("state", state), slog.String("err", msg))
	} else {
		c.cfg.Log.Info("job ended", slog.String("job", id), slog.String("state", state))
	}
	c.endJobOnExecutors(id)
}

func (c *Coordinator) dropBinaryLocked(sha string) {
	if checkSHA(sha) != nil || c.closing || c.submitting[sha] > 0 { // jobs ended by the shutdown start again with the next coordinator
		return
	}
	for _, j := range c.jobs {
		if j.info.GetSha256() == sha && !jobEnded(j.info.GetState()) {
			return
		}
	}
	os.Remove(filepath.Join(c.cfg.StateDir, "binaries", sha))
}

// save writes a job's record to the registry: the newest state is written
// last (j.persist).
func (c *Coordinator) save(j *jobRec) error {
	j.persist.Lock()
	defer j.persist.Unlock()
	c.mu.Lock()
	i := j.info
	rec := jobRecord{ID: i.GetJobId(), Name: i.GetName(), SHA256: i.GetSha256(), Args: j.args, Parallelism: j.parallelism,
		Supervise: i.GetSupervise(), State: i.GetState(), Attempt: int(i.GetAttempt()), StartedUnixMs: i.GetStartedUnixMs(), Error: i.GetError()}
	for _, t := range j.restarts {
		rec.RestartsUnixMs = append(rec.RestartsUnixMs, t.UnixMilli())
	}
	c.mu.Unlock()
	return c.reg.put(rec)
}

// parallelism is a new job's default partition count: the task slots of
// the live executors (at least 1), fixed for the job's life so that every
// process of the job builds the same graph.
func (c *Coordinator) parallelism() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, e := range c.execs {
		if !e.info.GetDraining() {
			n += int(e.info.GetSlots())
		}
	}
	return max(1, n)
}

// endJobOnExecutors tells every executor to drop a finished job's processes
// and data, retrying while one cannot be reached.
func (c *Coordinator) endJobOnExecutors(id string) {
	resp, _ := c.ListExecutors(context.Background(), nil)
	pool := NewPool(c.cfg.Secret.DialOptions()...)
	defer pool.Close()
	var wg sync.WaitGroup
	for _, e := range resp.GetExecutors() {
		cl, err := pool.Executor(e.GetAddress())
		if err != nil {
			continue
		}
		wg.Go(func() {
			if err := endJobRetrying(cl, id, c.cfg.Log); err != nil {
				c.cfg.Log.Warn("cannot end job on executor", slog.String("job", id), slog.String("executor", e.GetExecutorId()), slog.Any("err", err))
			}
		})
	}
	wg.Wait()
}

func lastLine(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var last string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			last = l
		}
	}
	return protoString(last) // it goes into JobInfo.error
}

// job returns the job named id: InvalidArgument if id cannot name a job
// (empty, too long, bad characters), NotFound if no job has it.
func (c *Coordinator) job(id string) (*jobRec, error) {
	if err := checkID("job id", id); err != nil {
		return nil, err
	}
	j, ok := c.jobs[id]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no job %q (see `driver jobs`)", id)
	}
	return j, nil
}

func cloneJob(j *jobRec) *sluicev1.JobInfo {
	i := j.info
	return &sluicev1.JobInfo{JobId: i.JobId, Name: i.Name, State: i.State, Sha256: i.Sha256, StartedUnixMs: i.StartedUnixMs, Error: i.Error,
		Attempt: i.Attempt, Supervise: i.Supervise, Parallelism: i.Parallelism}
}

// ListJobs implements sluicev1.DriverServer.
func (c *Coordinator) ListJobs(context.Context, *sluicev1.ListJobsRequest) (*sluicev1.ListJobsResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	resp := &sluicev1.ListJobsResponse{}
	for _, j := range c.jobs {
		resp.Jobs = append(resp.Jobs, cloneJob(j))
	}
	sort.Slice(resp.Jobs, func(a, b int) bool {
		na, _ := strconv.Atoi(resp.Jobs[a].JobId[strings.LastIndexByte(resp.Jobs[a].JobId, '-')+1:])
		nb, _ := strconv.Atoi(resp.Jobs[b].JobId[strings.LastIndexByte(resp.Jobs[b].JobId, '-')+1:])
		return na < nb
	})
	return resp, nil
}

// JobStatus implements sluicev1.DriverServer.
func (c *Coordinator) JobStatus(_ context.Context, req *sluicev1.JobStatusRequest) (*sluicev1.JobInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	j, err := c.job(req.GetJobId())
	if err != nil {
		return nil, err
	}
	return cloneJob(j), nil
}

// StopJob implements sluicev1.DriverServer: SIGTERM to the job's driver,
// which finishes its batch in flight and exits. A stopped job is never
// restarted; one waiting to restart ends at once.
func (c *Coordinator) StopJob(_ context.Context, req *sluicev1.StopJobRequest) (*sluicev1.JobInfo, error) {
	c.mu.Lock()
	j, err := c.job(req.GetJobId())
	if err != nil {
		c.mu.Unlock()
		return nil, err
	}
	changed := false
	switch j.info.State {
	case "running":
		j.stopRequested, j.info.State, changed = true, "stopping", true
		j.cmd.Process.Signal(syscall.SIGTERM)
	case "restarting":
		j.stopRequested, j.info.State, changed = true, "stopping", true
		select {
		case j.wake <- struct{}{}:
		default:
		}
	}
	info := cloneJob(j)
	c.mu.Unlock()
	if changed {
		if err := c.save(j); err != nil {
			c.cfg.Log.Error("job registry", slog.Any("err", err))
		}
	}
	return info, nil
}
