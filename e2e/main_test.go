//go:build unix

package e2e

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// buildTimeout bounds building the binaries in TestMain.
	buildTimeout = 5 * time.Minute
	// processTimeout is the hard limit of every process a test starts: the
	// process is killed when it runs longer, whatever the test is doing.
	processTimeout = 4 * time.Minute
	// waitDelay bounds how long Wait waits for the output pipes after the
	// process was killed (exec.Cmd.WaitDelay).
	waitDelay = 10 * time.Second
	// exitBound is how long a process may take to exit after a stop signal.
	exitBound = 15 * time.Second
	// progressBound is how long a test waits for a job to show progress
	// (a batch line, an output directory). Generous: CI machines are slow.
	progressBound = 60 * time.Second
)

// The binaries built by TestMain.
var (
	wordcountBin string
	panicjobBin  string
	driverBin    string
	executorBin  string
	statejobBin  string
	truthjobBin  string
	kafkawcBin   string // examples/kafkawordcount
	devbrokerBin string // cmd/devbroker
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run()) // every test skips itself
	}
	dir, err := os.MkdirTemp("", "sluice-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	code := 1
	if err := build(dir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// build compiles the job binaries into dir. The working directory of a test
// binary is its package directory, e2e/.
func build(dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator),
		"../examples/wordcount", "./testdata/panicjob", "./testdata/statejob", "./testdata/truthjob", "../cmd/driver", "../cmd/executor",
		"../examples/kafkawordcount", "../cmd/devbroker")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.WaitDelay = waitDelay
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, out)
	}
	wordcountBin = filepath.Join(dir, "wordcount")
	panicjobBin = filepath.Join(dir, "panicjob")
	driverBin = filepath.Join(dir, "driver")
	executorBin = filepath.Join(dir, "executor")
	statejobBin = filepath.Join(dir, "statejob")
	truthjobBin = filepath.Join(dir, "truthjob")
	kafkawcBin = filepath.Join(dir, "kafkawordcount")
	devbrokerBin = filepath.Join(dir, "devbroker")
	return nil
}

// needProcesses skips a test under -short.
func needProcesses(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: runs real processes; skipped under -short")
	}
}

// syncBuffer is a bytes.Buffer that a process writes while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is a running job process.
type proc struct {
	name   string
	cmd    *exec.Cmd
	stdout syncBuffer
	stderr syncBuffer
	done   chan struct{} // closed when Wait returned
}

// start runs bin with args. The process is killed after processTimeout and
// at the end of the test; if the test failed, its output is logged.
func start(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	needProcesses(t) // under -short TestMain built no binaries
	ctx, cancel := context.WithTimeout(context.Background(), processTimeout)
	p := &proc{name: strings.Join(append([]string{filepath.Base(bin)}, args...), " "), done: make(chan struct{})}
	p.cmd = exec.CommandContext(ctx, bin, args...)
	p.cmd.Stdout = &p.stdout
	p.cmd.Stderr = &p.stderr
	p.cmd.WaitDelay = waitDelay
	if err := p.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %s: %v", p.name, err)
	}
	go func() { // owned by the test: the cleanup waits for it
		defer close(p.done)
		p.cmd.Wait()
	}()
	t.Cleanup(func() {
		cancel()
		<-p.done
		if t.Failed() {
			t.Logf("%s: %s\n--- stdout:\n%s\n--- stderr:\n%s", p.name, p.cmd.ProcessState, tail(p.stdout.String()), tail(p.stderr.String()))
		}
	})
	return p
}

// tail returns the end of a long output.
func tail(s string) string {
	const max = 8 << 10
	if len(s) > max {
		return "...\n" + s[len(s)-max:]
	}
	return s
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the process.
func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%s: send %v: %v", p.name, sig, err)
	}
}

// wait waits up to within for the process to exit and returns its exit code.
func (p *proc) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(within):
		t.Fatalf("%s: still running %v later", p.name, within)
	}
	if st := p.cmd.ProcessState; st.ExitCode() < 0 {
		t.Fatalf("%s: %v", p.name, st) // killed by a signal
	}
	return p.cmd.ProcessState.ExitCode()
}

// waitFor polls cond until it holds. It fails the test if the process exits
// first or cond does not hold within progressBound.
func (p *proc) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(progressBound)
	for !cond() {
		if p.exited() {
			if cond() {
				return
			}
			t.Fatalf("%s exited (%v) before %s", p.name, p.cmd.ProcessState, what)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %s within %v", p.name, what, progressBound)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logLine is one line of the slog text format: key=value pairs, values
// quoted when they hold spaces or quotes.
type logLine map[string]string

// parseLogLines parses the log lines of a process's standard error; lines
// that are not slog lines (such as flag usage) are skipped.
func parseLogLines(stderr string) []logLine {
	var out []logLine
	for _, s := range strings.Split(stderr, "\n") {
		if !strings.HasPrefix(s, "time=") {
			continue
		}
		if l, ok := parseLogLine(s); ok {
			out = append(out, l)
		}
	}
	return out
}

func parseLogLine(s string) (logLine, bool) {
	l := logLine{}
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return nil, false
		}
		key := s[:eq]
		s = s[eq+1:]
		var val string
		if strings.HasPrefix(s, `"`) {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				return nil, false
			}
			if val, err = strconv.Unquote(q); err != nil {
				return nil, false
			}
			s = s[len(q):]
		} else {
			end := strings.IndexByte(s, ' ')
			if end < 0 {
				end = len(s)
			}
			val, s = s[:end], s[end:]
		}
		l[key] = val
		s = strings.TrimPrefix(s, " ")
	}
	return l, true
}

// logLinesWithMsg returns the parsed log lines whose msg is msg.
func logLinesWithMsg(stderr, msg string) []logLine {
	var out []logLine
	for _, l := range parseLogLines(stderr) {
		if l["msg"] == msg {
			out = append(out, l)
		}
	}
	return out
}
