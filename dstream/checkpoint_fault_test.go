//go:build unix

package dstream_test

import (
	"errors"
	"github.com/sluicehq/sluice/internal/seqjob"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/dstream"
)

// The fault test's job: per-key sequence-numbered lines ("k3 17") from a
// directory; the lines of every batch go to a committing sink, and the
// state per key (line count, sum of sequence numbers) to another, so loss,
// duplication and wrong state are all visible.

const faultKeys = 5

// TestCheckpointJobProcess is not a test: TestCheckpointKill9 runs it in a
// child process (SLUICE_CKPT_JOB=1), with the job's command line after --.
func TestCheckpointJobProcess(t *testing.T) {
	if os.Getenv("SLUICE_CKPT_JOB") != "1" {
		t.Skip("the job process of TestCheckpointKill9")
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	in, out := os.Getenv("SLUICE_CKPT_IN"), os.Getenv("SLUICE_CKPT_OUT")
	code := dstream.RunArgs(dstream.Config{AppName: "ckptfault", BatchInterval: 100 * time.Millisecond, Master: "local[2]", Parallelism: 3},
		args, os.Stderr, func(ctx *dstream.Context) error {
			lines := dstream.TextFileStream(ctx, in, dstream.IncludeExisting())
			seqjob.Build(lines, out)
			return nil
		})
	os.Exit(code)
}

func TestCheckpointKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: kills a job process 3 times")
	}
	root := t.TempDir()
	in, out, ckdir := filepath.Join(root, "in"), filepath.Join(root, "out"), filepath.Join(root, "ckpt")
	for _, d := range []string{in, out} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const interval = 100 * time.Millisecond
	// The feeder: a file every 40ms, each with the next 4 sequence numbers
	// of every key, written aside and renamed.
	const files = 150
	feederDone := make(chan struct{})
	go seqjob.Feed(in, files, faultKeys, 4, 40*time.Millisecond, feederDone)
	start := func() *seqjob.Process {
		return seqjob.Start(t, "TestCheckpointJobProcess", []string{"SLUICE_CKPT_JOB=1", "SLUICE_CKPT_IN=" + in, "SLUICE_CKPT_OUT=" + out},
			"--checkpoint", ckdir, "--checkpoint-interval", "500ms")
	}
	recoveries := seqjob.KillLoop(t, start, out, 3, interval, 400*time.Millisecond, 7)
	<-feederDone
	p := start()
	cmd, logs := p.Cmd, p.Logs
	recoveries = append(recoveries, float64(p.Recovered(t, out))/float64(interval))
	// Run until the state holds every line, then stop gracefully.
	total := int64(files * 4 * faultKeys)
	deadline := time.Now().Add(60 * time.Second)
	for {
		n := seqjob.StateLines(t, out)
		if n >= total {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("state holds %d of %d lines after 60s; job log:\n%s", n, total, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("job exit: %v; log:\n%s", err, logs.String())
	}

	// Every line exactly once, batch times without gaps, exact state at
	// every batch.
	nb := seqjob.Check(t, out, interval, files, faultKeys, 4)
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d batches, %d lines, 3 kills; recovery (restart to first new batch) in batch intervals: %.1f", nb, total, recoveries)
}

// TestCheckpointDiskFull runs a checkpointed job on a small tmpfs, fills
// it: the run fails with the error; once space returns, a rerun resumes
// and its outputs equal an uninterrupted run's.
func TestCheckpointDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: mounts a tmpfs")
	}
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("SKIPPED: disk-full test needs `mount -t tmpfs` (root): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	ckdir, outDir := filepath.Join(dir, "ckpt"), t.TempDir()
	rec := newRecorder()
	if err := runUntilOut(t, ckdir, filepath.Join(outDir, "sums"), rec, 6); err != nil {
		t.Fatal(err)
	}
	// Fill the file system, then run: the first write fails the batch.
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	f.Close()
	err = runUntilOut(t, ckdir, filepath.Join(outDir, "sums"), rec, 1000)
	if err == nil || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("run on a full disk: %v, want a failed batch with ENOSPC", err)
	}
	t.Logf("full disk: %v", err)
	os.Remove(filler)
	if err := runUntilOut(t, ckdir, filepath.Join(outDir, "sums"), rec, 6); err != nil {
		t.Fatalf("run after space returned: %v", err)
	}
	checkAgainstReference(t, ckdir, rec)
}
