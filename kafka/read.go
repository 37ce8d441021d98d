package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/sluicehq/sluice/dstream"
)

// reader reads offset ranges in tasks, with one connection per partition
// leader kept between batches (a pool per process).
type reader[V any] struct {
	cfg        Config
	decode     Decoder[V]
	valuesOnly bool // read values only (Batch.Read), not keys, headers and times
	dialer     *kafkago.Dialer

	// netDial opens the TCP connections under the dialer (a net.Dialer's;
	// tests count bytes with their own).
	netDial func(ctx context.Context, network, addr string) (net.Conn, error)

	mu   sync.Mutex
	pool map[TopicPartition][]leaderConn

	// recordBytes estimates, per partition, a record's size on the wire
	// (from the records read so far), to ask a fetch for little more than
	// the rest of a range: the broker sends whole batches up to the
	// fetch's bound, and a range's last fetch asking for the full bound
	// would make the broker copy (and the reader skip) up to that much
	// past the range's end. Guarded by mu.
	recordBytes map[TopicPartition]int64
}

// leaderConn is a connection to a partition leader and the count of bytes
// read from it.
type leaderConn struct {
	*kafkago.Conn
	wire *atomic.Int64
}

// countedConn counts the bytes read from a connection.
type countedConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countedConn) Read(b []byte) (int, error) {
	k, err := c.Conn.Read(b)
	c.n.Add(int64(k))
	return k, err
}

// dialedKey is the context key under which conn learns the byte count of
// the connection the dialer opened last (the leader's: DialLeader opens
// it after any metadata connection).
type dialedKey struct{}

// fetchBytes is the bound of a fetch that should return remaining records
// of tp: their estimated size on the wire with an eighth and 64 KiB more (a
// batch boundary rarely falls where the range ends), at most FetchMaxBytes.
func (r *reader[V]) fetchBytes(tp TopicPartition, remaining int64) int {
	r.mu.Lock()
	per := r.recordBytes[tp]
	r.mu.Unlock()
	if per <= 0 {
		return r.cfg.FetchMaxBytes
	}
	want := remaining*per + remaining*per/8 + 64<<10
	return int(min(want, int64(r.cfg.FetchMaxBytes)))
}

// noteRecords sets tp's record size estimate from a fetch response: n
// records in wire bytes. The records a response holds before the offset
// asked for (its first batch starts earlier) are skipped by kafka-go
// unseen, so a response of few records can overstate the size many times:
// the estimate at most doubles per fetch, and falls at once.
func (r *reader[V]) noteRecords(tp TopicPartition, n, wire int64) {
	if n <= 0 || wire <= 0 {
		return
	}
	per := max(1, wire/n)
	r.mu.Lock()
	if old := r.recordBytes[tp]; old > 0 {
		per = min(per, 2*old)
	}
	r.recordBytes[tp] = per
	r.mu.Unlock()
}

func newReader[V any](cfg Config, decode Decoder[V]) *reader[V] {
	r := &reader[V]{
		cfg:         cfg,
		decode:      decode,
		netDial:     (&net.Dialer{Timeout: cfg.RequestTimeout}).DialContext,
		pool:        map[TopicPartition][]leaderConn{},
		recordBytes: map[TopicPartition]int64{},
	}
	r.dialer = &kafkago.Dialer{Timeout: cfg.RequestTimeout, DialFunc: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := r.netDial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		n := new(atomic.Int64)
		if slot, ok := ctx.Value(dialedKey{}).(**atomic.Int64); ok {
			*slot = n
		}
		return countedConn{c, n}, nil
	}}
	return r
}

// conn returns a pooled connection to tp's leader (reused = true) or dials
// a new one.
func (r *reader[V]) conn(ctx context.Context, tp TopicPartition) (c leaderConn, reused bool, err error) {
	r.mu.Lock()
	if cs := r.pool[tp]; len(cs) > 0 {
		c = cs[len(cs)-1]
		r.pool[tp] = cs[:len(cs)-1]
		r.mu.Unlock()
		return c, true, nil
	}
	r.mu.Unlock()
	var errs []error
	for _, b := range r.cfg.Brokers {
		var wire *atomic.Int64
		conn, err := r.dialer.DialLeader(context.WithValue(ctx, dialedKey{}, &wire), "tcp", b, tp.Topic, tp.Partition)
		if err == nil {
			if wire == nil { // not dialed through DialFunc: no count
				wire = new(atomic.Int64)
			}
			return leaderConn{conn, wire}, false, nil
		}
		errs = append(errs, err)
	}
	return leaderConn{}, false, fmt.Errorf("connect to the leader of %s via %v: %w", tp, r.cfg.Brokers, errors.Join(errs...))
}

// closeIdle closes the pooled connections.
func (r *reader[V]) closeIdle() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for tp, cs := range r.pool {
		for _, c := range cs {
			c.Close()
		}
		delete(r.pool, tp)
	}
}

func (r *reader[V]) release(tp TopicPartition, c leaderConn) {
	r.mu.Lock()
	r.pool[tp] = append(r.pool[tp], c)
	r.mu.Unlock()
}

// read yields the records of rg, exactly: offsets below From or at or past
// Until are never yielded (a fetch may return more).
func (r *reader[V]) read(ctx context.Context, _ time.Time, rg OffsetRange, yield func(Record[V]) bool) error {
	return r.readRange(ctx, rg, yield, nil)
}

// readValues is read for values-only readers (valuesOnly): it yields the
// values alone, without building a Record for each.
func (r *reader[V]) readValues(ctx context.Context, _ time.Time, rg OffsetRange, yield func(V) bool) error {
	return r.readRange(ctx, rg, nil, yield)
}

// readRange reads rg, yielding records (yieldRec) or values (yieldVal).
func (r *reader[V]) readRange(ctx context.Context, rg OffsetRange, yieldRec func(Record[V]) bool, yieldVal func(V) bool) error {
	if rg.Count() <= 0 {
		return nil
	}
	next := rg.From
	for attempt := 0; ; attempt++ {
		var reused bool
		var err error
		next, reused, err = r.readFrom(ctx, rg, next, yieldRec, yieldVal)
		var lost *LostOffsetsError
		switch {
		case err == nil || errors.Is(err, errStopped):
			return nil
		case errors.Is(err, errOutOfRange):
			skipTo, lerr := r.lost(ctx, rg, next)
			if lerr != nil {
				return lerr
			}
			next, attempt = skipTo, -1
			continue
		case reused && attempt == 0 && ctx.Err() == nil && !errors.As(err, &lost):
			// A pooled connection may have been closed by the broker
			// while idle: go on once with a fresh one before failing.
			continue
		default:
			return err
		}
	}
}

var (
	errStopped    = errors.New("stopped by the consumer")
	errOutOfRange = errors.New("offset out of range")
)

// chunk is a run of messages handed from the fetching goroutine to the
// task: offsets and values, and for whole-record reads the messages.
type chunk struct {
	offs []int64
	vals [][]byte
	msgs []kafkago.Message // empty for values-only reads
}

func (c *chunk) reset() {
	c.offs, c.vals = c.offs[:0], c.vals[:0]
	clear(c.msgs) // no references to old keys and headers
	c.msgs = c.msgs[:0]
}

const (
	// chunkSize is the number of messages handed from the fetching
	// goroutine to the task at a time.
	chunkSize = 4096
	// arenaSize and arenaMinFree size the arenas of values-only reads.
	arenaSize, arenaMinFree = 1 << 20, 64 << 10
)

// readFrom reads rg from offset next on; it returns where it got to. A
// fetching goroutine reads messages ahead (at most three chunks) while the
// task decodes and processes the previous ones, so waiting for the broker
// overlaps with work.
func (r *reader[V]) readFrom(ctx context.Context, rg OffsetRange, next int64, yieldRec func(Record[V]) bool, yieldVal func(V) bool) (int64, bool, error) {
	tp := TopicPartition{rg.Topic, rg.Partition}
	conn, reused, err := r.conn(ctx, tp)
	if err != nil {
		return next, false, err
	}
	// Cancelling the task breaks the connection's pending read.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	free := make(chan *chunk, 3)
	for range cap(free) {
		c := &chunk{offs: make([]int64, 0, chunkSize), vals: make([][]byte, 0, chunkSize)}
		if !r.valuesOnly {
			c.msgs = make([]kafkago.Message, 0, chunkSize)
		}
		free <- c
	}
	full := make(chan *chunk, cap(free))
	quit := make(chan struct{})
	var fetched int64
	var ferr error
	var wg sync.WaitGroup
	wg.Go(func() { // owned by readFrom, which waits for it below
		defer close(full)
		fetched, ferr = r.fetch(conn, rg, next, free, full, quit)
	})
	var derr error
	stopped := false
	var skipped int64 // undecodable values skipped
	var firstSkipped *DecodeError
	defer func() {
		if skipped > 0 {
			dstream.AddSourceCount(ctx, countUndecodable, skipped)
			r.cfg.Logger.Warn("kafka: values that cannot be decoded; skipping them",
				slog.String("range", rg.String()), slog.Int64("records", skipped),
				slog.Int64("first_offset", firstSkipped.Offset), slog.Any("first_err", firstSkipped.Err))
		}
	}()
	for c := range full {
		if derr == nil && !stopped {
			for i, off := range c.offs {
				v, err := r.decode(c.vals[i])
				if err != nil {
					de := &DecodeError{Topic: rg.Topic, Partition: rg.Partition, Offset: off, Err: err}
					if r.cfg.OnUndecodable == SkipUndecodable {
						if skipped++; firstSkipped == nil {
							firstSkipped = de
						}
						next = off + 1
						continue
					}
					derr = de
					break
				}
				next = off + 1
				var ok bool
				if yieldVal != nil {
					ok = yieldVal(v)
				} else {
					msg := &c.msgs[i]
					ok = yieldRec(Record[V]{Topic: rg.Topic, Partition: rg.Partition, Offset: off, Key: msg.Key, Value: v, Headers: msg.Headers, Time: msg.Time})
				}
				if !ok {
					stopped = true
					break
				}
			}
			if derr != nil || stopped {
				close(quit)
			}
		}
		c.reset()
		free <- c
	}
	wg.Wait()
	switch {
	case derr != nil:
		conn.Close()
		return next, reused, derr
	case stopped:
		conn.Close() // the fetch was abandoned midway
		return next, reused, errStopped
	case ferr != nil:
		conn.Close()
		return max(next, fetched), reused, ferr
	}
	r.release(tp, conn)
	return fetched, reused, nil
}

// fetch reads the messages of rg from offset next on with per-partition
// fetches and sends them in chunks; it returns the offset it got to. It
// stops early when quit is closed.
func (r *reader[V]) fetch(conn leaderConn, rg OffsetRange, next int64, free <-chan *chunk, full chan<- *chunk, quit <-chan struct{}) (int64, error) {
	tp := TopicPartition{rg.Topic, rg.Partition}
	chunk := <-free
	send := func() bool {
		if len(chunk.offs) == 0 {
			return true
		}
		full <- chunk
		select {
		case chunk = <-free:
			return true
		case <-quit:
			return false
		}
	}
	// Values-only reads copy each value into a shared arena (a new one when
	// it runs low, never reused: decoded values may alias it) instead of
	// allocating per message. A value larger than the arena's free space is
	// read again with ReadMessage.
	var arena []byte
	pos := 0
	whole := !r.valuesOnly
	stuck := false // the last fetch made no progress
	for next < rg.Until {
		select {
		case <-quit:
			return next, errStopped
		default:
		}
		if _, err := conn.Seek(next, kafkago.SeekAbsolute|kafkago.SeekDontCheck); err != nil {
			return next, fmt.Errorf("seek %s to %d: %w", tp, next, err)
		}
		conn.SetReadDeadline(time.Now().Add(r.cfg.RequestTimeout))
		maxBytes := r.fetchBytes(tp, rg.Until-next)
		if whole && r.valuesOnly || stuck {
			// A value that did not fit (it may be large), or a fetch that
			// returned no whole record (a broker without KIP-74 cuts a
			// record at the bound): ask for the full bound.
			maxBytes = r.cfg.FetchMaxBytes
		}
		batch := conn.ReadBatchWith(kafkago.ReadBatchConfig{MinBytes: 1, MaxBytes: maxBytes, MaxWait: time.Second})
		start := next
		var ierr error
		short := false
		w0 := conn.wire.Load()
		var seen int64 // records in the response, for recordBytes
		past := false  // stopped at a record past the range
		for {
			var msg kafkago.Message
			var err error
			if whole {
				msg, err = batch.ReadMessage()
				whole = !r.valuesOnly
			} else {
				if len(arena)-pos < arenaMinFree {
					arena, pos = make([]byte, arenaSize), 0
				}
				var k int
				if k, err = batch.Read(arena[pos:]); err == nil {
					msg.Offset = batch.Offset() - 1
					msg.Value = arena[pos : pos+k : pos+k]
					pos += k
				}
			}
			if err != nil {
				switch {
				case errors.Is(err, io.ErrShortBuffer):
					short = true
				case !errors.Is(err, io.EOF):
					ierr = err
				}
				break
			}
			seen++
			if msg.Offset < next {
				continue
			}
			if msg.Offset >= rg.Until {
				next = rg.Until
				past = true
				break
			}
			next = msg.Offset + 1
			chunk.offs = append(chunk.offs, msg.Offset)
			chunk.vals = append(chunk.vals, msg.Value)
			if !r.valuesOnly {
				chunk.msgs = append(chunk.msgs, msg)
			}
			if len(chunk.offs) == chunkSize && !send() {
				batch.Close()
				return next, errStopped
			}
		}
		if next < rg.Until {
			// Compacted or aborted records leave gaps: the batch knows the
			// next offset past them.
			next = max(next, min(batch.Offset(), rg.Until))
		}
		if past {
			// Count the rest of the response's records, so that its bytes
			// on the wire divide by all of them (the fetch asked for little
			// more than the range: few are left).
			for {
				if _, err := batch.ReadMessage(); err != nil {
					break
				}
				seen++
			}
		}
		cerr := batch.Close()
		if ierr == nil && !short {
			r.noteRecords(tp, seen, conn.wire.Load()-w0)
		}
		if short {
			whole = true // the next fetch starts with the value that did not fit
		} else if ierr == nil {
			ierr = cerr
		}
		if !send() {
			return next, errStopped
		}
		if ierr != nil {
			if errors.Is(ierr, kafkago.OffsetOutOfRange) {
				return next, errOutOfRange // this connection is not used again
			}
			return next, fmt.Errorf("fetch %s from offset %d (range %s): %w", tp, next, rg, ierr)
		}
		if next == start && batch.HighWaterMark() <= next {
			return next, fmt.Errorf("fetch %s: offsets up to %d were planned but the log ends at %d (range %s)", tp, rg.Until, batch.HighWaterMark(), rg)
		}
		if next == start && !short {
			if stuck && maxBytes == r.cfg.FetchMaxBytes {
				return next, fmt.Errorf("fetch %s from offset %d (range %s): no whole record within FetchMaxBytes (%d); raise it above the largest record", tp, next, rg, r.cfg.FetchMaxBytes)
			}
			stuck = true
		} else {
			stuck = false
		}
	}
	return next, nil
}

// lost handles offsets deleted between planning and reading: the default
// fails the task (and so the batch) naming them; SkipLost returns the
// offset to go on from, with a warning.
func (r *reader[V]) lost(ctx context.Context, rg OffsetRange, next int64) (int64, error) {
	tp := TopicPartition{rg.Topic, rg.Partition}
	var first int64
	var err error
	for _, b := range r.cfg.Brokers {
		var conn *kafkago.Conn
		if conn, err = r.dialer.DialLeader(ctx, "tcp", b, tp.Topic, tp.Partition); err != nil {
			continue
		}
		conn.SetDeadline(time.Now().Add(r.cfg.RequestTimeout))
		first, err = conn.ReadFirstOffset()
		conn.Close()
		if err == nil {
			break
		}
	}
	if err != nil {
		return next, fmt.Errorf("fetch %s from offset %d: offset out of range, and listing the first offset failed: %w", rg, next, err)
	}
	gone := OffsetRange{rg.Topic, rg.Partition, next, min(first, rg.Until)}
	if gone.Count() <= 0 {
		return next, fmt.Errorf("fetch %s from offset %d: offset out of range, though the log starts at %d", rg, next, first)
	}
	if r.cfg.OnLostOffsets != SkipLost {
		return next, &LostOffsetsError{Range: gone}
	}
	r.cfg.Logger.Warn("kafka: offsets deleted before they were read; skipping them",
		slog.String("lost", gone.String()), slog.Int64("records", gone.Count()))
	dstream.AddSourceCount(ctx, countLost, gone.Count())
	return gone.Until, nil
}
