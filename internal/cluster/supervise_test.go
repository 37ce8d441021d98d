package cluster

// Tests of the job registry (registry.db) and of the restart policy of
// `driver serve`: real job processes (shell scripts submitted as job
// binaries), real signals, real bbolt files, and for a coordinator that
// dies, a real process (this test binary, re-executed) killed with
// SIGKILL. Each test names the broken behaviour it catches.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	bolt "go.etcd.io/bbolt"
)

// attemptJob prints one line per start of its driver process, then runs
// until SIGTERM (and exits 0 on it). Its behaviour per attempt comes from
// its arguments: "exitN@A" exits N on attempt A at once; "waitN@A" exits N
// on attempt A once the file named by the next argument exists.
const attemptJob = `#!/bin/sh
echo "start attempt=$SLUICE_JOB_ATTEMPT par=$SLUICE_PARALLELISM id=$SLUICE_JOB_ID pid=$$ pwd=$PWD"
while [ $# -gt 0 ]; do
  case "$1" in
    exit*@$SLUICE_JOB_ATTEMPT) code=${1#exit}; code=${code%@*}; echo "attempt $SLUICE_JOB_ATTEMPT exits $code" >&2; exit $code ;;
    wait*@$SLUICE_JOB_ATTEMPT) code=${1#wait}; code=${code%@*}
      while [ ! -e "$2" ]; do sleep 0.02; done
      echo "attempt $SLUICE_JOB_ATTEMPT exits $code" >&2; exit $code ;;
  esac
  shift
done
trap 'echo "stopping on TERM"; exit 0' TERM
while :; do sleep 0.05 & wait $!; done
`

// syncBuffer is a log sink read while the coordinator writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// superviseFixture is a coordFixture whose log is kept, and which stops
// the coordinator (no restarts) before the fixture's own cleanup kills
// what is left.
func superviseFixture(t *testing.T, cfg CoordinatorConfig) (*coordFixture, *syncBuffer) {
	t.Helper()
	if cfg.RestartBackoff == 0 {
		cfg.RestartBackoff = 200 * time.Millisecond
	}
	f := newCoordFixture(t, cfg)
	logs := &syncBuffer{}
	f.c.cfg.Log = slog.New(slog.NewTextHandler(logs, nil))
	t.Cleanup(func() {
		f.c.stopAll()
		f.c.Close()
	})
	return f, logs
}

func (f *coordFixture) submitSupervised(t *testing.T, supervise bool, args ...string) string {
	t.Helper()
	h := scriptHeader([]byte(attemptJob), here(), args...)
	h.Supervise = supervise
	id, err := f.trySubmit([]byte(attemptJob), h)
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return id
}

// starts are the "start attempt=..." lines a job printed, each as its
// fields.
func starts(stdout string) []map[string]string {
	var out []map[string]string
	for _, l := range strings.Split(stdout, "\n") {
		if !strings.HasPrefix(l, "start ") {
			continue
		}
		m := map[string]string{}
		for _, kv := range strings.Fields(l)[1:] {
			k, v, _ := strings.Cut(kv, "=")
			m[k] = v
		}
		out = append(out, m)
	}
	return out
}

func (f *coordFixture) waitStarts(t *testing.T, id string, n int) []map[string]string {
	t.Helper()
	var s []map[string]string
	eventually(t, fmt.Sprintf("job %s to start %d times", id, n), func() bool {
		s = starts(f.stdout(id))
		return len(s) >= n
	})
	return s
}

func pidOf(t *testing.T, start map[string]string) int {
	t.Helper()
	pid, err := strconv.Atoi(start["pid"])
	if err != nil {
		t.Fatalf("no pid in %v", start)
	}
	return pid
}

// waitSeen polls ListJobs until it lists the job at attempt in one of
// states, and returns every state it listed the job in on the way (""
// when not listed).
func (f *coordFixture) waitSeen(t *testing.T, id string, attempt int32, states ...string) (*sluicev1.JobInfo, map[string]bool) {
	t.Helper()
	seen := map[string]bool{}
	var j *sluicev1.JobInfo
	eventually(t, fmt.Sprintf("job %s at attempt %d in %v", id, attempt, states), func() bool {
		j = nil
		for _, l := range f.jobs(t) {
			if l.GetJobId() == id {
				j = l
			}
		}
		seen[j.GetState()] = true
		for _, s := range states {
			if j.GetState() == s && j.GetAttempt() == attempt {
				return true
			}
		}
		return false
	})
	return j, seen
}

// Kills: a supervised job driver killed with SIGKILL not restarted; a
// restart without SLUICE_JOB_ATTEMPT, with another job id, working
// directory or partition count (the executors changed meanwhile); logs
// truncated; no "restarting" state in between (ListJobs must list the job,
// not ended); EndJob sent to executors for a job that restarts; no "job
// restarted" log with its attempt and cause; a stopped job restarted.
func TestSupervisedJobDriverKilledIsRestarted(t *testing.T) {
	f, logs := superviseFixture(t, CoordinatorConfig{RestartBackoff: 300 * time.Millisecond})
	f.register(t, "e1", 3, here())
	id := f.submitSupervised(t, true)
	first := f.waitStarts(t, id, 1)[0]
	if first["attempt"] != "1" || first["par"] != "3" || first["id"] != id {
		t.Fatalf("first start: %v", first)
	}
	if j := f.job(t, id); j.GetAttempt() != 1 || !j.GetSupervise() || j.GetParallelism() != 3 || j.GetState() != "running" {
		t.Fatalf("JobStatus of the first attempt: %v", j)
	}
	f.register(t, "e2", 4, here()) // a new job would get 7 partitions now
	if err := syscall.Kill(pidOf(t, first), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	j, seen := f.waitSeen(t, id, 2, "running")
	if !seen["restarting"] {
		t.Errorf("ListJobs never listed the job restarting between its death and its restart (states seen: %v)", seen)
	}
	s := f.waitStarts(t, id, 2)
	if len(s) != 2 || s[1]["attempt"] != "2" || s[1]["par"] != "3" || s[1]["id"] != id || s[1]["pwd"] != first["pwd"] {
		t.Fatalf("starts %v; want a second with attempt=2, par=3, the same id and directory", s)
	}
	if j = f.job(t, id); j.GetAttempt() != 2 || j.GetParallelism() != 3 || j.GetState() != "running" || j.GetJobId() != id {
		t.Fatalf("JobStatus after the restart: %v", j)
	}
	if f.executor.endedJob(id) {
		t.Fatal("EndJob was sent for a job that was restarted")
	}
	if l := logs.String(); !regexp.MustCompile(`msg="job restarted" job=` + id + ` attempt=2 cause="signal: killed`).MatchString(l) {
		t.Fatalf("no \"job restarted\" log with job, attempt and cause:\n%s", l)
	}
	// Stopped: never restarted, and ended on the executors.
	if _, err := f.dc.StopJob(context.Background(), &sluicev1.StopJobRequest{JobId: id}); err != nil {
		t.Fatal(err)
	}
	if j = f.waitState(t, id, "finished"); j.GetAttempt() != 2 {
		t.Fatalf("stopped job: %v", j)
	}
	eventually(t, "EndJob of the stopped job", func() bool { return f.executor.endedJob(id) })
	if n := len(starts(f.stdout(id))); n != 2 || !strings.Contains(f.stdout(id), "stopping on TERM") {
		t.Fatalf("the stopped job started %d times; stdout:\n%s", n, f.stdout(id))
	}
}

// Kills: a job driver's exit 75 (restart me) ignored for a job that is not
// supervised; the cause (exit status, last stderr line) not logged.
func TestExitRestartRestartsAnUnsupervisedJob(t *testing.T) {
	f, logs := superviseFixture(t, CoordinatorConfig{})
	f.register(t, "e1", 2, here())
	id := f.submitSupervised(t, false, fmt.Sprintf("exit%d@1", ExitRestart))
	s := f.waitStarts(t, id, 2)
	if s[1]["attempt"] != "2" || s[1]["par"] != "2" || s[1]["id"] != id {
		t.Fatalf("restart after exit 75: %v", s)
	}
	if j := f.waitState(t, id, "running"); j.GetAttempt() != 2 || j.GetSupervise() {
		t.Fatalf("JobStatus: %v", j)
	}
	if l := logs.String(); !strings.Contains(l, `msg="job restarted" job=`+id+` attempt=2 cause="exit status 75: attempt 1 exits 75"`) {
		t.Fatalf("no \"job restarted\" log with the exit status and last stderr line:\n%s", l)
	}
}

// Kills: a usage error (exit 2) restarted, even when supervised.
func TestUsageExitIsNeverRestarted(t *testing.T) {
	f, _ := superviseFixture(t, CoordinatorConfig{RestartBackoff: 10 * time.Millisecond})
	f.register(t, "e1", 1, here())
	id := f.submitSupervised(t, true, fmt.Sprintf("exit%d@1", ExitUsage), fmt.Sprintf("exit%d@2", ExitUsage))
	j := f.waitState(t, id, "failed")
	if j.GetAttempt() != 1 || !strings.Contains(j.GetError(), "exit status 2") || !strings.Contains(j.GetError(), "not restarted") ||
		strings.Contains(j.GetError(), "max-restarts") {
		t.Fatalf("a job that exited 2: %v; want failed at attempt 1, never restarted", j)
	}
	eventually(t, "EndJob of the failed job", func() bool { return f.executor.endedJob(id) })
	if n := len(starts(f.stdout(id))); n != 1 {
		t.Fatalf("the job started %d times", n)
	}
}

// Kills: a job that is not supervised restarted after SIGKILL.
func TestUnsupervisedKilledJobFails(t *testing.T) {
	f, _ := superviseFixture(t, CoordinatorConfig{RestartBackoff: 10 * time.Millisecond})
	f.register(t, "e1", 1, here())
	id := f.submitSupervised(t, false)
	first := f.waitStarts(t, id, 1)[0]
	if err := syscall.Kill(pidOf(t, first), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	j, seen := f.waitSeen(t, id, 1, "failed")
	if seen["restarting"] || j.GetAttempt() != 1 || !strings.Contains(j.GetError(), "signal: killed") {
		t.Fatalf("an unsupervised job killed: %v (states seen %v); want failed, not restarted", j, seen)
	}
	eventually(t, "EndJob of the failed job", func() bool { return f.executor.endedJob(id) })
	if n := len(starts(f.stdout(id))); n != 1 {
		t.Fatalf("the job started %d times", n)
	}
}

// Kills: restarts without a bound (a job that always dies is restarted for
// ever); the bound counting restarts older than the window; a failure that
// does not say why.
func TestRestartsAreBounded(t *testing.T) {
	f, _ := superviseFixture(t, CoordinatorConfig{MaxRestarts: 2, RestartBackoff: 10 * time.Millisecond})
	f.register(t, "e1", 1, here())
	id := f.submitSupervised(t, true, "exit1@1", "exit1@2", "exit1@3", "exit1@4")
	j := f.waitState(t, id, "failed")
	if j.GetAttempt() != 3 || !strings.Contains(j.GetError(), "exit status 1: attempt 3 exits 1") ||
		!strings.Contains(j.GetError(), "restarted 2 times in the last 10m0s") || !strings.Contains(j.GetError(), "--max-restarts 2") {
		t.Fatalf("a job that always dies: %v; want failed at attempt 3 naming the bound", j)
	}
	if n := len(starts(f.stdout(id))); n != 3 {
		t.Fatalf("the job started %d times, want 3", n)
	}
	// Restarts older than the window do not count: one restart allowed,
	// the second death comes after the window.
	g, _ := superviseFixture(t, CoordinatorConfig{MaxRestarts: 1, RestartBackoff: 10 * time.Millisecond})
	g.register(t, "e1", 1, here())
	gate := filepath.Join(t.TempDir(), "go")
	id = g.submitSupervised(t, true, "exit1@1", "wait1@2", gate)
	g.waitStarts(t, id, 2)
	g.clock.Advance(DefaultRestartWindow + time.Second)
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	g.waitStarts(t, id, 3)
	if j := g.waitState(t, id, "running"); j.GetAttempt() != 3 {
		t.Fatalf("after a restart outside the window: %v", j)
	}
}

// Kills: a job stopped by StopJob restarted (a supervised job that exits
// non-zero on SIGTERM); StopJob of a job waiting to restart not ending it
// (it would start again after the backoff).
func TestStoppedJobIsNeverRestarted(t *testing.T) {
	f, _ := superviseFixture(t, CoordinatorConfig{RestartBackoff: 10 * time.Millisecond})
	f.register(t, "e1", 1, here())
	script := "#!/bin/sh\necho \"start attempt=$SLUICE_JOB_ATTEMPT\"\ntrap 'exit 1' TERM\nwhile :; do sleep 0.05 & wait $!; done\n"
	h := scriptHeader([]byte(script), here())
	h.Supervise = true
	id, err := f.trySubmit([]byte(script), h)
	if err != nil {
		t.Fatal(err)
	}
	f.waitStarts(t, id, 1)
	if _, err := f.dc.StopJob(context.Background(), &sluicev1.StopJobRequest{JobId: id}); err != nil {
		t.Fatal(err)
	}
	j, seen := f.waitSeen(t, id, 1, "failed", "finished")
	if seen["restarting"] || j.GetState() != "failed" || j.GetAttempt() != 1 || !strings.Contains(j.GetError(), "exit status 1") {
		t.Fatalf("a supervised job stopped, exiting 1: %v (states seen %v)", j, seen)
	}
	// Stopped while it waits to restart (a long backoff).
	g, _ := superviseFixture(t, CoordinatorConfig{RestartBackoff: time.Hour})
	g.register(t, "e1", 1, here())
	id = g.submitSupervised(t, true)
	first := g.waitStarts(t, id, 1)[0]
	syscall.Kill(pidOf(t, first), syscall.SIGKILL)
	g.waitState(t, id, "restarting")
	if g.executor.endedJob(id) {
		t.Fatal("EndJob sent for a job that is restarting")
	}
	if _, err := g.dc.StopJob(context.Background(), &sluicev1.StopJobRequest{JobId: id}); err != nil {
		t.Fatal(err)
	}
	if j := g.waitState(t, id, "finished"); j.GetAttempt() != 1 || !strings.Contains(j.GetError(), "stopped") {
		t.Fatalf("stopped while restarting: %v", j)
	}
	eventually(t, "EndJob of the stopped job", func() bool { return g.executor.endedJob(id) })
	if n := len(starts(g.stdout(id))); n != 1 {
		t.Fatalf("the job started %d times", n)
	}
}

// finishingJob is attemptJob in another binary (a job's binary is deleted
// when no job that is not over uses it).
const finishingJob = attemptJob + "# another binary\n"

// coordinatorChildEnv makes this test binary a coordinator process
// (TestCoordinatorChild) on the state directory it names.
const coordinatorChildEnv = "SLUICE_TEST_COORDINATOR_STATE"

// TestCoordinatorChild is not a test: it is the coordinator process of
// TestCoordinatorKilledAndStartedAgain. It starts a job that finishes and
// a job that runs (the binary is in binaries/ already), then runs until
// killed.
func TestCoordinatorChild(t *testing.T) {
	state := os.Getenv(coordinatorChildEnv)
	if state == "" {
		t.Skip("the coordinator process of TestCoordinatorKilledAndStartedAgain")
	}
	c, err := NewCoordinator(CoordinatorConfig{StateDir: state, Advertise: "127.0.0.1:1", Secret: Insecure(), Log: quietLog()})
	if err != nil {
		fmt.Println("child:", err)
		os.Exit(1)
	}
	h := scriptHeader([]byte(finishingJob), nil, "exit0@1")
	done, err := c.startJob(h, filepath.Join(state, "binaries", h.Sha256))
	if err != nil {
		fmt.Println("child:", err)
		os.Exit(1)
	}
	c.mu.Lock()
	ended := c.jobs[done].done
	c.mu.Unlock()
	<-ended // recorded as finished
	if _, err := c.RegisterExecutor(context.Background(), &sluicev1.RegisterExecutorRequest{ExecutorId: "e", Address: "127.0.0.1:2", Slots: 3}); err != nil {
		os.Exit(1)
	}
	h = scriptHeader([]byte(attemptJob), nil)
	h.Name = "runs"
	id, err := c.startJob(h, filepath.Join(state, "binaries", h.Sha256))
	if err != nil {
		fmt.Println("child:", err)
		os.Exit(1)
	}
	fmt.Println("started", id)
	c.Run(context.Background())
}

// Kills: a coordinator that forgets its jobs when it dies (no registry, or
// one not written on submit); jobs that ran not started again by the next
// coordinator, or started with attempt 1, another partition count or
// another id; finished jobs no longer listed; job ids reused after a
// restart; a second coordinator on a state directory in use not refused
// (or waiting for ever) or refused without naming the file.
func TestCoordinatorKilledAndStartedAgain(t *testing.T) {
	state := t.TempDir()
	for _, d := range []string{"binaries", "jobs"} {
		os.MkdirAll(filepath.Join(state, d), 0o755)
	}
	sha := scriptHeader([]byte(attemptJob), nil).Sha256
	for _, script := range []string{attemptJob, finishingJob} {
		if err := os.WriteFile(filepath.Join(state, "binaries", scriptHeader([]byte(script), nil).Sha256), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	child := exec.Command(os.Args[0], "-test.run=^TestCoordinatorChild$")
	child.Env = append(os.Environ(), coordinatorChildEnv+"="+state)
	var out syncBuffer
	child.Stdout, child.Stderr = &out, &out
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()
	var id string
	eventually(t, "the child coordinator to start its jobs", func() bool {
		if m := regexp.MustCompile(`started (\S+)`).FindStringSubmatch(out.String()); m != nil {
			id = m[1]
		}
		return id != "" || strings.Contains(out.String(), "FAIL") || strings.Contains(out.String(), "child:")
	})
	if id == "" {
		t.Fatalf("the child coordinator failed:\n%s", out.String())
	}
	stdout := func(id string) string {
		b, _ := os.ReadFile(filepath.Join(state, "jobs", id, "stdout.log"))
		return string(b)
	}
	eventually(t, "the running job to start", func() bool { return len(starts(stdout(id))) == 1 })
	first := starts(stdout(id))[0]
	if first["par"] != "3" {
		t.Fatalf("first start: %v", first)
	}

	// A second coordinator on the same state directory fails fast.
	began := time.Now()
	_, err := NewCoordinator(CoordinatorConfig{StateDir: state, Advertise: "127.0.0.1:1", Secret: Insecure(), Log: quietLog(), LockTimeout: 300 * time.Millisecond})
	if !errors.Is(err, ErrRegistryLocked) || !strings.Contains(err.Error(), filepath.Join(state, RegistryFile)) || !strings.Contains(err.Error(), "--state-dir") {
		t.Fatalf("a second coordinator on a state directory in use: %v", err)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Fatalf("the second coordinator took %v to give up", d)
	}

	// kill -9 of the coordinator: its job driver dies with it.
	child.Process.Kill()
	child.Wait()
	pid := pidOf(t, first)
	eventually(t, "the job driver to die with its coordinator", func() bool { return syscall.Kill(pid, 0) != nil })

	c, err := NewCoordinator(CoordinatorConfig{StateDir: state, Advertise: "127.0.0.1:1", Secret: Insecure(), Log: quietLog(), RestartBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	defer func() {
		cancel()
		<-ran
		c.Close()
	}()
	list := func() map[string]*sluicev1.JobInfo {
		resp, err := c.ListJobs(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]*sluicev1.JobInfo{}
		for _, j := range resp.GetJobs() {
			m[j.GetName()] = j
		}
		return m
	}
	before := list()
	if len(before) != 2 || before["test-job"].GetState() != "finished" || before["runs"].GetState() != "restarting" || before["runs"].GetJobId() != id {
		t.Fatalf("the new coordinator lists %v; want the finished job, and %s restarting", before, id)
	}
	go func() { c.Run(ctx); close(ran) }()
	eventually(t, "the job to start again", func() bool { return len(starts(stdout(id))) == 2 })
	second := starts(stdout(id))[1]
	if second["attempt"] != "2" || second["par"] != "3" || second["id"] != id || second["pwd"] != first["pwd"] {
		t.Fatalf("started again: %v; want attempt 2, 3 partitions (the new coordinator has no executors), the same id and directory", second)
	}
	eventually(t, "the job running", func() bool { return list()["runs"].GetState() == "running" })
	if j := list()["runs"]; j.GetAttempt() != 2 || j.GetParallelism() != 3 {
		t.Fatalf("JobStatus: %v", j)
	}
	if j := list()["test-job"]; j.GetState() != "finished" || j.GetAttempt() != 1 {
		t.Fatalf("the finished job: %v", j)
	}
	// New ids continue after the old ones.
	h := scriptHeader([]byte(attemptJob), nil, "exit0@1")
	newID, err := c.startJob(h, filepath.Join(state, "binaries", sha))
	if err != nil {
		t.Fatal(err)
	}
	if jobNumber(newID) != 3 || jobNumber(id) != 2 {
		t.Fatalf("ids %s then %s after a restart; want numbers 2 then 3", id, newID)
	}
}

func jobNumber(id string) int {
	n, _ := strconv.Atoi(id[strings.LastIndexByte(id, '-')+1:])
	return n
}

// Kills: a coordinator stopped (SIGTERM to `driver serve`) that records its
// jobs as over, so the next one does not start them again; a job whose
// binary is gone started (or left restarting) instead of failed with the
// reason.
func TestCoordinatorStoppedAndStartedAgain(t *testing.T) {
	state := t.TempDir()
	open := func() *Coordinator {
		c, err := NewCoordinator(CoordinatorConfig{StateDir: state, Advertise: "127.0.0.1:1", Secret: Insecure(), Log: quietLog(), RestartBackoff: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	put := func(script string) (*sluicev1.SubmitHeader, string) {
		h := scriptHeader([]byte(script), nil)
		path := filepath.Join(state, "binaries", h.Sha256)
		if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		return h, path
	}
	stdout := func(id string) string {
		b, _ := os.ReadFile(filepath.Join(state, "jobs", id, "stdout.log"))
		return string(b)
	}
	c := open()
	h, path := put(attemptJob)
	runs, err := c.startJob(h, path)
	if err != nil {
		t.Fatal(err)
	}
	gone, goneBin := put(finishingJob)
	goneID, err := c.startJob(gone, goneBin)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "both jobs to start", func() bool { return len(starts(stdout(runs))) == 1 && len(starts(stdout(goneID))) == 1 })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c.Run(ctx) // stops every job (SIGTERM) and returns
	c.Close()
	if !strings.Contains(stdout(runs), "stopping on TERM") {
		t.Fatalf("the job was not stopped with the coordinator: %s", stdout(runs))
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the binary of a job to start again was deleted: %v", err)
	}
	os.Remove(goneBin)

	c = open()
	ctx, cancel = context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { c.Run(ctx); close(ran) }()
	defer func() { cancel(); <-ran; c.Close() }()
	eventually(t, "the job to start again", func() bool { return len(starts(stdout(runs))) == 2 })
	if s := starts(stdout(runs))[1]; s["attempt"] != "2" || s["id"] != runs {
		t.Fatalf("started again: %v", s)
	}
	j, err := c.JobStatus(context.Background(), &sluicev1.JobStatusRequest{JobId: goneID})
	if err != nil || j.GetState() != "failed" || !strings.Contains(j.GetError(), "binary") || !strings.Contains(j.GetError(), "is gone") {
		t.Fatalf("a job whose binary is gone: %v, %v; want failed, saying so", j, err)
	}
	if n := len(starts(stdout(goneID))); n != 1 {
		t.Fatalf("the job without its binary started %d times", n)
	}
}

// Kills: a damaged registry.db replaced by an empty one or skipped (the
// coordinator would start forgetting the jobs it must restart); a record
// that fails its checksum read as if it were good.
func TestDamagedRegistryIsRefused(t *testing.T) {
	cfg := func(state string) CoordinatorConfig {
		return CoordinatorConfig{StateDir: state, Advertise: "127.0.0.1:1", Secret: Insecure(), Log: quietLog()}
	}
	// Not a bbolt file at all.
	state := t.TempDir()
	garbage := bytes.Repeat([]byte("not a registry "), 2000)
	reg := filepath.Join(state, RegistryFile)
	if err := os.WriteFile(reg, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := NewCoordinator(cfg(state))
	if !errors.Is(err, ErrRegistryDamaged) || !strings.Contains(err.Error(), reg) || !strings.Contains(err.Error(), "refusing to start") {
		t.Fatalf("garbage registry: %v", err)
	}
	if b, _ := os.ReadFile(reg); !bytes.Equal(b, garbage) {
		t.Fatal("the damaged registry was changed")
	}
	// A truncated one.
	state = t.TempDir()
	c, err := NewCoordinator(cfg(state))
	if err != nil {
		t.Fatal(err)
	}
	h := scriptHeader([]byte("#!/bin/sh\nexit 0\n"), nil)
	path := filepath.Join(state, "binaries", h.Sha256)
	os.WriteFile(path, []byte("#!/bin/sh\nexit 0\n"), 0o755)
	if _, err := c.startJob(h, path); err != nil {
		t.Fatal(err)
	}
	c.stopAll()
	c.Close()
	reg = filepath.Join(state, RegistryFile)
	good, _ := os.ReadFile(reg)
	if err := os.WriteFile(reg, good[:len(good)/3], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewCoordinator(cfg(state)); !errors.Is(err, ErrRegistryDamaged) || !strings.Contains(err.Error(), reg) {
		t.Fatalf("truncated registry: %v", err)
	}
	// A record whose bytes changed. (A new file: the failed open above may
	// have left its lock on the old one, in this process.)
	if err := os.WriteFile(reg+".new", good, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(reg+".new", reg); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(reg, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(jobsBucket)
		k, v := b.Cursor().First()
		if k == nil {
			return errors.New("no job record")
		}
		w := bytes.Replace(append([]byte(nil), v...), []byte(`"test-job"`), []byte(`"best-job"`), 1)
		if bytes.Equal(v, w) {
			return fmt.Errorf("no job name in %q", v)
		}
		v = w
		return b.Put(k, v)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewCoordinator(cfg(state)); !errors.Is(err, ErrRegistryDamaged) || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("a changed record: %v", err)
	}
}

// Kills: a registry that loses a field of a job (arguments, partition
// count, restart times...) or reuses job numbers after it is reopened.
func TestRegistryRoundTrip(t *testing.T) {
	dir := t.TempDir()
	r, err := openRegistry(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	rec := jobRecord{ID: "job-20260101T000000-1", Name: "n", SHA256: strings.Repeat("ab", 32), Args: []string{"--a", "b c"}, Parallelism: 7,
		Supervise: true, State: "restarting", Attempt: 3, StartedUnixMs: 12345, Error: "e", RestartsUnixMs: []int64{1, 2}}
	for want := uint64(1); want <= 2; want++ {
		if n, err := r.nextNumber(); err != nil || n != want {
			t.Fatalf("nextNumber: %d, %v; want %d", n, err, want)
		}
	}
	if err := r.put(rec); err != nil {
		t.Fatal(err)
	}
	gone := rec
	gone.ID = "job-20260101T000000-2"
	if err := r.put(gone); err != nil {
		t.Fatal(err)
	}
	if err := r.delete(gone.ID); err != nil {
		t.Fatal(err)
	}
	r.close()
	r, err = openRegistry(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	got, err := r.load()
	if err != nil || len(got) != 1 || fmt.Sprint(got[0]) != fmt.Sprint(rec) {
		t.Fatalf("load: %v, %v; want [%v]", got, err, rec)
	}
	if n, err := r.nextNumber(); err != nil || n != 3 {
		t.Fatalf("nextNumber after reopening: %d, %v; want 3", n, err)
	}
}
