//go:build unix

package e2e

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readmeClusterCommands returns the command lines of the README's section
// "A cluster on one machine": its first indented block.
func readmeClusterCommands(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## A cluster on one machine\n")
	if !ok {
		t.Fatal(`README.md has no section "A cluster on one machine"`)
	}
	var cmds []string
	for _, l := range strings.Split(section, "\n") {
		if c, ok := strings.CutPrefix(l, "    "); ok {
			cmds = append(cmds, c)
		} else if len(cmds) > 0 {
			break
		}
	}
	return cmds
}

// freePort returns a port nothing listens on right now.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// shell runs one README line with bash in dir.
func shell(ctx context.Context, dir, line string, env []string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "bash", "-c", line)
	cmd.Dir = dir
	cmd.Env = env
	cmd.WaitDelay = waitDelay
	return cmd
}

// TestReadmeCluster runs the README's cluster section as written, in an
// empty directory that sees the checkout's sources, and checks what the
// README says it does. Only the ports are changed, to free ones, so that
// the test can run beside others.
func TestReadmeCluster(t *testing.T) {
	needProcesses(t)
	cmds := readmeClusterCommands(t)
	joined := strings.Join(cmds, "\n")
	for _, want := range []string{"go build", "driver serve", "--state-dir state", "--work-dir e1", "driver submit", "driver jobs"} {
		if !strings.Contains(joined, want) {
			t.Fatalf("the README's cluster section no longer has %q:\n%s", want, joined)
		}
	}
	dir := t.TempDir()
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	// The directory looks like a checkout: go build ./cmd/... works in it.
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(repo, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, f), b, 0o644)
	}
	for _, d := range []string{"cmd", "examples", "dstream", "rdd", "scheduler", "internal", "proto"} {
		if err := os.Symlink(filepath.Join(repo, d), filepath.Join(dir, d)); err != nil {
			t.Fatal(err)
		}
	}
	ports := map[string]string{"7077": freePort(t), "7078": freePort(t), "7079": freePort(t)}
	env := append(os.Environ(), "CGO_ENABLED=0") // the binaries TestMain built are in the build cache so
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	var jobID string
	var bg []*exec.Cmd
	var bgOut []*syncBuffer
	defer func() {
		for i, p := range bg {
			p.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { p.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(exitBound + 10*time.Second):
				p.Process.Kill()
				<-done
			}
			if t.Failed() {
				t.Logf("%s\n%s", p.Args[2], tail(bgOut[i].String()))
			}
		}
	}()
	for _, line := range cmds {
		for from, to := range ports {
			line = strings.ReplaceAll(line, "127.0.0.1:"+from, "127.0.0.1:"+to)
		}
		if l, ok := strings.CutSuffix(strings.TrimSpace(line), "&"); ok {
			cmd := shell(ctx, dir, "exec "+l, env)
			out := &syncBuffer{}
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// As in a script: the next line runs at once, while this
			// process starts (submit waits for the driver and executors).
			bg, bgOut = append(bg, cmd), append(bgOut, out)
			continue
		}
		cmd := shell(ctx, dir, line, env)
		var stderr syncBuffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v\n%s", line, err, stderr.String())
		}
		switch {
		case strings.Contains(line, "driver submit"):
			jobID = strings.TrimSpace(string(out))
			if !regexp.MustCompile(`^job-\d{8}T\d{6}-\d+$`).MatchString(jobID) {
				t.Fatalf("driver submit printed %q, not a job id", out)
			}
		case strings.Contains(line, "driver jobs"):
			if !regexp.MustCompile(regexp.QuoteMeta(jobID) + `\s+wordcount\s+running`).Match(out) {
				t.Fatalf("driver jobs does not list %s as running:\n%s", jobID, out)
			}
		}
	}
	if jobID == "" {
		t.Fatal("the README's commands submitted no job")
	}
	// The job's output is where the README says.
	batchLine := regexp.MustCompile(`(?m)^batch \d\d:\d\d:\d\d: \d+ words, \d+ distinct; top 10:( \S+=\d+){10}$`)
	stdoutLog := filepath.Join(dir, "state", "jobs", jobID, "stdout.log")
	waitUntil(t, "two batch lines in "+stdoutLog, func() bool {
		b, _ := os.ReadFile(stdoutLog)
		return len(batchLine.FindAll(b, -1)) >= 2
	})
	if _, err := os.Stat(filepath.Join(dir, "state", "jobs", jobID, "stderr.log")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "saved counts under out/", func() bool {
		parts, _ := filepath.Glob(filepath.Join(dir, "out", "counts-*", "part-*"))
		for _, p := range parts {
			if b, _ := os.ReadFile(p); regexp.MustCompile(`(?m)^\S+\t\d+$`).Match(b) {
				return true
			}
		}
		return false
	})
	// --min-executors 2: the job has both executors' slots, 2 partitions,
	// so every batch's directory holds two part files.
	saved, _ := filepath.Glob(filepath.Join(dir, "out", "counts-*"))
	for _, d := range saved {
		if strings.Contains(d, "_temporary") {
			continue
		}
		if parts, _ := filepath.Glob(filepath.Join(d, "part-*")); len(parts) != 2 || filepath.Base(parts[1]) != "part-00001" {
			t.Errorf("%s holds %v; want part-00000 and part-00001 (2 partitions)", d, parts)
		}
	}
	// Stopping the job as the README says; it ends and leaves its logs.
	stop := "bin/driver stop --master 127.0.0.1:" + ports["7077"] + " --secret-file secret " + jobID
	if out, err := shell(ctx, dir, stop, env).CombinedOutput(); err != nil || !strings.Contains(string(out), jobID) {
		t.Fatalf("%s: %v %s", stop, err, out)
	}
	status := "bin/driver status --master 127.0.0.1:" + ports["7077"] + " --secret-file secret " + jobID
	waitUntil(t, "the job to finish", func() bool {
		out, _ := shell(ctx, dir, status, env).Output()
		return strings.Contains(string(out), ": finished")
	})
	// Nothing of the job is left but its logs and output: no binary in the
	// state directory, no job data on the executors.
	waitUntil(t, "the job's data to go", func() bool {
		var left []string
		for _, g := range []string{"state/binaries/*", "e1/jobs/*", "e2/jobs/*", "e1/shuffle/*", "e2/shuffle/*", "e1/binaries/*", "e2/binaries/*"} {
			m, _ := filepath.Glob(filepath.Join(dir, g))
			left = append(left, m...)
		}
		return len(left) == 0
	})
}

// waitUntil polls cond for up to progressBound.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(progressBound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, progressBound)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var jobProcRE = regexp.MustCompile(`msg="executor: job process started".* pid=(\d+)`)

// alive reports whether a process exists and is not a zombie.
func alive(pid string) bool {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}

// When `driver serve` is killed with SIGKILL, every executor logs that it
// lost the driver and, after --orphan-grace, stops the job processes and
// deletes the job's data.
func TestClusterDriverKilledExecutorsCleanUp(t *testing.T) {
	c := newCluster(t, 0)
	var execs []*proc
	for i := range 2 {
		work := filepath.Join(c.dir, "orphan"+string(rune('0'+i)))
		e := start(t, executorBin, "--driver", c.addr, "--listen", "127.0.0.1:0", "--work-dir", work,
			"--slots", "2", "--secret-file", c.secret, "--orphan-grace", "3s", "--id", "orphan"+string(rune('0'+i)))
		e.waitFor(t, "registration", func() bool { return strings.Contains(e.stderr.String(), "executor: registered") })
		execs = append(execs, e)
	}
	id := c.submit(jobArgs...)
	c.waitBatches(id, 2)
	// Before the kill: both executors run a job process, and shuffle data
	// is on disk.
	var pids []string
	for i, e := range execs {
		work := filepath.Join(c.dir, "orphan"+string(rune('0'+i)))
		e.waitFor(t, "a job process", func() bool {
			_, err := os.Stat(filepath.Join(work, "jobs", id))
			return jobProcRE.MatchString(e.stderr.String()) && err == nil
		})
		m := jobProcRE.FindAllStringSubmatch(e.stderr.String(), -1)
		pids = append(pids, m[len(m)-1][1])
	}
	c.driver.waitFor(t, "shuffle data on an executor", func() bool {
		m, _ := filepath.Glob(filepath.Join(c.dir, "orphan?", "shuffle", id, "*"))
		return len(m) > 0
	})
	for _, p := range pids {
		if !alive(p) {
			t.Fatalf("job process %s is not running before the kill", p)
		}
	}
	c.driver.signal(t, syscall.SIGKILL)
	for i, e := range execs {
		e.waitFor(t, "the lost driver in the log", func() bool { return strings.Contains(e.stderr.String(), "executor: lost the driver") })
		e.waitFor(t, "the orphaned jobs stopped", func() bool {
			return strings.Contains(e.stderr.String(), "executor: orphaned jobs stopped and their data deleted")
		})
		work := filepath.Join(c.dir, "orphan"+string(rune('0'+i)))
		for _, sub := range []string{"jobs", "shuffle", "binaries"} {
			if left, _ := os.ReadDir(filepath.Join(work, sub)); len(left) != 0 {
				t.Errorf("%s/%s still holds %d entries", work, sub, len(left))
			}
		}
		if e.exited() {
			t.Errorf("executor %d exited; it should wait for a driver", i)
		}
	}
	for _, p := range pids {
		if alive(p) {
			t.Errorf("job process %s still runs", p)
		}
	}
	// ps agrees: no process runs a binary from the executors' work dirs.
	out, err := exec.Command("ps", "-eo", "pid,args").Output()
	if err != nil {
		t.Skipf("ps: %v", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, filepath.Join(c.dir, "orphan")) && strings.Contains(l, "/binaries/") {
			t.Errorf("ps shows a job process left: %s", l)
		}
	}
}

// What runs where: main in every process of the job (the driver in
// <state-dir>/jobs/<id>, executors in <work-dir>/jobs/<id>), transformations
// only on executors, output functions only in the driver; Role and
// IsDriver say which is which.
func TestClusterRoles(t *testing.T) {
	needProcesses(t)
	bin := filepath.Join(t.TempDir(), "rolejob")
	build := exec.Command("go", "build", "-o", bin, "./testdata/rolejob")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build rolejob: %v\n%s", err, out)
	}
	c := newCluster(t, 2)
	marks := filepath.Join(c.dir, "marks")
	os.Mkdir(marks, 0o755)
	id := c.submitBinary(bin, "--marks", marks)
	c.waitBatches(id, 2)
	count := func(pattern string) []string {
		m, _ := filepath.Glob(filepath.Join(marks, pattern))
		return m
	}
	c.driver.waitFor(t, "marks of the executors' tasks", func() bool { return len(count("task-executor-false-*")) >= 1 })
	if d := count("main-driver-true-*"); len(d) != 1 {
		t.Fatalf("main ran %d times as driver, want 1", len(d))
	} else if cwd, _ := os.ReadFile(d[0]); string(cwd) != filepath.Join(c.dir, "state", "jobs", id) {
		t.Errorf("the job's driver runs in %s", cwd)
	}
	execMains := count("main-executor-false-*")
	if len(execMains) == 0 {
		t.Fatal("main did not run on any executor")
	}
	for _, m := range execMains {
		cwd, _ := os.ReadFile(m)
		if ok, _ := filepath.Match(filepath.Join(c.dir, "exec?", "jobs", id), string(cwd)); !ok {
			t.Errorf("an executor's job process runs in %s", cwd)
		}
	}
	for _, bad := range []string{"*-local-*", "task-driver-*", "output-executor-*"} {
		if m := count(bad); len(m) != 0 {
			t.Errorf("marks %v: that part ran in the wrong process", m)
		}
	}
	if len(count("output-driver-true-*")) != 1 {
		t.Errorf("the output function did not run in the driver: %v", count("*"))
	}
}
