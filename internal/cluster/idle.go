package cluster

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultStreamIdle is how long a client stream (SubmitJob, PutState) may
// go without a message before the server ends it: a client that opens one
// and stops sending would otherwise hold its call, and what it sent so
// far, for as long as its connection lives.
const DefaultStreamIdle = time.Minute

var streamIdle atomic.Int64 // nanoseconds; 0: DefaultStreamIdle

// SetStreamIdle sets the idle limit of streams opened from now on (tests)
// and returns a function that puts the previous one back.
func SetStreamIdle(d time.Duration) (restore func()) {
	old := streamIdle.Swap(int64(d))
	return func() { streamIdle.Store(old) }
}

// IdleRecv wraps the Recv of a client stream whose context is ctx with
// the stream idle limit (DefaultStreamIdle): next returns the next message as Recv would, or
// DeadlineExceeded naming what (e.g. "submit") once the limit passes with
// none. One goroutine receives, one message ahead; it ends when the
// handler returns (gRPC then ends the stream's context, and Recv with it).
func IdleRecv[M any](ctx context.Context, what string, recv func() (M, error)) (next func() (M, error)) {
	type got struct {
		m   M
		err error
	}
	ch := make(chan got)
	go func() {
		for {
			m, err := recv()
			select {
			case ch <- got{m, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	idle := time.Duration(streamIdle.Load())
	if idle <= 0 {
		idle = DefaultStreamIdle
	}
	timer := time.NewTimer(idle)
	return func() (M, error) {
		timer.Reset(idle)
		select {
		case g := <-ch:
			return g.m, g.err
		case <-timer.C:
			var zero M
			return zero, status.Error(codes.DeadlineExceeded, fmt.Sprintf("%s: no message for %v: the stream was idle; send its messages without pausing longer than that", what, idle))
		case <-ctx.Done():
			var zero M
			return zero, status.FromContextError(ctx.Err()).Err()
		}
	}
}
