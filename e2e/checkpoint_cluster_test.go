//go:build unix

package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/seqjob"
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
	c := newCluster(t, 2)
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
	if _, err := c.run("stop", id2); err != nil {
		t.Fatal(err)
	}
	c.waitJobState(id2, 30*time.Second, "finished")
	log := c.jobStderr(id2)
	restored := logLinesWithMsg(log, "restored from checkpoint")
	if len(restored) != 1 || restored[0]["snapshot"] == "0001-01-01T00:00:00.000Z" {
		t.Fatalf("the resubmitted job did not restore a snapshot: %v\n%s", restored, tail(log))
	}
	nb := seqjob.Check(t, out, time.Second, files, seqKeys, seqPer)
	t.Logf("%d batches; restored snapshot %s, replayed %s batches", nb, restored[0]["snapshot"], restored[0]["replay_batches"])
}
