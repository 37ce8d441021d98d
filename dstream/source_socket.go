package dstream

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
)

// maxLineBytes bounds one line of a socket text stream.
const maxLineBytes = 1 << 20

// SocketTextStream receives newline-separated text from a TCP server (as
// served by `nc -lk 9999`): one element per line. A receiver goroutine
// connects, reconnects with backoff when the connection drops, and buffers
// lines; each batch takes the lines received before its batch time. Lines
// longer than 1 MiB end the connection (logged) and it is reopened.
func SocketTextStream(ctx *Context, addr string) *DStream[string] {
	r := &socketReceiver{addr: addr}
	in := newInput[string](ctx, "socketText", func(time.Time) ([]arrow.Record, int64, error) {
		r.mu.Lock()
		lines := r.buf
		r.buf = nil
		r.mu.Unlock()
		return split(ctx, lines, ctx.Parallelism()), int64(len(lines)), nil
	})
	in.startFn = func() error {
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
	in.stopFn = func() {
		if r.cancel != nil {
			r.cancel()
			<-r.done
		}
	}
	return in.s
}

type socketReceiver struct {
	addr   string
	mu     sync.Mutex
	buf    []string
	cancel context.CancelFunc
	done   chan struct{}
}

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
		sc := bufio.NewScanner(conn)
		sc.Buffer(make([]byte, 64<<10), maxLineBytes)
		for sc.Scan() {
			line := sc.Text()
			r.mu.Lock()
			r.buf = append(r.buf, line)
			r.mu.Unlock()
		}
		stop()
		conn.Close()
		if ctx.Err() == nil {
			log.Warn("socket source: connection ended; reconnecting", slog.Any("err", sc.Err()))
		}
	}
}
