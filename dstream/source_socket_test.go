package dstream

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/sluicehq/sluice/rdd"
)

// serve listens on 127.0.0.1 and runs feed on the first connection; later
// connections are held open idle. It stops with the test.
func serve(t *testing.T, feed func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var conns []net.Conn
	var mu sync.Mutex
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		first := true
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			if first {
				first = false
				wg.Go(func() { feed(c) })
			}
		}
	})
	return ln.Addr().String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func socketContext(t *testing.T, mem memory.Allocator, slots int) *Context {
	t.Helper()
	ctx, err := New(Config{BatchInterval: time.Second, Master: fmt.Sprintf("local[%d]", slots), Allocator: mem,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return ctx
}

// Lines arrive in order, split over the slots, with "\r\n" and empty lines
// handled like bufio.ScanLines; a last line without a newline counts when
// the server ends the stream (as Spark's receiver, with readLine, has it).
// Every Arrow buffer is released at the end.
func TestSocketLinesRoundTrip(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	var want []string
	var text bytes.Buffer
	for i := 0; i < 50_000; i++ {
		l := fmt.Sprintf("line %d %s", i, strings.Repeat("x", i%40))
		if i%1000 == 7 {
			l = ""
		}
		want = append(want, l)
		if i%3 == 0 {
			text.WriteString(l + "\r\n")
		} else {
			text.WriteString(l + "\n")
		}
	}
	text.WriteString("last line without newline")
	want = append(want, "last line without newline")
	addr := serve(t, func(c net.Conn) { c.Write(text.Bytes()); c.Close() })
	ctx := socketContext(t, mem, 3)
	lines := SocketTextStream(ctx, addr)
	var got []string
	maxParts := 0
	ForeachRDD(lines, func(b *Batch, r *rdd.RDD[string]) error {
		vals, err := Collect(b, r)
		for _, v := range vals {
			got = append(got, strings.Clone(v))
		}
		if len(vals) >= 3 {
			maxParts = max(maxParts, r.NumPartitions())
		}
		return err
	})
	if err := ctx.StartManual(time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	var records int64
	batch := 0
	waitFor(t, "all lines", func() bool {
		batch++
		info, err := ctx.RunBatch(context.Background(), time.Unix(int64(batch), 0))
		if err != nil {
			t.Fatal(err)
		}
		records += info.InputRecords
		return len(got) >= len(want)
	})
	// At least a partition per slot; a first batch (no size to go by) may
	// come in a few chunks of growing size, cut in up to 3 pieces a slot
	// plus one a chunk (cutPieces; TestCutPieces pins the pieces).
	if records != int64(len(want)) || len(got) != len(want) || maxParts < 3 || maxParts > 3*3+8 {
		t.Fatalf("got %d lines (%d input records), at most %d partitions a batch; want %d lines in 3 to 17", len(got), records, maxParts, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("line %d: %q, want %q", i, got[i], want[i])
		}
	}
	ctx.Stop()
	if n := lines.b.inputBuffered(); n != 0 {
		t.Fatalf("%d bytes of the receiver not released after Stop", n)
	}
}

// With a memory bound, a receiver facing a feeder that sends as fast as it
// can stops reading: the feeder blocks in TCP flow control, the bytes
// buffered and the Arrow memory stay bounded, and a batch taking the lines
// lets the feeder go on.
func TestSocketReceiverBoundsMemory(t *testing.T) {
	// Lines of words, and empty or 1-byte lines (whose chunks are mostly
	// offsets).
	for _, text := range []string{strings.Repeat("word ", 11), "", "x"} {
		t.Run(fmt.Sprintf("%d-byte lines", len(text)), func(t *testing.T) { testSocketReceiverBoundsMemory(t, text) })
	}
}

func testSocketReceiverBoundsMemory(t *testing.T, text string) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	const limit = 2 << 20
	line := []byte(text + "\n")
	block := bytes.Repeat(line, 4096)
	var written atomic.Int64
	addr := serve(t, func(c net.Conn) {
		for {
			n, err := c.Write(block)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	ctx := socketContext(t, mem, 2)
	lines := SocketTextStream(ctx, addr, MaxBufferedBytes(limit))
	var taken int
	ForeachRDD(Count(lines), func(b *Batch, r *rdd.RDD[int64]) error {
		c, err := Collect(b, r)
		if len(c) == 1 {
			taken += int(c[0])
		}
		return err
	})
	if err := ctx.StartManual(time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx.Stop()
		if n := lines.b.inputBuffered(); n != 0 {
			t.Errorf("%d bytes of the receiver not released after Stop", n)
		}
	}()
	stalled := func() bool { // the feeder made no progress for a while
		before := written.Load()
		time.Sleep(200 * time.Millisecond)
		return written.Load() == before && before > 0
	}
	batch := 0
	for round := 1; round <= 3; round++ {
		waitFor(t, "the receiver to reach its bound and the feeder to block", func() bool {
			return lines.b.inputBuffered() >= limit && stalled()
		})
		held := lines.b.inputBuffered()
		// The bound, plus one read, plus a chunk (an eighth of the bound)
		// begun by that read.
		if held < limit || held > limit+limit/4+readChunk {
			t.Fatalf("round %d: receiver holds %d bytes with a bound of %d", round, held, limit)
		}
		if a := mem.CurrentAlloc(); a > limit+limit/4+readChunk {
			t.Fatalf("round %d: %d bytes of Arrow memory held with a bound of %d", round, a, limit)
		}
		// A batch takes the lines; its input is released when it is done,
		// and then the receiver reads again.
		before := written.Load()
		waitFor(t, "the feeder to go on after batches", func() bool {
			batch++
			if _, err := ctx.RunBatch(context.Background(), time.Unix(int64(batch), 0)); err != nil {
				t.Fatal(err)
			}
			return written.Load() > before
		})
	}
	if min := 2 * limit / (len(line) + 4) / 2; taken < min {
		t.Fatalf("the batches took %d lines, want >= %d", taken, min)
	}
}

// BenchmarkSocketAppendLines is the receiver's per-line path: complete lines
// of a read buffer appended to the Arrow column, cut into a batch every 64
// reads. allocs/op (one op = one 256 KiB read) must stay a small constant:
// no allocation per line.
func BenchmarkSocketAppendLines(b *testing.B) {
	var buf bytes.Buffer
	for i := 0; buf.Len() < readChunk-100; i++ {
		fmt.Fprintf(&buf, "word%d alpha beta gamma delta epsilon zeta eta theta iota\n", i%1000)
	}
	chunk := buf.Bytes()
	r := &socketReceiver{limit: 1 << 40}
	r.mem = &countingAllocator{mem: memory.NewGoAllocator(), freed: func() {}}
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if used := r.appendLines(chunk); used != len(chunk) {
			b.Fatalf("consumed %d of %d bytes", used, len(chunk))
		}
		if i%64 == 63 {
			recs, _, _ := r.cut(2)
			for _, rec := range recs {
				rec.Release()
			}
		}
	}
}

// A line over 1 MiB ends the connection: the lines before it arrive, the
// long one is never delivered, and the receiver connects again.
func TestSocketLongLineEndsConnection(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	var accepted atomic.Int32
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if accepted.Add(1) == 1 {
				c.Write([]byte("before\n" + strings.Repeat("x", maxLineBytes+10) + "\nafter\n"))
			}
			wg.Go(func() { io.Copy(io.Discard, c); c.Close() }) // until the receiver closes it
		}
	})
	ctx := socketContext(t, mem, 1)
	lines := SocketTextStream(ctx, ln.Addr().String())
	var got []string
	ForeachRDD(lines, func(b *Batch, r *rdd.RDD[string]) error {
		vals, err := Collect(b, r)
		for _, v := range vals {
			got = append(got, strings.Clone(v))
		}
		return err
	})
	if err := ctx.StartManual(time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the receiver to reconnect", func() bool { return accepted.Load() >= 2 })
	if _, err := ctx.RunBatch(context.Background(), time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	ctx.Stop()
	if fmt.Sprint(got) != "[before]" {
		t.Fatalf("got %q, want only the line before the long one", got)
	}
}

// A batch's input is released as soon as the batch is done when no window
// reads it back (a receiver then holds one batch, not two); under a window
// it stays for as long as the window reaches back.
func TestInputReleasedWhenBatchDone(t *testing.T) {
	for _, window := range []time.Duration{0, 3 * time.Second} {
		t.Run(fmt.Sprint("window=", window), func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			ctx := socketContext(t, mem, 2)
			q := NewQueue[string](ctx)
			s := q.Stream()
			if window > 0 {
				s = Window(s, window)
			}
			var seen int64
			ForeachRDD(Count(s), func(b *Batch, r *rdd.RDD[int64]) error {
				c, err := Collect(b, r)
				if len(c) == 1 {
					seen += c[0]
				}
				return err
			})
			if err := ctx.StartManual(time.Unix(0, 0)); err != nil {
				t.Fatal(err)
			}
			defer ctx.Stop()
			for k := 1; k <= 6; k++ {
				q.Push("a", "b", "c")
				if _, err := ctx.RunBatch(context.Background(), time.Unix(int64(k), 0)); err != nil {
					t.Fatal(err)
				}
				held, _ := q.in.residentBatches()
				// Under the 3 s window, batches k-2..k are read again by
				// the next batch or two; plus one slide of margin.
				want := 0
				if window > 0 {
					want = min(k, 4)
				}
				if held != want {
					t.Fatalf("after batch %d: %d batches' input held, want %d", k, held, want)
				}
			}
			if window == 0 && seen != 18 || window > 0 && seen != 3+6+9+9+9+9 {
				t.Fatalf("counted %d lines", seen)
			}
		})
	}
}

// The receiver's chunks, driven directly: lines of every length from empty
// to over a chunk (so chunks end on the data bound, on the offsets bound
// and on a line too long for the next doubling), cut at random points into
// 1-3 parts, come back whole and in order, every buffer released.
func TestSocketChunksRoundTrip(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	r := &socketReceiver{limit: 4 << 20} // chunks up to 512 KiB
	r.mem = &countingAllocator{mem: mem, freed: func() {}}
	rng := rand.New(rand.NewPCG(1, 2))
	var want, got []string
	var pending []byte
	take := func(parts int) {
		recs, n, err := r.cut(parts)
		if err != nil {
			t.Fatal(err)
		}
		var rows int64
		for _, rec := range recs {
			rows += rec.NumRows()
			if rec.NumRows() == 0 {
				t.Fatalf("an empty partition of %d", len(recs))
			}
			for _, v := range rdd.Decode(rdd.CodecOf[string](), rec) {
				got = append(got, strings.Clone(v))
			}
			rec.Release()
		}
		if rows != n {
			t.Fatalf("cut reported %d lines, its records hold %d", n, rows)
		}
		if n >= int64(parts) && len(recs) < parts {
			t.Fatalf("%d lines in %d partitions, want at least %d", n, len(recs), parts)
		}
	}
	for round := 0; round < 200; round++ {
		var l string
		switch k := rng.IntN(10); {
		case k == 0:
			l = strings.Repeat("L", 100_000+rng.IntN(900_000)) // longer than most chunks
		case k < 3:
			l = "" // empty lines fill offsets, not data
		default:
			l = fmt.Sprintf("%d-%s", round, strings.Repeat("w", rng.IntN(200)))
		}
		want = append(want, l)
		pending = append(pending, l...)
		pending = append(pending, '\n')
		// Hand the receiver a random prefix, as reads would.
		n := rng.IntN(len(pending) + 1)
		used := r.appendLines(pending[:n])
		pending = append(pending[:0], pending[used:]...)
		if rng.IntN(8) == 0 {
			take(1 + rng.IntN(3))
		}
	}
	if used := r.appendLines(pending); used != len(pending) {
		t.Fatalf("%d of %d bytes left", len(pending)-used, len(pending))
	}
	take(2)
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("line %d: %d bytes, want %d", i, len(got[i]), len(want[i]))
		}
	}
	r.col.release()
	if n := r.mem.n.Load(); n != 0 {
		t.Fatalf("%d bytes counted after everything was released", n)
	}
}

// A failed batch keeps its input until the next batch is done, as tasks of
// its failed job may still be running: a task of the same batch that reads
// its partition after the job failed reads it whole (with -race: no write
// from the release under the read).
func TestInputOfAFailedBatchOutlivesItsTasks(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	ctx := socketContext(t, mem, 2)
	q1, q2 := NewQueue[string](ctx), NewQueue[string](ctx)
	fail := Transform(q1.Stream(), func(_ time.Time, r *rdd.RDD[string]) *rdd.RDD[string] {
		return rdd.Map(r, func(v string) string { panic("boom") })
	})
	var lateRead atomic.Int64
	slow := Transform(q2.Stream(), func(_ time.Time, r *rdd.RDD[string]) *rdd.RDD[string] {
		return rdd.MapPartitions(r, func(in iter.Seq[string]) iter.Seq[string] {
			return func(yield func(string) bool) {
				time.Sleep(300 * time.Millisecond) // reads its input after the job failed
				for v := range in {
					lateRead.Add(int64(len(v)))
					if !yield(v) {
						return
					}
				}
			}
		})
	})
	ForeachRDD(Union(fail, slow), func(b *Batch, r *rdd.RDD[string]) error {
		_, err := Collect(b, r)
		return err
	})
	if err := ctx.StartManual(time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	q1.Push("boom")
	q2.Push("slow")
	if _, err := ctx.RunBatch(context.Background(), time.Unix(1, 0)); err == nil {
		t.Fatal("the batch with a panicking map succeeded")
	}
	held, _ := q2.in.residentBatches()
	waitFor(t, "the late task", func() bool { return lateRead.Load() == int64(len("slow")) })
	ctx.Stop()
	if held != 1 {
		t.Fatalf("after a failed batch %d batches' input held, want 1", held)
	}
}

// An RDD of the input kept by user code past its batch fails when read in a
// later batch with an error naming the batch that is no longer remembered
// (as in Spark once a batch's blocks are cleared), not with a panic or
// freed buffers.
func TestInputRDDKeptPastItsBatch(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	ctx := socketContext(t, mem, 2)
	q := NewQueue[string](ctx)
	var prev *rdd.RDD[string]
	s := Transform(q.Stream(), func(_ time.Time, r *rdd.RDD[string]) *rdd.RDD[string] {
		o := r
		if prev != nil {
			o = rdd.Union(prev, r)
		}
		prev = r
		return o
	})
	ForeachRDD(Count(s), func(b *Batch, r *rdd.RDD[int64]) error {
		_, err := Collect(b, r)
		return err
	})
	if err := ctx.StartManual(time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	defer ctx.Stop()
	q.Push("a", "b", "c")
	if _, err := ctx.RunBatch(context.Background(), time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	q.Push("d")
	_, err := ctx.RunBatch(context.Background(), time.Unix(2, 0))
	if err == nil || !strings.Contains(err.Error(), "no longer remembered") || !strings.Contains(err.Error(), "1970-01-01T00:00:01.000Z") {
		t.Fatalf("reading batch 1's input in batch 2: %v; want it named as no longer remembered", err)
	}
}

// A batch of few lines gives a partition per slot while there are lines
// enough: one chunk in exactly min(lines, slots) records.
func TestSocketCutPartitions(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	r := &socketReceiver{limit: 1 << 20}
	r.mem = &countingAllocator{mem: mem, freed: func() {}}
	for _, c := range []struct{ lines, parts, want int }{{4, 3, 3}, {65, 64, 64}, {2, 3, 2}, {1, 1, 1}, {1000, 2, 2}} {
		if used := r.appendLines([]byte(strings.Repeat("line\n", c.lines))); used != 5*c.lines {
			t.Fatalf("consumed %d bytes", used)
		}
		recs, n, err := r.cut(c.parts)
		if err != nil || n != int64(c.lines) || len(recs) != c.want {
			t.Errorf("%d lines, %d slots: %d records (%d lines, %v); want %d records", c.lines, c.parts, len(recs), n, err, c.want)
		}
		for _, rec := range recs {
			rec.Release()
		}
	}
	r.col.release()
}

// A connection that breaks (reset) in the middle of a line: the lines
// before it count, the cut line does not (it may be incomplete).
func TestSocketBrokenConnectionDropsTheCutLine(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	sent := make(chan struct{})
	addr := serve(t, func(c net.Conn) {
		c.Write([]byte("one\ntwo\nthre"))
		time.Sleep(100 * time.Millisecond) // read before the reset
		c.(*net.TCPConn).SetLinger(0)      // Close sends a reset
		c.Close()
		close(sent)
	})
	ctx := socketContext(t, mem, 1)
	var got []string
	ForeachRDD(SocketTextStream(ctx, addr), func(b *Batch, r *rdd.RDD[string]) error {
		vals, err := Collect(b, r)
		for _, v := range vals {
			got = append(got, strings.Clone(v))
		}
		return err
	})
	if err := ctx.StartManual(time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	defer ctx.Stop()
	<-sent
	time.Sleep(200 * time.Millisecond)
	for b := 1; b <= 2; b++ {
		if _, err := ctx.RunBatch(context.Background(), time.Unix(int64(b), 0)); err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(got) != "[one two]" {
		t.Fatalf("got %q, want the two whole lines", got)
	}
}

// An address that is not host:port fails the start, naming it, instead of
// a receiver retrying it forever.
func TestSocketMalformedAddressFailsStart(t *testing.T) {
	for _, addr := range []string{"localhost", "", "localhost:", "::1"} {
		ctx := socketContext(t, memory.NewGoAllocator(), 1)
		Print(SocketTextStream(ctx, addr), 1)
		err := ctx.StartManual(time.Unix(0, 0))
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", addr)) || !strings.Contains(err.Error(), "host:port") {
			t.Errorf("address %q: start error %v, want one naming the address and host:port", addr, err)
		}
		ctx.Stop()
	}
}

// A graceful stop (Run's context cancelled) processes the lines the
// receiver already read: it stops reading, and one more batch takes them,
// as Spark's graceful stop waits for received data to be processed.
func TestGracefulStopProcessesReceivedLines(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	addr := serve(t, func(c net.Conn) { c.Write([]byte(strings.Repeat("one two\n", 100))) }) // then idle, open
	ctx, err := New(Config{BatchInterval: 3 * time.Second, Master: "local[1]", Allocator: mem,
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
	time.Sleep(50 * time.Millisecond) // the rest of the lines
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after a graceful stop")
	}
	if counted.Load() != 100 {
		t.Fatalf("counted %d lines after a graceful stop, want the 100 received", counted.Load())
	}
}
