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
	Log         *slog.Logger
}

// Coordinator is the Driver service: executor registry, job binaries and
// the jobs' driver processes. (Persisting the job registry for recovery
// after a coordinator restart is issue 5/6.)
type Coordinator struct {
	sluicev1.UnimplementedDriverServer
	cfg CoordinatorConfig

	mu      sync.Mutex
	epoch   int64
	execs   map[string]*execRec
	lost    []lostExec // the last executors declared lost, oldest first (the web UI)
	jobs    map[string]*jobRec
	nextJob int
	wg      sync.WaitGroup   // job process waiters
	now     func() time.Time // the clock of heartbeats and expiry: time.Now but in tests
}

type execRec struct {
	info     *sluicev1.ExecutorInfo
	platform *sluicev1.Platform
	lastSeen time.Time
}

type jobRec struct {
	info *sluicev1.JobInfo
	cmd  *exec.Cmd
	done chan struct{}
	// uiSocket is where the job's driver serves its API (coordui.go).
	uiSocket string
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
	for _, d := range []string{"binaries", "jobs"} {
		if err := os.MkdirAll(filepath.Join(cfg.StateDir, d), 0o755); err != nil {
			return nil, fmt.Errorf("cluster: state directory: %w", err)
		}
	}
	return &Coordinator{cfg: cfg, execs: map[string]*execRec{}, jobs: map[string]*jobRec{}, now: time.Now}, nil
}

// Run expires executors that miss their heartbeats until ctx is done, then
// stops every job (SIGTERM, then SIGKILL after StopTimeout) and waits.
func (c *Coordinator) Run(ctx context.Context) {
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
	var jobs []*jobRec
	for _, j := range c.jobs {
		if j.cmd != nil && j.cmd.Process != nil {
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
			j.cmd.Process.Kill()
			<-j.done
		}
	}
	c.wg.Wait()
}

// RegisterExecutor implements sluicev1.DriverServer.
func (c *Coordinator) RegisterExecutor(_ context.Context, req *sluicev1.RegisterExecutorRequest) (*sluicev1.RegisterExecutorResponse, error) {
	if req.GetExecutorId() == "" || req.GetAddress() == "" || req.GetSlots() <= 0 {
		return nil, status.Error(codes.InvalidArgument, "register: executor id, address and slots > 0 are required")
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
	if len(sha) != 64 || strings.Trim(sha, "0123456789abcdef") != "" {
		return "", status.Errorf(codes.InvalidArgument, "binary id %q is not a hex SHA-256", sha)
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
	first, err := stream.Recv()
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
	if h.GetSize() <= 0 || h.GetSize() > MaxBinaryBytes {
		return status.Errorf(codes.ResourceExhausted, "submit: binary size %d: must be in (0, %d]", h.GetSize(), MaxBinaryBytes)
	}
	if err := c.checkPlatform(h.GetPlatform()); err != nil {
		return err
	}
	err = receiveBinary(path, h.GetSha256(), h.GetSize(), MaxBinaryBytes, func() ([]byte, error) {
		m, err := stream.Recv()
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
		c.dropUnusedBinary(h.GetSha256())
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

func (c *Coordinator) startJob(h *sluicev1.SubmitHeader, path string) (string, error) {
	c.mu.Lock()
	c.nextJob++
	id := fmt.Sprintf("job-%s-%d", time.Now().UTC().Format("20060102T150405"), c.nextJob)
	c.mu.Unlock()
	if err := verifyBinary(path); err != nil {
		return "", err
	}
	dir := filepath.Join(c.cfg.StateDir, "jobs", id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	stdout, err := os.Create(filepath.Join(dir, "stdout.log"))
	if err != nil {
		return "", err
	}
	stderr, err := os.Create(filepath.Join(dir, "stderr.log"))
	if err != nil {
		stdout.Close()
		return "", err
	}
	uiSocket := UISocketPath(dir)
	cmd := exec.Command(path, h.GetArgs()...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.Env = append(os.Environ(),
		"SLUICE_PARALLELISM="+strconv.Itoa(c.parallelism()),
		"SLUICE_ROLE=driver",
		"SLUICE_DRIVER_ADDR="+c.cfg.Advertise,
		"SLUICE_JOB_ID="+id,
		"SLUICE_BINARY_SHA256="+h.GetSha256(),
		UISocketEnv+"="+uiSocket,
	)
	cmd.Env = append(cmd.Env, c.cfg.Secret.Env(c.cfg.SecretFile)...)
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		stdout.Close()
		stderr.Close()
		os.RemoveAll(dir)
		return "", err
	}
	name := h.GetName()
	if name == "" {
		name = filepath.Base(path)
	}
	j := &jobRec{
		info: &sluicev1.JobInfo{JobId: id, Name: name, State: "running", Sha256: h.GetSha256(), StartedUnixMs: time.Now().UnixMilli()},
		cmd:  cmd, done: make(chan struct{}), uiSocket: uiSocket,
	}
	c.mu.Lock()
	c.jobs[id] = j
	c.mu.Unlock()
	c.cfg.Log.Info("job started", slog.String("job", id), slog.String("name", name), slog.Int("pid", cmd.Process.Pid))
	c.wg.Go(func() {
		err := cmd.Wait()
		stdout.Close()
		stderr.Close()
		c.mu.Lock()
		if err == nil {
			j.info.State = "finished"
		} else {
			j.info.State = "failed"
			j.info.Error = fmt.Sprintf("%v: %s", err, lastLine(filepath.Join(dir, "stderr.log")))
		}
		state := j.info.State
		c.mu.Unlock()
		close(j.done)
		removeUISocket(uiSocket)
		c.cfg.Log.Info("job ended", slog.String("job", id), slog.String("state", state))
		c.dropUnusedBinary(h.GetSha256())
		c.endJobOnExecutors(id)
	})
	return id, nil
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
	return last
}

func (c *Coordinator) job(id string) (*jobRec, error) {
	j, ok := c.jobs[id]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no job %q (see `driver jobs`)", id)
	}
	return j, nil
}

func cloneJob(j *jobRec) *sluicev1.JobInfo {
	i := j.info
	return &sluicev1.JobInfo{JobId: i.JobId, Name: i.Name, State: i.State, Sha256: i.Sha256, StartedUnixMs: i.StartedUnixMs, Error: i.Error, Batches: i.Batches}
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
// which finishes its batch in flight and exits.
func (c *Coordinator) StopJob(_ context.Context, req *sluicev1.StopJobRequest) (*sluicev1.JobInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	j, err := c.job(req.GetJobId())
	if err != nil {
		return nil, err
	}
	if j.info.State == "running" {
		j.info.State = "stopping"
		j.cmd.Process.Signal(syscall.SIGTERM)
	}
	return cloneJob(j), nil
}
