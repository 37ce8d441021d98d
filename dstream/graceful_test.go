package dstream

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/sluicehq/sluice/rdd"
)

// Found by review (2026-11-30); each failed before its fix.

// A graceful stop with a receiver does not wait for the next batch time,
// which a stop timeout shorter than the interval would count: the last
// batch is generated at once, and Run returns nil with the lines counted.
func TestGracefulStopWithALongIntervalFinishesInTime(t *testing.T) {
	addr := serve(t, func(c net.Conn) { c.Write([]byte(strings.Repeat("one two\n", 100))) })
	ctx, err := New(Config{BatchInterval: 10 * time.Second, StopTimeout: time.Second, Master: "local[1]", Allocator: memory.NewGoAllocator(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	lines := SocketTextStream(ctx, addr)
	var counted atomic.Int64
	ForeachRDD(lines, func(b *Batch, r *rdd.RDD[string]) error {
		n, err := CountRDD(b, r)
		counted.Add(n)
		return err
	})
	run, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ctx.Run(run) }()
	waitFor(t, "the lines received", func() bool { return lines.b.inputBuffered() > 0 })
	time.Sleep(50 * time.Millisecond)
	cancel()
	if err := <-done; err != nil || counted.Load() != 100 {
		t.Fatalf("graceful stop: %v, %d lines counted, want nil and 100", err, counted.Load())
	}
}

// A batch failing during a graceful stop: Run returns its error at once,
// not a batch interval later.
func TestBatchFailingDuringAGracefulStopReturnsAtOnce(t *testing.T) {
	addr := serve(t, func(c net.Conn) {
		for i := 0; i < 50; i++ {
			c.Write([]byte("x\n"))
			time.Sleep(20 * time.Millisecond)
		}
	})
	ctx, err := New(Config{BatchInterval: 4 * time.Second, Master: "local[1]", Allocator: memory.NewGoAllocator(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	lines := SocketTextStream(ctx, addr)
	var stopAt atomic.Int64
	ForeachRDD(lines, func(b *Batch, r *rdd.RDD[string]) error {
		if n, _ := CountRDD(b, r); n > 0 {
			ctx.Stop()
			stopAt.Store(time.Now().UnixNano())
			return errors.New("boom")
		}
		return nil
	})
	err = ctx.Run(context.Background())
	if d := time.Since(time.Unix(0, stopAt.Load())); err == nil || d > 2*time.Second {
		t.Fatalf("Run returned %v %v after the failed batch, want its error at once", err, d)
	}
}

// A graceful stop arriving while a batch is generated (its receiver input
// already cut) still processes that batch.
func TestGracefulStopDuringGenerateKeepsTheBatch(t *testing.T) {
	for round := 0; round < 6; round++ {
		addr := serve(t, func(c net.Conn) { c.Write([]byte(strings.Repeat("one two\n", 100))) })
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		ctx, err := New(Config{BatchInterval: 500 * time.Millisecond, Master: "local[1]", Allocator: mem,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		lines := SocketTextStream(ctx, addr)
		run, cancel := context.WithCancel(context.Background())
		var armed, fired atomic.Bool
		tr := Transform(lines, func(_ time.Time, r *rdd.RDD[string]) *rdd.RDD[string] {
			if armed.Load() && !fired.Swap(true) {
				cancel() // the stop, while this batch is generated
				time.Sleep(100 * time.Millisecond)
			}
			return r
		})
		var counted atomic.Int64
		ForeachRDD(tr, func(b *Batch, r *rdd.RDD[string]) error {
			n, err := CountRDD(b, r)
			counted.Add(n)
			return err
		})
		done := make(chan error, 1)
		go func() { done <- ctx.Run(run) }()
		waitFor(t, "the lines received", func() bool { return lines.b.inputBuffered() > 0 })
		time.Sleep(50 * time.Millisecond)
		armed.Store(true)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if counted.Load() != 100 {
			t.Fatalf("round %d: %d of 100 received lines counted after a stop during generate", round, counted.Load())
		}
	}
}

// --help of a job whose program parsed its own flags shows them with their
// defaults, without a panic.
func TestHelpWithTheProgramsParsedFlags(t *testing.T) {
	fs := flag.NewFlagSet("job", flag.ContinueOnError)
	fs.Int("lines-per-second", 10, "lines per second of the demo source")
	fs.Bool("verbose", false, "talk more")
	fs.Parse([]string{"--lines-per-second=99"})
	withCommandLine(t, fs)
	var stderr bytes.Buffer
	code := RunArgs(Config{AppName: "job", BatchInterval: time.Second}, []string{"--help"}, &stderr, func(*Context) error { return nil })
	out := stderr.String()
	if code != 0 || strings.Contains(out, "panic") || !strings.Contains(out, "lines-per-second") || !strings.Contains(out, "(default 10)") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}
