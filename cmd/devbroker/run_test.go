package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// The broker serves the Kafka protocol, and --generate fills the topic
// with the requested number of lines, read back by franz-go.
func TestRunServesAndGenerates(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuf{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--port=0", "--partitions=3", "--topics=x", "--generate=lines", "--lines=500", "--lines-per-second=0"}, out, out)
	}()
	addr := regexp.MustCompile(`on (127\.0\.0\.1:\d+)`)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "produced") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	m := addr.FindStringSubmatch(out.String())
	if m == nil || !strings.Contains(out.String(), "produced 500 lines") {
		t.Fatalf("output %q: want the address and 500 lines produced", out.String())
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), "lines", "x")
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	parts := 0
	ends.Each(func(o kadm.ListedOffset) {
		if o.Topic == "lines" {
			n += o.Offset
		}
		parts++
	})
	if n != 500 || parts != 6 {
		t.Fatalf("end offsets sum %d over %d partitions, want 500 over 6", n, parts)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestParseErrors(t *testing.T) {
	for _, args := range [][]string{{"--partitions=0"}, {"extra"}, {"--lines-per-second=-1"}} {
		if _, err := parse(args, &bytes.Buffer{}); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

// A broker listening on every interface advertises the given host name, and
// --check tells a broker that answers from an address where none does.
func TestAdvertiseAndCheck(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuf{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--port=0", "--host=0.0.0.0", "--advertise=localhost", "--topics=x"}, out, out)
	}()
	addr := regexp.MustCompile(`on (localhost:(\d+))`)
	deadline := time.Now().Add(20 * time.Second)
	for addr.FindStringSubmatch(out.String()) == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	m := addr.FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("output %q: want the advertised address localhost:PORT", out.String())
	}
	if err := run(context.Background(), []string{"--check=127.0.0.1:" + m[2]}, out, out); err != nil {
		t.Fatalf("check of a running broker: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), []string{"--check=127.0.0.1:" + m[2]}, out, out); err == nil {
		t.Fatal("check of a stopped broker: no error")
	}
}
