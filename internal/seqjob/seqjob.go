// Package seqjob is the job and the output readers of the checkpoint fault
// tests (dstream and kafka): input lines "KEY SEQ" with per-key sequence
// numbers, written as they come and folded into per-key state, both through
// the committing SaveAsTextFiles, so that loss, duplication and wrong state
// after a kill -9 and a restart are all visible in the files.
package seqjob

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/dstream"
)

// Build writes lines under out/lines-<batch> and each key's count and sum of
// sequence numbers ("KEY COUNT SUM") under out/state-<batch>, where the
// state is an UpdateStateByKey named "perkey".
func Build(lines *dstream.DStream[string], out string) {
	dstream.SaveAsTextFiles(lines, filepath.Join(out, "lines"), "")
	kv := dstream.Map(lines, func(l string) dstream.KV[string, int64] {
		k, s, _ := strings.Cut(l, " ")
		n, _ := strconv.ParseInt(s, 10, 64)
		return dstream.KV[string, int64]{Key: k, Value: n}
	})
	st := dstream.UpdateStateByKey(kv, "perkey", func(seqs []int64, s dstream.Pair[int64, int64], _ bool) (dstream.Pair[int64, int64], bool) {
		for _, n := range seqs {
			s.First++
			s.Second += n
		}
		return s, true
	})
	dstream.SaveAsTextFiles(dstream.Map(st, func(kv dstream.KV[string, dstream.Pair[int64, int64]]) string {
		return fmt.Sprintf("%s %d %d", kv.Key, kv.Value.First, kv.Value.Second)
	}), filepath.Join(out, "state"), "")
}

// BatchDirs returns the committed output directories of a sink by batch
// time (ms); a directory without its _SUCCESS marker fails the test.
func BatchDirs(t *testing.T, prefix string) map[int64]string {
	t.Helper()
	dirs, _ := filepath.Glob(prefix + "-*")
	out := map[int64]string{}
	for _, d := range dirs {
		ms, err := strconv.ParseInt(strings.TrimPrefix(d, prefix+"-"), 10, 64)
		if err != nil {
			continue // ._temporary, ._replaced
		}
		if _, err := os.Stat(filepath.Join(d, "_SUCCESS")); err != nil {
			t.Errorf("%s has no _SUCCESS: a partial batch is visible", d)
		}
		out[ms] = d
	}
	return out
}

// DirLines returns the non-empty lines of a batch directory's part files.
func DirLines(t *testing.T, dir string) []string {
	t.Helper()
	parts, _ := filepath.Glob(filepath.Join(dir, "part-*"))
	var lines []string
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
	return lines
}

// Feed writes files of input to dir, one every `every`: file f holds the
// sequence numbers f*per+1 .. f*per+per of each of keys keys ("k3 17"),
// written aside and renamed into place. It closes done when all are written.
func Feed(dir string, files, keys, per int, every time.Duration, done chan<- struct{}) {
	defer close(done)
	for f := range files {
		var b strings.Builder
		for k := range keys {
			for j := range per {
				fmt.Fprintf(&b, "k%d %d\n", k, f*per+j+1)
			}
		}
		name := filepath.Join(dir, fmt.Sprintf("f%05d", f))
		os.WriteFile(filepath.Join(dir, ".tmp"), []byte(b.String()), 0o644)
		os.Rename(filepath.Join(dir, ".tmp"), name)
		time.Sleep(every)
	}
}

// StateLines returns the number of lines the newest committed state batch
// under out accounts for (0 if none).
func StateLines(t *testing.T, out string) int64 {
	t.Helper()
	dirs := BatchDirs(t, filepath.Join(out, "state"))
	var last int64
	for ms := range dirs {
		last = max(last, ms)
	}
	if last == 0 {
		return 0
	}
	var n int64
	for _, l := range DirLines(t, dirs[last]) {
		f := strings.Fields(l)
		if len(f) == 3 {
			c, _ := strconv.ParseInt(f[1], 10, 64)
			n += c
		}
	}
	return n
}

// Check verifies the job's committed output under out against the input
// Feed wrote (files x keys x per lines): every line exactly once in the
// lines sink, batch times every interval without a gap, and at every batch
// the state of each key equal to what the lines so far add up to. It
// returns the number of batches.
func Check(t *testing.T, out string, interval time.Duration, files, keys, per int) int {
	t.Helper()
	lineDirs := BatchDirs(t, filepath.Join(out, "lines"))
	stateDirs := BatchDirs(t, filepath.Join(out, "state"))
	var times []int64
	for ms := range lineDirs {
		times = append(times, ms)
	}
	slices.Sort(times)
	for i := 1; i < len(times); i++ {
		if times[i]-times[i-1] != interval.Milliseconds() {
			t.Errorf("batch times %d then %d: batches skipped", times[i-1], times[i])
		}
	}
	seen := map[string]int{}
	type kst struct{ n, sum int64 }
	cum := map[string]kst{}
	for _, ms := range times {
		for _, l := range DirLines(t, lineDirs[ms]) {
			seen[l]++
			k, s, _ := strings.Cut(l, " ")
			n, _ := strconv.ParseInt(s, 10, 64)
			c := cum[k]
			cum[k] = kst{c.n + 1, c.sum + n}
		}
		// Exact state at every batch: what the lines so far add up to.
		sd, ok := stateDirs[ms]
		if !ok {
			t.Errorf("batch %d has lines output but no state output", ms)
			continue
		}
		got := map[string]kst{}
		for _, l := range DirLines(t, sd) {
			f := strings.Fields(l)
			n, _ := strconv.ParseInt(f[1], 10, 64)
			s, _ := strconv.ParseInt(f[2], 10, 64)
			got[f[0]] = kst{n, s}
		}
		for k, want := range cum {
			if got[k] != want {
				t.Errorf("batch %d: state of %s is %+v, the lines so far give %+v", ms, k, got[k], want)
			}
		}
	}
	CheckOnce(t, seen, files, keys, per)
	return len(times)
}

// CheckOnce fails t unless seen (how often each line reached the lines
// sink) holds every line Feed wrote for files, keys and per exactly once,
// and nothing else.
func CheckOnce(t testing.TB, seen map[string]int, files, keys, per int) {
	t.Helper()
	dups, lost := 0, 0
	for f := range files {
		for k := range keys {
			for j := range per {
				switch seen[fmt.Sprintf("k%d %d", k, f*per+j+1)] {
				case 0:
					lost++
				case 1:
				default:
					dups++
				}
			}
		}
	}
	if total := files * keys * per; dups > 0 || lost > 0 || len(seen) != total {
		t.Errorf("lines sink: %d lost, %d duplicated, %d distinct (want %d)", lost, dups, len(seen), total)
	}
}

// Produce writes the same input as Feed to a Kafka topic with franz-go (a
// client independent of the one Sluice reads with): "file" f's records,
// keyed by their key so that each key's records stay in order in one
// partition, then a pause of every.
func Produce(ctx context.Context, addr, topic string, files, keys, per int, every time.Duration) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic))
	if err != nil {
		return err
	}
	defer cl.Close()
	for f := range files {
		recs := make([]*kgo.Record, 0, keys*per)
		for k := range keys {
			key := "k" + strconv.Itoa(k)
			for j := range per {
				recs = append(recs, &kgo.Record{Key: []byte(key), Value: fmt.Appendf(nil, "%s %d", key, f*per+j+1)})
			}
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			return fmt.Errorf("produce file %d: %w", f, err)
		}
		time.Sleep(every)
	}
	return nil
}

// Process is one run of a fault test's job in a child process: the test
// binary re-executed to run one test function that runs the job.
type Process struct {
	Cmd     *exec.Cmd
	Logs    *bytes.Buffer // its standard error
	Started time.Time
}

// Start runs the test binary's test function testName in a child process
// with env added, and the job's arguments after "--".
func Start(t *testing.T, testName string, env []string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^" + testName + "$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	p := &Process{Cmd: cmd, Logs: &bytes.Buffer{}}
	cmd.Stderr = p.Logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.Started = time.Now()
	return p
}

// Recovered waits until the state sink under out has a batch at or after
// the process started and returns how long that took.
func (p *Process) Recovered(t *testing.T, out string) time.Duration {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		for ms := range BatchDirs(t, filepath.Join(out, "state")) {
			if !time.UnixMilli(ms).Before(p.Started) {
				return time.Since(p.Started)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.Cmd.Process.Kill()
	p.Cmd.Wait()
	t.Fatalf("no batch after a restart within 60s; job log:\n%s", p.Logs.String())
	return 0
}

// KillLoop starts the job kills times and kills it with -9 at a random
// point of each run (0.3-1.8 s in), leaving it down for up to maxDown. It
// returns, for every run after the first, the time from its start to its
// first batch in batch intervals.
func KillLoop(t *testing.T, start func() *Process, out string, kills int, interval, maxDown time.Duration, seed uint64) []float64 {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), seed))
	var recoveries []float64
	for kill := range kills {
		p := start()
		if kill > 0 {
			recoveries = append(recoveries, float64(p.Recovered(t, out))/float64(interval))
		}
		time.Sleep(time.Duration(300+rng.IntN(1500)) * time.Millisecond) // a random point
		p.Cmd.Process.Signal(syscall.SIGKILL)
		p.Cmd.Wait()
		t.Logf("kill -9 #%d after %v", kill+1, time.Since(p.Started).Round(time.Millisecond))
		time.Sleep(time.Duration(rng.Int64N(int64(maxDown)))) // down for a while
	}
	return recoveries
}
