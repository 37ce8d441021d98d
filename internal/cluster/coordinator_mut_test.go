package cluster

// Tests of the `driver serve` coordinator on its own: a fake clock for
// heartbeats and expiry, real gRPC on 127.0.0.1, real job processes (small
// shell scripts submitted as job binaries, which pass the SHA-256 and
// platform checks like any binary) and a real fake executor that records
// the EndJob calls it gets. Each test names the broken behaviour it catches.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fakeClock is the coordinator's clock in these tests: it moves only when
// told to.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_800_000_000, 0)} }

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

// endJobRecorder is an executor that records the jobs it is told to end.
type endJobRecorder struct {
	sluicev1.UnimplementedExecutorServer
	mu    sync.Mutex
	ended []string
}

func (r *endJobRecorder) EndJob(_ context.Context, req *sluicev1.EndJobRequest) (*sluicev1.EndJobResponse, error) {
	r.mu.Lock()
	r.ended = append(r.ended, req.GetJobId())
	r.mu.Unlock()
	return &sluicev1.EndJobResponse{}, nil
}

func (r *endJobRecorder) endedJob(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.ended {
		if e == id {
			return true
		}
	}
	return false
}

// coordFixture is a coordinator served over real gRPC with a fake clock.
type coordFixture struct {
	c     *Coordinator
	dc    sluicev1.DriverClient
	state string
	clock *fakeClock
	// submits receives what each SubmitJob handler returned, in order.
	submits chan error
	// exec is a fake executor server's address: register executors there,
	// so that ending a job reaches a live server.
	exec     string
	executor *endJobRecorder
}

func newCoordFixture(t *testing.T, cfg CoordinatorConfig) *coordFixture {
	t.Helper()
	secret := mustSecret(t, "the-right-cluster-secret")
	f := &coordFixture{state: t.TempDir(), clock: newFakeClock(), submits: make(chan error, 64), executor: &endJobRecorder{}}
	f.exec = serve(t, secret.ServerOptions(nil), func(s *grpc.Server) { sluicev1.RegisterExecutorServer(s, f.executor) })
	cfg.StateDir, cfg.Advertise, cfg.Secret, cfg.Log = f.state, "127.0.0.1:7077", secret, quietLog()
	c, err := NewCoordinator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.now = f.clock.Now
	f.c = c
	record := grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		err := h(srv, ss)
		if strings.HasSuffix(info.FullMethod, "/SubmitJob") {
			select {
			case f.submits <- err:
			default:
			}
		}
		return err
	})
	addr := serve(t, append(secret.ServerOptions(nil), record), func(s *grpc.Server) { sluicev1.RegisterDriverServer(s, c) })
	f.dc = sluicev1.NewDriverClient(dial(t, addr, secret.DialOptions()...))
	// Whatever a test leaves running is killed, and its waiter is let finish.
	t.Cleanup(func() {
		c.mu.Lock()
		for _, j := range c.jobs {
			j.cmd.Process.Kill()
		}
		c.mu.Unlock()
		c.wg.Wait()
	})
	return f
}

func (f *coordFixture) register(t *testing.T, id string, slots int32, p *sluicev1.Platform) int64 {
	t.Helper()
	resp, err := f.dc.RegisterExecutor(context.Background(), &sluicev1.RegisterExecutorRequest{ExecutorId: id, Address: f.exec, Slots: slots, Platform: p})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetEpoch()
}

func (f *coordFixture) executors(t *testing.T) map[string]*sluicev1.ExecutorInfo {
	t.Helper()
	resp, err := f.dc.ListExecutors(context.Background(), &sluicev1.ListExecutorsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*sluicev1.ExecutorInfo{}
	for _, e := range resp.GetExecutors() {
		out[e.GetExecutorId()] = e
	}
	return out
}

func (f *coordFixture) heartbeat(t *testing.T, id string, epoch int64, draining bool) (reregister bool) {
	t.Helper()
	resp, err := f.dc.Heartbeat(context.Background(), &sluicev1.HeartbeatRequest{ExecutorId: id, Epoch: epoch, Draining: draining})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetReregister()
}

func here() *sluicev1.Platform { return &sluicev1.Platform{Goos: runtime.GOOS, Goarch: runtime.GOARCH} }

func scriptHeader(script []byte, p *sluicev1.Platform, args ...string) *sluicev1.SubmitHeader {
	sum := sha256.Sum256(script)
	return &sluicev1.SubmitHeader{Sha256: hex.EncodeToString(sum[:]), Size: int64(len(script)), Platform: p, Name: "test-job", Args: args}
}

// submit sends a script as a job binary over gRPC and returns the job id.
func (f *coordFixture) submit(t *testing.T, script string, args ...string) string {
	t.Helper()
	id, err := f.trySubmit([]byte(script), scriptHeader([]byte(script), here(), args...))
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return id
}

func (f *coordFixture) trySubmit(data []byte, h *sluicev1.SubmitHeader) (string, error) {
	stream, err := f.dc.SubmitJob(context.Background())
	if err != nil {
		return "", err
	}
	if err := stream.Send(&sluicev1.SubmitJobRequest{Part: &sluicev1.SubmitJobRequest_Header{Header: h}}); err != nil {
		return "", err
	}
	stream.Send(&sluicev1.SubmitJobRequest{Part: &sluicev1.SubmitJobRequest_Data{Data: data}})
	resp, err := stream.CloseAndRecv()
	return resp.GetJobId(), err
}

func (f *coordFixture) job(t *testing.T, id string) *sluicev1.JobInfo {
	t.Helper()
	j, err := f.dc.JobStatus(context.Background(), &sluicev1.JobStatusRequest{JobId: id})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func (f *coordFixture) jobs(t *testing.T) []*sluicev1.JobInfo {
	t.Helper()
	resp, err := f.dc.ListJobs(context.Background(), &sluicev1.ListJobsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetJobs()
}

// stdout is what a job printed so far.
func (f *coordFixture) stdout(id string) string {
	b, _ := os.ReadFile(filepath.Join(f.state, "jobs", id, "stdout.log"))
	return string(b)
}

// eventually waits (generously: the machine is shared) until cond holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (f *coordFixture) waitState(t *testing.T, id, state string) *sluicev1.JobInfo {
	t.Helper()
	var j *sluicev1.JobInfo
	eventually(t, fmt.Sprintf("job %s in state %q", id, state), func() bool {
		j = f.job(t, id)
		return j.GetState() == state
	})
	return j
}

// A job that runs until SIGTERM, then says so and exits 0. (Short sleeps,
// so that a killed script leaves no long-lived child behind; the wait
// builtin lets the trap run at once.)
const untilTerm = `#!/bin/sh
trap 'echo "stopping on TERM"; exit 0' TERM
echo ready
while :; do sleep 0.05 & wait $!; done
`

// A job that ignores SIGTERM (but says it got it).
const ignoresTerm = `#!/bin/sh
trap 'echo "TERM ignored"' TERM
echo ready
while :; do sleep 0.05 & wait $!; done
`

// Kills: executors that miss heartbeats never expire (the delete in expire
// gone, or Run not calling expire); expiry after fewer than three missed
// intervals.
func TestCoordinatorExpiresExecutorsThatMissHeartbeats(t *testing.T) {
	f := newCoordFixture(t, CoordinatorConfig{HeartbeatInterval: time.Second})
	epoch := f.register(t, "e1", 1, here())
	f.clock.Advance(3 * time.Second)
	f.c.expire(f.clock.Now())
	if _, ok := f.executors(t)["e1"]; !ok {
		t.Fatal("an executor was expired after exactly three heartbeat intervals")
	}
	f.clock.Advance(time.Millisecond)
	f.c.expire(f.clock.Now())
	if got := f.executors(t); len(got) != 0 {
		t.Fatalf("an executor silent for more than three heartbeat intervals is still listed: %v", got)
	}
	if !f.heartbeat(t, "e1", epoch, false) {
		t.Fatal("an expired executor's heartbeat was not told to register again")
	}

	// Run expires on its own, by the coordinator's clock.
	g := newCoordFixture(t, CoordinatorConfig{HeartbeatInterval: 40 * time.Millisecond})
	g.register(t, "e2", 1, here())
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { g.c.Run(ctx); close(ran) }()
	defer func() { cancel(); <-ran }()
	g.clock.Advance(time.Hour)
	eventually(t, "Run to expire a silent executor", func() bool { return len(g.executors(t)) == 0 })
}

// Kills: a heartbeat not refreshing the executor's last-seen time.
func TestCoordinatorHeartbeatKeepsAnExecutorAlive(t *testing.T) {
	f := newCoordFixture(t, CoordinatorConfig{HeartbeatInterval: time.Second})
	epoch := f.register(t, "e1", 1, here())
	for range 5 {
		f.clock.Advance(2 * time.Second)
		if f.heartbeat(t, "e1", epoch, false) {
			t.Fatal("a live executor's heartbeat was told to register again")
		}
		f.clock.Advance(2 * time.Second) // 4s since the last-but-one heartbeat
		f.c.expire(f.clock.Now())
		if _, ok := f.executors(t)["e1"]; !ok {
			t.Fatal("an executor that heartbeats every 2s (interval 1s, lost after 3s of silence) expired")
		}
	}
	f.clock.Advance(time.Second + time.Millisecond)
	f.c.expire(f.clock.Now())
	if _, ok := f.executors(t)["e1"]; ok {
		t.Fatal("an executor silent for 3s+ since its last heartbeat is still listed")
	}
}

// Kills: registration not bumping the epoch; a stale epoch's heartbeats
// accepted; registration accepting incomplete requests.
func TestCoordinatorRegistrationBumpsTheEpoch(t *testing.T) {
	f := newCoordFixture(t, CoordinatorConfig{HeartbeatInterval: 1500 * time.Millisecond})
	resp, err := f.dc.RegisterExecutor(context.Background(), &sluicev1.RegisterExecutorRequest{ExecutorId: "e1", Address: f.exec, Slots: 2, Platform: here()})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetHeartbeatIntervalMs() != 1500 {
		t.Errorf("executors are told to heartbeat every %dms, want 1500", resp.GetHeartbeatIntervalMs())
	}
	e1 := resp.GetEpoch()
	e2 := f.register(t, "e2", 1, here())
	e1again := f.register(t, "e1", 2, here()) // e1 restarted
	if !(e1 < e2 && e2 < e1again) {
		t.Fatalf("epochs of three registrations: %d, %d, %d; want strictly increasing", e1, e2, e1again)
	}
	if got := f.executors(t)["e1"].GetEpoch(); got != e1again {
		t.Fatalf("e1 is listed with epoch %d, want %d (its latest registration)", got, e1again)
	}
	if !f.heartbeat(t, "e1", e1, false) {
		t.Fatal("a heartbeat of e1's previous incarnation was accepted")
	}
	if f.heartbeat(t, "e1", e1again, false) || f.heartbeat(t, "e2", e2, false) {
		t.Fatal("a current heartbeat was told to register again")
	}
	if !f.heartbeat(t, "nobody", e2, false) {
		t.Fatal("an unknown executor's heartbeat was not told to register")
	}
	for _, bad := range []*sluicev1.RegisterExecutorRequest{
		{Address: f.exec, Slots: 1}, {ExecutorId: "x", Slots: 1}, {ExecutorId: "x", Address: f.exec},
	} {
		if _, err := f.dc.RegisterExecutor(context.Background(), bad); status.Code(err) != codes.InvalidArgument {
			t.Errorf("register %v: %v, want InvalidArgument", bad, err)
		}
	}
	if len(f.executors(t)) != 2 {
		t.Fatalf("executors: %v", f.executors(t))
	}
}

// Kills: draining never recorded (nor listed, nor cleared); a new job's
// parallelism counting draining executors; a job's environment or
// arguments not passed.
func TestCoordinatorRecordsDraining(t *testing.T) {
	f := newCoordFixture(t, CoordinatorConfig{})
	e1 := f.register(t, "e1", 2, here())
	e2 := f.register(t, "e2", 3, here())
	f.heartbeat(t, "e2", e2, true)
	f.heartbeat(t, "e1", e1, false)
	got := f.executors(t)
	if !got["e2"].GetDraining() || got["e1"].GetDraining() {
		t.Fatalf("after e2 said it drains: e1 draining=%v, e2 draining=%v", got["e1"].GetDraining(), got["e2"].GetDraining())
	}
	const env = "#!/bin/sh\necho \"$SLUICE_PARALLELISM|$SLUICE_ROLE|$SLUICE_DRIVER_ADDR|$SLUICE_JOB_ID|$SLUICE_BINARY_SHA256|$*\"\n"
	id := f.submit(t, env, "--flag", "x")
	f.waitState(t, id, "finished")
	want := fmt.Sprintf("2|driver|127.0.0.1:7077|%s|%s|--flag x\n", id, scriptHeader([]byte(env), nil).Sha256)
	if out := f.stdout(id); out != want {
		t.Fatalf("job saw %q, want %q (parallelism = slots of executors not draining)", out, want)
	}
	// Draining ends: the executor counts again.
	f.heartbeat(t, "e2", e2, false)
	if f.executors(t)["e2"].GetDraining() {
		t.Fatal("e2 is still listed as draining after a heartbeat without draining")
	}
	id = f.submit(t, env)
	f.waitState(t, id, "finished")
	if out := f.stdout(id); !strings.HasPrefix(out, "5|") {
		t.Fatalf("job saw %q, want parallelism 5", out)
	}
}

// Kills: a failed submit stream (the client gone mid-upload) starting the
// job anyway, with the copy of its binary stored by an earlier submission.
func TestCoordinatorFailedSubmitStreamStartsNothing(t *testing.T) {
	f := newCoordFixture(t, CoordinatorConfig{})
	f.register(t, "e1", 1, here())
	first := f.submit(t, untilTerm)
	if err := <-f.submits; err != nil {
		t.Fatalf("first submission's handler returned %v", err)
	}
	eventually(t, "the first job to start", func() bool { return strings.Contains(f.stdout(first), "ready") })

	// The same binary again, but the client goes away half-way.
	data := []byte(untilTerm)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := f.dc.SubmitJob(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&sluicev1.SubmitJobRequest{Part: &sluicev1.SubmitJobRequest_Header{Header: scriptHeader(data, here())}}); err != nil {
		t.Fatal(err)
	}
	half := data[:len(data)/2]
	if err := stream.Send(&sluicev1.SubmitJobRequest{Part: &sluicev1.SubmitJobRequest_Data{Data: half}}); err != nil {
		t.Fatal(err)
	}
	bins := filepath.Join(f.state, "binaries")
	eventually(t, "the coordinator to receive half the binary", func() bool {
		tmp, _ := filepath.Glob(filepath.Join(bins, ".incoming-*"))
		if len(tmp) != 1 {
			return false
		}
		st, err := os.Stat(tmp[0])
		return err == nil && st.Size() == int64(len(half))
	})
	cancel()
	var handlerErr error
	select {
	case handlerErr = <-f.submits:
	case <-time.After(30 * time.Second):
		t.Fatal("the interrupted submission's handler did not return")
	}
	if handlerErr == nil {
		t.Error("an interrupted submission succeeded")
	}
	if jobs := f.jobs(t); len(jobs) != 1 || jobs[0].GetJobId() != first {
		t.Fatalf("after an interrupted submission the jobs are %v, want only %s", jobs, first)
	}
	if tmp, _ := filepath.Glob(filepath.Join(bins, ".incoming-*")); len(tmp) != 0 {
		t.Fatalf("the interrupted upload left %v", tmp)
	}
}

// Kills: the platform check passing when only the OS, or only the
// architecture, differs (|| turned into &&); the check refusing a binary
// built for the executors.
func TestCoordinatorPlatformCheckComparesOSAndArch(t *testing.T) {
	f := newCoordFixture(t, CoordinatorConfig{})
	f.register(t, "e1", 1, here())
	otherArch, otherOS := "arm64", "windows"
	if runtime.GOARCH == "arm64" {
		otherArch = "amd64"
	}
	script := []byte("#!/bin/sh\nexit 0\n")
	for _, p := range []*sluicev1.Platform{
		{Goos: runtime.GOOS, Goarch: otherArch},
		{Goos: otherOS, Goarch: runtime.GOARCH},
		{Goos: otherOS, Goarch: otherArch},
	} {
		_, err := f.trySubmit(script, scriptHeader(script, p))
		want := fmt.Sprintf("GOOS=%s GOARCH=%s CGO_ENABLED=0 go build", runtime.GOOS, runtime.GOARCH)
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), want) {
			t.Errorf("a binary for %s/%s, executors on %s/%s: %v; want FailedPrecondition naming %q",
				p.GetGoos(), p.GetGoarch(), runtime.GOOS, runtime.GOARCH, err, want)
		}
	}
	// A stream that does not start with its header.
	stream, err := f.dc.SubmitJob(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	stream.Send(&sluicev1.SubmitJobRequest{Part: &sluicev1.SubmitJobRequest_Data{Data: script}})
	if _, err := stream.CloseAndRecv(); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "first message must be the header") {
		t.Errorf("a submission without a header: %v, want InvalidArgument saying the header comes first", err)
	}
	if jobs := f.jobs(t); len(jobs) != 0 {
		t.Fatalf("refused binaries started jobs: %v", jobs)
	}
	id, err := f.trySubmit(script, scriptHeader(script, here()))
	if err != nil {
		t.Fatalf("a binary for the executors' platform was refused: %v", err)
	}
	f.waitState(t, id, "finished")
}

// Kills: a finished (or failed) job never ended on the executors (no
// EndJob sent); a job's exit status or error not recorded; the binary of
// an ended job kept.
func TestCoordinatorEndsFinishedJobsOnExecutors(t *testing.T) {
	f := newCoordFixture(t, CoordinatorConfig{})
	secret := mustSecret(t, "the-right-cluster-secret")
	other := &endJobRecorder{}
	otherAddr := serve(t, secret.ServerOptions(nil), func(s *grpc.Server) { sluicev1.RegisterExecutorServer(s, other) })
	f.register(t, "e1", 1, here())
	if _, err := f.dc.RegisterExecutor(context.Background(), &sluicev1.RegisterExecutorRequest{ExecutorId: "e2", Address: otherAddr, Slots: 1, Platform: here()}); err != nil {
		t.Fatal(err)
	}
	ok := f.submit(t, "#!/bin/sh\necho fine\n")
	bad := f.submit(t, "#!/bin/sh\necho 'no such topic: clicks' >&2\nexit 3\n")
	for _, id := range []string{ok, bad} {
		eventually(t, "EndJob of "+id+" on both executors", func() bool { return f.executor.endedJob(id) && other.endedJob(id) })
	}
	if j := f.job(t, ok); j.GetState() != "finished" || j.GetError() != "" || j.GetName() != "test-job" ||
		j.GetSha256() != scriptHeader([]byte("#!/bin/sh\necho fine\n"), nil).Sha256 {
		t.Errorf("job that exited 0: %v", j)
	}
	if jobs := f.jobs(t); len(jobs) != 2 || jobs[0].GetJobId() != ok || jobs[1].GetJobId() != bad {
		t.Errorf("ListJobs: %v, want %s then %s (in submission order)", jobs, ok, bad)
	}
	if j := f.job(t, bad); j.GetState() != "failed" || !strings.Contains(j.GetError(), "exit status 3") || !strings.Contains(j.GetError(), "no such topic: clicks") {
		t.Errorf("job that exited 3: %v; want failed with its exit status and last stderr line", j)
	}
	eventually(t, "ended jobs' binaries to be deleted", func() bool {
		b, _ := os.ReadDir(filepath.Join(f.state, "binaries"))
		return len(b) == 0
	})
}

// Kills: StopJob not signalling a running job; StopJob changing a job that
// already ended.
func TestCoordinatorStopJobSignalsTheJob(t *testing.T) {
	f := newCoordFixture(t, CoordinatorConfig{})
	f.register(t, "e1", 1, here())
	id := f.submit(t, untilTerm)
	eventually(t, "the job to start", func() bool { return strings.Contains(f.stdout(id), "ready") })
	if got := f.job(t, id).GetState(); got != "running" {
		t.Fatalf("a started job is %q", got)
	}
	j, err := f.dc.StopJob(context.Background(), &sluicev1.StopJobRequest{JobId: id})
	if err != nil || j.GetState() != "stopping" {
		t.Fatalf("StopJob: %v, %v; want state stopping", j, err)
	}
	f.waitState(t, id, "finished")
	if out := f.stdout(id); !strings.Contains(out, "stopping on TERM") {
		t.Fatalf("the job ended without getting SIGTERM; it printed %q", out)
	}
	eventually(t, "EndJob of the stopped job", func() bool { return f.executor.endedJob(id) })
	if j, err := f.dc.StopJob(context.Background(), &sluicev1.StopJobRequest{JobId: id}); err != nil || j.GetState() != "finished" {
		t.Fatalf("StopJob of an ended job: %v, %v; want it left finished", j, err)
	}
	if _, err := f.dc.StopJob(context.Background(), &sluicev1.StopJobRequest{JobId: "job-nope"}); status.Code(err) != codes.NotFound {
		t.Fatalf("StopJob of an unknown job: %v", err)
	}
}

// Kills: stopAll not sending SIGTERM (a job that would stop on it waits for
// a stop timeout of minutes); Run not stopping jobs when its context ends.
func TestCoordinatorStopTermsJobs(t *testing.T) {
	f := newCoordFixture(t, CoordinatorConfig{StopTimeout: 10 * time.Minute})
	f.register(t, "e1", 1, here())
	id := f.submit(t, untilTerm)
	eventually(t, "the job to start", func() bool { return strings.Contains(f.stdout(id), "ready") })
	f.runAndStop(t)
	if j := f.job(t, id); j.GetState() != "finished" || !strings.Contains(f.stdout(id), "stopping on TERM") {
		t.Errorf("the job that stops on SIGTERM: %v, printed %q; want finished on TERM", j, f.stdout(id))
	}
}

// Kills: stopAll never killing a job past its stop timeout (Run would never
// return).
func TestCoordinatorStopKillsJobsPastTheStopTimeout(t *testing.T) {
	f := newCoordFixture(t, CoordinatorConfig{StopTimeout: time.Second})
	f.register(t, "e1", 1, here())
	id := f.submit(t, ignoresTerm)
	eventually(t, "the job to start", func() bool { return strings.Contains(f.stdout(id), "ready") })
	f.runAndStop(t)
	if j := f.job(t, id); j.GetState() != "failed" || !strings.Contains(j.GetError(), "killed") {
		t.Errorf("the job that ignored SIGTERM: %v; want failed, killed", j)
	}
	if out := f.stdout(id); !strings.Contains(out, "TERM ignored") {
		t.Errorf("the job was killed without SIGTERM first; it printed %q", out)
	}
}

// runAndStop runs the coordinator, ends its context and waits for Run to
// return (it stops every job first).
func (f *coordFixture) runAndStop(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { f.c.Run(ctx); close(ran) }()
	cancel()
	select {
	case <-ran:
	case <-time.After(30 * time.Second):
		t.Fatal("the coordinator did not stop: Run still waits for its jobs")
	}
}

// Kills: FetchBinary serving other bytes than submitted (a short read, a
// lost chunk), or serving what is not a stored binary.
func TestCoordinatorServesTheSubmittedBinary(t *testing.T) {
	f := newCoordFixture(t, CoordinatorConfig{})
	f.register(t, "e1", 1, here())
	var script bytes.Buffer
	script.WriteString(untilTerm)
	for script.Len() < 2*ChunkBytes+100 {
		fmt.Fprintf(&script, "# padding line %d, so that the binary takes several chunks\n", script.Len())
	}
	id := f.submit(t, script.String())
	eventually(t, "the job to start", func() bool { return strings.Contains(f.stdout(id), "ready") })
	fetch := func(sha string) ([]byte, int, error) {
		stream, err := f.dc.FetchBinary(context.Background(), &sluicev1.FetchBinaryRequest{Sha256: sha})
		if err != nil {
			return nil, 0, err
		}
		var got []byte
		chunks := 0
		for {
			c, err := stream.Recv()
			if err == io.EOF {
				return got, chunks, nil
			}
			if err != nil {
				return got, chunks, err
			}
			got = append(got, c.GetData()...)
			chunks++
		}
	}
	got, chunks, err := fetch(f.job(t, id).GetSha256())
	if err != nil || !bytes.Equal(got, script.Bytes()) || chunks < 3 {
		t.Fatalf("fetched %d of %d bytes in %d chunks, equal=%v, err %v", len(got), script.Len(), chunks, bytes.Equal(got, script.Bytes()), err)
	}
	if _, _, err := fetch(strings.Repeat("ab", 32)); status.Code(err) != codes.NotFound {
		t.Errorf("fetch of a binary never submitted: %v", err)
	}
	if _, _, err := fetch("../../etc/passwd"); status.Code(err) != codes.InvalidArgument {
		t.Errorf("fetch by a path: %v", err)
	}
}
