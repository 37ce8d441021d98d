package cluster

// More tests of the coordinator's restart policy and job registry, for the
// mutants of tools/mutate that the tests of supervise_test.go and
// coordinator_mut_test.go left alive: what the registry holds after each
// change of a job's state, what a new coordinator keeps of a job, the
// restart window's boundary, the restart backoff, and the records the
// registry refuses. Each test names the broken behaviour it catches.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	bolt "go.etcd.io/bbolt"
)

// record is the registry's record of job id (State "" when there is none).
func record(t *testing.T, r *registry, id string) jobRecord {
	t.Helper()
	recs, err := r.load()
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		if rec.ID == id {
			return rec
		}
	}
	return jobRecord{}
}

// waitRecord waits until the registry's record of job id satisfies ok.
func waitRecord(t *testing.T, r *registry, id, what string, ok func(jobRecord) bool) jobRecord {
	t.Helper()
	var rec jobRecord
	eventually(t, fmt.Sprintf("the registry's record of %s: %s", id, what), func() bool {
		rec = record(t, r, id)
		return ok(rec)
	})
	return rec
}

// A job that prints its attempt and pid, and ignores SIGTERM.
const termIgnoringJob = `#!/bin/sh
echo "start attempt=$SLUICE_JOB_ATTEMPT pid=$$"
trap 'echo "TERM ignored"' TERM
while :; do sleep 0.05 & wait $!; done
`

// Kills: a job started (or restarted) not saved as running with its
// attempt; a job waiting to restart not saved as restarting; the restart
// times not saved; StopJob's "stopping" not saved.
func TestCoordinatorRegistryFollowsTheJob(t *testing.T) {
	f, _ := superviseFixture(t, CoordinatorConfig{RestartBackoff: time.Hour, StopTimeout: time.Second})
	f.register(t, "e1", 2, here())
	h := scriptHeader([]byte(termIgnoringJob), here())
	h.Supervise = true
	id, err := f.trySubmit([]byte(termIgnoringJob), h)
	if err != nil {
		t.Fatal(err)
	}
	first := f.waitStarts(t, id, 1)[0]
	waitRecord(t, f.c.reg, id, "running, attempt 1, 2 partitions", func(r jobRecord) bool {
		return r.State == "running" && r.Attempt == 1 && r.Parallelism == 2 && r.Supervise
	})

	// Killed: restarting (the backoff is an hour), with the time of the
	// restart.
	if err := syscall.Kill(pidOf(t, first), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	rec := waitRecord(t, f.c.reg, id, "restarting", func(r jobRecord) bool { return r.State == "restarting" })
	if rec.Attempt != 1 || !strings.Contains(rec.Error, "signal: killed") || len(rec.RestartsUnixMs) != 1 ||
		rec.RestartsUnixMs[0] != f.clock.Now().UnixMilli() {
		t.Fatalf("the record of a job waiting to restart: %+v; want attempt 1, the cause, and the restart at %d", rec, f.clock.Now().UnixMilli())
	}

	// Woken: running again, attempt 2, the restart still counted.
	f.c.mu.Lock()
	j := f.c.jobs[id]
	f.c.mu.Unlock()
	j.wake <- struct{}{}
	second := f.waitStarts(t, id, 2)[1]
	rec = waitRecord(t, f.c.reg, id, "running at attempt 2", func(r jobRecord) bool { return r.State == "running" && r.Attempt == 2 })
	if len(rec.RestartsUnixMs) != 1 || rec.Parallelism != 2 || rec.Error != "" {
		t.Fatalf("the record of the restarted job: %+v", rec)
	}

	// Stopped: the job ignores SIGTERM, so it stays "stopping".
	if _, err := f.dc.StopJob(context.Background(), &sluicev1.StopJobRequest{JobId: id}); err != nil {
		t.Fatal(err)
	}
	if rec = record(t, f.c.reg, id); rec.State != "stopping" {
		t.Fatalf("the record after StopJob: %+v; want stopping", rec)
	}
	if err := syscall.Kill(pidOf(t, second), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	rec = waitRecord(t, f.c.reg, id, "failed", func(r jobRecord) bool { return jobEnded(r.State) })
	if rec.State != "failed" || rec.Attempt != 2 {
		t.Fatalf("the record of the stopped job, killed: %+v", rec)
	}
}

// Kills: a submitted job saved only once its driver started (a coordinator
// dying in between would forget a job that runs); the record of a
// submission whose driver could not start kept (the next coordinator would
// start a job nobody was told of).
func TestCoordinatorRecordsASubmissionBeforeItStarts(t *testing.T) {
	state := t.TempDir()
	c, err := NewCoordinator(CoordinatorConfig{StateDir: state, Advertise: "127.0.0.1:1", Secret: Insecure(), Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The binary is a FIFO: launch blocks reading it (to verify it) until
	// the test writes it, and then cannot execute it.
	script := []byte("#!/bin/sh\nexit 0\n")
	h := scriptHeader(script, nil)
	path := filepath.Join(state, "binaries", h.Sha256)
	if err := syscall.Mkfifo(path, 0o755); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	released := false
	release := func() {
		if released {
			return
		}
		released = true
		w, err := os.OpenFile(path, os.O_RDWR, 0) // never blocks on Linux
		if err != nil {
			t.Error(err)
			return
		}
		w.Write(script)
		w.Close()
	}
	t.Cleanup(release)
	type started struct {
		id  string
		err error
	}
	res := make(chan started, 1)
	go func() {
		id, err := c.startJob(h, path)
		res <- started{id, err}
	}()
	var rec jobRecord
	eventually(t, "the submitted job's record, before its driver starts", func() bool {
		recs, err := c.reg.load()
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 1 {
			rec = recs[0]
		}
		return len(recs) == 1
	})
	if rec.State != "starting" || rec.Attempt != 1 || rec.SHA256 != h.Sha256 {
		t.Fatalf("the record of a job being started: %+v", rec)
	}
	release()
	var r started
	select {
	case r = <-res:
	case <-time.After(30 * time.Second):
		t.Fatal("startJob did not return")
	}
	if r.err == nil {
		t.Fatalf("a FIFO started as job %s", r.id)
	}
	if recs, err := c.reg.load(); err != nil || len(recs) != 0 {
		t.Fatalf("after a failed start the registry holds %+v, %v; want nothing", recs, err)
	}
}

// A job that prints its arguments on each start.
const argsJob = `#!/bin/sh
echo "start attempt=$SLUICE_JOB_ATTEMPT par=$SLUICE_PARALLELISM args=$*"
trap 'exit 0' TERM
while :; do sleep 0.05 & wait $!; done
`

// Kills: a job started again by a new coordinator without its arguments;
// its restart times forgotten by the new coordinator (the bound would start
// afresh); the jobs a new coordinator found not saved as restarting (or, a
// binary gone, as failed).
func TestCoordinatorRecoveredJobKeepsItsRecord(t *testing.T) {
	state := t.TempDir()
	open := func() *Coordinator {
		c, err := NewCoordinator(CoordinatorConfig{StateDir: state, Advertise: "127.0.0.1:1", Secret: Insecure(), Log: quietLog(), RestartBackoff: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	put := func(script string, args ...string) (*sluicev1.SubmitHeader, string) {
		h := scriptHeader([]byte(script), nil, args...)
		h.Supervise = true
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
	if _, err := c.RegisterExecutor(context.Background(), &sluicev1.RegisterExecutorRequest{ExecutorId: "e", Address: "127.0.0.1:2", Slots: 4}); err != nil {
		t.Fatal(err)
	}
	h, path := put(argsJob, "--x=1", "y z")
	runs, err := c.startJob(h, path)
	if err != nil {
		t.Fatal(err)
	}
	gone, goneBin := put(argsJob + "# another binary\n")
	goneID, err := c.startJob(gone, goneBin)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "both jobs to start", func() bool { return len(starts(stdout(runs))) == 1 && len(starts(stdout(goneID))) == 1 })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c.Run(ctx)
	c.Close()
	os.Remove(goneBin)
	// A restart a minute ago, as an earlier coordinator would have saved it.
	restartedAt := time.Now().Add(-time.Minute).UnixMilli()
	r, err := openRegistry(state, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	rec := record(t, r, runs)
	rec.RestartsUnixMs = []int64{restartedAt}
	if err := r.put(rec); err != nil {
		t.Fatal(err)
	}
	r.close()

	c = open()
	if rec := record(t, c.reg, runs); rec.State != "restarting" || fmt.Sprint(rec.RestartsUnixMs) != fmt.Sprint([]int64{restartedAt}) ||
		fmt.Sprint(rec.Args) != fmt.Sprint([]string{"--x=1", "y z"}) {
		t.Fatalf("the record of a job found by the new coordinator: %+v; want restarting, its arguments and restart time kept", rec)
	}
	if rec := record(t, c.reg, goneID); rec.State != "failed" || !strings.Contains(rec.Error, "is gone") {
		t.Fatalf("the record of a job whose binary is gone: %+v; want failed", rec)
	}
	ctx, cancel = context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { c.Run(ctx); close(ran) }()
	defer func() { cancel(); <-ran; c.Close() }()
	eventually(t, "the job to start again", func() bool { return len(starts(stdout(runs))) == 2 })
	lines := strings.Split(strings.TrimSpace(stdout(runs)), "\n")
	if want := "start attempt=2 par=4 args=--x=1 y z"; lines[len(lines)-1] != want {
		t.Fatalf("started again: %q; want %q", lines[len(lines)-1], want)
	}
	rec = waitRecord(t, c.reg, runs, "running at attempt 2", func(r jobRecord) bool { return r.State == "running" && r.Attempt == 2 })
	if fmt.Sprint(rec.RestartsUnixMs) != fmt.Sprint([]int64{restartedAt}) {
		t.Fatalf("the restart times after the start: %v; want [%d]", rec.RestartsUnixMs, restartedAt)
	}
}

// Kills: a restart exactly one restart window old still counted against
// the bound.
func TestCoordinatorRestartWindowBoundary(t *testing.T) {
	f, _ := superviseFixture(t, CoordinatorConfig{MaxRestarts: 1, RestartBackoff: 10 * time.Millisecond})
	f.register(t, "e1", 1, here())
	gate := filepath.Join(t.TempDir(), "go")
	id := f.submitSupervised(t, true, "exit1@1", "wait1@2", gate)
	f.waitStarts(t, id, 2)
	f.clock.Advance(DefaultRestartWindow) // the restart is now exactly one window old
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a third start, or the job failed", func() bool {
		return len(starts(f.stdout(id))) >= 3 || f.job(t, id).GetState() == "failed"
	})
	if j := f.job(t, id); j.GetState() == "failed" {
		t.Fatalf("a death one restart window after the only restart: %v; want restarted", j)
	}
	if j := f.waitState(t, id, "running"); j.GetAttempt() != 3 {
		t.Fatalf("after a restart one window ago: %v", j)
	}
}

// Kills: the restart backoff not doubled in a crash loop; a job asking to
// recover its state (exit 75) restarted after a doubled backoff instead of
// the first one. (Timing bounds with a wide margin: a backoff is never
// shorter than asked, and the slack allowed is seconds.)
func TestCoordinatorRestartBackoff(t *testing.T) {
	// Four crashes in a row: waits of 250ms, 500ms, 1s and 2s (3.75s), not
	// 4 x 250ms.
	f, _ := superviseFixture(t, CoordinatorConfig{RestartBackoff: 250 * time.Millisecond})
	f.register(t, "e1", 1, here())
	began := time.Now()
	id := f.submitSupervised(t, true, "exit1@1", "exit1@2", "exit1@3", "exit1@4")
	f.waitStarts(t, id, 5)
	if d := time.Since(began); d < 3750*time.Millisecond {
		t.Fatalf("four crashes in a row restarted within %v; want a doubling backoff (at least 3.75s)", d)
	}
	// Five exits 75: five waits of 300ms (1.5s), not 300ms doubling to
	// 4s (8.5s).
	g, _ := superviseFixture(t, CoordinatorConfig{RestartBackoff: 300 * time.Millisecond})
	g.register(t, "e1", 1, here())
	var args []string
	for a := 1; a <= 5; a++ {
		args = append(args, fmt.Sprintf("exit%d@%d", ExitRestart, a))
	}
	began = time.Now()
	id = g.submitSupervised(t, true, args...)
	g.waitStarts(t, id, 6)
	if d := time.Since(began); d > 6*time.Second {
		t.Fatalf("five exits 75 took %v to restart; want the first backoff each time (1.5s)", d)
	}
	if j := g.waitState(t, id, "running"); j.GetAttempt() != 6 {
		t.Fatalf("after five exits 75: %v", j)
	}
}

// Kills: registry records accepted that do not decode, are stored under
// another job's key, name a binary that is no SHA-256, or are shorter than
// their checksum (the error must name the record); a failed registry write
// reported as done.
func TestCoordinatorRegistryRefusesBadRecords(t *testing.T) {
	const key = "job-20260101T000000-1"
	sha := strings.Repeat("ab", 32)
	good := jobRecord{ID: key, Name: "n", SHA256: sha, State: "running", Attempt: 1, Parallelism: 2}
	withCRC := func(js []byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, crc32.Checksum(js, castagnoli)), js...)
	}
	marshal := func(rec jobRecord) []byte {
		js, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	foreign := good
	foreign.ID = "job-20260101T000000-2"
	badSHA := good
	badSHA.SHA256 = "../../../../bin/sh"
	cases := []struct {
		name  string
		value []byte
		want  string // in the error
	}{
		{"good", withCRC(marshal(good)), ""},
		{"shorter than its checksum", []byte{1, 2}, "checksum mismatch"},
		{"a field of another type", withCRC([]byte(`{"id":"` + key + `","name":"n","sha256":"` + sha + `","state":"running","attempt":"three"}`)), "attempt"},
		{"under another job's key", withCRC(marshal(foreign)), foreign.ID},
		{"a binary that is a path", withCRC(marshal(badSHA)), badSHA.SHA256},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			r, err := openRegistry(dir, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer r.close()
			if err := r.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(jobsBucket).Put([]byte(key), tc.value) }); err != nil {
				t.Fatal(err)
			}
			recs, err := r.load()
			if tc.want == "" {
				if err != nil || len(recs) != 1 || fmt.Sprint(recs[0]) != fmt.Sprint(good) {
					t.Fatalf("a good record: %+v, %v", recs, err)
				}
				return
			}
			if !errors.Is(err, ErrRegistryDamaged) || !strings.Contains(err.Error(), `job "`+key+`"`) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("a record %s: %+v, %v; want ErrRegistryDamaged naming the record and %q", tc.name, recs, err, tc.want)
			}
		})
	}
	r, err := openRegistry(t.TempDir(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r.close()
	if err := r.put(good); err == nil || !strings.Contains(err.Error(), key) {
		t.Fatalf("a write to a closed registry: %v; want an error naming the job", err)
	}
}
