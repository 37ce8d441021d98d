package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testDaemon(t *testing.T) (*Daemon, string) {
	t.Helper()
	work := filepath.Join(t.TempDir(), "work")
	d, err := NewDaemon(DaemonConfig{DriverAddr: "127.0.0.1:1", Advertise: "127.0.0.1:2", WorkDir: work, Slots: 2,
		Secret: mustSecret(t, "the-right-cluster-secret"), Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d, work
}

var badIDs = []string{"", ".", "..", "a/b", "../x", "/abs", ".hidden", "a\\b", "a\x00b", strings.Repeat("x", 200), strings.Repeat("x/", 1<<19)}

func TestBadIDsAreRefusedEverywhere(t *testing.T) {
	d, work := testDaemon(t)
	sentinel := filepath.Join(work, "shuffle", "keep")
	if err := os.WriteFile(sentinel, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	store, err := NewShuffleStore(filepath.Join(work, "shuffle"), mem)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, id := range badIDs {
		calls := map[string]error{}
		_, calls["RunTask"] = d.RunTask(ctx, &sluicev1.TaskRequest{JobId: id, BinarySha256: strings.Repeat("0", 64)})
		_, calls["EndJob"] = d.EndJob(ctx, &sluicev1.EndJobRequest{JobId: id})
		_, calls["CommitState"] = d.CommitState(ctx, &sluicev1.CommitStateRequest{JobId: id})
		calls["FetchBlock"] = (&ShuffleServer{Store: store}).FetchBlock(&sluicev1.FetchBlockRequest{JobId: id}, nil)
		calls["store.Write"] = store.Write(id, 1, 0, records(t, mem, []string{"a"}))
		_, calls["store.Read"] = store.Read(id, 1, 0, 0)
		calls["store.RemoveJob"] = store.RemoveJob(id)
		for name, err := range calls {
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("%s(%q): %v, want InvalidArgument", name, id, err)
			}
		}
		store.RemoveShuffles(id, 1)
	}
	for _, sha := range []string{"", ".", "..", "a/b", strings.Repeat("A", 64), strings.Repeat("0", 63)} {
		if err := checkSHA(sha); status.Code(err) != codes.InvalidArgument {
			t.Errorf("sha %q: %v", sha, err)
		}
		if _, err := (&Coordinator{cfg: CoordinatorConfig{StateDir: work}}).binaryPath(sha); status.Code(err) != codes.InvalidArgument {
			t.Errorf("coordinator binary %q: %v", sha, err)
		}
	}
	for _, dir := range []string{"binaries", "jobs", "shuffle"} {
		if _, err := os.Stat(filepath.Join(work, dir)); err != nil {
			t.Errorf("work directory damaged: %v", err)
		}
	}
	if _, err := os.Stat(sentinel); err != nil {
		t.Errorf("a file of the work directory was removed: %v", err)
	}
	for _, ok := range []string{"job-20260101T000000-1", "a", "A.b_c-9"} {
		if err := checkID("job id", ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
}

// A cached job binary that changed after it was stored is refused before
// it is executed, and deleted.
func TestTamperedCachedBinaryIsRefusedBeforeExec(t *testing.T) {
	d, work := testDaemon(t)
	marker := filepath.Join(t.TempDir(), "ran")
	script := func(what string) []byte {
		return []byte("#!/bin/sh\necho " + what + " > " + marker + "\nexit 3\n")
	}
	right := script("right")
	sum := sha256.Sum256(right)
	sha := hex.EncodeToString(sum[:])
	bin := filepath.Join(work, "binaries", sha)
	if err := os.WriteFile(bin, script("tampered"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := d.RunTask(ctx, &sluicev1.TaskRequest{JobId: "job-1", BinarySha256: sha})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(resp.GetError(), "hash mismatch") {
		t.Fatalf("task error %q, want a hash mismatch", resp.GetError())
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the tampered binary ran")
	}
	if _, err := os.Stat(bin); err == nil {
		t.Fatal("the tampered binary is still cached")
	}
	// The right bytes do run (the check is not refusing everything).
	if err := os.WriteFile(bin, right, 0o755); err != nil {
		t.Fatal(err)
	}
	resp, err = d.RunTask(ctx, &sluicev1.TaskRequest{JobId: "job-1", BinarySha256: sha})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(marker); strings.TrimSpace(string(b)) != "right" {
		t.Fatalf("the right binary did not run (task error %q)", resp.GetError())
	}
}

// entries lists what a directory tree holds, hidden files included.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if p != dir && err == nil {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

// A submission refused for any reason leaves nothing in the state
// directory, and a job's binary goes when the job ends.
func TestRefusedSubmissionsLeaveNothing(t *testing.T) {
	state := t.TempDir()
	secret := mustSecret(t, "the-right-cluster-secret")
	c, err := NewCoordinator(CoordinatorConfig{StateDir: state, Advertise: "127.0.0.1:1", Secret: secret, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, secret.ServerOptions(nil), func(s *grpc.Server) { sluicev1.RegisterDriverServer(s, c) })
	dc := sluicev1.NewDriverClient(dial(t, addr, secret.DialOptions()...))
	ctx := context.Background()
	if _, err := dc.RegisterExecutor(ctx, &sluicev1.RegisterExecutorRequest{ExecutorId: "e", Address: "127.0.0.1:2", Slots: 1,
		Platform: &sluicev1.Platform{Goos: "linux", Goarch: "amd64"}}); err != nil {
		t.Fatal(err)
	}
	here := &sluicev1.Platform{Goos: "linux", Goarch: "amd64"}
	header := func(data []byte) *sluicev1.SubmitHeader {
		sum := sha256.Sum256(data)
		return &sluicev1.SubmitHeader{Sha256: hex.EncodeToString(sum[:]), Size: int64(len(data)), Platform: here}
	}
	text := []byte(strings.Repeat("not a program\n", 1000))
	script := []byte("#!/bin/sh\nexit 0\n")
	other := header([]byte("other"))
	for _, tc := range []struct {
		name string
		h    *sluicev1.SubmitHeader
		data []byte
	}{
		{"not executable", header(text), text},
		{"hash mismatch", &sluicev1.SubmitHeader{Sha256: other.Sha256, Size: int64(len(script)), Platform: here}, script},
		{"longer than announced", &sluicev1.SubmitHeader{Sha256: header(script).Sha256, Size: 4, Platform: here}, script},
		{"too large", &sluicev1.SubmitHeader{Sha256: header(script).Sha256, Size: MaxBinaryBytes + 1, Platform: here}, script},
		{"other platform", &sluicev1.SubmitHeader{Sha256: header(script).Sha256, Size: int64(len(script)), Platform: &sluicev1.Platform{Goos: "linux", Goarch: "arm64"}}, script},
		{"bad sha", &sluicev1.SubmitHeader{Sha256: "..", Size: int64(len(script)), Platform: here}, script},
	} {
		if err := submitBytes(ctx, dc, tc.h, tc.data); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
		if left := entries(t, state); len(left) != 3 { // binaries/, jobs/ and registry.db
			t.Errorf("%s: the state directory holds %v", tc.name, left)
		}
	}
	// A job that ran and ended leaves its logs, not its binary.
	if err := submitBytes(ctx, dc, header(script), script); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		bins, _ := os.ReadDir(filepath.Join(state, "binaries"))
		if len(bins) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ended job's binary is still stored: %v", entries(t, state))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// EndJob is retried until the executor answers.
type flakyExecutor struct {
	sluicev1.UnimplementedExecutorServer
	calls atomic.Int64
}

func (f *flakyExecutor) EndJob(context.Context, *sluicev1.EndJobRequest) (*sluicev1.EndJobResponse, error) {
	if f.calls.Add(1) < 3 {
		return nil, status.Error(codes.Unavailable, "not now")
	}
	return &sluicev1.EndJobResponse{}, nil
}

func TestEndJobIsRetried(t *testing.T) {
	secret := mustSecret(t, "the-right-cluster-secret")
	f := &flakyExecutor{}
	addr := serve(t, secret.ServerOptions(nil), func(s *grpc.Server) { sluicev1.RegisterExecutorServer(s, f) })
	c, err := NewCoordinator(CoordinatorConfig{StateDir: t.TempDir(), Advertise: "127.0.0.1:1", Secret: secret, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.RegisterExecutor(context.Background(), &sluicev1.RegisterExecutorRequest{ExecutorId: "e", Address: addr, Slots: 1}); err != nil {
		t.Fatal(err)
	}
	c.endJobOnExecutors("job-1")
	if n := f.calls.Load(); n != 3 {
		t.Fatalf("EndJob called %d times, want 3 (two failures, then success)", n)
	}
}

// An executor deletes a binary once no job process of it is left.
func TestExecutorDropsUnusedBinaries(t *testing.T) {
	d, work := testDaemon(t)
	bin := filepath.Join(work, "binaries", strings.Repeat("a", 64))
	if err := os.WriteFile(bin, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Not while a task is in flight: it may have fetched the binary and
	// not started its process yet.
	d.mu.Lock()
	d.running++
	d.mu.Unlock()
	if _, err := d.EndJob(context.Background(), &sluicev1.EndJobRequest{JobId: "job-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatal("a binary was deleted while a task was in flight")
	}
	d.mu.Lock()
	d.running--
	d.mu.Unlock()
	if _, err := d.EndJob(context.Background(), &sluicev1.EndJobRequest{JobId: "job-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err == nil {
		t.Fatal("an unused binary is still cached after EndJob")
	}
}

// An executor ends a job the driver no longer lists as running (an EndJob
// that never arrived, a restarted driver), after two sweeps.
func TestExecutorEndsJobsTheDriverForgot(t *testing.T) {
	secret := mustSecret(t, "the-right-cluster-secret")
	c, err := NewCoordinator(CoordinatorConfig{StateDir: t.TempDir(), Advertise: "127.0.0.1:1", Secret: secret, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, secret.ServerOptions(nil), func(s *grpc.Server) { sluicev1.RegisterDriverServer(s, c) })
	d, work := testDaemon(t)
	d.driver = sluicev1.NewDriverClient(dial(t, addr, secret.DialOptions()...))
	// A job process of a job the driver does not know.
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &jobProc{cmd: cmd, ready: make(chan struct{}), done: make(chan struct{})}
	close(p.ready)
	go func() { cmd.Wait(); close(p.done) }()
	d.jobs["job-gone"] = p
	for _, dir := range []string{"jobs/job-gone", "shuffle/job-gone"} {
		os.MkdirAll(filepath.Join(work, dir), 0o755)
	}
	// And one of a job it runs.
	script := []byte("#!/bin/sh\nexec sleep 30\n")
	sum := sha256.Sum256(script)
	dc := sluicev1.NewDriverClient(dial(t, addr, secret.DialOptions()...))
	stream, err := dc.SubmitJob(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	stream.Send(&sluicev1.SubmitJobRequest{Part: &sluicev1.SubmitJobRequest_Header{Header: &sluicev1.SubmitHeader{
		Sha256: hex.EncodeToString(sum[:]), Size: int64(len(script))}}})
	stream.Send(&sluicev1.SubmitJobRequest{Part: &sluicev1.SubmitJobRequest_Data{Data: script}})
	resp, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatal(err)
	}
	defer c.stopAll()
	live := exec.Command("sleep", "60")
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	defer live.Process.Kill()
	lp := &jobProc{cmd: live, ready: make(chan struct{}), done: make(chan struct{})}
	close(lp.ready)
	go func() { live.Wait(); close(lp.done) }()
	d.jobs[resp.GetJobId()] = lp

	missing := map[string]bool{}
	d.endForgottenJobs(context.Background(), missing)
	select {
	case <-p.done:
		t.Fatal("the job was ended after one sweep")
	default:
	}
	d.endForgottenJobs(context.Background(), missing)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatal("the forgotten job's process still runs after two sweeps")
	}
	for _, dir := range []string{"jobs/job-gone", "shuffle/job-gone"} {
		if _, err := os.Stat(filepath.Join(work, dir)); err == nil {
			t.Errorf("%s is left", dir)
		}
	}
	d.endForgottenJobs(context.Background(), missing)
	select {
	case <-lp.done:
		t.Fatal("the process of a running job was stopped")
	default:
	}
}

// The coordinator re-hashes a job binary right before it starts it.
func TestCoordinatorRefusesAChangedBinary(t *testing.T) {
	state := t.TempDir()
	c, err := NewCoordinator(CoordinatorConfig{StateDir: state, Advertise: "127.0.0.1:1", Secret: mustSecret(t, "the-right-cluster-secret"), Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(t.TempDir(), "ran")
	right := []byte("#!/bin/sh\nexit 0\n")
	sum := sha256.Sum256(right)
	sha := hex.EncodeToString(sum[:])
	path := filepath.Join(state, "binaries", sha)
	if err := os.WriteFile(path, []byte("#!/bin/sh\ntouch "+marker+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = c.startJob(&sluicev1.SubmitHeader{Sha256: sha, Size: int64(len(right))}, path)
	if err == nil || !strings.Contains(err.Error(), "hash mismatch") {
		t.Fatalf("start of a changed binary: %v", err)
	}
	c.stopAll()
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the changed binary ran")
	}
	if left := entries(t, state); len(left) != 3 { // binaries/, jobs/ and registry.db
		t.Fatalf("the state directory holds %v", left)
	}
}

// A daemon started again on a work directory (after kill -9: its job
// processes died with it) deletes the shuffle files the earlier one's job
// processes wrote: no driver reads an earlier incarnation's output, and
// only those processes knew which files to delete. Binaries stay.
func TestDaemonStartRemovesAnEarlierDaemonsShuffleFiles(t *testing.T) {
	first, work := testDaemon(t)
	first.Close() // it died (the kernel drops its lock)
	old := filepath.Join(work, "shuffle", "job-1", "42", "0")
	if err := os.MkdirAll(old, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(old, "r0.arrow"), []byte("block"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(work, "binaries", strings.Repeat("a", 64))
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	d, err := NewDaemon(DaemonConfig{DriverAddr: "127.0.0.1:1", Advertise: "127.0.0.1:2", WorkDir: work, Slots: 2,
		Secret: mustSecret(t, "the-right-cluster-secret"), Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	if _, err := os.Stat(filepath.Join(work, "shuffle", "job-1")); !os.IsNotExist(err) {
		t.Errorf("the earlier daemon's shuffle files are still there (%v)", err)
	}
	if _, err := os.Stat(filepath.Join(work, "shuffle")); err != nil {
		t.Errorf("no shuffle directory: %v", err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Errorf("a stored binary went with them: %v", err)
	}
}

// A second executor on a work directory in use is refused, naming the
// process that holds it, and deletes nothing of the first's; once the
// first let it go, it starts.
func TestDaemonRefusesAWorkDirectoryInUse(t *testing.T) {
	first, work := testDaemon(t)
	defer first.Close()
	block := filepath.Join(work, "shuffle", "job-1", "42", "0", "r0.arrow")
	if err := os.MkdirAll(filepath.Dir(block), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(block, []byte("block"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := DaemonConfig{DriverAddr: "127.0.0.1:1", Advertise: "127.0.0.1:3", WorkDir: work, Slots: 2,
		Secret: mustSecret(t, "the-right-cluster-secret"), Log: quietLog()}
	_, err := NewDaemon(cfg)
	want := fmt.Sprintf("work directory %s is in use by another executor (process %d holds %s): give each executor its own --work-dir",
		work, os.Getpid(), filepath.Join(work, "executor.lock"))
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("a second daemon on %s: %v; want %q", work, err, want)
	}
	if _, err := os.Stat(block); err != nil {
		t.Fatalf("the refused daemon deleted the first's shuffle files: %v", err)
	}
	first.Close()
	second, err := NewDaemon(cfg)
	if err != nil {
		t.Fatalf("after the first let go: %v", err)
	}
	second.Close()
}
