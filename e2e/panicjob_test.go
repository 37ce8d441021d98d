//go:build unix

package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestFailedBatchExits1 runs testdata/panicjob, whose map function panics on
// a value of the first batch: the batch fails after 4 attempts and the
// process exits 1 with an error naming the operator, the batch and the
// attempts.
func TestFailedBatchExits1(t *testing.T) {
	needProcesses(t)
	t.Parallel()
	site := fmt.Sprintf("map@main.go:%d", lineOf(t, "testdata/panicjob/main.go", "// e2e: the panicking map"))

	began := time.Now()
	p := start(t, panicjobBin)
	if code := p.wait(t, progressBound); code != 1 {
		t.Fatalf("exit status %d, want 1", code)
	}
	ended := time.Now()
	stderr := p.stderr.String()

	failed := logLinesWithMsg(stderr, "batch failed")
	if len(failed) != 1 {
		t.Fatalf(`%d "batch failed" log lines, want 1`, len(failed))
	}
	batch := failed[0]["batch"]
	bt, err := time.Parse("2006-01-02T15:04:05.000Z", batch)
	if err != nil {
		t.Fatalf("batch failed log line: batch=%q is not a batch time", batch)
	}
	if bt.Before(began.Add(-time.Second)) || bt.After(ended.Add(time.Second)) || bt.UnixMilli()%1000 != 0 {
		t.Errorf("failed batch %s: want a whole second between the start %s and the end %s of the process", batch, began.UTC(), ended.UTC())
	}

	// The last thing the process says is the error Run returned.
	i := strings.LastIndex(stderr, "\npanicjob: ")
	if i < 0 {
		t.Fatal(`stderr does not end with "panicjob: <error>"`)
	}
	msg, _, _ := strings.Cut(stderr[i+1:], "\ngoroutine ") // the panic's stack follows
	for _, want := range []string{"batch " + batch, site, "failed 4 times", "poison value 7"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not name %q", msg, want)
		}
	}
}

// lineOf returns the number of the line of file that contains marker.
func lineOf(t *testing.T, file, marker string) int {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, marker) {
			return i + 1
		}
	}
	t.Fatalf("%s: no line contains %q", file, marker)
	return 0
}
