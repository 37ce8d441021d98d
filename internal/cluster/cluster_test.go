package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/memory"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	"github.com/sluicehq/sluice/rdd"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// countingDriver counts the calls that reached its handlers.
type countingDriver struct {
	sluicev1.UnimplementedDriverServer
	calls atomic.Int64
}

func (d *countingDriver) ListExecutors(context.Context, *sluicev1.ListExecutorsRequest) (*sluicev1.ListExecutorsResponse, error) {
	d.calls.Add(1)
	return &sluicev1.ListExecutorsResponse{}, nil
}

func serve(t *testing.T, opts []grpc.ServerOption, register func(*grpc.Server)) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(opts...)
	register(srv)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func mustSecret(t *testing.T, s string) Secret {
	t.Helper()
	sec, err := NewSecret(s, "test")
	if err != nil {
		t.Fatal(err)
	}
	return sec
}

func TestAuthRejectsBeforeTheHandler(t *testing.T) {
	good := mustSecret(t, "the-right-cluster-secret")
	d := &countingDriver{}
	addr := serve(t, good.ServerOptions(nil), func(s *grpc.Server) { sluicev1.RegisterDriverServer(s, d) })
	for _, tc := range []struct {
		name   string
		client []grpc.DialOption
		want   codes.Code
	}{
		{"right secret", good.DialOptions(), codes.OK},
		// Both fail the TLS handshake with the derived certificate.
		{"wrong secret", mustSecret(t, "a-wrong-cluster-secret!").DialOptions(), codes.Unavailable},
		{"no secret", Insecure().DialOptions(), codes.Unavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := d.calls.Load()
			conn, err := grpc.NewClient(addr, tc.client...)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_, err = sluicev1.NewDriverClient(conn).ListExecutors(context.Background(), &sluicev1.ListExecutorsRequest{})
			if got := status.Code(err); got != tc.want {
				t.Fatalf("got %v (%v), want %v", got, err, tc.want)
			}
			handled := d.calls.Load() - before
			if (tc.want == codes.OK) != (handled == 1) {
				t.Fatalf("handler ran %d times", handled)
			}
		})
	}
}

func TestSecretValidation(t *testing.T) {
	for _, s := range []string{"", "short"} {
		if _, err := NewSecret(s, "test"); err == nil {
			t.Errorf("secret %q accepted", s)
		}
	}
	if _, err := SecretFromFile(t.TempDir() + "/missing"); err == nil || !strings.Contains(err.Error(), "head -c 32") {
		t.Errorf("missing file: %v", err)
	}
}

func records(t *testing.T, mem memory.Allocator, parts ...[]string) []arrow.Record {
	t.Helper()
	var out []arrow.Record
	for _, p := range parts {
		if p == nil {
			out = append(out, nil)
			continue
		}
		out = append(out, rdd.Encode(mem, rdd.CodecOf[string](), p))
	}
	return out
}

func TestShuffleFetchLocalAndRemote(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	secret := mustSecret(t, "the-right-cluster-secret")
	remote, err := NewShuffleStore(t.TempDir(), mem)
	if err != nil {
		t.Fatal(err)
	}
	local, err := NewShuffleStore(t.TempDir(), mem)
	if err != nil {
		t.Fatal(err)
	}
	remoteAddr := serve(t, secret.ServerOptions(nil), func(s *grpc.Server) { sluicev1.RegisterShuffleServer(s, &ShuffleServer{Store: remote}) })
	// A block larger than gRPC's default 4 MiB message limit.
	big := make([]string, 0, 100_000)
	for i := range 100_000 {
		big = append(big, fmt.Sprintf("%064d", i))
	}
	if err := local.Write("job", 7, 0, records(t, mem, []string{"a", "b"}, nil)); err != nil {
		t.Fatal(err)
	}
	if err := remote.Write("job", 7, 1, records(t, mem, big, []string{"c"})); err != nil {
		t.Fatal(err)
	}
	pool := NewPool(secret.DialOptions()...)
	defer pool.Close()
	ts := &taskShuffle{store: local, job: "job", self: "me", pool: pool,
		locations: map[int64][]string{7: {"me", remoteAddr}}}
	count := func(reduce int) (int64, error) {
		var n int64
		err := ts.Fetch(context.Background(), 7, 2, reduce, func(r arrow.Record) error { n += r.NumRows(); return nil })
		return n, err
	}
	if n, err := count(0); err != nil || n != 2+100_000 {
		t.Fatalf("reduce 0: %d rows, %v", n, err)
	}
	if n, err := count(1); err != nil || n != 1 {
		t.Fatalf("reduce 1: %d rows, %v", n, err)
	}
	// A map output nobody has, and an executor that is gone.
	ts.locations[7] = []string{"me", ""}
	if _, err := count(0); !isFetchFailed(err, 7, 1) {
		t.Fatalf("missing location: %v", err)
	}
	ts.locations[7] = []string{"me", "127.0.0.1:1"}
	if _, err := count(0); !isFetchFailed(err, 7, 1) {
		t.Fatalf("dead executor: %v", err)
	}
	local.RemoveShuffles("job", 7)
	ts.locations[7] = []string{"me", remoteAddr}
	if _, err := count(0); !isFetchFailed(err, 7, 0) {
		t.Fatalf("removed map output: %v", err)
	}
}

func isFetchFailed(err error, shuffle int64, mapPart int) bool {
	var ff *rdd.FetchFailedError
	return errors.As(err, &ff) && ff.ShuffleID == shuffle && ff.MapPart == mapPart
}

// FuzzDecodeIPC: whatever the bytes, DecodeIPC returns a record or an error;
// it never panics, never allocates without bound, and leaks nothing. (The
// frame check keeps damaged bytes from Arrow's reader, which trusts lengths.)
func FuzzDecodeIPC(f *testing.F) {
	mem := memory.NewGoAllocator()
	rec := rdd.Encode(mem, rdd.CodecOf[string](), []string{"x", "yz"})
	good, err := EncodeIPC(rec, mem)
	rec.Release()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	flipped := append([]byte(nil), good...)
	flipped[40] ^= 1
	f.Add(flipped)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		cm := memory.NewCheckedAllocator(memory.NewGoAllocator())
		r, err := DecodeIPC(b, cm)
		if err == nil {
			r.Release()
		}
		cm.AssertSize(t, 0)
	})
}

// slowShuffle serves a real block in small pieces, pausing between them;
// with block nil it never answers (a frozen executor's handler).
type slowShuffle struct {
	sluicev1.UnimplementedShuffleServer
	block []byte
	pause time.Duration
	done  chan struct{}
}

func (s *slowShuffle) FetchBlock(_ *sluicev1.FetchBlockRequest, stream sluicev1.Shuffle_FetchBlockServer) error {
	if s.block == nil {
		<-s.done
		return nil
	}
	for b := s.block; len(b) > 0; {
		n := min(len(b), 1+len(s.block)/4)
		time.Sleep(s.pause)
		if err := stream.Send(&sluicev1.Chunk{Data: b[:n]}); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// A fetch from an executor that stopped answering (its handler hangs, or
// its socket accepts and never speaks, as a SIGSTOPped process's does)
// fails as a fetch failure after fetchIdle without data, instead of
// waiting for gRPC's keepalive; a slow server that keeps sending, each
// piece within fetchIdle but the whole block over several, is read whole.
func TestShuffleFetchFromAFrozenExecutorFails(t *testing.T) {
	defer func(d time.Duration) { fetchIdle = d }(fetchIdle)
	fetchIdle = 300 * time.Millisecond
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	secret := mustSecret(t, "the-right-cluster-secret")
	store, err := NewShuffleStore(t.TempDir(), mem)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Write("job", 7, 0, records(t, mem, []string{"a", "b", "c"})); err != nil {
		t.Fatal(err)
	}
	block, err := store.Read("job", 7, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	defer close(done)
	hung := serve(t, secret.ServerOptions(nil), func(s *grpc.Server) { sluicev1.RegisterShuffleServer(s, &slowShuffle{done: done}) })
	slow := serve(t, secret.ServerOptions(nil), func(s *grpc.Server) {
		sluicev1.RegisterShuffleServer(s, &slowShuffle{block: block, pause: fetchIdle / 2, done: done})
	})
	mute, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never speaks
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Close()
	var mu sync.Mutex
	var held []net.Conn
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	}()
	go func() { // ends when mute is closed
		for {
			c, err := mute.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	pool := NewPool(secret.DialOptions()...)
	defer pool.Close()
	local, err := NewShuffleStore(t.TempDir(), mem)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, addr string
		ok         bool
	}{{"hung handler", hung, false}, {"mute socket", mute.Addr().String(), false}, {"slow but sending", slow, true}} {
		ts := &taskShuffle{store: local, job: "job", self: "me", pool: pool, locations: map[int64][]string{7: {c.addr}}}
		start := time.Now()
		var rows int64
		err := ts.Fetch(context.Background(), 7, 1, 0, func(r arrow.Record) error { rows += r.NumRows(); return nil })
		took := time.Since(start)
		if c.ok {
			if err != nil || rows != 3 {
				t.Errorf("%s: %d rows, %v; want the block's 3", c.name, rows, err)
			}
			continue
		}
		if !isFetchFailed(err, 7, 0) || !strings.Contains(err.Error(), "no data") || took > 10*fetchIdle {
			t.Errorf("%s: after %v: %v; want a fetch failure for no data within about %v", c.name, took, err, fetchIdle)
		}
	}
}
