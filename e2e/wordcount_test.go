//go:build unix

package e2e

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/wordgen"
)

var stopSignals = []struct {
	name string
	sig  syscall.Signal
}{
	{"SIGTERM", syscall.SIGTERM},
	{"SIGINT", syscall.SIGINT},
}

// TestDirSourceGracefulStop feeds files to `wordcount --source=dir --out`,
// stops it with a signal while it runs (while a batch is being saved, most
// of the time), and checks that it exits 0 with every batch's output
// directory committed and the counts exactly those of the files: each file
// read by exactly one batch, and every generated batch finished.
func TestDirSourceGracefulStop(t *testing.T) {
	needProcesses(t)
	t.Parallel()
	for _, tc := range stopSignals {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tmp := t.TempDir()
			in := filepath.Join(tmp, "in")
			out := filepath.Join(tmp, "out")
			if err := os.Mkdir(in, 0o755); err != nil {
				t.Fatal(err)
			}
			p := start(t, wordcountBin, "--source=dir", "--dir="+in, "--out="+filepath.Join(out, "counts"))
			p.waitFor(t, `"started" log line`, func() bool { return len(logLinesWithMsg(p.stderr.String(), "started")) > 0 })

			want := map[string]int64{}
			for i, seed := range []uint64{1, 2} {
				text := textFile(seed, 200)
				writeAtomic(t, in, fmt.Sprintf("input-%d.txt", i), text)
				for _, w := range strings.Fields(text) {
					want[w]++
				}
				p.waitFor(t, fmt.Sprintf("output of input file %d", i), func() bool {
					got, err := readCounts(out)
					return err == nil && maps.Equal(got, want)
				})
			}

			// A larger file, and the signal as soon as its batch printed its
			// line: its output is then usually still being saved, and the
			// graceful stop must finish it.
			big := textFile(3, 50000)
			bigWords := len(strings.Fields(big))
			writeAtomic(t, in, "input-big.txt", big)
			for _, w := range strings.Fields(big) {
				want[w]++
			}
			p.waitFor(t, "the batch line of the large file", func() bool {
				return strings.Contains(p.stdout.String(), fmt.Sprintf(": %d words,", bigWords))
			})
			p.signal(t, tc.sig)
			if code := p.wait(t, exitBound); code != 0 {
				t.Fatalf("exit status %d after %s, want 0", code, tc.name)
			}
			if len(logLinesWithMsg(p.stderr.String(), "stopped")) != 1 {
				t.Errorf(`stderr has no "stopped" log line`)
			}
			checkOutputDirs(t, out, "counts")
			got, err := readCounts(out)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, want) {
				t.Errorf("word counts summed over the batch directories differ from the input files:\n got %v\nwant %v", got, want)
			}
		})
	}
}

// textFile returns n lines of words from a small vocabulary, with uneven
// spacing, generated from seed.
func textFile(seed uint64, n int) string {
	vocab := []string{"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu"}
	r := rand.New(rand.NewPCG(seed, 0xe2e))
	var b strings.Builder
	for range n {
		for j := range 1 + r.IntN(8) {
			if j > 0 {
				b.WriteString([]string{" ", "  ", "\t"}[r.IntN(3)])
			}
			b.WriteString(vocab[r.IntN(len(vocab))])
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// writeAtomic writes a file into dir the way TextFileStream requires: under
// a dot-name first, then renamed.
func writeAtomic(t *testing.T, dir, name, text string) {
	t.Helper()
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

// readCounts sums the "word\tcount" lines of every committed batch
// directory under out (directories still being written are skipped).
func readCounts(out string) (map[string]int64, error) {
	ents, err := os.ReadDir(out)
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	counts := map[string]int64{}
	for _, e := range ents {
		if !e.IsDir() || strings.HasSuffix(e.Name(), "._temporary") {
			continue
		}
		files, err := filepath.Glob(filepath.Join(out, e.Name(), "part-*"))
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
				if line == "" {
					continue
				}
				w, c, ok := strings.Cut(line, "\t")
				n, err := strconv.ParseInt(c, 10, 64)
				if !ok || err != nil {
					return nil, fmt.Errorf("%s: bad line %q: want word<TAB>count", f, line)
				}
				counts[w] += n
			}
		}
	}
	return counts, nil
}

// checkOutputDirs checks that out holds only committed batch directories
// "<prefix>-<batch time in ms>" of whole seconds (the batch interval),
// each holding only finished part files.
func checkOutputDirs(t *testing.T, out, prefix string) {
	t.Helper()
	ents, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	nameRE := regexp.MustCompile(`^` + regexp.QuoteMeta(prefix) + `-(\d+)$`)
	partRE := regexp.MustCompile(`^part-\d{5}$`)
	for _, e := range ents {
		m := nameRE.FindStringSubmatch(e.Name())
		if m == nil || !e.IsDir() {
			t.Errorf("%s: unexpected entry %s (an uncommitted batch?)", out, e.Name())
			continue
		}
		if ms, _ := strconv.ParseInt(m[1], 10, 64); ms%1000 != 0 {
			t.Errorf("%s: batch time %d ms is not a multiple of the 1s batch interval", e.Name(), ms)
		}
		files, err := os.ReadDir(filepath.Join(out, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		parts := 0
		for _, f := range files {
			switch {
			case partRE.MatchString(f.Name()):
				parts++
			case f.Name() == "_SUCCESS":
				// The commit marker names the batch it commits.
				ms, _ := strconv.ParseInt(m[1], 10, 64)
				want := "batch " + time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z") + "\n"
				if b, err := os.ReadFile(filepath.Join(out, e.Name(), f.Name())); err != nil || string(b) != want {
					t.Errorf("%s/_SUCCESS holds %q (%v), want %q", e.Name(), b, err, want)
				}
			default:
				t.Errorf("%s: unexpected file %s", e.Name(), f.Name())
			}
		}
		if parts == 0 {
			t.Errorf("%s: no part files", e.Name())
		}
		if _, err := os.Stat(filepath.Join(out, e.Name(), "_SUCCESS")); err != nil {
			t.Errorf("%s: no _SUCCESS commit marker: %v", e.Name(), err)
		}
	}
	if len(ents) < 2 {
		t.Errorf("%s: %d batch directories, want at least one per input file (2)", out, len(ents))
	}
}

// batchLine is one line that wordcount prints per batch.
type batchLine struct {
	time     string
	words    int64
	distinct int
	top      map[string]int64
}

var batchLineRE = regexp.MustCompile(`^batch (\d\d:\d\d:\d\d): (\d+) words, (\d+) distinct; top (\d+):(.*)$`)

// parseBatchLines parses wordcount's standard output, failing the test on
// a line that is not a batch line.
func parseBatchLines(t *testing.T, stdout string) []batchLine {
	t.Helper()
	var out []batchLine
	for _, s := range strings.Split(strings.TrimSuffix(stdout, "\n"), "\n") {
		if s == "" {
			continue
		}
		m := batchLineRE.FindStringSubmatch(s)
		if m == nil {
			t.Fatalf("stdout line %q is not a batch line", s)
		}
		b := batchLine{time: m[1], top: map[string]int64{}}
		b.words, _ = strconv.ParseInt(m[2], 10, 64)
		b.distinct, _ = strconv.Atoi(m[3])
		ntop, _ := strconv.Atoi(m[4])
		pairs := strings.Fields(m[5])
		if len(pairs) != ntop {
			t.Fatalf("stdout line %q: %d word counts after top %d", s, len(pairs), ntop)
		}
		for _, kv := range pairs {
			i := strings.LastIndexByte(kv, '=')
			n, err := strconv.ParseInt(kv[i+1:], 10, 64)
			if i <= 0 || err != nil {
				t.Fatalf("stdout line %q: bad word count %q", s, kv)
			}
			b.top[kv[:i]] = n
		}
		out = append(out, b)
	}
	return out
}

// TestReadmeDemo runs the README's main command (`go run ./examples/wordcount`,
// default flags: the demo source at 20,000 lines per second) for a few
// batches and stops it with SIGTERM.
func TestReadmeDemo(t *testing.T) {
	needProcesses(t)
	t.Parallel()
	p := start(t, wordcountBin)
	p.waitFor(t, "two batch lines on stdout", func() bool {
		return strings.Count(p.stdout.String(), "\n") >= 2
	})
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t, exitBound); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0", code)
	}

	const wantWords = 20000 * wordgen.WordsPerLine // every batch is whole, even the last
	lines := parseBatchLines(t, p.stdout.String())
	for _, b := range lines {
		if b.words != wantWords || len(b.top) != 10 || b.distinct <= 0 || b.distinct > wordgen.VocabularySize {
			t.Errorf("batch %s: %d words, %d distinct, %d top words; want %d words, at most %d distinct, top 10",
				b.time, b.words, b.distinct, len(b.top), wantWords, wordgen.VocabularySize)
		}
	}

	stderr := p.stderr.String()
	logs := logLinesWithMsg(stderr, "batch")
	if len(logs) != len(lines) {
		t.Errorf("%d batch log lines for %d batch lines on stdout, want one per batch", len(logs), len(lines))
	}
	for _, l := range logs {
		if l["job"] != "wordcount" || l["input_records"] != "20000" || l["level"] != "INFO" {
			t.Errorf("batch log line %v: want level=INFO job=wordcount input_records=20000", l)
		}
		for _, k := range []string{"scheduling_delay", "processing_time", "total_delay"} {
			if d, err := time.ParseDuration(l[k]); err != nil || d < 0 {
				t.Errorf("batch log line %v: %s=%q is not a duration", l, k, l[k])
			}
		}
		if _, err := time.Parse("2006-01-02T15:04:05.000Z", l["batch"]); err != nil {
			t.Errorf("batch log line %v: batch=%q is not a batch time", l, l["batch"])
		}
	}
	if len(logLinesWithMsg(stderr, "stopped")) != 1 {
		t.Errorf(`stderr has no "stopped" log line`)
	}
}

// TestSocketSource serves text to `wordcount --source=socket` from a
// listener in the test and checks the printed counts.
func TestSocketSource(t *testing.T) {
	needProcesses(t)
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := start(t, wordcountBin, "--source=socket", "--addr="+ln.Addr().String(), "--top=1000")

	ln.(*net.TCPListener).SetDeadline(time.Now().Add(progressBound))
	conn, err := ln.Accept()
	if err != nil {
		t.Fatalf("the job did not connect to %s: %v", ln.Addr(), err)
	}
	defer conn.Close()

	// sum adds the counts printed so far over all batches.
	sum := func() (total int64, counts map[string]int64) {
		counts = map[string]int64{}
		for _, b := range parseBatchLines(t, p.stdout.String()) {
			total += b.words
			for w, n := range b.top {
				counts[w] += n
			}
		}
		return total, counts
	}

	want := map[string]int64{}
	var wantTotal int64
	for _, seed := range []uint64{3, 4} {
		text := textFile(seed, 300)
		conn.SetWriteDeadline(time.Now().Add(progressBound))
		if _, err := conn.Write([]byte(text)); err != nil {
			t.Fatal(err)
		}
		for _, w := range strings.Fields(text) {
			want[w]++
			wantTotal++
		}
		p.waitFor(t, fmt.Sprintf("%d words counted", wantTotal), func() bool {
			total, _ := sum()
			return total >= wantTotal
		})
		if total, got := sum(); total != wantTotal || !maps.Equal(got, want) {
			t.Fatalf("printed counts after %d words: total %d, counts %v; want %v", wantTotal, total, got, want)
		}
	}

	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t, exitBound); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0", code)
	}
	if total, got := sum(); total != wantTotal || !maps.Equal(got, want) {
		t.Errorf("printed counts at exit: total %d, counts %v; want %d, %v", total, got, wantTotal, want)
	}
	if len(logLinesWithMsg(p.stderr.String(), "stopped")) != 1 {
		t.Errorf(`stderr has no "stopped" log line`)
	}
}

// TestBadFlags checks that wordcount refuses bad flags with exit status 2
// and a message naming what was wrong, without starting the job.
func TestBadFlags(t *testing.T) {
	needProcesses(t)
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"unknown flag", []string{"--no-such-flag"}, "no-such-flag"},
		{"bogus master", []string{"--master=bogus"}, `--master: dstream: master "bogus"`},
		{"zero slots", []string{"--master=local[0]"}, `"local[0]"`},
		{"dir source without dir", []string{"--source=dir"}, "--source=dir needs --dir"},
		{"unknown source", []string{"--source=kafka"}, `"kafka"`},
		{"bad log level", []string{"--log-level=loud"}, `--log-level "loud"`},
		{"bad log format", []string{"--log-format=xml"}, `--log-format "xml"`},
		{"positional argument", []string{"extra"}, `unexpected argument "extra"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := start(t, wordcountBin, tc.args...)
			if code := p.wait(t, exitBound); code != 2 {
				t.Errorf("exit status %d, want 2", code)
			}
			stderr := p.stderr.String()
			if !strings.Contains(stderr, "wordcount: ") || !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q does not say \"wordcount: ...%s...\"", stderr, tc.want)
			}
			if len(logLinesWithMsg(stderr, "started")) > 0 {
				t.Errorf("the job started despite the bad flags")
			}
			if out := p.stdout.String(); out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
		})
	}
}
