//go:build unix

package e2e

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/devkafka"
	"github.com/sluicehq/sluice/internal/wordgen"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

var devbrokerRE = regexp.MustCompile(`on (127\.0\.0\.1:\d+)`)

// startDevbroker runs cmd/devbroker as its own process on loopback, with a
// 4-partition topic "lines", and returns its address.
func startDevbroker(t *testing.T) string {
	t.Helper()
	b := start(t, devbrokerBin, "--port=0", "--partitions=4", "--topics=lines,counts")
	b.waitFor(t, "the broker's address", func() bool { return devbrokerRE.MatchString(b.stdout.String()) })
	return devbrokerRE.FindStringSubmatch(b.stdout.String())[1]
}

// produceLines produces lines [first, first+n) of the standard workload
// with franz-go (an independent client).
func produceLines(t *testing.T, addr string, first, n int64, perSecond int) {
	t.Helper()
	got, err := devkafka.Generate(context.Background(), []string{addr}, "lines", perSecond, first, n)
	if err != nil || got != n {
		t.Errorf("produce lines [%d,%d): %d acknowledged, %v", first, first+n, got, err)
	}
}

// referenceCounts counts the words of lines [0, n).
func referenceCounts(n int64) map[string]int64 {
	vocab := wordgen.Vocabulary(wordgen.VocabularySize)
	out := map[string]int64{}
	for i := range n {
		wordgen.Fields(wordgen.LineAt(vocab, i), func(w string) { out[w]++ })
	}
	return out
}

// sumBatches adds up the per-batch counts printed by kafkawordcount (with
// --top larger than the vocabulary, every word of a batch is printed).
func sumBatches(t *testing.T, stdout string) (int64, map[string]int64) {
	t.Helper()
	var total int64
	counts := map[string]int64{}
	for _, b := range parseBatchLines(t, stdout) {
		total += b.words
		for w, n := range b.top {
			counts[w] += n
		}
	}
	return total, counts
}

func checkCounts(t *testing.T, got, want map[string]int64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%d distinct words counted, want %d", len(got), len(want))
	}
	for w, n := range want {
		if got[w] != n {
			t.Fatalf("%q counted %d times, want %d", w, got[w], n)
		}
	}
}

// committedAtEnd reports whether the group's committed offsets end at the
// topic's end offsets, as franz-go's admin client sees them.
func committedAtEnd(addr, group string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, "lines")
	if err != nil {
		return err
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return err
	}
	var errs []error
	ends.Each(func(o kadm.ListedOffset) {
		if c, ok := committed.Lookup(o.Topic, o.Partition); !ok || c.At != o.Offset {
			errs = append(errs, fmt.Errorf("group %s on %s/%d: committed %d (%v), end offset %d", group, o.Topic, o.Partition, c.At, ok, o.Offset))
		}
	})
	return errors.Join(errs...)
}

// A Kafka WordCount in local mode against a broker process: lines produced
// before and while the job runs are each counted once, the batch log lines
// carry the offsets, a graceful stop exits 0 and the consumer group's
// committed offsets end at the end of the topic.
func TestKafkaWordCountLocal(t *testing.T) {
	needProcesses(t)
	addr := startDevbroker(t)
	const before, during = 20_000, 20_000
	produceLines(t, addr, 0, before, 0)
	job := start(t, kafkawcBin, "--brokers="+addr, "--group=e2e-local", "--start=earliest",
		"--top=20000", "--max-rate-per-partition=2000", "--master=local[2]")
	produceLines(t, addr, before, during, 10_000)
	want := referenceCounts(before + during)
	job.waitFor(t, "every line counted", func() bool {
		total, _ := sumBatches(t, job.stdout.String())
		return total >= (before+during)*wordgen.WordsPerLine
	})
	job.signal(t, syscall.SIGTERM)
	if code := job.wait(t, exitBound); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
	total, got := sumBatches(t, job.stdout.String())
	if total != (before+during)*wordgen.WordsPerLine {
		t.Fatalf("counted %d words, want %d", total, (before+during)*wordgen.WordsPerLine)
	}
	checkCounts(t, got, want)
	lines := logLinesWithMsg(job.stderr.String(), "batch")
	if len(lines) < 5 {
		t.Fatalf("%d batch log lines: the rate limit should spread the input over 5+ batches", len(lines))
	}
	for _, l := range lines {
		if !strings.HasPrefix(l["offsets"], "lines/0:") {
			t.Fatalf("batch log line without offsets: %v", l)
		}
	}
	if err := committedAtEnd(addr, "e2e-local"); err != nil {
		t.Fatal(err)
	}
}

// The same job on a driver and two executors: an executor is killed with
// -9 mid-stream; every line is still counted exactly once (no gap, no
// overlap: the totals and per-word counts equal the reference) and the
// group's committed offsets end at the end of the topic.
func TestClusterKafkaSurvivesExecutorKill(t *testing.T) {
	c := newCluster(t, 2)
	addr := startDevbroker(t)
	const before, during = 30_000, 30_000
	produceLines(t, addr, 0, before, 0)
	id := c.submitBinary(kafkawcBin, "--brokers="+addr, "--group=e2e-cluster", "--start=earliest",
		"--top=20000", "--max-rate-per-partition=2500")
	c.waitBatches(id, 2)
	c.execs[0].signal(t, syscall.SIGKILL)
	produceLines(t, addr, before, during, 10_000)
	want := referenceCounts(before + during)
	c.driver.waitFor(t, "every line counted", func() bool {
		if strings.Contains(c.jobStderr(id), "batch failed") {
			t.Fatalf("job failed:\n%s", tail(c.jobStderr(id)))
		}
		total, _ := sumBatches(t, c.jobStdout(id))
		return total >= (before+during)*wordgen.WordsPerLine
	})
	total, got := sumBatches(t, c.jobStdout(id))
	if total != (before+during)*wordgen.WordsPerLine {
		t.Fatalf("counted %d words, want %d", total, (before+during)*wordgen.WordsPerLine)
	}
	checkCounts(t, got, want)
	checkNoGap(t, c.jobStdout(id))
	// The commit follows the batch's outputs: wait for the last one.
	var cerr error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if cerr = committedAtEnd(addr, "e2e-cluster"); cerr == nil {
			break
		}
	}
	if cerr != nil {
		t.Error(cerr)
	}
	if !strings.Contains(c.jobStderr(id), "executor lost") {
		t.Errorf("the job driver did not notice the lost executor:\n%s", tail(c.jobStderr(id)))
	}
}

// TestClusterKafkaWindow: a window over Kafka input sliding slower than the
// batch interval, on driver + 2 executors: every window's total equals the
// sum of its batches' inputs, through the executor losing nothing when the
// window's older batches are read from the executors' caches.
func TestClusterKafkaWindow(t *testing.T) {
	c := newCluster(t, 2)
	addr := startDevbroker(t)
	const lines = 40_000
	produceLines(t, addr, 0, lines, 0)
	id := c.submitBinary(truthjobBin, "--mode=kafkawindow", "--brokers="+addr, "--interval=500ms")
	batchRE := regexp.MustCompile(`(?m)^batch (\S+): input (\d+)$`)
	windowRE := regexp.MustCompile(`(?m)^window (\S+): total (\d+)$`)
	c.driver.waitFor(t, "every line counted and 8 windows after", func() bool {
		if strings.Contains(c.jobStderr(id), "batch failed") {
			t.Fatalf("job failed:\n%s", tail(c.jobStderr(id)))
		}
		var words int
		for _, m := range batchRE.FindAllStringSubmatch(c.jobStdout(id), -1) {
			n, _ := strconv.Atoi(m[2])
			words += n
		}
		return words >= lines*wordgen.WordsPerLine && len(windowRE.FindAllString(c.jobStdout(id), -1)) >= 8
	})
	out := c.jobStdout(id)
	input := map[string]int{}
	var times []time.Time
	for _, m := range batchRE.FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[2])
		input[m[1]] = n
		bt, _ := time.Parse("15:04:05.000", m[1])
		times = append(times, bt)
	}
	checked := 0
	for _, m := range windowRE.FindAllStringSubmatch(out, -1) {
		wt, _ := time.Parse("15:04:05.000", m[1])
		want := 0
		for _, bt := range times {
			if bt.After(wt.Add(-2*time.Second)) && !bt.After(wt) {
				want += input[bt.Format("15:04:05.000")]
			}
		}
		if got, _ := strconv.Atoi(m[2]); got != want {
			t.Errorf("window %s: total %d, want %d (the sum of its 4 batches' input)", m[1], got, want)
		}
		checked++
	}
	if checked < 8 {
		t.Fatalf("%d windows checked, want 8", checked)
	}
}
