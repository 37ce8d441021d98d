//go:build unix

package e2e

// Defects found porting Spark Streaming's examples from the README (see
// spark_examples_test.go), one test each, each written to fail on the code
// before its fix (2026-11-30) and kept as a regression test.

import (
	"bytes"
	"compress/gzip"
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

// `nc -lk 9999 < words.txt` with a words.txt whose last line has no
// newline (or `printf 'a b' | nc -l 9999`): Spark's socketTextStream
// yields the last line at end of stream (BufferedReader.readLine); Sluice
// drops it silently when the connection ends.
func TestSparkDefectSocketDropsUnterminatedLastLine(t *testing.T) {
	bins := buildSparkex(t, "networkwordcount")
	srv := newTextServer(t)
	out := filepath.Join(t.TempDir(), "out", "counts")
	p := start(t, bins["networkwordcount"], "--addr="+srv.addr(), "--out="+out)
	srv.send(t, 1, "one two\nthree four")
	srv.mu.Lock()
	srv.conns[0].Close() // the server is done: end of stream
	srv.mu.Unlock()
	r := &runner{t: t, local: p}
	r.waitFor("the first line counted", func() bool { return total(sumSaved(t, out)) >= 2 })
	time.Sleep(2500 * time.Millisecond)
	checkCountsEqual(t, "saved counts", sumSaved(t, out), map[string]int64{"one": 1, "two": 1, "three": 1, "four": 1})
	r.stop()
}

// A malformed address (`--addr=localhost`, a port forgotten, as Spark's
// socketTextStream(host, port) never needs) is retried forever with a
// warning every few seconds: the job runs, printing empty batches. An
// address that cannot be parsed is no transient failure; it should stop
// the job at start with a usage error (exit 2) naming the flag's value.
func TestSparkDefectSocketMalformedAddressRetriedForever(t *testing.T) {
	bins := buildSparkex(t, "networkwordcount")
	for _, addr := range []string{"localhost", ""} {
		p := start(t, bins["networkwordcount"], "--addr="+addr)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			p.signal(t, syscall.SIGKILL)
			<-p.done
			t.Fatalf("--addr=%q: still running after 5s:\n%s", addr, tail(p.stderr.String()))
		}
		if code := p.cmd.ProcessState.ExitCode(); code == 0 {
			t.Errorf("--addr=%q: exit status 0", addr)
		}
	}
}

// Spark's saveAsTextFiles writes each element's toString: a pair is
// "(word,4)", as Print shows it here too (the README: "Print shows pairs
// as (key,value)"). Sluice's SaveAsTextFiles writes fmt's %v, "{word 4}"
// (a Pair "{2 1}"), which is documented nowhere, differs from Print, and
// is ambiguous for keys with spaces ("{a b 1}"). A port of a Spark job
// whose files feed another program breaks.
func TestSparkDefectSaveAsTextFilesPairFormat(t *testing.T) {
	bins := buildSparkex(t, "queuestream")
	out := filepath.Join(t.TempDir(), "out", "reduced")
	p := start(t, bins["queuestream"], "--rounds=1", "--out="+out)
	if code := p.wait(t, progressBound); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	printed := regexp.MustCompile(`(?m)^\(\d,100\)$`).FindAllString(p.stdout.String(), -1)
	if len(printed) != 10 {
		t.Fatalf("Print: %d (key,100) lines, want 10:\n%s", len(printed), p.stdout.String())
	}
	var saved []string
	for _, lines := range savedBatches(t, out) {
		saved = append(saved, lines...)
	}
	if len(saved) != 10 {
		t.Fatalf("saved %d lines, want 10: %v", len(saved), saved)
	}
	for _, l := range saved {
		if !regexp.MustCompile(`^\(\d,100\)$`).MatchString(l) {
			t.Errorf("saved line %q, want (key,100) as Print shows it", l)
		}
	}
}

// ReduceByKeyAndWindowInv with a nil inverse function (or a Spark user's
// reduceByKeyAndWindow(f, null, ...)) is accepted when the graph is built
// (MapWithState with a nil Func is refused at once: "StateSpec.Func is
// nil"), the job runs, and the first batch that leaves the window fails
// every task attempt with a nil pointer panic whose site is
// "reduceByKeyAndWindow@asm_amd64.s:1771", not the user's line.
func TestSparkDefectInverseWindowNilInverseFailsLate(t *testing.T) {
	dir := jobDir(t)
	writeJob(t, dir, `
		q := dstream.NewQueue[string](ctx)
		q.Push("a", "b")
		pairs := dstream.Map(q.Stream(), func(w string) dstream.KV[string, int] { return dstream.KVOf(w, 1) })
		dstream.Print(dstream.ReduceByKeyAndWindowInv(pairs, "w", dstream.Sum[int], nil, 2*time.Second, time.Second, nil), 10)
`)
	p := start(t, buildJob(t, dir))
	code := p.wait(t, progressBound)
	stderr := p.stderr.String()
	if len(logLinesWithMsg(stderr, "started")) > 0 || code != 2 || !strings.Contains(stderr, "nil") || !strings.Contains(stderr, "main.go:") {
		t.Errorf("exit %d; want a refusal at start (exit 2) naming the nil inverse function and the user's line:\n%s", code, tail(stderr))
	}
}

// Graceful stop (SIGTERM, "Graceful stop on SIGTERM/SIGINT" in the
// README; the table maps ssc.stop() to ctx.Stop(), "graceful"): lines the
// socket receiver already read (acknowledged over TCP) but that no batch
// took yet are dropped, silently, and the job exits 0. Spark's graceful
// stop (stopGracefully, spark.streaming.stopGracefullyOnShutdown) waits
// until all received data is processed. At the least the drop should be
// logged and the README should say so.
func TestSparkDefectGracefulStopDropsReceivedLines(t *testing.T) {
	bins := buildSparkex(t, "networkwordcount")
	srv := newTextServer(t)
	out := filepath.Join(t.TempDir(), "out", "counts")
	p := start(t, bins["networkwordcount"], "--addr="+srv.addr(), "--out="+out)
	r := &runner{t: t, local: p}
	r.waitFor("an empty batch", func() bool { return len(savedBatches(t, out)) > 0 })
	time.Sleep(200 * time.Millisecond) // early in a batch interval
	srv.send(t, 1, strings.Repeat("one two three\n", 100))
	r.waitFor("the lines received", func() bool {
		return strings.Contains(p.stderr.String(), "socket source: connected")
	})
	time.Sleep(100 * time.Millisecond)
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t, exitBound); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	checkCountsEqual(t, "saved counts after a graceful stop", sumSaved(t, out), map[string]int64{"one": 100, "two": 100, "three": 100})
}

// jobDir makes a directory for a job program inside the module (under
// testdata, which ./... skips), removed at the end of the test.
func jobDir(t *testing.T) string {
	t.Helper()
	needProcesses(t)
	dir, err := os.MkdirTemp("testdata", "defectjob-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// buildJob builds the job program in dir and returns its path.
func buildJob(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "job")
	cmd := exec.Command("go", "build", "-o", bin, "./"+dir)
	cmd.WaitDelay = waitDelay
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// writeJob writes a job program whose build function body is body, into
// dir (inside the module, so that it builds against this checkout).
func writeJob(t *testing.T, dir, body string) {
	t.Helper()
	src := `package main

import (
	"time"

	"github.com/sluicehq/sluice/dstream"
)

var _ = time.Second

func main() {
	dstream.Run(dstream.Config{AppName: "defect", BatchInterval: time.Second}, func(ctx *dstream.Context) error {
` + body + `
		return nil
	})
}
`
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

// In a cluster the job's batch log line (state_keys, state_bytes), and so
// the JSON API's stateKeys and /metrics' sluice_state_keys, count only the
// state the job's driver process holds itself (StatefulNetworkWordCount's
// initial state, 2 keys), not the state the executors hold: the README
// says the state's "size is in the batch log line" and the cluster's API
// answers as a local job's. Local mode counts every key.
func TestSparkDefectClusterStateKeysCountsDriverOnly(t *testing.T) {
	bins := buildSparkex(t, "statefulnetworkwordcount")
	modes(t, func(t *testing.T, clustered bool) {
		srv := newTextServer(t)
		out := t.TempDir()
		r := runExample(t, clustered, bins["statefulnetworkwordcount"], "--addr="+srv.addr(), "--out="+out)
		text := textFile(700, 300)
		want := wordCounts(text)
		want["hello"]++
		want["world"]++
		srv.send(t, 1, text)
		lastState := func() map[string]int64 {
			saved := savedBatches(t, filepath.Join(out, "state"))
			ts := sortedTimes(saved)
			if len(ts) == 0 {
				return nil
			}
			return parseKVLines(t, saved[ts[len(ts)-1]])
		}
		r.waitFor("the state to hold every word", func() bool { return total(lastState()) >= total(want) })
		time.Sleep(1500 * time.Millisecond)
		lines := logLinesWithMsg(r.stderr(), "batch")
		if len(lines) == 0 {
			t.Fatal("no batch log line")
		}
		last := lines[len(lines)-1]
		if got := last["state_keys"]; got != strconv.Itoa(len(want)) {
			t.Errorf("last batch line: state_keys=%s, want %d (the keys of the saved state snapshot)", got, len(want))
		}
		r.stop()
	})
}

// Two jobs on one cluster (two of the examples submitted to the README's
// cluster): an executor whose slots are busy with the other job's tasks
// refuses a task (ResourceExhausted, "executor has N slots, all busy"); the
// job driver classifies that as a lost executor (internal/cluster/codes.go),
// logs "task's executor lost; retrying elsewhere" about a healthy executor
// and avoids it for 3 s (backend.go suspect). Each job alone runs its
// batches within milliseconds of their time; together one falls seconds
// behind (measured here: scheduling delays of 3 to 7 s with 1 s batches).
// The README says nothing of jobs sharing executors.
func TestSparkDefectTwoJobsOnOneClusterFallBehind(t *testing.T) {
	bins := buildSparkex(t, "windows")
	c := newCluster(t, 2)
	var ids []string
	for i := range 2 {
		ids = append(ids, c.submitBinary(bins["windows"], "--out="+filepath.Join(c.dir, "out"+strconv.Itoa(i)), "--batches=8"))
	}
	deadline := time.Now().Add(2 * progressBound)
	for _, id := range ids {
		for len(logLinesWithMsg(c.jobStderr(id), "batch")) < 12 {
			if time.Now().After(deadline) {
				t.Fatalf("job %s: %d batches within %v (1 s batches):\n%s", id, len(logLinesWithMsg(c.jobStderr(id), "batch")), 2*progressBound, tail(c.jobStderr(id)))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for _, id := range ids {
		log := c.jobStderr(id)
		// Behaviour, not timing (the machine may be loaded): a busy
		// executor is never reported lost.
		if strings.Contains(log, "all busy") {
			t.Errorf("job %s: a busy executor was reported lost:\n%s", id, grepLines(log, "all busy", 3))
		}
	}
}

// grepLines returns up to n lines of s that contain sub.
func grepLines(s, sub string, n int) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) && len(out) < n {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A cluster job's driver logs "started ... master=local[*] slots=2" (its
// own process's defaults) while its tasks run on the cluster's executors
// with the partition count driver serve gave it (4 here, "parallelism=4" in
// driver serve's log): a user checking where the job runs reads "local".
func TestSparkDefectClusterJobLogsLocalMaster(t *testing.T) {
	bins := buildSparkex(t, "queuestream")
	c := newCluster(t, 2)
	id := c.submitBinary(bins["queuestream"], "--rounds=1", "--out="+filepath.Join(c.dir, "out"))
	c.driver.waitFor(t, "the started line", func() bool { return len(logLinesWithMsg(c.jobStderr(id), "started")) > 0 })
	l := logLinesWithMsg(c.jobStderr(id), "started")[0]
	if strings.HasPrefix(l["master"], "local") || l["slots"] != "4" {
		t.Errorf("started line: master=%s slots=%s; want the cluster and its 4 slots", l["master"], l["slots"])
	}
}

// HdfsWordCount over compressed files: Spark's textFileStream reads files
// through Hadoop's TextInputFormat, which decompresses by extension (.gz,
// .bz2, ...). Sluice's TextFileStream reads a .gz file's bytes as text and
// counts the binary as words, with no warning; the docs say nothing of
// compression (either decompress, or skip with a warning and skipped_files).
func TestSparkDefectTextFileStreamCountsGzipBytes(t *testing.T) {
	bins := buildSparkex(t, "hdfswordcount")
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	if err := os.MkdirAll(in, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out", "counts")
	r := runExample(t, false, bins["hdfswordcount"], "--dir="+in, "--out="+out)
	r.waitStarted()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("alpha beta\nalpha\n"))
	zw.Close()
	writeAtomic(t, in, "logs.gz", gz.String())
	writeAtomic(t, in, "plain.txt", "gamma\n")
	r.waitFor("the plain file counted", func() bool { return sumSaved(t, out)["gamma"] == 1 })
	time.Sleep(2500 * time.Millisecond)
	got := sumSaved(t, out)
	delete(got, "gamma")
	want := map[string]int64{"alpha": 2, "beta": 1}
	if len(got) > 0 && !mapsEqual(got, want) {
		t.Errorf("words counted from logs.gz: %v; want %v (decompressed) or nothing (skipped with a warning)", got, want)
	}
	r.stop()
}

// A Go programmer's main often starts with flag.Parse() (Spark's examples
// start by parsing their arguments). Then dstream.Run skips the standard
// flag set (it adopts flag.CommandLine only "when the program did not parse
// it itself", say ParseFlags' docs), and the job's own, defined flag is
// refused: "flag provided but not defined: -n". The error should say what
// is wrong (flag.Parse was called before Run; remove it), or Run should
// accept the flags already parsed.
func TestSparkDefectFlagParseBeforeRunRefusesDefinedFlag(t *testing.T) {
	dir := jobDir(t)
	src := `package main

import (
	"flag"
	"time"

	"github.com/sluicehq/sluice/dstream"
)

var n = flag.Int("n", 1, "how many")

func main() {
	flag.Parse()
	dstream.Run(dstream.Config{AppName: "flagjob", BatchInterval: time.Second}, func(ctx *dstream.Context) error {
		q := dstream.NewQueue[int](ctx)
		q.Push(*n)
		dstream.Print(q.Stream(), 10)
		go func() { time.Sleep(1500 * time.Millisecond); ctx.Stop() }()
		return nil
	})
}
`
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	p := start(t, buildJob(t, dir), "--n=5")
	code := p.wait(t, progressBound)
	stderr := p.stderr.String()
	if code != 0 && !strings.Contains(stderr, "flag.Parse") {
		t.Errorf("exit %d with %q; want the job to run (it defines -n) or an error naming flag.Parse", code, strings.TrimSpace(stderr))
	}
}

// A checkpointed job in a cluster takes its partition count from the slots
// registered when it is submitted. Stopped, the cluster grown by an executor
// (a usual reason to restart a job), and submitted again with the same
// checkpoint (as the README's "Recovery in a cluster" suggests), it is
// refused: "stateful operator ... changed from 4 to 6 partitions ... keep
// the partition count (Partitions option, --master slots or
// Config.Parallelism)". --master does not apply in a cluster and driver
// submit has no option to keep the count; the README does not mention it.
func TestSparkDefectClusterResubmitAfterScalingRefused(t *testing.T) {
	bins := buildSparkex(t, "checkpointwindows")
	c := newCluster(t, 2)
	in := filepath.Join(c.dir, "in")
	if err := os.MkdirAll(in, 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"--dir=" + in, "--out=" + filepath.Join(c.dir, "out"), "--checkpoint=" + filepath.Join(c.dir, "ckpt")}
	id := c.submitBinary(bins["checkpointwindows"], args...)
	c.driver.waitFor(t, "the job's first batch", func() bool { return len(logLinesWithMsg(c.jobStderr(id), "batch")) > 0 })
	writeAtomic(t, in, "f1", "a b c\n")
	c.driver.waitFor(t, "3 more batches", func() bool { return len(logLinesWithMsg(c.jobStderr(id), "batch")) > 3 })
	if _, err := c.run("stop", id); err != nil {
		t.Fatal(err)
	}
	c.waitJobState(id, exitBound, "finished")
	c.addExecutor(c.secret)
	id2 := c.submitBinary(bins["checkpointwindows"], args...)
	st := c.waitJobState(id2, progressBound, "running", "failed")
	if strings.Contains(st, "failed") {
		time.Sleep(time.Second)
	} else {
		c.driver.waitFor(t, "a batch of the resubmitted job", func() bool {
			st, _ = c.run("status", id2)
			return strings.Contains(st, "failed") || len(logLinesWithMsg(c.jobStderr(id2), "batch")) > 0
		})
	}
	if strings.Contains(st, "failed") {
		t.Errorf("the resubmitted job failed: %s", strings.TrimSpace(st))
	}
}

// The README says --checkpoint works "in local mode and cluster" (and it
// does: TestSparkCheckpointRestart/cluster, TestSparkRecoverableNetworkWordCount/cluster),
// but the job's --help says "checkpoint directory (local mode)" (dstream/main.go),
// as do `go doc dstream.Config` ("the job's checkpoint directory (local
// mode)") and docs/DESIGN.md ("Local mode today"): a user porting
// RecoverableNetworkWordCount to a cluster from the flags' help or the
// package docs is told it will not work there.
func TestSparkDefectCheckpointHelpSaysLocalOnly(t *testing.T) {
	bins := buildSparkex(t, "networkwordcount")
	p := start(t, bins["networkwordcount"], "--help")
	if code := p.wait(t, exitBound); code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	for _, l := range strings.Split(p.stderr.String()+p.stdout.String(), "\n") {
		if strings.Contains(l, "checkpoint directory") && strings.Contains(l, "(local mode)") {
			t.Errorf("--help: %q; checkpoints work in a cluster too", strings.TrimSpace(l))
		}
	}
}
