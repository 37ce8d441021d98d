package cluster

// Defects found by the abuse campaign (abuse_test.go), one test each, each
// written to fail on the code before its fix (2026-11-30) and kept as a
// regression test.

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A SubmitJob stream closed before any message: the handler returns the
// io.EOF of its first Recv, which gRPC sends as Unknown "EOF".
func TestAbuseDefectSubmitJobEmptyStream(t *testing.T) {
	a := newAbuseCluster(t)
	_, err := submitParts(context.Background(), a.dc)
	wantCode(t, "an empty SubmitJob stream", err, codes.InvalidArgument, "header")
}

// A header announcing size 0 or a negative size is malformed, not a
// resource limit: ResourceExhausted tells a client to retry later.
func TestAbuseDefectSubmitJobNonPositiveSize(t *testing.T) {
	a := newAbuseCluster(t)
	script := []byte("#!/bin/sh\nexit 0\n")
	for _, n := range []int64{0, -1, math.MinInt64} {
		_, err := submitParts(context.Background(), a.dc, hdr(&sluicev1.SubmitHeader{Sha256: shaOf(script), Size: n, Platform: here()}), dat(script))
		wantCode(t, "size "+strconv.FormatInt(n, 10), err, codes.InvalidArgument, "size")
	}
}

// Bytes that hash right but are no executable (garbage, a text file
// without #!), or arguments the kernel refuses (a NUL byte): the exec
// fails and the client gets Internal, the code of a server bug, for its
// own bad input.
func TestAbuseDefectSubmitJobUnrunnableBinaryIsInternal(t *testing.T) {
	a := newAbuseCluster(t)
	garbage := []byte("\x00\x01\x02 not an executable")
	script := []byte("#!/bin/sh\nexit 0\n")
	for name, c := range map[string]struct {
		data []byte
		args []string
		why  string
	}{
		"garbage binary":  {garbage, nil, "exec format error"},
		"NUL in argument": {script, []string{"a\x00b"}, "argument"},
	} {
		_, err := submitParts(context.Background(), a.dc, hdr(&sluicev1.SubmitHeader{Sha256: shaOf(c.data), Size: int64(len(c.data)), Platform: here(), Args: c.args}), dat(c.data))
		switch status.Code(err) {
		case codes.InvalidArgument, codes.FailedPrecondition:
			if !strings.Contains(err.Error(), c.why) {
				t.Errorf("%s: the refusal does not say why: %v", name, err)
			}
		default:
			t.Errorf("%s: got %v, want InvalidArgument or FailedPrecondition", name, err)
		}
	}
}

// A second header in a SubmitJob stream is taken as an empty data chunk:
// the job starts with the first header's arguments and the second one's are
// dropped without a word.
func TestAbuseDefectSubmitJobSecondHeaderIgnored(t *testing.T) {
	a := newAbuseCluster(t)
	script := []byte("#!/bin/sh\necho \"$@\"\nexit 0\n")
	h1 := &sluicev1.SubmitHeader{Name: "first", Sha256: shaOf(script), Size: int64(len(script)), Platform: here(), Args: []string{"one"}}
	h2 := &sluicev1.SubmitHeader{Name: "second", Sha256: shaOf(script), Size: int64(len(script)), Platform: here(), Args: []string{"two"}}
	resp, err := submitParts(context.Background(), a.dc, hdr(h1), hdr(h2), dat(script))
	wantCode(t, "two headers", err, codes.InvalidArgument, "header")
	if err == nil {
		t.Logf("job %s started with the first header's arguments only", resp.GetJobId())
	}
}

// Submissions of one binary at once, while jobs of it end: a job's end
// deletes the binary (dropBinaryLocked) between another submission's
// rename of the same file into place and its launch, which then fails
// with Internal "no such file or directory".
func TestAbuseDefectSubmitJobSameBinaryRace(t *testing.T) {
	a := newAbuseCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*abuseCallTimeout)
	defer cancel()
	script := []byte("#!/bin/sh\nexit 0\n")
	h := &sluicev1.SubmitHeader{Sha256: shaOf(script), Size: int64(len(script)), Platform: here()}
	for round := range 3 {
		var wg sync.WaitGroup
		for range 12 {
			wg.Go(func() {
				if _, err := submitParts(ctx, a.dc, hdr(h), dat(script)); err != nil {
					t.Errorf("round %d: a well-formed submission failed: %v", round, err)
				}
			})
		}
		wg.Wait()
	}
}

// Slots are not bounded: two executors of math.MaxInt32 slots make a new
// job's partition count 2^32+2, which the coordinator passes to the job
// driver as SLUICE_PARALLELISM=4294967296 but records (int32) as 0.
func TestAbuseDefectRegisterExecutorSlotsOverflow(t *testing.T) {
	a := newAbuseCluster(t)
	ctx := context.Background()
	for _, id := range []string{"huge-1", "huge-2"} {
		_, err := a.dc.RegisterExecutor(ctx, &sluicev1.RegisterExecutorRequest{ExecutorId: id, Address: a.execAddr, Slots: math.MaxInt32, Platform: here()})
		if status.Code(err) == codes.InvalidArgument {
			return // refused: fixed
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	script := []byte("#!/bin/sh\necho \"$SLUICE_PARALLELISM\"\nexit 0\n")
	resp, err := submitParts(ctx, a.dc, hdr(&sluicev1.SubmitHeader{Sha256: shaOf(script), Size: int64(len(script)), Platform: here()}), dat(script))
	if err != nil {
		t.Fatal(err)
	}
	var j *sluicev1.JobInfo
	eventually(t, "the job finished", func() bool {
		j, err = a.dc.JobStatus(ctx, &sluicev1.JobStatusRequest{JobId: resp.GetJobId()})
		return err == nil && j.GetState() == "finished"
	})
	out, _ := os.ReadFile(filepath.Join(a.state, "jobs", resp.GetJobId(), "stdout.log"))
	got := strings.TrimSpace(string(out))
	if j.GetParallelism() <= 0 || strconv.Itoa(int(j.GetParallelism())) != got {
		t.Errorf("the job's parallelism is %d in its record and %s in its driver's environment", j.GetParallelism(), got)
	}
}

// Executor ids and addresses are not checked: an id with a path and a
// newline, and an address that is no host:port, are registered and listed
// (job drivers then dial it; ids elsewhere pass checkID).
func TestAbuseDefectRegisterExecutorMalformedIDAndAddress(t *testing.T) {
	a := newAbuseCluster(t)
	ctx := context.Background()
	_, err := a.dc.RegisterExecutor(ctx, &sluicev1.RegisterExecutorRequest{ExecutorId: "../../x\n<b>", Address: a.execAddr, Slots: 1})
	wantCode(t, "malformed executor id", err, codes.InvalidArgument, "executor id")
	_, err = a.dc.RegisterExecutor(ctx, &sluicev1.RegisterExecutorRequest{ExecutorId: "e-1", Address: "not an address", Slots: 1})
	wantCode(t, "malformed address", err, codes.InvalidArgument, "address")
}

// A job driver whose last stderr line is not UTF-8 (any binary output)
// and that exits non-zero: its exit cause, with that line, becomes
// JobInfo.error, a proto string, and every ListJobs and its JobStatus fail
// to marshal (Internal) from then on, for every caller (`driver jobs`,
// `driver healthcheck`, executors' sweeps), until `driver serve` restarts
// (the registry's JSON replaces the bad bytes).
func TestAbuseDefectJobStderrNotUTF8BreaksListJobs(t *testing.T) {
	a := newAbuseCluster(t)
	ctx := context.Background()
	script := []byte("#!/bin/sh\nprintf 'bad \\377\\376 bytes\\n' >&2\nexit 1\n")
	resp, err := submitParts(ctx, a.dc, hdr(&sluicev1.SubmitHeader{Sha256: shaOf(script), Size: int64(len(script)), Platform: here()}), dat(script))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the job failed", func() bool {
		a.coord.mu.Lock()
		defer a.coord.mu.Unlock()
		j := a.coord.jobs[resp.GetJobId()]
		return j != nil && j.info.GetState() == "failed"
	})
	if _, err := a.dc.ListJobs(ctx, &sluicev1.ListJobsRequest{}); err != nil {
		t.Errorf("ListJobs: %v", err)
	}
	j, err := a.dc.JobStatus(ctx, &sluicev1.JobStatusRequest{JobId: resp.GetJobId()})
	if err != nil || !strings.Contains(j.GetError(), "exit status 1") {
		t.Errorf("JobStatus: %v %v", j, err)
	}
}

// A job process that writes non-UTF-8 on stderr and dies before serving:
// the daemon puts its stderr tail in TaskResponse.error, a proto string,
// and the response fails to marshal: the driver gets Internal (classified
// as a lost executor) instead of the reason.
func TestAbuseDefectRunTaskStderrNotUTF8(t *testing.T) {
	a := newAbuseCluster(t)
	script := []byte("#!/bin/sh\nprintf 'bad \\377\\376 bytes\\n' >&2\nexit 3\n")
	if err := os.WriteFile(filepath.Join(a.work, "binaries", shaOf(script)), script, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), abuseCallTimeout)
	defer cancel()
	resp, err := a.ec.RunTask(ctx, &sluicev1.TaskRequest{JobId: "job-utf8", BinarySha256: shaOf(script)})
	if err != nil || !strings.Contains(resp.GetError(), "exited before serving tasks") {
		t.Errorf("got %v / %v, want a task error saying the job process exited", resp, err)
	}
}

// A malformed binary id in RunTask is a task failure (OK status, error in
// the response, retried as an ordinary attempt) while a malformed job id in
// the same request is InvalidArgument (fatal for the job at once).
func TestAbuseDefectRunTaskMalformedBinaryID(t *testing.T) {
	a := newAbuseCluster(t)
	for _, sha := range []string{"", "nope", strings.Repeat("A", 64), "../../../bin/sh"} {
		_, err := a.ec.RunTask(context.Background(), &sluicev1.TaskRequest{JobId: "job-1", BinarySha256: sha})
		wantCode(t, "binary id "+strconv.Quote(sha), err, codes.InvalidArgument, "sha-256")
	}
}

// FetchBlock refuses negative fields with "shuffle: bad block request",
// which does not say which field or value.
func TestAbuseDefectFetchBlockOpaqueRefusal(t *testing.T) {
	a := newAbuseCluster(t)
	for field, req := range map[string]*sluicev1.FetchBlockRequest{
		"shuffle":          {JobId: "job-1", ShuffleId: -1},
		"map partition":    {JobId: "job-1", MapPartition: -2},
		"reduce partition": {JobId: "job-1", ReducePartition: -3},
	} {
		stream, err := a.sc.FetchBlock(context.Background(), req)
		if err == nil {
			_, err = stream.Recv()
		}
		wantCode(t, field, err, codes.InvalidArgument, field, "-")
	}
}

// A task may carry any driver_attempt: one with math.MaxInt32 makes the
// daemon stop the job's process and delete the job's shuffle files (a
// "restarted job driver"), and from then on every task of the job's real
// driver (attempt 1) is refused as stale, fatally: one malformed field ends
// the job. The coordinator knows the job's attempt (JobInfo.attempt); the
// daemon does not ask.
func TestAbuseDefectRunTaskAttemptReplacesTheJob(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a job binary")
	}
	bin := buildAbuseJob(t)
	a := newAbuseCluster(t)
	j := a.startAbuseJob(t, "job-attempt", bin)
	a.coord.mu.Lock()
	a.coord.jobs[j.id].info.Attempt = 1
	a.coord.mu.Unlock()
	ctx := context.Background()
	first, err := a.ec.RunTask(ctx, j.task(1))
	if err != nil || first.GetIncarnation() == 0 {
		t.Fatalf("first task: %v %v", first, err)
	}
	bogus := j.task(1)
	bogus.DriverAttempt = math.MaxInt32
	if _, err := a.ec.RunTask(ctx, bogus); err != nil {
		t.Logf("the bogus attempt: %v", err)
	}
	again, err := a.ec.RunTask(ctx, j.task(1))
	if err != nil || again.GetFatal() && strings.Contains(again.GetError(), "has replaced it") || again.GetIncarnation() != first.GetIncarnation() {
		t.Errorf("a task of the job's real driver attempt after a bogus one: %v %v (incarnation was %d)", again, err, first.GetIncarnation())
	}
}

// CommitState naming snapshot partitions the job does not have ("../..",
// "win/abc") is checked by the job process only after it opened the
// PutState stream to the job driver: with a driver that does not answer the
// call takes ~15 s and fails with the connection's error (FailedPrecondition
// "commit state: ... authentication handshake failed"), never naming the
// bad keys.
func TestAbuseDefectCommitStateBadSnapshotKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a job binary")
	}
	bin := buildAbuseJob(t)
	a := newAbuseCluster(t)
	j := a.startAbuseJob(t, "job-commit", bin)
	ctx := context.Background()
	first, err := a.ec.RunTask(ctx, j.task(1)) // the job driver is at the black hole
	if err != nil || first.GetIncarnation() == 0 {
		t.Fatalf("first task: %v %v", first, err)
	}
	start := time.Now()
	_, err = a.ec.CommitState(ctx, &sluicev1.CommitStateRequest{JobId: j.id, Incarnation: first.GetIncarnation(), BatchTimeUnixNano: j.batch(1),
		Snapshot: []string{"../..", "win/abc"}})
	wantCode(t, "snapshot of partitions the job does not have", err, codes.InvalidArgument, "../..")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the refusal took %v", d)
	}
}

// Executor ids have no length bound (only the 8 MiB message): nine
// executors registered with 1 MiB ids make every ListExecutors answer
// larger than the server may send, so it fails with ResourceExhausted for
// every caller (job drivers poll it every 500 ms to know their executors).
func TestAbuseDefectListExecutorsOverflow(t *testing.T) {
	a := newAbuseCluster(t)
	ctx := context.Background()
	for i := range 9 {
		a.dc.RegisterExecutor(ctx, &sluicev1.RegisterExecutorRequest{ExecutorId: strconv.Itoa(i) + "-" + strings.Repeat("e", 1<<20), Address: "127.0.0.1:1", Slots: 1})
	}
	if _, err := a.dc.ListExecutors(ctx, &sluicev1.ListExecutorsRequest{}); err != nil {
		t.Errorf("ListExecutors: %v", err)
	}
}

// Job names (and arguments) have no length bound: three jobs submitted
// with 3 MiB names make every ListJobs answer larger than the server may
// send: `driver jobs`, `driver healthcheck` and the executors' sweep fail
// with ResourceExhausted, and the registry keeps the names across
// restarts of `driver serve`.
func TestAbuseDefectListJobsOverflow(t *testing.T) {
	a := newAbuseCluster(t)
	ctx := context.Background()
	for i := range 3 {
		script := []byte("#!/bin/sh\n# " + strconv.Itoa(i) + "\nexit 0\n")
		submitParts(ctx, a.dc, hdr(&sluicev1.SubmitHeader{Name: strconv.Itoa(i) + "-" + strings.Repeat("n", 3<<20), Sha256: shaOf(script), Size: int64(len(script)), Platform: here()}), dat(script))
	}
	if _, err := a.dc.ListJobs(ctx, &sluicev1.ListJobsRequest{}); err != nil {
		t.Errorf("ListJobs: %v", err)
	}
}
