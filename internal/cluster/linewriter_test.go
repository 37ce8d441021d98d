package cluster

import (
	"bytes"
	"strings"
	"sync"
	"testing"
)

// recordingWriter keeps each Write as one piece.
type recordingWriter struct {
	mu     sync.Mutex
	writes []string
}

func (r *recordingWriter) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = append(r.writes, string(b))
	return len(b), nil
}

// Processes writing in pieces at once: every Write that reaches the log is
// whole lines of one process; a last line without its newline comes at the
// flush; a line over maxLogLine is passed on once it is that long.
func TestLineWriterPassesWholeLines(t *testing.T) {
	out := &recordingWriter{}
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Go(func() {
			l := &lineWriter{w: out}
			line := strings.Repeat(string(rune('a'+p)), 50) + "\n"
			all := strings.Repeat(line, 200) + "tail"
			for b := []byte(all); len(b) > 0; {
				n := min(len(b), 7+p)
				l.Write(b[:n])
				b = b[n:]
			}
			l.flush()
		})
	}
	wg.Wait()
	lines := map[string]int{}
	for _, w := range out.writes {
		if !strings.HasSuffix(w, "\n") || strings.Count(w, "\n") != 1 {
			t.Fatalf("a Write of %q: not one whole line", w)
		}
		lines[w]++
	}
	for p := range 4 {
		if n := lines[strings.Repeat(string(rune('a'+p)), 50)+"\n"]; n != 200 {
			t.Errorf("process %d: %d whole lines, want 200", p, n)
		}
	}
	if lines["tail\n"] != 4 {
		t.Errorf("last lines without a newline: %d, want 4", lines["tail\n"])
	}
	long := &recordingWriter{}
	l := &lineWriter{w: long}
	l.Write(bytes.Repeat([]byte("x"), maxLogLine+10))
	l.Write([]byte("\n"))
	if got := strings.Join(long.writes, ""); len(long.writes) != 1 || !strings.HasSuffix(long.writes[0], "\n") || strings.Count(got, "x") != maxLogLine+10 {
		t.Errorf("a long line: %d writes", len(long.writes))
	}
}

// A line passed on in pieces for its length ends at its newline: the
// newline does not make an empty line of its own; the next lines are whole.
func TestLineWriterLongLineMakesNoEmptyLine(t *testing.T) {
	out := &recordingWriter{}
	l := &lineWriter{w: out}
	l.Write(bytes.Repeat([]byte("x"), maxLogLine))
	l.Write([]byte("\nnext\n\n"))
	l.Write(bytes.Repeat([]byte("y"), maxLogLine+1))
	l.Write([]byte("yy\n"))
	want := []string{strings.Repeat("x", maxLogLine) + "\n", "next\n", "\n", strings.Repeat("y", maxLogLine+1) + "\n", "yy\n"}
	if len(out.writes) != len(want) {
		t.Fatalf("%d writes, want %d", len(out.writes), len(want))
	}
	for i, w := range want {
		if out.writes[i] != w {
			t.Errorf("write %d: %d bytes %.20q, want %d bytes %.20q", i, len(out.writes[i]), out.writes[i], len(w), w)
		}
	}
}
