package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	"google.golang.org/grpc"
)

// Env is what a job binary learns from its environment when `driver serve`
// or an executor daemon starts it in a cluster role.
type Env struct {
	Role         string // "driver" or "executor"; empty in local mode
	JobID        string
	DriverAddr   string // driver role: the coordinator
	BinarySHA    string // driver role: the job binary's SHA-256
	TaskSocket   string // executor role: the unix socket to serve tasks on
	ShuffleDir   string // executor role: where shuffle outputs go
	ExecutorID   string // executor role
	ExecutorAddr string // executor role: the daemon's advertised address
	// Attempt numbers the job driver's process (driver role): 1 for the
	// first start, one more for each restart by `driver serve`.
	Attempt int
}

// The job driver process's exit codes that `driver serve` acts on.
const (
	// ExitUsage: the job's arguments or graph are wrong; a restart would
	// fail the same way, so the job is never restarted.
	ExitUsage = 2
	// ExitRestart: the job driver asks to be restarted from its checkpoint
	// (its operator state was lost with an executor). `driver serve`
	// restarts it whether or not the job is supervised, within the restart
	// bound.
	ExitRestart = 75
)

// AttemptEnv names the job driver's attempt in its environment.
const AttemptEnv = "SLUICE_JOB_ATTEMPT"

// EnvFromOS reads the role environment.
func EnvFromOS() Env {
	return Env{
		Role:         os.Getenv("SLUICE_ROLE"),
		JobID:        os.Getenv("SLUICE_JOB_ID"),
		DriverAddr:   os.Getenv("SLUICE_DRIVER_ADDR"),
		BinarySHA:    os.Getenv("SLUICE_BINARY_SHA256"),
		TaskSocket:   os.Getenv("SLUICE_TASK_SOCKET"),
		ShuffleDir:   os.Getenv("SLUICE_SHUFFLE_DIR"),
		ExecutorID:   os.Getenv("SLUICE_EXECUTOR_ID"),
		ExecutorAddr: os.Getenv("SLUICE_EXECUTOR_ADDR"),
		Attempt:      attemptFromEnv(),
	}
}

func attemptFromEnv() int {
	n, err := strconv.Atoi(os.Getenv(AttemptEnv))
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// Validate checks that the variables of the role are set.
func (e Env) Validate() error {
	var missing []string
	need := func(name, v string) {
		if v == "" {
			missing = append(missing, name)
		}
	}
	switch e.Role {
	case "driver":
		need("SLUICE_JOB_ID", e.JobID)
		need("SLUICE_DRIVER_ADDR", e.DriverAddr)
		need("SLUICE_BINARY_SHA256", e.BinarySHA)
	case "executor":
		need("SLUICE_JOB_ID", e.JobID)
		need("SLUICE_TASK_SOCKET", e.TaskSocket)
		need("SLUICE_SHUFFLE_DIR", e.ShuffleDir)
		need("SLUICE_EXECUTOR_ADDR", e.ExecutorAddr)
	default:
		return fmt.Errorf("cluster: SLUICE_ROLE=%q: must be driver or executor (it is set by `driver serve` and `executor`, not by hand)", e.Role)
	}
	if len(missing) > 0 {
		return fmt.Errorf("cluster: %s role without %s: job binaries run in a cluster role only when started by `driver serve` or `executor`", e.Role, strings.Join(missing, ", "))
	}
	return nil
}

// Pool keeps one client connection per address.
type Pool struct {
	opts  []grpc.DialOption
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

// NewPool returns a pool dialing with opts.
func NewPool(opts ...grpc.DialOption) *Pool {
	return &Pool{opts: opts, conns: map[string]*grpc.ClientConn{}}
}

// Conn returns the connection to addr, creating it on first use.
func (p *Pool) Conn(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr, p.opts...)
	if err != nil {
		return nil, err
	}
	p.conns[addr] = c
	return c, nil
}

// Executor returns an Executor client for addr.
func (p *Pool) Executor(addr string) (sluicev1.ExecutorClient, error) {
	c, err := p.Conn(addr)
	if err != nil {
		return nil, err
	}
	return sluicev1.NewExecutorClient(c), nil
}

// Close closes every connection.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for a, c := range p.conns {
		c.Close()
		delete(p.conns, a)
	}
}

// ServeUnix serves srv on a unix socket at path until ctx is done. A stale
// socket file from an earlier process is removed first.
func ServeUnix(ctx context.Context, path string, srv *grpc.Server, log *slog.Logger) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("cluster: listen on %s: %w", path, err)
	}
	stop := context.AfterFunc(ctx, srv.GracefulStop)
	defer stop()
	log.Info("cluster: serving tasks", slog.String("socket", path))
	if err := srv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}
