//go:build unix

package e2e

// Spark Streaming's examples (org/apache/spark/examples/streaming), ported
// as a new user would from the README and the dstream package docs (the job
// programs are in testdata/sparkex/), fed known input and checked against
// a plain Go computation of the expected result, on the output files and
// the state, in local mode and in a cluster of real processes on loopback.

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/kafka"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// buildSparkex builds the named job programs of testdata/sparkex into a
// temporary directory (Go's build cache makes this a link each) and returns
// their paths by name.
func buildSparkex(t *testing.T, names ...string) map[string]string {
	t.Helper()
	needProcesses(t)
	dir := t.TempDir()
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	for _, n := range names {
		args = append(args, "./testdata/sparkex/"+n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.WaitDelay = waitDelay
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	bins := map[string]string{}
	for _, n := range names {
		bins[n] = filepath.Join(dir, n)
	}
	return bins
}

// textServer is what `nc -lk` is in Spark's examples: a TCP server on
// loopback whose test writes lines to the newest connection.
type textServer struct {
	l     net.Listener
	mu    sync.Mutex
	conns []net.Conn
	done  chan struct{}
}

func newTextServer(t *testing.T) *textServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &textServer{l: l, done: make(chan struct{})}
	go func() { // owned by the test: the cleanup closes the listener and waits
		defer close(s.done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-s.done
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range s.conns {
			c.Close()
		}
	})
	return s
}

func (s *textServer) addr() string { return s.l.Addr().String() }

func (s *textServer) connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// send waits until at least n clients connected and writes text to the
// newest connection.
func (s *textServer) send(t *testing.T, n int, text string) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("connection %d to the text server", n), func() bool { return s.connections() >= n })
	s.mu.Lock()
	c := s.conns[len(s.conns)-1]
	s.mu.Unlock()
	c.SetWriteDeadline(time.Now().Add(progressBound))
	if _, err := c.Write([]byte(text)); err != nil {
		t.Fatalf("text server: write: %v", err)
	}
}

// wordCounts counts the words of text as strings.Fields splits them.
func wordCounts(text string) map[string]int64 {
	out := map[string]int64{}
	for _, w := range strings.Fields(text) {
		out[w]++
	}
	return out
}

func addCounts(dst, src map[string]int64) {
	for k, v := range src {
		dst[k] += v
	}
}

func total(m map[string]int64) (n int64) {
	for _, v := range m {
		n += v
	}
	return n
}

// savedBatches reads the committed output directories "<prefix>-<ms>"
// (those holding _SUCCESS): batch time in ms -> the lines of its part files.
func savedBatches(t *testing.T, prefix string) map[int64][]string {
	t.Helper()
	dirs, err := filepath.Glob(prefix + "-*")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64][]string{}
	for _, d := range dirs {
		ms, err := strconv.ParseInt(strings.TrimPrefix(d, prefix+"-"), 10, 64)
		if err != nil {
			continue // ._temporary, ._replaced, or a longer prefix
		}
		if _, err := os.Stat(filepath.Join(d, "_SUCCESS")); err != nil {
			continue
		}
		parts, _ := filepath.Glob(filepath.Join(d, "part-*"))
		sort.Strings(parts)
		lines := []string{}
		for _, p := range parts {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range strings.Split(string(b), "\n") {
				if l != "" {
					lines = append(lines, l)
				}
			}
		}
		out[ms] = lines
	}
	return out
}

// sortedTimes returns the keys of a savedBatches map in order.
func sortedTimes(m map[int64][]string) []int64 {
	ts := make([]int64, 0, len(m))
	for ms := range m {
		ts = append(ts, ms)
	}
	slices.Sort(ts)
	return ts
}

// kvLineRE matches a saved KV[K, number] element: SaveAsTextFiles writes
// a KV as Print shows it, "(key,value)".
var kvLineRE = regexp.MustCompile(`^\((.*),(-?\d+)\)$`)

// parseKVLines parses saved KV[string, number] lines into a map; a key seen
// twice in one batch fails the test.
func parseKVLines(t *testing.T, lines []string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, l := range lines {
		m := kvLineRE.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("output line %q is not (key,count)", l)
		}
		if _, dup := out[m[1]]; dup {
			t.Fatalf("key %q twice in one batch", m[1])
		}
		n, _ := strconv.ParseInt(m[2], 10, 64)
		out[m[1]] = n
	}
	return out
}

// sumSaved adds up the per-batch counts of every committed batch.
func sumSaved(t *testing.T, prefix string) map[string]int64 {
	t.Helper()
	sum := map[string]int64{}
	for _, lines := range savedBatches(t, prefix) {
		addCounts(sum, parseKVLines(t, lines))
	}
	return sum
}

func checkCountsEqual(t *testing.T, what string, got, want map[string]int64) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q = %d, want %d", what, k, got[k], v)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected %q = %d", what, k, v)
		}
	}
}

// runner runs an example either as a local process or as a job of a
// cluster, and says whether it failed.
type runner struct {
	t     *testing.T
	local *proc
	c     *cluster
	id    string
	// restarts: batches may fail (an executor killed on purpose; the job
	// driver exits 75 and is restarted)
	restarts bool
}

func runExample(t *testing.T, clustered bool, bin string, args ...string) *runner {
	t.Helper()
	r := &runner{t: t}
	if !clustered {
		r.local = start(t, bin, args...)
		return r
	}
	r.c = newCluster(t, 2)
	r.id = r.c.submitBinary(bin, args...)
	return r
}

func (r *runner) stderr() string {
	if r.local != nil {
		return r.local.stderr.String()
	}
	return r.c.jobStderr(r.id)
}

func (r *runner) stdout() string {
	if r.local != nil {
		return r.local.stdout.String()
	}
	return r.c.jobStdout(r.id)
}

// waitFor polls cond for up to progressBound, failing early when the job
// logged a failed batch or its process exited.
func (r *runner) waitFor(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(progressBound)
	for !cond() {
		if !r.restarts && strings.Contains(r.stderr(), "batch failed") {
			r.t.Fatalf("a batch failed while waiting for %s:\n%s", what, tail(r.stderr()))
		}
		if r.local != nil && r.local.exited() && !cond() {
			r.t.Fatalf("%s exited (%v) before %s:\n%s", r.local.name, r.local.cmd.ProcessState, what, tail(r.stderr()))
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("no %s within %v:\n%s", what, progressBound, tail(r.stderr()))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitStarted waits for the job's "started" log line.
func (r *runner) waitStarted() {
	r.t.Helper()
	r.waitFor("the job's start", func() bool { return len(logLinesWithMsg(r.stderr(), "started")) > 0 })
}

// stop stops the job gracefully and checks it ends well: exit status 0
// locally, "finished" in a cluster.
func (r *runner) stop() {
	r.t.Helper()
	if r.local != nil {
		r.local.signal(r.t, syscall.SIGTERM)
		if code := r.local.wait(r.t, exitBound); code != 0 {
			r.t.Errorf("exit status %d after SIGTERM, want 0", code)
		}
		return
	}
	if _, err := r.c.run("stop", r.id); err != nil {
		r.t.Fatalf("driver stop: %v", err)
	}
	r.c.waitJobState(r.id, exitBound, "finished")
}

func (r *runner) checkNoFailure() {
	r.t.Helper()
	if s := r.stderr(); strings.Contains(s, "batch failed") || strings.Contains(s, "level=ERROR") {
		r.t.Errorf("the job logged an error:\n%s", tail(s))
	}
}

func modes(t *testing.T, f func(t *testing.T, clustered bool)) {
	t.Run("local", func(t *testing.T) { f(t, false) })
	t.Run("cluster", func(t *testing.T) { f(t, true) })
}

// NetworkWordCount: the README's port, fed three rounds of known text; the
// saved per-batch counts add up to the words sent, exactly.
func TestSparkNetworkWordCount(t *testing.T) {
	bins := buildSparkex(t, "networkwordcount")
	modes(t, func(t *testing.T, clustered bool) {
		srv := newTextServer(t)
		out := filepath.Join(t.TempDir(), "out", "counts")
		r := runExample(t, clustered, bins["networkwordcount"], "--addr="+srv.addr(), "--out="+out)
		want := map[string]int64{}
		for i := range 3 {
			text := textFile(uint64(100+i), 300)
			addCounts(want, wordCounts(text))
			srv.send(t, 1, text)
			time.Sleep(700 * time.Millisecond) // spread over batches
		}
		r.waitFor("every word counted", func() bool { return total(sumSaved(t, out)) >= total(want) })
		time.Sleep(1500 * time.Millisecond) // nothing more may come
		checkCountsEqual(t, "saved counts", sumSaved(t, out), want)
		if !strings.Contains(r.stdout(), "Time: ") || !regexp.MustCompile(`(?m)^\((alpha|beta|gamma|delta|epsilon|zeta|eta|theta|iota|kappa|lambda|mu),\d+\)$`).MatchString(r.stdout()) {
			t.Errorf("Print output has no (word,count) line:\n%s", tail(r.stdout()))
		}
		r.checkNoFailure()
		r.stop()
	})
}

// QueueStream: Spark's example pushes an RDD of 1..1000 a second and maps x
// to (x % 10, 1): every batch that took an RDD counts 100 per key. The job
// stops itself (ctx.Stop) once the queue is drained.
func TestSparkQueueStream(t *testing.T) {
	bins := buildSparkex(t, "queuestream")
	modes(t, func(t *testing.T, clustered bool) {
		const rounds = 4
		out := filepath.Join(t.TempDir(), "out", "reduced")
		r := runExample(t, clustered, bins["queuestream"], "--rounds="+strconv.Itoa(rounds), "--out="+out)
		if clustered {
			r.c.waitJobState(r.id, 2*progressBound, "finished", "failed")
			if st, _ := r.c.run("status", r.id); !strings.Contains(st, "finished") {
				t.Fatalf("job status %q, want finished\n%s", st, tail(r.stderr()))
			}
		} else if code := r.local.wait(t, 2*progressBound); code != 0 {
			t.Fatalf("exit status %d, want 0\n%s", code, tail(r.stderr()))
		}
		want := map[string]int64{}
		for k := range 10 {
			want[strconv.Itoa(k)] = 100
		}
		nonEmpty := 0
		saved := savedBatches(t, out)
		for _, ms := range sortedTimes(saved) {
			if len(saved[ms]) == 0 {
				continue
			}
			nonEmpty++
			checkCountsEqual(t, fmt.Sprintf("batch %d", ms), parseKVLines(t, saved[ms]), want)
		}
		if nonEmpty != rounds {
			t.Errorf("%d batches with data, want %d (one per pushed RDD)", nonEmpty, rounds)
		}
		r.checkNoFailure()
	})
}

// StatefulNetworkWordCount: mapWithState with the initial state
// (hello,1),(world,1). The mapped stream emits (word, running total) once
// per word received: for a word with initial state i received n times it
// emits exactly i+1..i+n; the last state snapshot is initial + counts.
func TestSparkStatefulNetworkWordCount(t *testing.T) {
	bins := buildSparkex(t, "statefulnetworkwordcount")
	modes(t, func(t *testing.T, clustered bool) {
		srv := newTextServer(t)
		out := t.TempDir()
		r := runExample(t, clustered, bins["statefulnetworkwordcount"], "--addr="+srv.addr(), "--out="+out)
		want := map[string]int64{"hello": 1, "world": 1}
		initial := map[string]int64{"hello": 1, "world": 1}
		for i := range 3 {
			text := textFile(uint64(200+i), 200)
			if i == 1 {
				text += "hello world hello\n"
			}
			addCounts(want, wordCounts(text))
			srv.send(t, 1, text)
			time.Sleep(1100 * time.Millisecond)
		}
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
		checkCountsEqual(t, "last state snapshot", lastState(), want)
		emitted := map[string][]int64{}
		for _, lines := range savedBatches(t, filepath.Join(out, "mapped")) {
			for _, l := range lines {
				m := kvLineRE.FindStringSubmatch(l)
				if m == nil {
					t.Fatalf("mapped line %q is not (word,total)", l)
				}
				n, _ := strconv.ParseInt(m[2], 10, 64)
				emitted[m[1]] = append(emitted[m[1]], n)
			}
		}
		for w, n := range want {
			got := emitted[w]
			slices.Sort(got)
			var exp []int64
			for v := initial[w] + 1; v <= n; v++ {
				exp = append(exp, v)
			}
			if !slices.Equal(got, exp) {
				t.Errorf("%q: emitted totals %v, want %v", w, got, exp)
			}
		}
		r.checkNoFailure()
		r.stop()
	})
}

// HdfsWordCount: new files of a directory (written after the start, by
// rename), each read once; the saved counts add up to the files' words.
func TestSparkHdfsWordCount(t *testing.T) {
	bins := buildSparkex(t, "hdfswordcount")
	modes(t, func(t *testing.T, clustered bool) {
		dir := t.TempDir()
		in := filepath.Join(dir, "in")
		if err := os.MkdirAll(in, 0o755); err != nil {
			t.Fatal(err)
		}
		writeAtomic(t, in, "before", "present at start and never counted\n")
		out := filepath.Join(dir, "out", "counts")
		r := runExample(t, clustered, bins["hdfswordcount"], "--dir="+in, "--out="+out)
		r.waitStarted()
		want := map[string]int64{}
		for i := range 4 {
			text := textFile(uint64(300+i), 250)
			addCounts(want, wordCounts(text))
			writeAtomic(t, in, fmt.Sprintf("part-%d.txt", i), text)
			time.Sleep(900 * time.Millisecond)
		}
		r.waitFor("every file counted", func() bool { return total(sumSaved(t, out)) >= total(want) })
		time.Sleep(2500 * time.Millisecond)
		checkCountsEqual(t, "saved counts", sumSaved(t, out), want)
		r.checkNoFailure()
		r.stop()
	})
}

// DirectKafkaWordCount against cmd/devbroker (a separate process, as the
// README says): lines produced before the start are read from the earliest
// offset, lines produced meanwhile too; the counts add up exactly.
func TestSparkDirectKafkaWordCount(t *testing.T) {
	bins := buildSparkex(t, "directkafkawordcount")
	modes(t, func(t *testing.T, clustered bool) {
		addr := startDevbroker(t)
		produceLines(t, addr, 0, 3000, 0)
		out := filepath.Join(t.TempDir(), "out", "counts")
		r := runExample(t, clustered, bins["directkafkawordcount"], "--brokers="+addr, "--topics=lines", "--group=dkwc", "--out="+out, "--out-topic=counts")
		r.waitStarted()
		produceLines(t, addr, 3000, 2000, 2000)
		want := referenceCounts(5000)
		r.waitFor("every line counted", func() bool { return total(sumSaved(t, out)) >= total(want) })
		time.Sleep(2500 * time.Millisecond)
		checkCountsEqual(t, "saved counts", sumSaved(t, out), want)
		// The sink: every (word, count) of every batch in topic counts, with
		// the batch-time header; no task failed, so none written twice.
		checkCountsEqual(t, "topic counts", readCountsTopic(t, addr, "counts"), want)
		r.checkNoFailure()
		r.stop()
	})
}

// SqlNetworkWordCount-like ForeachRDD: the function collects the batch's
// words and writes a table per batch; in a cluster it runs in the job's
// driver, so the files are on the driver's host, once per batch.
func TestSparkSqlNetworkWordCount(t *testing.T) {
	bins := buildSparkex(t, "sqlnetworkwordcount")
	modes(t, func(t *testing.T, clustered bool) {
		srv := newTextServer(t)
		tables := filepath.Join(t.TempDir(), "tables")
		sinkDir := t.TempDir()
		r := runExample(t, clustered, bins["sqlnetworkwordcount"], "--addr="+srv.addr(), "--out-dir="+tables, "--sink-dir="+sinkDir)
		want := map[string]int64{}
		for i := range 3 {
			text := textFile(uint64(400+i), 200)
			addCounts(want, wordCounts(text))
			srv.send(t, 1, text)
			time.Sleep(800 * time.Millisecond)
		}
		read := func() map[string]int64 {
			got := map[string]int64{}
			files, _ := filepath.Glob(filepath.Join(tables, "table-*.txt"))
			for _, f := range files {
				b, _ := os.ReadFile(f)
				for _, l := range strings.Split(string(b), "\n") {
					w, n, ok := strings.Cut(l, "\t")
					if !ok {
						continue
					}
					c, _ := strconv.ParseInt(n, 10, 64)
					got[w] += c
				}
			}
			return got
		}
		r.waitFor("every word in the tables", func() bool { return total(read()) >= total(want) })
		time.Sleep(1500 * time.Millisecond)
		checkCountsEqual(t, "tables", read(), want)
		sunk := map[string]int64{}
		files, _ := filepath.Glob(filepath.Join(sinkDir, "*.txt"))
		for _, f := range files {
			b, _ := os.ReadFile(f)
			addCounts(sunk, wordCounts(string(b)))
		}
		checkCountsEqual(t, "ForeachPartition files", sunk, want)
		r.checkNoFailure()
		r.stop()
	})
}

// RecoverableNetworkWordCount: --checkpoint, the job killed with -9 after
// the first text was counted (local: the same command again; cluster:
// --supervise and a relative checkpoint, the job driver killed), then more
// text. The saved counts hold every word once (the excluded a, b, c
// dropped, counted by the accumulator); the appended output file has every
// batch, a replayed batch again with the same counts.
func TestSparkRecoverableNetworkWordCount(t *testing.T) {
	bins := buildSparkex(t, "recoverablenetworkwordcount")
	bin := bins["recoverablenetworkwordcount"]
	modes(t, func(t *testing.T, clustered bool) {
		srv := newTextServer(t)
		dir := t.TempDir()
		out := filepath.Join(dir, "out", "counts")
		outputFile := filepath.Join(dir, "counts.txt")
		args := []string{"--addr=" + srv.addr(), "--output-file=" + outputFile, "--out=" + out}
		exclude := func(text string) (map[string]int64, int64) {
			c := wordCounts(text)
			var dropped int64
			for _, w := range []string{"a", "b", "c"} {
				dropped += c[w]
				delete(c, w)
			}
			return c, dropped
		}
		text1 := textFile(500, 300) + "a b c a\n"
		want, dropped1 := exclude(text1)
		var r *runner
		if clustered {
			c := newCluster(t, 2)
			o, err := c.run(append([]string{"submit", "--supervise", bin, "--"}, append(args, "--checkpoint=ckpt")...)...)
			if err != nil {
				t.Fatalf("submit: %v", err)
			}
			r = &runner{t: t, c: c, id: strings.TrimSpace(o)}
		} else {
			args = append(args, "--checkpoint="+filepath.Join(dir, "ckpt"))
			r = runExample(t, false, bin, args...)
		}
		srv.send(t, 1, text1)
		r.waitFor("the first text counted", func() bool { return total(sumSaved(t, out)) >= total(want) })
		r.waitFor("the dropped words counted", func() bool {
			return strings.Contains(r.stdout(), fmt.Sprintf("Dropped %d word(s) totally", dropped1))
		})
		time.Sleep(1200 * time.Millisecond)
		if clustered {
			if err := syscall.Kill(r.c.jobDriverPID(r.id), syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			r.c.driver.waitFor(t, "the job driver restarted", func() bool {
				return strings.Contains(r.c.driver.stderr.String(), `msg="job restarted"`)
			})
			if _, err := os.Stat(filepath.Join(r.c.dir, "state", "jobs", r.id, "ckpt")); err != nil {
				t.Errorf("the relative checkpoint is not in the job's directory: %v", err)
			}
		} else {
			r.local.signal(t, syscall.SIGKILL)
			<-r.local.done
			r = &runner{t: t, local: start(t, bin, args...)}
		}
		text2 := textFile(501, 300) + "b\n"
		c2, _ := exclude(text2)
		addCounts(want, c2)
		srv.send(t, 2, text2)
		r.waitFor("the second text counted", func() bool { return total(sumSaved(t, out)) >= total(want) })
		time.Sleep(1500 * time.Millisecond)
		checkCountsEqual(t, "saved counts after a restart", sumSaved(t, out), want)
		r.checkNoFailure()

		// The output file: one "Counts at time" line per batch, a replayed
		// batch possibly twice (at-least-once) but with the same counts.
		b, err := os.ReadFile(outputFile)
		if err != nil {
			t.Fatal(err)
		}
		byTime := map[string]string{}
		fileCounts := map[string]int64{}
		lineRE := regexp.MustCompile(`^Counts at time (\d+) \[(.*)\]$`)
		pairRE := regexp.MustCompile(`\(([^,]+),(\d+)\)`)
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			m := lineRE.FindStringSubmatch(l)
			if m == nil {
				t.Fatalf("output file line %q", l)
			}
			if prev, ok := byTime[m[1]]; ok {
				if prev != m[2] {
					t.Errorf("batch %s written twice with different counts:\n%s\n%s", m[1], prev, m[2])
				}
				continue
			}
			byTime[m[1]] = m[2]
			for _, pm := range pairRE.FindAllStringSubmatch(m[2], -1) {
				n, _ := strconv.ParseInt(pm[2], 10, 64)
				fileCounts[pm[1]] += n
			}
		}
		checkCountsEqual(t, "output file (distinct batches)", fileCounts, want)
		r.stop()
	})
}

// The windowed operators, joins and union over two queues: each output
// batch must equal what a plain loop computes from the saved input batches.
func TestSparkWindows(t *testing.T) {
	bins := buildSparkex(t, "windows")
	modes(t, func(t *testing.T, clustered bool) {
		const n = 8
		out := t.TempDir()
		r := runExample(t, clustered, bins["windows"], "--out="+out, "--batches="+strconv.Itoa(n))
		// n batches of input, then 4 empty ones so every window drains.
		r.waitFor("the input and 4 empty batches after it", func() bool { return len(savedBatches(t, filepath.Join(out, "in-a"))) >= n+4 })
		r.stop()
		checkWindows(t, out, n)
	})
}

// windowBatchA and windowBatchB are testdata/sparkex/windows's BatchA and
// BatchB.
func windowBatchA(i int) []string {
	var w []string
	for j := 0; j < 4+i; j++ {
		w = append(w, "w"+strconv.Itoa((i*j+j)%5))
	}
	return w
}

func windowBatchB(i int) []string {
	var w []string
	for j := 0; j < 2+i%3; j++ {
		w = append(w, "w"+strconv.Itoa((i+j)%4))
	}
	return w
}

func checkWindows(t *testing.T, out string, n int) {
	t.Helper()
	inA := savedBatches(t, filepath.Join(out, "in-a"))
	inB := savedBatches(t, filepath.Join(out, "in-b"))
	times := sortedTimes(inA)
	if len(times) < n {
		t.Fatalf("%d input batches saved, want at least %d", len(times), n)
	}
	// The queues: batch i of the job takes the i-th pushed slice, in order.
	for i, ms := range times {
		var wa, wb []string
		if i < n {
			wa, wb = windowBatchA(i), windowBatchB(i)
		}
		if ga := slices.Sorted(slices.Values(inA[ms])); !slices.Equal(ga, slices.Sorted(slices.Values(wa))) {
			t.Fatalf("queue A batch %d (%d): %v, want %v", i, ms, inA[ms], wa)
		}
		if gb := slices.Sorted(slices.Values(inB[ms])); !slices.Equal(gb, slices.Sorted(slices.Values(wb))) {
			t.Fatalf("queue B batch %d (%d): %v, want %v", i, ms, inB[ms], wb)
		}
	}
	for i := 1; i < len(times); i++ {
		if times[i]-times[i-1] != 1000 {
			t.Fatalf("input batches %d and %d are %d ms apart", times[i-1], times[i], times[i]-times[i-1])
		}
	}
	first, last := times[0], times[len(times)-1]
	// counts of the batches in (end-window, end]
	win := func(in map[int64][]string, end int64, window int64) map[string]int64 {
		c := map[string]int64{}
		for ms, lines := range in {
			if ms > end-window && ms <= end {
				for _, w := range lines {
					c[w]++
				}
			}
		}
		return c
	}
	keysUpTo := func(end int64) map[string]bool {
		k := map[string]bool{}
		for ms, lines := range inA {
			if ms <= end {
				for _, w := range lines {
					k[w] = true
				}
			}
		}
		return k
	}
	// check compares every saved batch of an output with want(end), and
	// checks the output has a batch at every slide in [first, last].
	check := func(name string, slide int64, want func(end int64) map[string]int64) {
		t.Helper()
		saved := savedBatches(t, filepath.Join(out, name))
		ts := sortedTimes(saved)
		if len(ts) == 0 {
			t.Errorf("%s: no output", name)
			return
		}
		if ts[0] >= first+slide {
			t.Errorf("%s: first window at %d, input starts at %d with slide %d", name, ts[0], first, slide)
		}
		for i := 1; i < len(ts); i++ {
			if ts[i]-ts[i-1] != slide {
				t.Errorf("%s: windows at %d and %d, slide %d", name, ts[i-1], ts[i], slide)
			}
		}
		for _, ms := range ts {
			if ms > last {
				continue // after the stop
			}
			checkCountsEqual(t, fmt.Sprintf("%s at %d (batch %d)", name, ms, (ms-first)/1000), parseKVLines(t, saved[ms]), want(ms))
		}
	}
	check("rbkw-3-1", 1000, func(end int64) map[string]int64 { return win(inA, end, 3000) })
	check("rbkw-4-2", 2000, func(end int64) map[string]int64 { return win(inA, end, 4000) })
	check("wintrans-3-1", 1000, func(end int64) map[string]int64 { return win(inA, end, 3000) })
	check("inv-3-1", 1000, func(end int64) map[string]int64 { return win(inA, end, 3000) }) // filter: > 0
	check("inv-4-2", 2000, func(end int64) map[string]int64 {
		c := win(inA, end, 4000)
		for k := range keysUpTo(end) { // no filter: keys stay at 0
			c[k] += 0
		}
		return c
	})
	check("cbvw-4-2", 2000, func(end int64) map[string]int64 { return win(inA, end, 4000) })
	check("union", 1000, func(end int64) map[string]int64 {
		c := win(inA, end, 1000)
		addCounts(c, win(inB, end, 1000))
		return c
	})
	// countByWindow: one number per window.
	cbw := savedBatches(t, filepath.Join(out, "cbw-3-1"))
	for _, ms := range sortedTimes(cbw) {
		if ms > last {
			continue
		}
		want := total(win(inA, ms, 3000))
		if len(cbw[ms]) != 1 || cbw[ms][0] != strconv.FormatInt(want, 10) {
			t.Errorf("cbw-3-1 at %d: %v, want [%d]", ms, cbw[ms], want)
		}
	}
	if len(cbw) < len(times) {
		t.Errorf("cbw-3-1: %d windows for %d batches", len(cbw), len(times))
	}
	// join: per batch, and of two 3s windows: (w,(countA,countB)).
	joinWant := func(a, b map[string]int64) []string {
		var l []string
		for k, va := range a {
			if vb, ok := b[k]; ok {
				l = append(l, fmt.Sprintf("(%s,(%d,%d))", k, va, vb))
			}
		}
		slices.Sort(l)
		return l
	}
	for name, w := range map[string]int64{"join": 1000, "winjoin-3-1": 3000} {
		saved := savedBatches(t, filepath.Join(out, name))
		if len(saved) < len(times) {
			t.Errorf("%s: %d batches for %d input batches", name, len(saved), len(times))
		}
		for _, ms := range sortedTimes(saved) {
			if ms > last {
				continue
			}
			got := slices.Sorted(slices.Values(saved[ms]))
			if want := joinWant(win(inA, ms, w), win(inB, ms, w)); !slices.Equal(got, want) {
				t.Errorf("%s at %d: %v, want %v", name, ms, got, want)
			}
		}
	}
}

// The windowed and stateful examples with --checkpoint over a directory,
// killed with -9 mid-stream and restarted (local: the same command again;
// cluster: --supervise, the job driver killed, then an executor): the
// input is saved exactly once, no batch time is skipped, and every window
// and every state batch equals a plain loop over the saved input.
func TestSparkCheckpointRestart(t *testing.T) {
	bins := buildSparkex(t, "checkpointwindows")
	modes(t, func(t *testing.T, clustered bool) {
		dir := t.TempDir()
		in := filepath.Join(dir, "in")
		if err := os.MkdirAll(in, 0o755); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "out")
		args := []string{"--dir=" + in, "--out=" + out}
		want := map[string]int64{}
		file := 0
		write := func(k int) {
			for range k {
				text := textFile(uint64(600+file), 40)
				if file%3 == 0 {
					text += "hello world\n"
				}
				addCounts(want, wordCounts(text))
				writeAtomic(t, in, fmt.Sprintf("f%02d.txt", file), text)
				file++
				time.Sleep(600 * time.Millisecond)
			}
		}
		savedWords := func() int64 {
			var n int64
			for _, lines := range savedBatches(t, filepath.Join(out, "in")) {
				n += int64(len(lines))
			}
			return n
		}
		var r *runner
		if !clustered {
			args = append(args, "--checkpoint="+filepath.Join(dir, "ckpt"))
			r = runExample(t, false, bins["checkpointwindows"], args...)
			r.waitStarted()
			write(4)
			r.waitFor("the first files counted", func() bool { return savedWords() >= total(want) })
			write(2) // killed with these possibly in flight
			r.local.signal(t, syscall.SIGKILL)
			<-r.local.done
			write(1) // while the job is down
			r = &runner{t: t, local: start(t, bins["checkpointwindows"], args...)}
			r.waitStarted()
		} else {
			c := newCluster(t, 2)
			out, err := c.run(append([]string{"submit", "--supervise", bins["checkpointwindows"], "--"}, append(args, "--checkpoint=ckpt")...)...)
			if err != nil {
				t.Fatalf("submit: %v", err)
			}
			r = &runner{t: t, c: c, id: strings.TrimSpace(out)}
			r.waitStarted()
			write(4)
			r.waitFor("the first files counted", func() bool { return savedWords() >= total(want) })
			write(2)
			if err := syscall.Kill(c.jobDriverPID(r.id), syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			write(1)
			c.driver.waitFor(t, "the job driver restarted", func() bool {
				return strings.Contains(c.driver.stderr.String(), `msg="job restarted"`)
			})
			write(3)
			r.waitFor("the files so far counted", func() bool { return savedWords() >= total(want) })
			r.restarts = true
			c.execs[0].signal(t, syscall.SIGKILL)
		}
		write(4)
		r.waitFor("every file counted", func() bool { return savedWords() >= total(want) })
		time.Sleep(5 * time.Second) // the windows drain
		r.stop()
		checkRestartedOutputs(t, out, want)
	})
}

func checkRestartedOutputs(t *testing.T, out string, want map[string]int64) {
	t.Helper()
	inB := savedBatches(t, filepath.Join(out, "in"))
	times := sortedTimes(inB)
	got := map[string]int64{}
	for _, ms := range times {
		for _, w := range inB[ms] {
			got[w]++
		}
	}
	checkCountsEqual(t, "saved input", got, want)
	for i := 1; i < len(times); i++ {
		if times[i]-times[i-1] != 1000 {
			t.Errorf("input batches %d and %d: a batch time is missing", times[i-1], times[i])
		}
	}
	if t.Failed() {
		return
	}
	last := times[len(times)-1]
	win := func(end, window int64) map[string]int64 {
		c := map[string]int64{}
		for ms, lines := range inB {
			if ms > end-window && ms <= end {
				for _, w := range lines {
					c[w]++
				}
			}
		}
		return c
	}
	checkEvery := func(name string, slide int64, f func(end int64) map[string]int64) {
		t.Helper()
		saved := savedBatches(t, filepath.Join(out, name))
		ts := sortedTimes(saved)
		if len(ts) == 0 {
			t.Errorf("%s: no output", name)
			return
		}
		for i := 1; i < len(ts); i++ {
			if ts[i]-ts[i-1] != slide {
				t.Errorf("%s: outputs at %d and %d, slide %d", name, ts[i-1], ts[i], slide)
			}
		}
		bad := 0
		for _, ms := range ts {
			if ms > last {
				continue
			}
			exp := f(ms)
			g := parseKVLines(t, saved[ms])
			if !mapsEqual(g, exp) && bad < 3 {
				bad++
				t.Errorf("%s at %d (batch %d of %d): %v, want %v", name, ms, (ms-times[0])/1000, len(times), g, exp)
			}
		}
	}
	checkEvery("rbkw-3-1", 1000, func(end int64) map[string]int64 { return win(end, 3000) })
	checkEvery("inv-4-2", 2000, func(end int64) map[string]int64 { return win(end, 4000) })
	checkEvery("totals", 1000, func(end int64) map[string]int64 { return win(end, end-times[0]+1000) })
	checkEvery("mws-state", 1000, func(end int64) map[string]int64 {
		c := win(end, end-times[0]+1000)
		c["hello"]++
		c["world"]++
		return c
	})
	cbw := savedBatches(t, filepath.Join(out, "cbw-3-1"))
	for _, ms := range times {
		exp := strconv.FormatInt(total(win(ms, 3000)), 10)
		if len(cbw[ms]) != 1 || cbw[ms][0] != exp {
			t.Errorf("cbw-3-1 at %d: %v, want [%s]", ms, cbw[ms], exp)
		}
	}
}

func mapsEqual(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

// DirectKafkaWordCount stopped gracefully and started again with the
// group's committed offsets (no checkpoint): the second run starts where
// the first one's last batch ended; over both runs every line is counted
// exactly once.
func TestSparkDirectKafkaWordCountResumesFromGroup(t *testing.T) {
	bins := buildSparkex(t, "directkafkawordcount")
	addr := startDevbroker(t)
	produceLines(t, addr, 0, 3000, 0)
	out := filepath.Join(t.TempDir(), "out", "counts")
	args := []string{"--brokers=" + addr, "--topics=lines", "--group=resume", "--start=committed", "--out=" + out}
	r := runExample(t, false, bins["directkafkawordcount"], args...)
	r.waitStarted()
	produceLines(t, addr, 3000, 1000, 2000)
	r.waitFor("the first 4000 lines counted", func() bool { return total(sumSaved(t, out)) >= total(referenceCounts(4000)) })
	r.stop()
	if err := committedAtEnd(addr, "resume"); err != nil {
		t.Fatalf("after a graceful stop: %v", err)
	}
	produceLines(t, addr, 4000, 2000, 0)
	r = runExample(t, false, bins["directkafkawordcount"], args...)
	want := referenceCounts(6000)
	r.waitFor("every line counted", func() bool { return total(sumSaved(t, out)) >= total(want) })
	time.Sleep(2500 * time.Millisecond)
	checkCountsEqual(t, "saved counts over both runs", sumSaved(t, out), want)
	r.checkNoFailure()
	r.stop()
}

// Several receivers united (the programming guide's "level of parallelism
// in data receiving"): three socket streams, Union, Repartition,
// CountByValue; the counts add up to what the three servers sent.
func TestSparkMultipleReceiversUnion(t *testing.T) {
	bins := buildSparkex(t, "multireceiver")
	modes(t, func(t *testing.T, clustered bool) {
		var srvs []*textServer
		var addrs []string
		for range 3 {
			s := newTextServer(t)
			srvs = append(srvs, s)
			addrs = append(addrs, s.addr())
		}
		out := filepath.Join(t.TempDir(), "out", "counts")
		r := runExample(t, clustered, bins["multireceiver"], "--addrs="+strings.Join(addrs, ","), "--out="+out)
		want := map[string]int64{}
		for round := range 2 {
			for i, s := range srvs {
				text := textFile(uint64(800+10*round+i), 150)
				addCounts(want, wordCounts(text))
				s.send(t, 1, text)
			}
			time.Sleep(900 * time.Millisecond)
		}
		r.waitFor("every word counted", func() bool { return total(sumSaved(t, out)) >= total(want) })
		time.Sleep(1500 * time.Millisecond)
		checkCountsEqual(t, "saved counts", sumSaved(t, out), want)
		r.checkNoFailure()
		r.stop()
	})
}

// readCountsTopic sums the (word, decimal count) records of topic, with
// franz-go (an independent client); every record must carry the sink's
// batch-time header, and a (batch, word) pair must appear once.
func readCountsTopic(t *testing.T, addr, topic string) map[string]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), progressBound)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var want int64
	ends.Each(func(o kadm.ListedOffset) { want += o.Offset })
	sum := map[string]int64{}
	seen := map[string]bool{}
	var n int64
	for n < want {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %d of %d records of %s: %v", n, want, topic, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			n++
			var bt string
			for _, h := range r.Headers {
				if h.Key == kafka.HeaderBatchTime {
					bt = string(h.Value)
				}
			}
			if bt == "" {
				t.Errorf("record %s/%d@%d has no %s header", r.Topic, r.Partition, r.Offset, kafka.HeaderBatchTime)
			}
			k := bt + "/" + string(r.Key)
			if seen[k] {
				t.Errorf("batch %s: word %q written twice", bt, r.Key)
			}
			seen[k] = true
			c, err := strconv.ParseInt(string(r.Value), 10, 64)
			if err != nil {
				t.Errorf("record value %q", r.Value)
			}
			sum[string(r.Key)] += c
		})
	}
	return sum
}

// QueueStream in the New + Main style: three RDDs pushed before the start
// are taken one a batch; the job stops itself; every batch with data counts
// 100 per key.
func TestSparkQueueStreamMain(t *testing.T) {
	bins := buildSparkex(t, "queuestreammain")
	modes(t, func(t *testing.T, clustered bool) {
		out := filepath.Join(t.TempDir(), "out", "reduced")
		t.Setenv("QUEUESTREAM_OUT", out) // the job's processes inherit it (driver serve's environment in a cluster)
		r := runExample(t, clustered, bins["queuestreammain"])
		if clustered {
			r.c.waitJobState(r.id, 2*progressBound, "finished", "failed")
			if st, _ := r.c.run("status", r.id); !strings.Contains(st, "finished") {
				t.Fatalf("job status %q, want finished\n%s", st, tail(r.stderr()))
			}
		} else if code := r.local.wait(t, 2*progressBound); code != 0 {
			t.Fatalf("exit status %d, want 0\n%s", code, tail(r.stderr()))
		}
		want := map[string]int64{}
		for k := range 10 {
			want[strconv.Itoa(k)] = 100
		}
		saved := savedBatches(t, out)
		nonEmpty := 0
		for _, ms := range sortedTimes(saved) {
			if len(saved[ms]) > 0 {
				nonEmpty++
				checkCountsEqual(t, fmt.Sprintf("batch %d", ms), parseKVLines(t, saved[ms]), want)
			}
		}
		if nonEmpty != 3 {
			t.Errorf("%d batches with data, want 3", nonEmpty)
		}
	})
}

// StatefulNetworkWordCount with --checkpoint in a cluster (supervised):
// text A counted and snapshotted, the executor killed with -9, text B sent
// while the job driver has not yet noticed (its receiver reads it), then
// the job driver exits 75 and is restarted, and text C goes to the new
// receiver: the state holds A, B and C exactly, on top of the initial state.
func TestSparkStatefulNetworkWordCountExecutorKill(t *testing.T) {
	bins := buildSparkex(t, "statefulnetworkwordcount")
	srv := newTextServer(t)
	c := newCluster(t, 2)
	out := filepath.Join(c.dir, "out")
	o, err := c.run("submit", "--supervise", bins["statefulnetworkwordcount"], "--", "--addr="+srv.addr(), "--out="+out, "--checkpoint=ckpt", "--checkpoint-interval=2s")
	if err != nil {
		t.Fatal(err)
	}
	r := &runner{t: t, c: c, id: strings.TrimSpace(o), restarts: true}
	lastState := func() map[string]int64 {
		saved := savedBatches(t, filepath.Join(out, "state"))
		ts := sortedTimes(saved)
		if len(ts) == 0 {
			return nil
		}
		return parseKVLines(t, saved[ts[len(ts)-1]])
	}
	want := map[string]int64{"hello": 1, "world": 1}
	a := textFile(900, 200)
	addCounts(want, wordCounts(a))
	srv.send(t, 1, a)
	r.waitFor("A in the state", func() bool { return total(lastState()) >= total(want) })
	time.Sleep(2500 * time.Millisecond) // a snapshot
	c.execs[0].signal(t, syscall.SIGKILL)
	time.Sleep(300 * time.Millisecond)
	b := textFile(901, 200)
	addCounts(want, wordCounts(b))
	srv.send(t, 1, b)
	c.driver.waitFor(t, "the job driver restarted", func() bool { return strings.Contains(c.driver.stderr.String(), `msg="job restarted"`) })
	time.Sleep(500 * time.Millisecond)
	cc := textFile(902, 200)
	addCounts(want, wordCounts(cc))
	srv.send(t, 2, cc)
	deadline := time.Now().Add(40 * time.Second)
	for total(lastState()) < total(want) && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond)
	checkCountsEqual(t, "state", lastState(), want)
	r.stop()
}
