//go:build unix

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cluster is a driver and its executors, all real processes on 127.0.0.1.
type cluster struct {
	t      *testing.T
	dir    string
	secret string
	driver *proc
	addr   string
	execs  []*proc
}

var listenRE = regexp.MustCompile(`msg="driver serving".* listen=(\S+)`)

func newCluster(t *testing.T, executors int) *cluster {
	t.Helper()
	return newClusterWith(t, executors)
}

// newClusterWith is newCluster with more flags for `driver serve`.
func newClusterWith(t *testing.T, executors int, serveArgs ...string) *cluster {
	t.Helper()
	needProcesses(t)
	c := &cluster{t: t, dir: t.TempDir()}
	c.secret = filepath.Join(c.dir, "secret")
	if err := os.WriteFile(c.secret, []byte("e2e-cluster-secret-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.driver = start(t, driverBin, append([]string{"serve", "--listen", "127.0.0.1:0", "--state-dir", filepath.Join(c.dir, "state"), "--secret-file", c.secret}, serveArgs...)...)
	c.driver.waitFor(t, "the driver's listen line", func() bool { return listenRE.MatchString(c.driver.stderr.String()) })
	c.addr = listenRE.FindStringSubmatch(c.driver.stderr.String())[1]
	for i := 0; i < executors; i++ {
		c.addExecutor(c.secret)
	}
	return c
}

// addExecutor starts an executor authenticating with secretFile and waits
// until it registered (unless the secret is wrong).
func (c *cluster) addExecutor(secretFile string) *proc {
	c.t.Helper()
	n := len(c.execs)
	e := start(c.t, executorBin, "--driver", c.addr, "--listen", "127.0.0.1:0", "--work-dir", filepath.Join(c.dir, "exec"+string(rune('0'+n))),
		"--slots", "2", "--secret-file", secretFile, "--drain-grace", "2s", "--id", "exec"+string(rune('0'+n)))
	c.execs = append(c.execs, e)
	if secretFile == c.secret {
		e.waitFor(c.t, "registration", func() bool { return strings.Contains(e.stderr.String(), "executor: registered") })
	}
	return e
}

// run runs a driver client command and returns its stdout.
func (c *cluster) run(args ...string) (string, error) {
	cmd := exec.Command(driverBin, append(args[:1:1], append([]string{"--master", c.addr, "--secret-file", c.secret}, args[1:]...)...)...)
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), &exitError{ee, string(ee.Stderr)}
	}
	return string(out), err
}

type exitError struct {
	*exec.ExitError
	stderr string
}

func (e *exitError) Error() string { return e.ExitError.Error() + ": " + e.stderr }

func (c *cluster) submit(args ...string) string {
	c.t.Helper()
	return c.submitBinary(wordcountBin, args...)
}

func (c *cluster) submitBinary(bin string, args ...string) string {
	c.t.Helper()
	out, err := c.run(append([]string{"submit", bin, "--"}, args...)...)
	if err != nil {
		c.t.Fatalf("submit: %v", err)
	}
	return strings.TrimSpace(out)
}

// submitNoWait submits the wordcount job without waiting for an executor
// (--min-executors 0).
func (c *cluster) submitNoWait(args ...string) string {
	c.t.Helper()
	out, err := c.run(append([]string{"submit", "--min-executors", "0", wordcountBin, "--"}, args...)...)
	if err != nil {
		c.t.Fatalf("submit: %v", err)
	}
	return strings.TrimSpace(out)
}

func (c *cluster) jobStdout(id string) string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "state", "jobs", id, "stdout.log"))
	return string(b)
}

func (c *cluster) jobStderr(id string) string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "state", "jobs", id, "stderr.log"))
	return string(b)
}

// batches returns the job's printed batch lines without their batch time:
// the demo source's batch k holds the same lines in every run, so the k-th
// line of two runs must be equal.
func batches(stdout string) []string {
	var out []string
	for _, l := range strings.Split(stdout, "\n") {
		if !strings.HasPrefix(l, "batch ") {
			continue
		}
		if i := strings.Index(l, ": "); i > 0 {
			out = append(out, l[i+2:])
		}
	}
	return out
}

func batchTimes(stdout string) []time.Time {
	var out []time.Time
	for _, l := range strings.Split(stdout, "\n") {
		if !strings.HasPrefix(l, "batch ") || len(l) < 14 {
			continue
		}
		if t, err := time.Parse(time.TimeOnly, l[6:14]); err == nil {
			out = append(out, t)
		}
	}
	return out
}

// waitBatches waits until the job printed at least n batches.
func (c *cluster) waitBatches(id string, n int) {
	c.t.Helper()
	c.driver.waitFor(c.t, "job batches", func() bool {
		if strings.Contains(c.jobStderr(id), "batch failed") {
			c.t.Fatalf("job failed:\n%s", tail(c.jobStderr(id)))
		}
		return len(batches(c.jobStdout(id))) >= n
	})
}

// localReference runs the same job in local mode for n batches.
func localReference(t *testing.T, n int, args ...string) []string {
	t.Helper()
	return localReferenceOf(t, wordcountBin, n, args...)
}

func localReferenceOf(t *testing.T, bin string, n int, args ...string) []string {
	t.Helper()
	p := start(t, bin, args...)
	p.waitFor(t, "local batches", func() bool { return len(batches(p.stdout.String())) >= n })
	// Only its output matters (graceful stops have tests of their own): a
	// loaded machine may leave a heavy reference a backlog that takes longer
	// than exitBound to finish.
	p.signal(t, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(exitBound):
		t.Fatalf("%s: still running %v after SIGKILL", p.name, exitBound)
	}
	return batches(p.stdout.String())
}

// checkAgainst compares a cluster job's batches with the local run's.
func checkAgainst(t *testing.T, got, want []string) {
	t.Helper()
	n := min(len(got), len(want))
	if n == 0 {
		t.Fatal("no batches to compare")
	}
	for i := 0; i < n; i++ {
		if got[i] != want[i] {
			t.Fatalf("batch %d differs:\ncluster: %s\nlocal:   %s", i+1, got[i], want[i])
		}
	}
}

// checkNoGap fails if two consecutive printed batches are not one batch
// interval (1s) apart: no batch may be skipped.
func checkNoGap(t *testing.T, stdout string) {
	t.Helper()
	ts := batchTimes(stdout)
	for i := 1; i < len(ts); i++ {
		if d := ts[i].Sub(ts[i-1]); d != time.Second && d != time.Second-24*time.Hour {
			t.Fatalf("batch %d at %s follows %s: a batch is missing", i+1, ts[i].Format(time.TimeOnly), ts[i-1].Format(time.TimeOnly))
		}
	}
}

var jobArgs = []string{"--lines-per-second", "20000", "--top", "8"}

func TestClusterWordCountMatchesLocal(t *testing.T) {
	c := newCluster(t, 2)
	id := c.submit(jobArgs...)
	want := localReference(t, 4, jobArgs...)
	c.waitBatches(id, 4)
	checkAgainst(t, batches(c.jobStdout(id)), want)
	for i, e := range c.execs {
		if !strings.Contains(e.stderr.String(), "job process started") {
			t.Errorf("executor %d ran no task:\n%s", i, tail(e.stderr.String()))
		}
		// The job process's own log lines are in the executor's stderr.
		if !regexp.MustCompile(`(?m)^time=\S+ level=INFO msg="cluster: serving tasks" job=` + regexp.QuoteMeta(id) + ` role=executor `).MatchString(e.stderr.String()) {
			t.Errorf("executor %d's stderr has no log line of the job's process:\n%s", i, tail(e.stderr.String()))
		}
	}
	if out, err := c.run("stop", id); err != nil || !strings.Contains(out, "stopping") {
		t.Fatalf("stop: %q %v", out, err)
	}
	c.driver.waitFor(t, "the job to finish", func() bool {
		out, _ := c.run("status", id)
		return strings.Contains(out, "finished")
	})
	checkNoGap(t, c.jobStdout(id))
}

func TestClusterSurvivesExecutorKill(t *testing.T) {
	heavy := []string{"--lines-per-second", "200000", "--top", "8"}
	c := newCluster(t, 3)
	id := c.submit(heavy...)
	want := localReference(t, 12, heavy...)
	c.waitBatches(id, 2)
	// Kill one executor in the middle of a batch (batches take a good part
	// of the interval at this rate, so map and reduce stages are running).
	c.execs[0].signal(t, syscall.SIGKILL)
	n := len(batches(c.jobStdout(id)))
	c.waitBatches(id, n+4)
	c.execs[1].signal(t, syscall.SIGKILL)
	n = len(batches(c.jobStdout(id)))
	c.waitBatches(id, n+3)
	got := batches(c.jobStdout(id))
	checkAgainst(t, got, want)
	checkNoGap(t, c.jobStdout(id))
	if !strings.Contains(c.jobStderr(id), "executor lost") {
		t.Errorf("the job driver did not notice the lost executor:\n%s", tail(c.jobStderr(id)))
	}
}

func TestClusterMembership(t *testing.T) {
	c := newCluster(t, 1)
	id := c.submit(jobArgs...)
	want := localReference(t, 9, jobArgs...)
	c.waitBatches(id, 2)
	late := c.addExecutor(c.secret)
	late.waitFor(t, "tasks on the executor that joined mid-stream", func() bool {
		return strings.Contains(late.stderr.String(), "job process started")
	})
	// Stop the first executor gracefully: it drains and loses nothing.
	c.execs[0].signal(t, syscall.SIGTERM)
	if code := c.execs[0].wait(t, exitBound); code != 0 {
		t.Fatalf("executor stopped with status %d", code)
	}
	n := len(batches(c.jobStdout(id)))
	c.waitBatches(id, n+2)
	checkAgainst(t, batches(c.jobStdout(id)), want)
	checkNoGap(t, c.jobStdout(id))
}

// A second executor process started on a running executor's work
// directory exits at once, naming the holder, and the first keeps its
// shuffle files and runs the job on.
func TestClusterSecondExecutorOnAWorkDirIsRefused(t *testing.T) {
	c := newCluster(t, 1)
	id := c.submit(jobArgs...)
	c.waitBatches(id, 2)
	work := filepath.Join(c.dir, "exec0")
	shuffles := func() []string { m, _ := filepath.Glob(filepath.Join(work, "shuffle", id, "*")); return m }
	c.driver.waitFor(t, "shuffle files on the executor", func() bool { return len(shuffles()) > 0 })
	second := start(t, executorBin, "--driver", c.addr, "--listen", "127.0.0.1:0", "--work-dir", work,
		"--slots", "2", "--secret-file", c.secret, "--id", "intruder")
	if code := second.wait(t, 20*time.Second); code == 0 {
		t.Fatalf("the second executor on %s exited 0", work)
	}
	want := "work directory " + work + " is in use by another executor (process " + strconv.Itoa(c.execs[0].cmd.Process.Pid) + " holds"
	if !strings.Contains(second.stderr.String(), want) {
		t.Fatalf("second executor's stderr:\n%s\nwant %q", second.stderr.String(), want)
	}
	if len(shuffles()) == 0 {
		t.Fatal("the refused executor deleted the first's shuffle files")
	}
	n := len(batches(c.jobStdout(id)))
	c.waitBatches(id, n+2)
}

func TestClusterRejectsWrongSecret(t *testing.T) {
	c := newCluster(t, 0)
	bad := filepath.Join(c.dir, "bad-secret")
	if err := os.WriteFile(bad, []byte("not-the-cluster-secret-at-all\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := c.addExecutor(bad)
	e.waitFor(t, "a refused registration", func() bool { return strings.Contains(e.stderr.String(), "different cluster secret") })
	id := c.submitNoWait(jobArgs...)
	time.Sleep(3 * time.Second)
	if strings.Contains(e.stderr.String(), "job process started") || strings.Contains(e.stderr.String(), "registered") {
		t.Fatalf("an executor with the wrong secret got work:\n%s", e.stderr.String())
	}
	if n := len(batches(c.jobStdout(id))); n != 0 {
		t.Fatalf("%d batches ran with no authenticated executor", n)
	}
	cmd := exec.Command(driverBin, "jobs", "--master", c.addr, "--secret-file", bad)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "different cluster secret") {
		t.Fatalf("driver jobs with the wrong secret: %v %s", err, out)
	}
}

func TestClusterRefusesTamperedBinary(t *testing.T) {
	c := newCluster(t, 0)
	id := c.submitNoWait(jobArgs...)
	// Tamper with the stored binary before any executor fetched it.
	bins, _ := filepath.Glob(filepath.Join(c.dir, "state", "binaries", "*"))
	var stored string
	for _, b := range bins {
		if !strings.HasPrefix(filepath.Base(b), ".") {
			stored = b
		}
	}
	data, err := os.ReadFile(stored)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	tmp := stored + ".tampered"
	if err := os.WriteFile(tmp, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, stored); err != nil {
		t.Fatal(err)
	}
	e := c.addExecutor(c.secret)
	e.waitFor(t, "the refused binary", func() bool { return strings.Contains(e.stderr.String(), "hash mismatch") })
	c.driver.waitFor(t, "the job to fail", func() bool {
		out, _ := c.run("status", id)
		return strings.Contains(out, "failed")
	})
	if strings.Contains(e.stderr.String(), "job process started") {
		t.Fatal("the executor ran a tampered binary")
	}
	if !strings.Contains(c.jobStderr(id), "binary hash mismatch") {
		t.Fatalf("the job's error does not say why:\n%s", tail(c.jobStderr(id)))
	}
}

// Stateful operators in a cluster: each state partition stays on the
// executor that first ran it, and commits there when the batch is done.
func TestClusterStatefulMatchesLocal(t *testing.T) {
	c := newCluster(t, 2)
	id := c.submitBinary(statejobBin)
	want := localReferenceOf(t, statejobBin, 12)
	c.waitBatches(id, 12)
	checkAgainst(t, batches(c.jobStdout(id)), want)
}

// A source whose input arrives in the job's driver (a directory here):
// executors fetch each batch's input from the driver.
func TestClusterDriverSideSource(t *testing.T) {
	c := newCluster(t, 2)
	in := filepath.Join(c.dir, "in")
	if err := os.MkdirAll(in, 0o755); err != nil {
		t.Fatal(err)
	}
	id := c.submit("--source=dir", "--dir="+in, "--top=1000")
	// Files already in the directory at start are ignored: write after it.
	c.driver.waitFor(t, "the job started", func() bool { return len(logLinesWithMsg(c.jobStderr(id), "started")) > 0 })
	want := map[string]int64{}
	var wantTotal int64
	for i, seed := range []uint64{11, 12, 13} {
		text := textFile(seed, 400)
		for _, w := range strings.Fields(text) {
			want[w]++
			wantTotal++
		}
		tmp := filepath.Join(in, ".part"+string(rune('0'+i)))
		if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(in, "part"+string(rune('0'+i)))); err != nil {
			t.Fatal(err)
		}
	}
	sum := func() (int64, map[string]int64) {
		var total int64
		counts := map[string]int64{}
		for _, b := range parseBatchLines(t, c.jobStdout(id)) {
			total += b.words
			for w, n := range b.top {
				counts[w] += n
			}
		}
		return total, counts
	}
	c.driver.waitFor(t, "every word counted", func() bool {
		if strings.Contains(c.jobStderr(id), "batch failed") {
			t.Fatalf("job failed:\n%s", tail(c.jobStderr(id)))
		}
		total, _ := sum()
		return total >= wantTotal
	})
	total, got := sum()
	if total != wantTotal {
		t.Fatalf("counted %d words, want %d", total, wantTotal)
	}
	for w, n := range want {
		if got[w] != n {
			t.Errorf("%s: %d, want %d", w, got[w], n)
		}
	}
}
