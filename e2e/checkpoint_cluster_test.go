//go:build unix

package e2e

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/checkpoint"
	"github.com/sluicehq/sluice/internal/seqjob"
	"github.com/sluicehq/sluice/internal/ui"
)

// Checkpoints in a cluster (issue 7/11, cluster half): the job driver keeps
// the checkpoint; executors send it their state partitions at every
// snapshot and load them back from it after a restart. These tests read
// the committed output files: every input line exactly once, and the state
// at every batch equal to what the lines so far add up to.

const seqKeys, seqPer = 5, 4

// jobDriverPID returns the pid `driver serve` logged for the job's driver
// (the newest start of that job).
func (c *cluster) jobDriverPID(id string) int {
	c.t.Helper()
	re := regexp.MustCompile(`msg="job (?:started|restarted)".* job=` + regexp.QuoteMeta(id) + `\b.* pid=(\d+)`)
	m := re.FindAllStringSubmatch(c.driver.stderr.String(), -1)
	if len(m) == 0 {
		c.t.Fatalf("no pid logged for job %s:\n%s", id, tail(c.driver.stderr.String()))
	}
	pid, _ := strconv.Atoi(m[len(m)-1][1])
	return pid
}

// waitStateLines waits until the newest committed state batch accounts
// for n lines.
func (c *cluster) waitStateLines(id, out string, n int64) {
	c.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for seqjob.StateLines(c.t, out) < n {
		if time.Now().After(deadline) {
			c.t.Fatalf("state holds %d of %d lines after 2 min; job stderr:\n%s", seqjob.StateLines(c.t, out), n, tail(c.jobStderr(id)))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestClusterCheckpointResubmit: a stateful job in a cluster with
// --checkpoint, its job driver killed with -9 mid-stream, then submitted
// again with the same checkpoint directory: the new job driver restores the
// executors' state from the snapshot they sent, replays the batches after
// it, and the output has every line exactly once with exact state at every
// batch.
func TestClusterCheckpointResubmit(t *testing.T) {
	c := newClusterWith(t, 2, "--ui=127.0.0.1:0")
	c.driver.waitFor(t, "the web UI line", func() bool { return uiURLRE.MatchString(c.driver.stderr.String()) })
	base := uiURLRE.FindStringSubmatch(c.driver.stderr.String())[1]
	in, out, ck := filepath.Join(c.dir, "in"), filepath.Join(c.dir, "out"), filepath.Join(c.dir, "ckpt")
	for _, d := range []string{in, out} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const files = 50
	fed := make(chan struct{})
	go seqjob.Feed(in, files, seqKeys, seqPer, 200*time.Millisecond, fed)
	args := []string{"--mode=seq", "--dir=" + in, "--out=" + out, "--checkpoint=" + ck, "--checkpoint-interval=2s"}
	id := c.submitBinary(truthjobBin, args...)
	// Past the first snapshots (every 2 s), then kill the job driver.
	c.driver.waitFor(t, "a few batches", func() bool {
		return strings.Count(c.jobStderr(id), `msg=batch `) >= 5
	})
	if err := syscall.Kill(c.jobDriverPID(id), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c.waitJobState(id, 30*time.Second, "failed")
	<-fed
	id2 := c.submitBinary(truthjobBin, args...)
	c.waitStateLines(id2, out, files*seqKeys*seqPer)
	// The cluster UI shows the job driver's checkpoint, whose newest
	// snapshot is the one the executors sent.
	var job ui.Job
	getAPI(t, base+"/api/v1/jobs/"+id2, &job)
	if _, err := c.run("stop", id2); err != nil {
		t.Fatal(err)
	}
	c.waitJobState(id2, 30*time.Second, "finished")
	snaps := ckptSnapshots(t, ck) // the two newest: one more may be taken before the stop
	if job.Checkpoint == nil || job.Checkpoint.Snapshot == nil || !slices.ContainsFunc(snaps, job.Checkpoint.Snapshot.BatchTime.Equal) {
		t.Errorf("the cluster UI's checkpoint %+v; the directory's snapshots %v", job.Checkpoint, snaps)
	}
	log := c.jobStderr(id2)
	restored := logLinesWithMsg(log, "restored from checkpoint")
	if len(restored) != 1 || restored[0]["snapshot"] == "0001-01-01T00:00:00.000Z" {
		t.Fatalf("the resubmitted job did not restore a snapshot: %v\n%s", restored, tail(log))
	}
	nb := seqjob.Check(t, out, time.Second, files, seqKeys, seqPer)
	t.Logf("%d batches; restored snapshot %s, replayed %s batches", nb, restored[0]["snapshot"], restored[0]["replay_batches"])
}

// restartExecutor starts executor i again, with its id and work directory,
// after it was killed.
func (c *cluster) restartExecutor(i int) {
	c.t.Helper()
	id := "exec" + string(rune('0'+i))
	e := start(c.t, executorBin, "--driver", c.addr, "--listen", "127.0.0.1:0", "--work-dir", filepath.Join(c.dir, id),
		"--slots", "2", "--secret-file", c.secret, "--drain-grace", "2s", "--id", id)
	c.execs[i] = e
	e.waitFor(c.t, "registration", func() bool { return strings.Contains(e.stderr.String(), "executor: registered") })
}

// stateHolder returns the index of the executor holding the most state
// partitions of the job, as the cluster UI's executors page shows them.
func (c *cluster) stateHolder(base, id string) int {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		var es []ui.Executor
		if resp, err := http.Get(base + "/api/v1/jobs/" + id + "/executors"); err == nil {
			if resp.StatusCode == 200 {
				json.NewDecoder(resp.Body).Decode(&es)
			}
			resp.Body.Close()
		}
		best, n := -1, 0
		for _, e := range es {
			i, err := strconv.Atoi(strings.TrimPrefix(e.ID, "exec"))
			if err == nil && e.State == ui.ExecutorActive && len(e.StatePartitions) > n {
				best, n = i, len(e.StatePartitions)
			}
		}
		if best >= 0 {
			return best
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.t.Fatalf("no executor holds state of job %s after 60s:\n%s", id, tail(c.jobStderr(id)))
	return -1
}

// committedAfter waits until a state batch at or after t is committed and
// returns how long after t that was.
func committedAfter(t *testing.T, out string, after time.Time, within time.Duration) (time.Duration, bool) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for ms := range seqjob.BatchDirs(t, filepath.Join(out, "state")) {
			if !time.UnixMilli(ms).Before(after) {
				return time.Since(after), true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return 0, false
}

// TestClusterExecutorKillRecoversState: executors that hold operator state
// are killed with -9 three times mid-stream (each restarted after a
// moment), under a job reading files the driver receives. Each time the job
// driver exits asking for a restart, `driver serve` restarts it, and it
// restores the state from the newest snapshot on the executors there are
// and replays the batches after it: every input line exactly once in the
// committing sink, the state exact at every batch, no batch time skipped.
func TestClusterExecutorKillRecoversState(t *testing.T) {
	testExecutorKills(t, false, 3)
}

// TestClusterKafkaExecutorKillRecoversState is the same with Kafka input
// (a devbroker process, franz-go producing, 3 partitions) and five kills:
// executors read their offset ranges themselves; replays read the recorded
// ranges again.
func TestClusterKafkaExecutorKillRecoversState(t *testing.T) {
	testExecutorKills(t, true, 5)
}

func testExecutorKills(t *testing.T, useKafka bool, kills int) {
	c := newClusterWith(t, 2, "--ui=127.0.0.1:0")
	c.driver.waitFor(t, "the web UI line", func() bool { return uiURLRE.MatchString(c.driver.stderr.String()) })
	base := uiURLRE.FindStringSubmatch(c.driver.stderr.String())[1]
	in, out := filepath.Join(c.dir, "in"), filepath.Join(c.dir, "out")
	for _, d := range []string{in, out} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := 40 * kills
	fed := make(chan struct{})
	// A relative --checkpoint is in the job's directory, which its
	// restarts keep.
	args := []string{"--mode=seq", "--out=" + out, "--checkpoint=ckpt", "--checkpoint-interval=2s"}
	if useKafka {
		b := start(t, devbrokerBin, "--port=0", "--partitions=3", "--topics=seq")
		b.waitFor(t, "the broker's address", func() bool { return devbrokerRE.MatchString(b.stdout.String()) })
		addr := devbrokerRE.FindStringSubmatch(b.stdout.String())[1]
		go func() {
			defer close(fed)
			if err := seqjob.Produce(context.Background(), addr, "seq", files, seqKeys, seqPer, 200*time.Millisecond); err != nil {
				t.Error(err)
			}
		}()
		args = append(args, "--brokers="+addr, "--rate=300")
	} else {
		go seqjob.Feed(in, files, seqKeys, seqPer, 200*time.Millisecond, fed)
		args = append(args, "--dir="+in)
	}
	id := c.submitBinary(truthjobBin, args...)
	c.driver.waitFor(t, "a few batches", func() bool { return strings.Count(c.jobStderr(id), `msg=batch `) >= 4 })
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))
	var recoveries []float64
	for k := range kills {
		time.Sleep(time.Duration(500+rng.IntN(2000)) * time.Millisecond) // a random point
		i := c.stateHolder(base, id)
		killed := time.Now()
		c.execs[i].signal(t, syscall.SIGKILL)
		<-c.execs[i].done
		t.Logf("kill -9 #%d: exec%d", k+1, i)
		time.Sleep(time.Duration(rng.IntN(1000)) * time.Millisecond)
		c.restartExecutor(i)
		d, ok := committedAfter(t, out, killed, 90*time.Second)
		if !ok {
			t.Fatalf("no batch committed within 90s of kill #%d; job stderr:\n%s\ndriver:\n%s", k+1, tail(c.jobStderr(id)), tail(c.driver.stderr.String()))
		}
		recoveries = append(recoveries, d.Seconds())
	}
	<-fed
	c.waitStateLines(id, out, int64(files*seqKeys*seqPer))
	if _, err := c.run("stop", id); err != nil {
		t.Fatal(err)
	}
	c.waitJobState(id, 30*time.Second, "finished")
	restarts := strings.Count(c.driver.stderr.String(), `msg="job restarted"`)
	restored := logLinesWithMsg(c.jobStderr(id), "restored from checkpoint")
	if restarts < kills || len(restored) < kills {
		t.Errorf("%d kills of a state holder: %d job driver restarts, %d restores from the checkpoint; want at least %d each", kills, restarts, len(restored), kills)
	}
	nb := seqjob.Check(t, out, time.Second, files, seqKeys, seqPer)
	t.Logf("%d batches, %d lines; %d restarts; from each kill to the first batch committed at or after it: %.1f s (1 s batches)", nb, files*seqKeys*seqPer, restarts, recoveries)
}

// ckptSnapshots lists the readable snapshots of a checkpoint directory no
// job holds, newest first, as the store reads them.
func ckptSnapshots(t *testing.T, dir string) []time.Time {
	t.Helper()
	st, err := checkpoint.Open(checkpoint.Config{Dir: dir})
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	defer st.Close()
	var out []time.Time
	for _, s := range st.Snapshots() {
		out = append(out, s.Time)
	}
	return out
}

// TestClusterJobDriverAndServeKills: a supervised stateful job whose job
// driver is killed with -9 three times (`driver serve` restarts it each
// time), then `driver serve` itself is killed with -9 and started again on
// its address and state directory (its job registry brings the job back;
// the executors re-register by themselves), then the whole cluster (driver
// serve and both executors) is killed with -9 and started again: every input
// line exactly once, the state exact at every batch, no batch time skipped.
func TestClusterJobDriverAndServeKills(t *testing.T) {
	c := newCluster(t, 2)
	in, out := filepath.Join(c.dir, "in"), filepath.Join(c.dir, "out")
	for _, d := range []string{in, out} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const files = 150
	fed := make(chan struct{})
	began := time.Now()
	go seqjob.Feed(in, files, seqKeys, seqPer, 200*time.Millisecond, fed)
	out2, err := c.run("submit", "--supervise", truthjobBin, "--", "--mode=seq", "--dir="+in, "--out="+out, "--checkpoint=ckpt", "--checkpoint-interval=2s")
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(out2)
	c.driver.waitFor(t, "a few batches", func() bool { return strings.Count(c.jobStderr(id), `msg=batch `) >= 3 })
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 13))
	var recoveries []float64
	for k := range 3 {
		time.Sleep(time.Duration(500+rng.IntN(2000)) * time.Millisecond)
		killed := time.Now()
		if err := syscall.Kill(c.jobDriverPID(id), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		t.Logf("kill -9 #%d of the job driver", k+1)
		d, ok := committedAfter(t, out, killed, 90*time.Second)
		if !ok {
			t.Fatalf("no batch committed within 90s of kill #%d; job stderr:\n%s\ndriver:\n%s", k+1, tail(c.jobStderr(id)), tail(c.driver.stderr.String()))
		}
		recoveries = append(recoveries, d.Seconds())
	}
	// driver serve: kill -9, then start it again where it was.
	time.Sleep(time.Duration(500+rng.IntN(1500)) * time.Millisecond)
	killed := time.Now()
	c.driver.signal(t, syscall.SIGKILL)
	<-c.driver.done
	time.Sleep(time.Duration(rng.IntN(2000)) * time.Millisecond)
	c.driver = start(t, driverBin, "serve", "--listen", c.addr, "--state-dir", filepath.Join(c.dir, "state"), "--secret-file", c.secret)
	d, ok := committedAfter(t, out, killed, 90*time.Second)
	if !ok {
		t.Fatalf("no batch committed within 90s of restarting driver serve; job stderr:\n%s\ndriver:\n%s", tail(c.jobStderr(id)), tail(c.driver.stderr.String()))
	}
	recoveries = append(recoveries, d.Seconds())
	// The whole cluster: driver serve and every executor, kill -9 at once.
	time.Sleep(time.Duration(500+rng.IntN(1500)) * time.Millisecond)
	killed = time.Now()
	for _, p := range append([]*proc{c.driver}, c.execs...) {
		p.signal(t, syscall.SIGKILL)
		<-p.done
	}
	time.Sleep(time.Duration(rng.IntN(2000)) * time.Millisecond)
	c.driver = start(t, driverBin, "serve", "--listen", c.addr, "--state-dir", filepath.Join(c.dir, "state"), "--secret-file", c.secret)
	for i := range c.execs {
		c.restartExecutor(i)
	}
	d, ok = committedAfter(t, out, killed, 90*time.Second)
	if !ok {
		t.Fatalf("no batch committed within 90s of restarting the whole cluster; job stderr:\n%s\ndriver:\n%s", tail(c.jobStderr(id)), tail(c.driver.stderr.String()))
	}
	recoveries = append(recoveries, d.Seconds())
	<-fed
	c.waitStateLines(id, out, files*seqKeys*seqPer)
	total := time.Since(began)
	if _, err := c.run("stop", id); err != nil {
		t.Fatal(err)
	}
	c.waitJobState(id, 30*time.Second, "finished")
	if jobs, _ := c.run("jobs"); strings.Count(jobs, "job-") != 1 {
		t.Errorf("driver jobs after the restarts lists other than the one job:\n%s", jobs)
	}
	restored := logLinesWithMsg(c.jobStderr(id), "restored from checkpoint")
	if len(restored) < 5 {
		t.Errorf("5 kills: %d restores from the checkpoint in the job's log", len(restored))
	}
	nb := seqjob.Check(t, out, time.Second, files, seqKeys, seqPer)
	t.Logf("%d batches, %d lines; 3 job driver kills, driver serve killed, the whole cluster killed; from each kill to the first batch committed at or after it: %.1f s; input fed over %v, all of it in the state %v after the start",
		nb, files*seqKeys*seqPer, recoveries, time.Duration(files)*200*time.Millisecond, total.Round(100*time.Millisecond))
}

// TestClusterCheckpointEveryOperator: statejob (UpdateStateByKey,
// ReduceByKeyAndWindowInv and an event-time window over a deterministic
// rate source) with --checkpoint; the job process holding state is killed
// with -9 on one executor, then on the other. Every batch time printed
// (replays included) shows exactly what the local run shows at that batch:
// state, window and watermark restored, no batch time skipped.
func TestClusterCheckpointEveryOperator(t *testing.T) {
	const n = 16 // batches compared
	want := localReferenceOf(t, statejobBin, 3*n)
	c := newCluster(t, 2)
	id := c.submitBinary(statejobBin, "--checkpoint=ckpt", "--checkpoint-interval=2s")
	c.waitBatches(id, 3*4)
	for k, e := range c.execs {
		pids := regexp.MustCompile(`job process started.* pid=(\d+)`).FindAllStringSubmatch(e.stderr.String(), -1)
		if len(pids) == 0 {
			t.Fatalf("exec%d started no job process", k)
		}
		pid, _ := strconv.Atoi(pids[len(pids)-1][1])
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		seen := len(batchTimes(c.jobStdout(id)))
		// The kill fails a batch; the job driver restarts and goes on.
		c.driver.waitFor(t, "batches after the kill", func() bool { return len(batchTimes(c.jobStdout(id))) >= seen+3*3 })
	}
	c.driver.waitFor(t, "all batches", func() bool { return len(distinctTimes(c.jobStdout(id))) >= n })
	if _, err := c.run("stop", id); err != nil {
		t.Fatal(err)
	}
	c.waitJobState(id, 30*time.Second, "finished")
	stdout := c.jobStdout(id)
	times := distinctTimes(stdout)
	for i := 1; i < len(times); i++ {
		if d := times[i].Sub(times[i-1]); d != time.Second {
			t.Fatalf("batch times %s then %s: a batch is missing", times[i-1].Format(time.TimeOnly), times[i].Format(time.TimeOnly))
		}
	}
	byTime := map[string][]string{}
	for _, l := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(l, "batch ") && len(l) > 16 {
			byTime[l[6:14]] = append(byTime[l[6:14]], l[16:])
		}
	}
	replays := 0
	for k, bt := range times[:min(n, len(times))] {
		ref := want[3*k : 3*k+3]
		got := byTime[bt.Format(time.TimeOnly)]
		if len(got)%3 != 0 || len(got) == 0 {
			t.Errorf("batch %s printed %d lines, not 3 per run", bt.Format(time.TimeOnly), len(got))
		}
		replays += len(got)/3 - 1
		for _, g := range got {
			if !slices.Contains(ref, g) {
				t.Errorf("batch %d (%s) printed %q; the local run printed %q", k+1, bt.Format(time.TimeOnly), g, ref)
			}
		}
	}
	restored := logLinesWithMsg(c.jobStderr(id), "restored from checkpoint")
	if len(restored) < 2 {
		t.Errorf("2 kills of a state holder's job process: %d restores", len(restored))
	}
	t.Logf("%d batch times compared with the local run; %d replayed batches printed again; %d restores", min(n, len(times)), replays, len(restored))
}

// distinctTimes returns the batch times printed, in order, once each.
func distinctTimes(stdout string) []time.Time {
	var out []time.Time
	for _, t := range batchTimes(stdout) {
		if !slices.ContainsFunc(out, t.Equal) {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return out
}
