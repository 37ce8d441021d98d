// Package exampletest runs an example program against a text server on
// loopback, the way its tests check Spark-style ports end to end.
package exampletest

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RunSelf makes a test binary act as the example program: when env is set
// to "1", run is called instead of the tests. Call it from TestMain.
func RunSelf(m *testing.M, env string, run func()) {
	if os.Getenv(env) == "1" {
		run()
		return
	}
	os.Exit(m.Run())
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// SocketJob starts the test binary as the program (env=1, with --addr of a
// loopback server that sends input and keeps the connection open), waits
// until its output contains ready, checks that it holds every string of
// want, then stops it with SIGTERM and requires exit 0.
func SocketJob(t *testing.T, env, input, ready string, want ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a job process for a few seconds")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		w := bufio.NewWriter(conn)
		w.WriteString(input)
		w.Flush()
		// Keep the connection open until the test ends.
		buf := make([]byte, 1)
		conn.Read(buf)
	}()
	cmd := exec.Command(os.Args[0], "--addr="+ln.Addr().String(), "--master=local[2]")
	cmd.Env = append(os.Environ(), env+"=1")
	var stdout, stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.After(time.Minute)
	for !strings.Contains(stdout.String(), ready) {
		select {
		case err := <-done:
			t.Fatalf("exited early: %v\n%s", err, stderr.String())
		case <-deadline:
			cmd.Process.Kill()
			t.Fatalf("no counts printed:\n%s\n%s", stdout.String(), stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	out := stdout.String()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		t.Fatal("did not stop after SIGTERM")
	}
}
