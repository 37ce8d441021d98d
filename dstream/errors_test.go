package dstream_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/dstream/dstreamtest"
	"github.com/sluicehq/sluice/scheduler"
)

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  dstream.Config
		want string
	}{
		{dstream.Config{}, "batch interval must be > 0"},
		{dstream.Config{BatchInterval: -time.Second}, "batch interval must be > 0"},
		{dstream.Config{BatchInterval: time.Second, Master: "bogus"}, `master "bogus": not supported`},
		{dstream.Config{BatchInterval: time.Second, Master: "local[0]"}, "slot count must be a positive integer"},
		{dstream.Config{BatchInterval: time.Second, Parallelism: -1}, "Parallelism -1"},
	} {
		if _, err := dstream.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

func TestGraphErrors(t *testing.T) {
	t.Run("no output", func(t *testing.T) {
		h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second})
		dstream.Map(dstreamtest.Input[int](h), func(i int) int { return i })
		if _, err := h.Step(); err == nil || !strings.Contains(err.Error(), "no output operation") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("start twice", func(t *testing.T) {
		h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second})
		dstreamtest.Output(h, dstreamtest.Input[int](h))
		h.Run(1)
		if err := h.Ctx.StartManual(dstreamtest.Start); !errors.Is(err, dstream.ErrStarted) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("stream after start", func(t *testing.T) {
		h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second})
		in := dstreamtest.Input[int](h)
		dstreamtest.Output(h, in)
		h.Run(1)
		defer func() {
			if v := recover(); v == nil || !strings.Contains(v.(string), "after the context started") {
				t.Fatalf("got %v", v)
			}
		}()
		dstream.Map(in, func(i int) int { return i })
	})
	t.Run("stateful names", func(t *testing.T) {
		h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second})
		in := dstreamtest.Input[dstream.KV[string, int]](h)
		up := func(vs []int, s int, _ bool) (int, bool) { return s + len(vs), true }
		dstreamtest.Output(h, dstream.UpdateStateByKey(in, "same", up))
		dstreamtest.Output(h, dstream.UpdateStateByKey(in, "same", up))
		dstreamtest.Output(h, dstream.UpdateStateByKey(in, "", up))
		_, err := h.Step()
		if err == nil || !strings.Contains(err.Error(), `name "same" is used twice`) || !strings.Contains(err.Error(), "needs a name") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("unknown flag", func(t *testing.T) {
		ctx, err := dstream.New(dstream.Config{AppName: "job", BatchInterval: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		if code := dstream.MainArgs(ctx, []string{"--no-such-flag"}, &stderr); code != 2 || !strings.Contains(stderr.String(), "no-such-flag") {
			t.Fatalf("exit %d, stderr %q", code, stderr.String())
		}
	})
}

func TestPanicFailsTheBatchNamingTheOperator(t *testing.T) {
	h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second, Parallelism: 2})
	in := dstreamtest.Input(h, []int{1, 2, 3})
	dstreamtest.Output(h, dstream.Map(in, func(i int) int {
		if i == 2 {
			panic("boom")
		}
		return i
	}))
	_, err := h.Step()
	var tf *scheduler.TaskFailedError
	if !errors.As(err, &tf) || tf.Attempts != scheduler.DefaultMaxAttempts {
		t.Fatalf("got %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"map@errors_test.go:", "boom", "failed 4 times", "2026-01-01T00:00:01.000Z"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not mention %q: %s", want, msg[:min(len(msg), 400)])
		}
	}
}

func TestRunStopsGracefully(t *testing.T) {
	ctx, err := dstream.New(dstream.Config{BatchInterval: 50 * time.Millisecond, Master: "local[2]"})
	if err != nil {
		t.Fatal(err)
	}
	q := dstream.NewQueue[int](ctx)
	for i := 0; i < 100; i++ {
		q.Push(i)
	}
	seen := make(chan int, 100)
	dstream.ForeachPartition(q.Stream(), dstream.Sink[int, struct{}]{Write: func(_ struct{}, v int) error { seen <- v; return nil }})
	run, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ctx.Run(run) }()
	for i := 0; i < 3; i++ {
		<-seen
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not stop")
	}
}
