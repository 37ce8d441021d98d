package main

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

func TestMain(m *testing.M) {
	if os.Getenv("STATEFULNETWORKWORDCOUNT_RUN_MAIN") == "1" {
		main()
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

// TestStatefulNetworkWordCount runs the program against a text server on loopback
// and checks that counts continue from the initial state, then stops it
// with SIGTERM (exit 0).
func TestStatefulNetworkWordCount(t *testing.T) {
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
		w.WriteString("hello hello x\n")
		w.Flush()
		// Keep the connection open until the test ends.
		buf := make([]byte, 1)
		conn.Read(buf)
	}()
	cmd := exec.Command(os.Args[0], "--addr="+ln.Addr().String(), "--master=local[2]")
	cmd.Env = append(os.Environ(), "STATEFULNETWORKWORDCOUNT_RUN_MAIN=1")
	var stdout, stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.After(time.Minute)
	for !strings.Contains(stdout.String(), "(hello,3)") {
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
	for _, want := range []string{"(hello,2)", "(x,1)", "Time: "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
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
