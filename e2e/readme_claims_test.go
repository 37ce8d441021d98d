//go:build unix

package e2e

// Claims of README.md checked with real processes, from an audit that
// followed the README as a new user would (2026-11-30). A test named
// TestReadmeDefect... checks a claim that does not hold today: it fails
// until the code or the README changes. The others check claims that no
// other test checked.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/ui"
)

// buildTestdata builds one job of e2e/testdata into a temporary directory.
func buildTestdata(t *testing.T, name string) string {
	t.Helper()
	needProcesses(t)
	bin := filepath.Join(t.TempDir(), name)
	build := exec.Command("go", "build", "-o", bin, "./testdata/"+name)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", name, err, out)
	}
	return bin
}

// README, "What works today": "Static datasets (`dstream.Parallelize`,
// `dstream.TextFile`) joined, cogrouped or united with a stream of any
// slide in one call", and "every operator ... run[s] in a cluster". No
// other test runs a Dataset in a cluster. datasetjob joins a rate stream
// with a Parallelize dataset and left-outer-joins a TextFile dataset; in a
// cluster every batch must print what the local run prints.
func TestReadmeClusterStaticDatasets(t *testing.T) {
	bin := buildTestdata(t, "datasetjob")
	blocklist := filepath.Join(t.TempDir(), "blocklist.txt")
	if err := os.WriteFile(blocklist, []byte("u2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	want := localReferenceOf(t, bin, 4, "--blocklist="+blocklist)
	line := regexp.MustCompile(`^u0/ann/false=[78] u1/bob/false=[78] u2/cy/true=[78]$`)
	for i, l := range want {
		if !line.MatchString(l) {
			t.Fatalf("local batch %d: %q, want the joined counts", i+1, l)
		}
	}
	c := newCluster(t, 2)
	id := c.submitBinary(bin, "--blocklist="+blocklist)
	c.waitBatches(id, 4)
	checkAgainst(t, batches(c.jobStdout(id)), want)
}

// README, "Watching a job": the batch API's `inputs[]` holds "`stream`,
// `records`, `attrs`: the figures of the batch log line", and the batch
// page shows "each input stream's records", for every source. (Found by a
// README audit: only planned sources (Kafka) were listed, though the dir
// source's batch log line carries skipped_files and skipped_lines.)
//
//	wordcount --source=dir --dir=IN --ui=14042; printf 'a b c\n' > IN/x.txt
//	curl 127.0.0.1:14042/api/v1/jobs/wordcount/batches/<id of that batch>  # "inputs":[]
func TestReadmeBatchInputsOfDirSource(t *testing.T) {
	needProcesses(t)
	in := t.TempDir()
	p := start(t, wordcountBin, "--source=dir", "--dir="+in, "--ui=127.0.0.1:0", "--master=local[2]")
	p.waitFor(t, "the web UI line", func() bool { return uiURLRE.MatchString(p.stderr.String()) })
	base := uiURLRE.FindStringSubmatch(p.stderr.String())[1]
	writeAtomic(t, in, "x.txt", "a b c\nd e\n")
	jobURL := base + "/api/v1/jobs/wordcount"
	var b ui.Batch
	p.waitFor(t, "a batch with input in the API", func() bool {
		var page ui.BatchPage
		getAPI(t, jobURL+"/batches?limit=1000", &page)
		for _, x := range page.Batches {
			if x.InputRecords > 0 {
				b = x
				return true
			}
		}
		return false
	})
	var d ui.BatchDetail
	getAPI(t, fmt.Sprintf("%s/batches/%d", jobURL, b.ID), &d)
	if len(d.Inputs) != 1 {
		t.Fatalf("batch %d read %d records, but its inputs are %+v: want the directory stream with its records and the log line's skipped_files/skipped_lines", b.ID, b.InputRecords, d.Inputs)
	}
	if d.Inputs[0].Records != b.InputRecords {
		t.Errorf("inputs[0].records %d, batch inputRecords %d", d.Inputs[0].Records, b.InputRecords)
	}
	attrs := fmt.Sprint(d.Inputs[0].Attrs)
	for _, k := range []string{"skipped_files", "skipped_lines"} {
		if !strings.Contains(attrs, k) {
			t.Errorf("inputs[0].attrs %s: no %s, which the batch log line has", attrs, k)
		}
	}
}

// README, "The cluster's UI": "`/api/v1/jobs` lists the cluster's jobs
// (id, name, state, uptime, batches done and failed, ...)". Once a job has
// ended, its row keeps the figures its driver process wrote when it
// exited (SLUICE_JOB_SUMMARY), and its uptime stops. (Found by a README
// audit: the row said batchesDone 0, and uptimeMs grew with the clock.)
func TestReadmeClusterJobsListFinishedJob(t *testing.T) {
	c := newClusterWith(t, 1, "--ui=127.0.0.1:0")
	c.driver.waitFor(t, "the web UI line", func() bool { return uiURLRE.MatchString(c.driver.stderr.String()) })
	base := uiURLRE.FindStringSubmatch(c.driver.stderr.String())[1]
	id := c.submit("--lines-per-second=2000")
	c.waitBatches(id, 3)
	ran := len(batches(c.jobStdout(id)))
	if _, err := c.run("stop", id); err != nil {
		t.Fatal(err)
	}
	row := func() ui.Job {
		var jobs []ui.Job
		getAPI(t, base+"/api/v1/jobs", &jobs)
		for _, j := range jobs {
			if j.ID == id {
				return j
			}
		}
		t.Fatalf("/api/v1/jobs does not list %s: %+v", id, jobs)
		return ui.Job{}
	}
	c.driver.waitFor(t, "the job finished", func() bool { return row().State == "finished" })
	first := row()
	time.Sleep(2 * time.Second)
	second := row()
	if second.UptimeMs > first.UptimeMs+500 {
		t.Errorf("the finished job's uptime grows: %d ms, 2 s later %d ms", first.UptimeMs, second.UptimeMs)
	}
	if second.BatchesDone < int64(ran) {
		t.Errorf("the finished job ran %d batches; /api/v1/jobs says batchesDone %d", ran, second.BatchesDone)
	}
}

// README, "What runs where in a cluster": "the jobs a `ForeachRDD`
// function runs (`Collect`, `CountRDD`, ...) must be over the RDD it is
// given ...; otherwise the batch fails with an error saying so." No other
// test runs such a job in a cluster. datasetjob --derived collects
// rdd.Map(r, ...) inside its ForeachRDD function: locally that works, in a
// cluster the batch must fail naming the fix, and the job with it.
func TestReadmeClusterForeachRDDOverADerivedRDDFails(t *testing.T) {
	bin := buildTestdata(t, "datasetjob")
	blocklist := filepath.Join(t.TempDir(), "blocklist.txt")
	if err := os.WriteFile(blocklist, []byte("u2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if local := localReferenceOf(t, bin, 2, "--blocklist="+blocklist, "--derived"); len(local) < 2 {
		t.Fatalf("local run: %q", local)
	}
	c := newCluster(t, 1)
	id := c.submitBinary(bin, "--blocklist="+blocklist, "--derived")
	c.driver.waitFor(t, "the job failed", func() bool {
		out, _ := c.run("status", id)
		return strings.Contains(out, ": failed")
	})
	stderr := c.jobStderr(id)
	if len(logLinesWithMsg(stderr, "batch failed")) == 0 {
		t.Fatalf("no batch failed line in the job's log:\n%s", tail(stderr))
	}
	if !strings.Contains(stderr, "build it in the stream graph") {
		t.Errorf("the job's log does not say what to do:\n%s", tail(stderr))
	}
	if n := len(batches(c.jobStdout(id))); n != 0 {
		t.Errorf("the job printed %d batches over a derived RDD", n)
	}
}

// README, "The demo on a small cluster": the demo job is submitted with
// --checkpoint and --supervise (deploy/docker-compose.yml), so a killed
// executor's state is restored and deploy/compose_test.go fails, never
// skips, when the job fails after the kill. The section once said the job
// stops with an error and the test skips (before cluster state recovery):
// those sentences must not come back while the compose file says so.
func TestReadmeDemoSectionMatchesTheComposeJob(t *testing.T) {
	needProcesses(t) // like every e2e test: -short runs none
	read := func(path string) string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	readme := strings.Join(strings.Fields(read("../README.md")), " ")
	_, demo, ok := strings.Cut(readme, "## The demo on a small cluster")
	if !ok {
		t.Fatal(`README.md has no section "The demo on a small cluster"`)
	}
	demo, _, _ = strings.Cut(demo, "## Kubernetes")
	compose := read("../deploy/docker-compose.yml")
	if !strings.Contains(compose, `"--checkpoint"`) || !strings.Contains(compose, `"--supervise"`) {
		t.Skip("the demo job is no longer submitted with --checkpoint and --supervise")
	}
	for _, stale := range []string{
		"Until cluster state recovery lands",
		"the job stops with an error saying so",
		"skipped, naming the cause, when the job fails because the executor held operator state",
	} {
		if strings.Contains(demo, stale) {
			t.Errorf("the demo section says %q, but the demo job keeps a checkpoint and is supervised: a killed executor's state is restored (deploy/compose_test.go fails if the job fails)", stale)
		}
	}
}

// README, "Recovery in a cluster": "Without `--checkpoint`, a restarted
// job driver of a job with state refuses to run (it would start from
// empty state) and the job fails saying so." No other test restarts the
// driver of a stateful job without a checkpoint. statejob is submitted
// with --supervise and no --checkpoint; its job driver is killed with -9;
// driver serve starts it again (attempt 2), which must refuse, and the job
// must end failed with the reason, never print a batch from empty state.
func TestReadmeClusterRestartedStatefulJobWithoutCheckpointFails(t *testing.T) {
	c := newCluster(t, 2)
	out, err := c.run("submit", "--supervise", statejobBin)
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(out)
	c.waitBatches(id, 2)
	if err := syscall.Kill(c.jobDriverPID(id), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := len(batches(c.jobStdout(id)))
	c.driver.waitFor(t, "the job failed", func() bool {
		out, _ := c.run("status", id)
		return strings.Contains(out, ": failed")
	})
	if !strings.Contains(c.jobStderr(id), "without --checkpoint") {
		t.Errorf("the job's log does not say why the restart refused:\n%s", tail(c.jobStderr(id)))
	}
	if ended := regexp.MustCompile(`msg="job ended" .*job=` + regexp.QuoteMeta(id) + ` .*state=failed.*without --checkpoint`); !ended.MatchString(c.driver.stderr.String()) {
		t.Errorf("driver serve's log has no failed end naming the cause:\n%s", tail(c.driver.stderr.String()))
	}
	if m := regexp.MustCompile(`msg="job restarted" .*job=` + regexp.QuoteMeta(id) + `.*`).FindString(c.driver.stderr.String()); m == "" {
		t.Errorf("driver serve did not restart the job driver:\n%s", tail(c.driver.stderr.String()))
	} else {
		t.Log(m)
	}
	if n := len(batches(c.jobStdout(id))); n > killed+1 {
		t.Errorf("%d batches printed after the kill: the restarted driver ran", n-killed)
	}
}

// README, "Checkpoints": the state of every stateful operator is written
// "every `--checkpoint-interval` (default: the smallest multiple of the
// slides that is at least 10 s)". No test runs a job on the default.
// statejob's slides are all 1 s, so its snapshots must be 10 s apart.
func TestReadmeCheckpointIntervalDefault(t *testing.T) {
	needProcesses(t)
	dir := filepath.Join(t.TempDir(), "ckpt")
	p := start(t, statejobBin, "--checkpoint="+dir, "--master=local[2]")
	p.waitFor(t, "23 batches", func() bool {
		seen := map[time.Time]bool{}
		for _, b := range batchTimes(p.stdout.String()) {
			seen[b] = true
		}
		return len(seen) >= 23
	})
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t, exitBound); code != 0 {
		t.Fatalf("exit %d after SIGTERM", code)
	}
	snaps := ckptSnapshots(t, dir)
	if len(snaps) < 2 {
		t.Fatalf("%d snapshots after 23 batches, want at least 2 (one every 10 s): %v", len(snaps), snaps)
	}
	t.Logf("snapshots (newest first): %v", snaps)
	for i := 1; i < len(snaps); i++ {
		if d := snaps[i-1].Sub(snaps[i]); d != 10*time.Second {
			t.Errorf("snapshots %s and %s are %v apart, want the default 10 s", snaps[i].UTC().Format(time.TimeOnly), snaps[i-1].UTC().Format(time.TimeOnly), d)
		}
	}
}

// README, "What works today", cluster mode: "every operator, stateful ones
// and event time included, ... run[s] in a cluster". The other process
// tests run wordcount's, the windows, joins and state of the Spark
// examples and statejob; opsjob runs the rest of the feature list's
// operators (filter, mapPartitions, reduce, groupByKey, combineByKey,
// mapValues, cogroup, rightOuterJoin, fullOuterJoin, transformWith,
// reduceByWindow, groupByKeyAndWindow, countByWindow, Partitions(n)) over
// a deterministic rate source. Every line of the first 5 batches in a
// cluster of 2 executors (4 partitions) must equal the local run's (2).
func TestReadmeClusterEveryOperator(t *testing.T) {
	bin := buildTestdata(t, "opsjob")
	const perBatch, n = 14, 5
	want := localReferenceOf(t, bin, perBatch*n, "--master=local[2]")
	c := newCluster(t, 2)
	id := c.submitBinary(bin)
	c.waitBatches(id, perBatch*n)
	got := batches(c.jobStdout(id))
	if len(got) < perBatch*n || len(want) < perBatch*n {
		t.Fatalf("%d lines in the cluster, %d local; want %d", len(got), len(want), perBatch*n)
	}
	checkAgainst(t, got[:perBatch*n], want[:perBatch*n])
}

// README, "The cluster's UI": "A job submitted with its own `--ui`
// (`driver submit bin/job -- --ui=:4041`) also serves it from its driver
// process". Its API names the cluster as the job's master, as its log line
// does (master="cluster HOST:PORT"), not its process's default flag value
// "local[*]" (found by a README audit).
func TestReadmeClusterJobOwnUISaysClusterMaster(t *testing.T) {
	c := newCluster(t, 1)
	id := c.submit("--ui=127.0.0.1:0", "--lines-per-second=2000")
	c.driver.waitFor(t, "the job driver's web UI line", func() bool { return uiURLRE.MatchString(c.jobStderr(id)) })
	base := uiURLRE.FindStringSubmatch(c.jobStderr(id))[1]
	var j ui.Job
	getAPI(t, base+"/api/v1/jobs/"+id, &j)
	if strings.HasPrefix(j.Master, "local") {
		t.Errorf("the cluster job's own API says master %q; its log says %q", j.Master, regexp.MustCompile(`master="[^"]*"`).FindString(c.jobStderr(id)))
	}
}

// README, "What works today": "Graceful stop ...: the batches already
// generated finish, and the socket receiver stops reading and one more
// batch (at the next batch time) processes the lines it had received", and
// `driver stop` "stops the job". The other tests check it in local mode
// (TestSparkDefectGracefulStopDropsReceivedLines); here the same lines
// reach a cluster job's receiver, which runs in its job driver, just
// before `driver stop`: every one must be counted in the saved output.
func TestReadmeClusterGracefulStopProcessesReceivedLines(t *testing.T) {
	bins := buildSparkex(t, "networkwordcount")
	srv := newTextServer(t)
	c := newCluster(t, 2)
	out := filepath.Join(c.dir, "out", "counts")
	id := c.submitBinary(bins["networkwordcount"], "--addr="+srv.addr(), "--out="+out)
	c.driver.waitFor(t, "a saved batch", func() bool { return len(savedBatches(t, out)) > 0 })
	time.Sleep(200 * time.Millisecond) // early in a batch interval
	srv.send(t, 1, strings.Repeat("one two three\n", 100))
	time.Sleep(100 * time.Millisecond)
	if _, err := c.run("stop", id); err != nil {
		t.Fatal(err)
	}
	c.driver.waitFor(t, "the job finished", func() bool {
		out, _ := c.run("status", id)
		return strings.Contains(out, ": finished")
	})
	checkCountsEqual(t, "saved counts after driver stop", sumSaved(t, out), map[string]int64{"one": 100, "two": 100, "three": 100})
}
