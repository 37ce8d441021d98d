package dstream

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/sluicehq/sluice/internal/cluster"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	"github.com/sluicehq/sluice/rdd"
	"google.golang.org/grpc"
)

// Input kept for a window's sake lives in the write-ahead log, not in
// memory (input_spill.go). These tests drive batches by hand (RunBatch)
// through the same checkpoint steps as Run (openCheckpoint, start,
// restoreCheckpoint), so that what is in memory after each batch is exact.

const spillBI = 50 * time.Millisecond

// spillOutputs holds a job's outputs by output name and batch index.
type spillOutputs struct {
	mu   sync.Mutex
	zero time.Time
	outs map[string]map[int][]string
}

func (o *spillOutputs) put(name string, t time.Time, vals []string) {
	slices.Sort(vals)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.zero.IsZero() { // under Run: the first batch is the first after zero
		o.zero = t.Add(-spillBI)
	}
	if o.outs == nil {
		o.outs = map[string]map[int][]string{}
	}
	if o.outs[name] == nil {
		o.outs[name] = map[int][]string{}
	}
	o.outs[name][int(t.Sub(o.zero)/spillBI)] = vals
}

func spillRecord[T any](o *spillOutputs, name string, s *DStream[T]) {
	ForeachRDD(s, func(b *Batch, r *rdd.RDD[T]) error {
		vals, err := Collect(b, r)
		if err != nil {
			return err
		}
		strs := make([]string, len(vals))
		for i, v := range vals {
			strs[i] = fmt.Sprint(v)
		}
		o.put(name, b.Time(), strs)
		return nil
	})
}

// spillInput is the deterministic input of batch k.
func spillInput(k int) []string {
	var vals []string
	for i := range 5 + k%4 {
		vals = append(vals, fmt.Sprintf("w%d", (k*7+i*3)%13))
	}
	return vals
}

// spillJob: an incremental window (ReduceByKeyAndWindowInv, 20 batches,
// sliding by 1) and a plain Window (20 batches, sliding by 2) straight
// over a queue, both much longer than the input's resident span.
func spillJob(c *Context, o *spillOutputs) *Queue[string] {
	q := NewQueue[string](c)
	kv := Map(q.Stream(), func(w string) KV[string, int64] { return KV[string, int64]{Key: w, Value: 1} })
	inv := ReduceByKeyAndWindowInv(kv, "win", func(a, b int64) int64 { return a + b }, func(a, b int64) int64 { return a - b },
		20*spillBI, 0, func(kv KV[string, int64]) bool { return kv.Value != 0 })
	spillRecord(o, "inv", inv)
	spillRecord(o, "window", Window(q.Stream(), 20*spillBI, 2*spillBI))
	spillRecord(o, "count", CountByWindow(q.Stream(), 20*spillBI))
	return q
}

func spillConfig(mem memory.Allocator, dir string) Config {
	return Config{AppName: "spill", BatchInterval: spillBI, Master: "local[2]", Parallelism: 3, Allocator: mem,
		Checkpoint: dir, CheckpointInterval: 3 * spillBI, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// startCheckpointed starts c by hand as Run does with a checkpoint
// directory, and returns its zero time and the batch it starts after.
func startCheckpointed(t *testing.T, c *Context) (zero, from time.Time) {
	t.Helper()
	zero, err := c.openCheckpoint(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.start(zero); err != nil {
		t.Fatal(err)
	}
	if err := c.restoreCheckpoint(); err != nil {
		t.Fatal(err)
	}
	return zero, c.ckpt.from
}

// spillReference runs the job without a checkpoint for batches 1..n.
func spillReference(t *testing.T, n int) map[string]map[int][]string {
	t.Helper()
	c, err := New(Config{AppName: "spill", BatchInterval: spillBI, Master: "local[2]", Parallelism: 3, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	o := &spillOutputs{zero: time.Unix(0, 0)}
	q := spillJob(c, o)
	if err := c.StartManual(o.zero); err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	for k := 1; k <= n; k++ {
		q.Push(spillInput(k)...)
		if _, err := c.RunBatch(context.Background(), o.zero.Add(time.Duration(k)*spillBI)); err != nil {
			t.Fatal(err)
		}
	}
	return o.outs
}

// TestWindowInputSpillsToTheLog: with a checkpoint directory, windows of
// 20 batches over a queue give, batch by batch, exactly the outputs of a
// run without one, while the queue keeps at most 2 batches' records in
// memory (the longest slide) and the rest is read back from wal.db; the
// job driver's recordsAt serves spilled batches too. Then a restart from
// the same directory (a replayed batch, windows reading back into batches
// before the restart point, which stay in the log) goes on with the same
// outputs. Every record read back is released (checked allocator).
func TestWindowInputSpillsToTheLog(t *testing.T) {
	const first, total = 31, 60 // run 1: batches 1..31 (snapshot at 30, 31 replayed); run 2: up to 60
	want := spillReference(t, total)
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	dir := t.TempDir()
	got := &spillOutputs{}

	run := func(last int) {
		c, err := New(spillConfig(mem, dir))
		if err != nil {
			t.Fatal(err)
		}
		q := spillJob(c, got)
		zero, from := startCheckpointed(t, c)
		defer func() {
			c.Stop()
			c.closeCheckpoint()
		}()
		got.zero = zero
		in := q.in
		if in.spill.wal == nil {
			t.Fatal("the queue does not spill with a checkpoint directory")
		}
		if n, s := in.residentBatches(); from != zero && (n != 0 || s < 15) {
			t.Fatalf("after the restore: %d batches in memory, %d in the log; want 0 and the window's", n, s)
		}
		k0 := int(from.Sub(zero)/spillBI) + 1
		maxMem, maxSpilled := 0, 0
		for k := k0; k <= last; k++ {
			if k > first || from == zero { // a replayed batch takes its recorded input
				q.Push(spillInput(k)...)
			}
			bt := zero.Add(time.Duration(k) * spillBI)
			if _, err := c.RunBatch(context.Background(), bt); err != nil {
				t.Fatalf("batch %d: %v", k, err)
			}
			n, s := in.residentBatches()
			maxMem, maxSpilled = max(maxMem, n), max(maxSpilled, s)
			if n > 2 {
				t.Fatalf("after batch %d: %d batches' input in memory, want at most 2 (the longest slide)", k, n)
			}
		}
		// A persisted copy (Window persists its parent) would hold the
		// window's input in the block store instead.
		for bt, r := range in.s.generated {
			if r != nil && r.Node().Cached {
				t.Fatalf("the queue's RDD at %v is persisted", bt)
			}
		}
		if maxSpilled < 19 {
			t.Fatalf("at most %d batches were in the log only, want the window's (>= 19)", maxSpilled)
		}
		// The job driver's FetchInput (cluster.go, over recordsAt) serves
		// a spilled batch and a batch in memory, asked for by Unix time.
		for _, k := range []int{last - 15, last} {
			if vals := fetchInputOf(t, c, zero.Add(time.Duration(k)*spillBI)); !slices.Equal(vals, spillInput(k)) {
				t.Fatalf("FetchInput batch %d = %v, want %v", k, vals, spillInput(k))
			}
		}
	}
	run(first)
	run(total)
	mem.AssertSize(t, 0)

	for name, byBatch := range want {
		for k := 1; k <= total; k++ {
			if !slices.Equal(got.outs[name][k], byBatch[k]) {
				t.Fatalf("%s at batch %d:\n  with the log %v\n  in memory    %v", name, k, got.outs[name][k], byBatch[k])
			}
		}
	}
}

// TestWindowOverSocketInputSpills: a plain Window of 10 batches over a
// socket source with a checkpoint directory: every window holds exactly
// the lines its batches received (read from memory for the last batch,
// from wal.db for the others), while the source keeps one batch in memory.
func TestWindowOverSocketInputSpills(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lines := make(chan string, 1024)
	go func() { // owned by the test: ends when the listener closes
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		for l := range lines {
			if _, err := io.WriteString(conn, l+"\n"); err != nil {
				return
			}
		}
	}()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	c, err := New(spillConfig(mem, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	src := SocketTextStream(c, ln.Addr().String())
	o := &spillOutputs{}
	spillRecord(o, "input", src)
	spillRecord(o, "window", Window(src, 10*spillBI))
	zero, _ := startCheckpointed(t, c)
	o.zero = zero
	in := c.inputs[0].(*input[string])
	const n = 40
	sent := 0
	for k := 1; k <= n; k++ {
		for range 20 {
			lines <- fmt.Sprintf("line %d", sent)
			sent++
		}
		// Let the receiver take some of them (the rest goes to later batches).
		time.Sleep(10 * time.Millisecond)
		if _, err := c.RunBatch(context.Background(), zero.Add(time.Duration(k)*spillBI)); err != nil {
			t.Fatal(err)
		}
		if m, _ := in.residentBatches(); m > 1 {
			t.Fatalf("after batch %d: %d batches' input in memory, want 1", k, m)
		}
	}
	close(lines)
	var spilledLines int
	for k := 1; k <= n; k++ {
		var want []string
		for j := max(1, k-9); j <= k; j++ {
			want = append(want, o.outs["input"][j]...)
			if j < k {
				spilledLines += len(o.outs["input"][j])
			}
		}
		slices.Sort(want)
		if got := o.outs["window"][k]; !slices.Equal(got, want) {
			t.Fatalf("window at batch %d:\n  got  %v\n  want %v", k, got, want)
		}
	}
	if spilledLines == 0 {
		t.Fatal("no window read a line back from the log")
	}
	if !strings.HasPrefix(strings.Join(o.outs["window"][n], ","), "line") {
		t.Fatalf("the last window is empty: %v", o.outs["window"][n])
	}
	c.Stop()
	c.closeCheckpoint()
	mem.AssertSize(t, 0)
}

// TestWindowInputSpillsUnderRun: the same job under Run (the batch clock,
// generation running ahead of processing): outputs equal a run without a
// checkpoint, and windows read spilled batches back from the log.
func TestWindowInputSpillsUnderRun(t *testing.T) {
	const n = 50
	want := spillReference(t, n)
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	c, err := New(spillConfig(mem, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	got := &spillOutputs{}
	q := spillJob(c, got)
	for k := 1; k <= n+100; k++ {
		q.Push(spillInput(k)...)
	}
	run, cancel := context.WithCancel(context.Background())
	defer cancel()
	maxSpilled, batches := 0, 0
	ForeachRDD(q.Stream(), func(b *Batch, _ *rdd.RDD[string]) error {
		_, s := q.in.residentBatches()
		maxSpilled = max(maxSpilled, s)
		if batches++; batches == n {
			cancel()
		}
		return nil
	})
	if err := c.Run(run); err != nil {
		t.Fatal(err)
	}
	mem.AssertSize(t, 0)
	if maxSpilled < 15 {
		t.Fatalf("at most %d batches were in the log only, want the window's", maxSpilled)
	}
	for name, byBatch := range want {
		for k := 1; k <= n; k++ {
			if !slices.Equal(got.outs[name][k], byBatch[k]) {
				t.Fatalf("%s at batch %d:\n  with the log %v\n  in memory    %v", name, k, got.outs[name][k], byBatch[k])
			}
		}
	}
}

// chunkSink collects what FetchInput sends.
type chunkSink struct {
	grpc.ServerStream
	chunks []*sluicev1.InputChunk
}

func (s *chunkSink) Send(c *sluicev1.InputChunk) error {
	s.chunks = append(s.chunks, c)
	return nil
}

// fetchInputOf calls the job driver's FetchInput for input 0 of batch bt
// and decodes the values it sends.
func fetchInputOf(t *testing.T, c *Context, bt time.Time) []string {
	t.Helper()
	sink := &chunkSink{}
	req := &sluicev1.FetchInputRequest{JobId: "job-1", Input: 0, BatchTimeUnixNano: bt.UnixNano()}
	if err := (&inputServer{c: c, jobID: "job-1"}).FetchInput(req, sink); err != nil {
		t.Fatalf("FetchInput %v: %v", bt, err)
	}
	var vals []string
	var buf []byte
	for _, ch := range sink.chunks {
		buf = append(buf, ch.GetData()...)
		if !ch.GetLast() || len(buf) == 0 {
			continue
		}
		r, err := cluster.DecodeIPC(buf, memory.DefaultAllocator)
		if err != nil {
			t.Fatal(err)
		}
		vals = append(vals, rdd.Decode(rdd.CodecOf[string](), r)...)
		r.Release()
		buf = nil
	}
	return vals
}
