package dstream

import (
	"bytes"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
)

// maxLineBytes bounds one line of a socket text stream.
const maxLineBytes = 1 << 20

// DefaultReceiverBytes is the memory bound of a receiver when none is given
// (see MaxBufferedBytes).
const DefaultReceiverBytes = 256 << 20

// readChunk is the size of one read from the connection.
const readChunk = 256 << 10

// SocketOption configures SocketTextStream.
type SocketOption func(*socketReceiver)

// MaxBufferedBytes bounds the memory a socket receiver holds: the Arrow
// chunks it is filling plus the input of batches that has not been released
// yet (a batch's input lives until the batch is done, longer under a
// window). When the bound is reached the receiver stops reading until memory
// is released, so the sender is slowed by TCP flow control instead of
// memory growing, also when processing falls behind. Pick at least two
// batch intervals' worth of input at the expected rate, or the bound limits
// throughput. Values <= 0 mean DefaultReceiverBytes; values over 1 GiB
// mean 1 GiB.
func MaxBufferedBytes(n int64) SocketOption {
	return func(r *socketReceiver) {
		if n > 0 {
			r.limit = min(n, 1<<30)
		}
	}
}

// SocketTextStream receives newline-separated text from a TCP server (as
// served by `nc -lk 9999`): one element per line. A receiver goroutine
// connects, reconnects with backoff when the connection drops, and appends
// lines straight into Arrow string columns (no Go string per line; chunks
// of at most 8 MiB that are never reallocated); each batch takes the lines
// received before its batch time, as zero-copy slices of those chunks. The
// receiver's memory (the chunks and batches' input not yet released) is
// bounded by MaxBufferedBytes (default 256 MiB); at the bound it stops
// reading (backpressure), at most one chunk past it.
// Lines longer than 1 MiB end the connection (logged) and it is reopened; a
// trailing "\r" is dropped.
func SocketTextStream(ctx *Context, addr string, opts ...SocketOption) *DStream[string] {
	r := &socketReceiver{addr: addr, limit: DefaultReceiverBytes}
	for _, o := range opts {
		o(r)
	}
	r.mem = &countingAllocator{mem: offHeap(ctx.cfg.Allocator), freed: r.memFreed}
	r.memCond = sync.NewCond(&r.memMu)
	in := newInput[string](ctx, "socketText", func(time.Time) ([]arrow.Record, int64, error) {
		return r.cut(ctx.Parallelism())
	})
	in.s.b.inputBuffered = func() int64 { return r.mem.n.Load() }
	in.startFn = func() error {
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
			return fmt.Errorf("socket source: address %q is not host:port (e.g. localhost:9999)", addr)
		}
		rctx, cancel := context.WithCancel(context.Background())
		r.cancel = cancel
		r.done = make(chan struct{})
		log := ctx.log.With(slog.String("source", in.s.b.name), slog.String("addr", addr))
		go func() { // owned by the receiver; stopFn waits for it
			defer close(r.done)
			r.run(rctx, log)
		}()
		return nil
	}
	quiesce := func() {
		if r.cancel != nil {
			r.cancel()
			r.memMu.Lock()
			r.stopped = true
			r.memCond.Broadcast()
			r.memMu.Unlock()
			<-r.done
		}
	}
	in.quiesceFn = func() bool {
		quiesce()
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.col.n > 0 || len(r.full) > 0
	}
	in.stopFn = func() {
		quiesce()
		r.mu.Lock()
		r.col.release()
		for _, c := range r.full {
			c.Release()
		}
		r.full = nil
		r.mu.Unlock()
	}
	return in.s
}

type socketReceiver struct {
	addr  string
	limit int64
	mem   *countingAllocator // every buffer of the receiver and of its batches' input

	mu        sync.Mutex
	col       lineColumn      // the chunk being filled
	full      []*array.String // the batch's chunks filled before col
	lastData  int             // line bytes of the last cut, to size the chunks
	lastLines int

	// memMu is taken after mu, never before (Free may run under mu).
	memMu   sync.Mutex
	memCond *sync.Cond // signalled when memory is released, or on stop
	stopped bool

	cancel context.CancelFunc
	done   chan struct{}
}

func (r *socketReceiver) memFreed() {
	r.memMu.Lock()
	r.memCond.Broadcast()
	r.memMu.Unlock()
}

// countingAllocator counts the bytes allocated through it and not yet
// freed, and calls freed after every release.
type countingAllocator struct {
	mem   memory.Allocator
	n     atomic.Int64
	freed func()
}

func (a *countingAllocator) Allocate(size int) []byte {
	b := a.mem.Allocate(size)
	a.n.Add(int64(len(b)))
	return b
}

func (a *countingAllocator) Reallocate(size int, b []byte) []byte {
	old := len(b)
	b = a.mem.Reallocate(size, b)
	a.n.Add(int64(len(b) - old))
	return b
}

func (a *countingAllocator) Free(b []byte) {
	a.mem.Free(b)
	a.n.Add(-int64(len(b)))
	a.freed()
}

// Chunk sizes: a batch's lines go into chunks (Arrow columns) that are
// never reallocated, the first sized like the last batch's input, the next
// ones doubling up to maxChunk, so that a batch costs its own bytes, not
// twice them while a column doubles and copies.
const (
	minChunk = 64 << 10
	maxChunk = 8 << 20
)

// cut takes every line received so far as records (zero-copy slices of the
// chunks, at least parts of them when there are enough lines) and wakes the
// receiver if it was waiting for space.
func (r *socketReceiver) cut(parts int) ([]arrow.Record, int64, error) {
	r.mu.Lock()
	if r.col.n > 0 {
		r.full = append(r.full, r.col.finish())
	}
	chunks := r.full
	r.full = nil
	var n int64
	data := 0
	for _, c := range chunks {
		n += int64(c.Len())
		data += len(c.ValueBytes())
	}
	if n > 0 {
		r.lastData, r.lastLines = data, int(n)
	}
	r.mu.Unlock()
	if n == 0 {
		return nil, 0, nil
	}
	schema := arrow.NewSchema([]arrow.Field{{Name: "v", Type: arrow.BinaryTypes.String, Nullable: true}}, nil)
	var out []arrow.Record
	lens := make([]int64, len(chunks))
	for i, c := range chunks {
		lens[i] = int64(c.Len())
	}
	for _, pc := range cutPieces(lens, n, int64(parts)) {
		s := array.NewSlice(chunks[pc.chunk], pc.lo, pc.hi)
		out = append(out, array.NewRecord(schema, []arrow.Array{s}, pc.hi-pc.lo))
		s.Release()
	}
	for _, c := range chunks {
		c.Release()
	}
	return out, n, nil
}

// piece is a batch's partition: lines [lo, hi) of one chunk.
type piece struct {
	chunk  int
	lo, hi int64
}

// cutPieces splits chunks of the given line counts (n in all) into pieces
// for parts slots, in order (a partition is a slice of one chunk, never a
// copy): cut at every multiple of n/(k*parts) lines and at the chunks'
// ends, a cut closer than an eighth of n/(k*parts) to a chunk's end moved
// onto it, for the smallest k from 1 to 3 with which slots that take the
// pieces in order (as the scheduler launches a stage's tasks) end within a
// tenth of an even share of the lines, else the k that ends first. One
// chunk gives exactly min(n, parts) equal pieces. More pieces cost more
// tasks and a map-side combine per task; too few left one slot working
// alone: cutting each chunk by its share of the lines gave a batch in two
// chunks pieces of 51k, 51k and 98k lines, and the slot that took the last
// ran about as long as the two others together.
func cutPieces(lens []int64, n, parts int64) []piece {
	var best []piece
	bestEnd := int64(0)
	even := (n + parts - 1) / parts
	for k := int64(1); k <= 3; k++ {
		ps := cutAt(lens, n, max(1, min(k*parts, n)))
		end := piecesEnd(ps, parts)
		if best == nil || end < bestEnd {
			best, bestEnd = ps, end
		}
		if end <= even+even/10 {
			break
		}
	}
	return best
}

// cutAt cuts at the multiples of n/per lines and at the chunks' ends (a
// cut near a chunk's end or a piece's start moves onto it).
func cutAt(lens []int64, n, per int64) []piece {
	tol := n / per / 8
	var out []piece
	var start int64 // the chunk's first line in the batch
	j := int64(1)   // the next cut is at j*n/per
	for ci, cn := range lens {
		end := start + cn
		lo := int64(0)
		for ; j < per; j++ {
			cut := j * n / per
			if cut >= end-tol {
				break // at or near the chunk's end: the end cuts
			}
			if cut-start-lo <= tol {
				continue // near the piece's start (the chunk's or a cut's)
			}
			out = append(out, piece{ci, lo, cut - start})
			lo = cut - start
		}
		if lo < cn {
			out = append(out, piece{ci, lo, cn})
		}
		for j < per && j*n/per <= end {
			j++ // cuts at or moved onto this chunk's end
		}
		start = end
	}
	return out
}

// piecesEnd is when the last of parts slots ends, each taking the next
// piece in order when it is free, a piece taking its lines in time.
func piecesEnd(ps []piece, parts int64) int64 {
	free := make(endHeap, min(parts, int64(len(ps)))) // the slots' ends; those never used end at 0
	for _, p := range ps {
		free[0] += p.hi - p.lo // the slot that is free first
		heap.Fix(&free, 0)
	}
	return slices.Max(append(free, 0))
}

// endHeap is a min-heap of the times slots are free.
type endHeap []int64

func (h endHeap) Len() int           { return len(h) }
func (h endHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h endHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *endHeap) Push(any)          { panic("endHeap: fixed size") }
func (h *endHeap) Pop() any          { panic("endHeap: fixed size") }

// appendLines adds the complete lines of buf to the chunks and returns the
// bytes consumed (up to the last newline).
func (r *socketReceiver) appendLines(buf []byte) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	used := 0
	for {
		i := bytes.IndexByte(buf[used:], '\n')
		if i < 0 {
			return used
		}
		line := buf[used : used+i]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if !r.col.fits(len(line)) {
			r.nextChunk(len(line))
		}
		r.col.append(line)
		used += i + 1
	}
}

// nextChunk finishes the chunk being filled (if any) and starts one that
// holds at least a line of lineLen bytes. A chunk's budget (data and
// offsets) starts like the last batch's input and doubles, up to maxChunk
// and an eighth of the receiver's bound, so that a new chunk never takes it
// far past the bound; it is split between data and offsets by the average
// line seen (short or empty lines get mostly offsets).
func (r *socketReceiver) nextChunk(lineLen int) {
	top := max(minChunk, min(maxChunk, int(r.limit/8)))
	budget := min(max(r.lastData+4*r.lastLines, minChunk), top)
	data, lines := r.lastData, r.lastLines // the average line to expect
	if c := &r.col; c.data != nil {
		budget = min(2*(c.data.Cap()+c.offs.Cap()), top)
		if c.n > 0 {
			data, lines = c.dataLen, c.n
			r.full = append(r.full, c.finish())
		} else {
			c.release()
		}
	}
	avg := 32 // no line seen yet
	if lines > 0 {
		avg = data / lines
	}
	n := budget/(avg+4) + 1 // lines the budget holds; a quarter more room for each
	r.col.init(r.mem, max(n*avg+n*avg/4, lineLen, 1<<10), n+n/4+1)
}

// waitForSpace blocks while the receiver holds its bound; it reports false
// when the receiver stops.
func (r *socketReceiver) waitForSpace() bool {
	r.memMu.Lock()
	defer r.memMu.Unlock()
	for r.mem.n.Load() >= r.limit && !r.stopped {
		r.memCond.Wait()
	}
	return !r.stopped
}

// lineColumn is a chunk of an Arrow string column being filled: line bytes
// and offsets written straight into allocator-owned buffers of a fixed
// capacity (no per-line builder bookkeeping, no reallocation).
type lineColumn struct {
	data, offs *memory.Buffer
	dataLen    int
	n          int // lines
}

func (c *lineColumn) init(mem memory.Allocator, dataCap, lines int) {
	c.data = memory.NewResizableBuffer(mem)
	c.data.Reserve(dataCap)
	c.offs = memory.NewResizableBuffer(mem)
	c.offs.Reserve(4 * (lines + 1))
	arrow.Int32Traits.CastFromBytes(c.offs.Buf())[0] = 0
	c.dataLen, c.n = 0, 0
}

// fits reports whether a line of n bytes fits in the chunk.
func (c *lineColumn) fits(n int) bool {
	return c.data != nil && c.dataLen+n <= c.data.Cap() && 4*(c.n+2) <= c.offs.Cap()
}

func (c *lineColumn) append(line []byte) {
	copy(c.data.Buf()[c.dataLen:], line)
	c.dataLen += len(line)
	c.n++
	arrow.Int32Traits.CastFromBytes(c.offs.Buf())[c.n] = int32(c.dataLen)
}

// finish returns the column as a string array and empties c.
func (c *lineColumn) finish() *array.String {
	c.data.ResizeNoShrink(c.dataLen)
	c.offs.ResizeNoShrink(4 * (c.n + 1))
	d := array.NewData(arrow.BinaryTypes.String, c.n, []*memory.Buffer{nil, c.offs, c.data}, nil, 0, 0)
	arr := array.NewStringData(d)
	d.Release()
	c.release()
	return arr
}

func (c *lineColumn) release() {
	if c.data != nil {
		c.data.Release()
		c.offs.Release()
	}
	*c = lineColumn{}
}

var errLineTooLong = errors.New("line longer than 1 MiB")

func (r *socketReceiver) run(ctx context.Context, log *slog.Logger) {
	backoff := 100 * time.Millisecond
	connected := true // log the first failure
	for ctx.Err() == nil {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", r.addr)
		if err != nil {
			if connected {
				log.Warn("socket source: cannot connect; retrying", slog.Any("err", err))
				connected = false
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		connected, backoff = true, 100*time.Millisecond
		log.Info("socket source: connected")
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		err = r.read(conn)
		stop()
		conn.Close()
		if ctx.Err() == nil {
			log.Warn("socket source: connection ended; reconnecting", slog.Any("err", err))
		}
	}
}

// read appends the lines of one connection until it ends. A last line
// without a newline counts when the server ends the stream (EOF, as Spark's
// receiver reads it); it is dropped when the connection breaks or the
// receiver stops, as it may be cut short.
func (r *socketReceiver) read(conn net.Conn) error {
	buf := make([]byte, readChunk)
	filled := 0
	for {
		if !r.waitForSpace() {
			return nil
		}
		if filled == len(buf) { // no newline in a full buffer: grow up to the line bound
			if len(buf) >= maxLineBytes+1 {
				return fmt.Errorf("socket source: %w", errLineTooLong)
			}
			nb := make([]byte, min(2*len(buf), maxLineBytes+1))
			copy(nb, buf)
			buf = nb
		}
		n, err := conn.Read(buf[filled:])
		filled += n
		if n > 0 {
			used := r.appendLines(buf[:filled])
			filled = copy(buf, buf[used:filled])
			if len(buf) > readChunk && filled < readChunk { // a long line is done
				buf = append(make([]byte, 0, readChunk), buf[:filled]...)[:readChunk]
			}
		}
		if err == io.EOF && filled > 0 {
			r.appendLines(append(buf[:filled:filled], '\n'))
		}
		if err != nil {
			return err
		}
	}
}
