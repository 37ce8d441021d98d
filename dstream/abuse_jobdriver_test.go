package dstream

// An abuse campaign against the JobDriver service (FetchInput,
// FetchBroadcast, PutState, FetchState) that a job driver serves to its
// executors: the real server (serveInputs, with the cluster secret and TLS
// from the environment, on 127.0.0.1) of a checkpointed job driven by hand,
// and a real gRPC client. Every call must end with a status that names
// what was wrong, nothing may hang or leak, and well-formed calls work
// afterwards. Known defects: abuse_jobdriver_defects_test.go (skipped).

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/sluicehq/sluice/internal/cluster"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const abuseSecret = "the-right-cluster-secret"

// abuseDriver is a checkpointed job (a queue, an incremental window with
// state "win", a 3 MiB broadcast value) that ran batches 1..4 by hand (a
// snapshot at batch 3), serving the JobDriver service.
type abuseDriver struct {
	c      *Context
	zero   time.Time
	client sluicev1.JobDriverClient
	addr   string
	dir    string
	bcast  []byte
}

// abuseBroadcast is the broadcast value: over ChunkBytes, so that it is
// streamed in several chunks.
var abuseBroadcast = strings.Repeat("broadcast-", (3<<20)/10)

func abuseConfig(dir string) Config {
	return Config{AppName: "abuse", BatchInterval: spillBI, Master: "local[2]", Parallelism: 3, Allocator: memory.NewGoAllocator(),
		Checkpoint: dir, CheckpointInterval: 3 * spillBI, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// newAbuseDriver builds and runs the job in dir (restoring what an
// earlier run left there) and serves it; everything stops when t ends.
func newAbuseDriver(t *testing.T, dir string, batches int) *abuseDriver {
	t.Helper()
	t.Setenv("SLUICE_SECRET", abuseSecret)
	c, err := New(abuseConfig(dir))
	if err != nil {
		t.Fatal(err)
	}
	q := spillJob(c, &spillOutputs{})
	bc, err := NewBroadcast(c, "big", func() (string, error) { return abuseBroadcast, nil })
	if err != nil {
		t.Fatal(err)
	}
	Map(q.Stream(), func(s string) string { return s + bc.Value()[:1] })
	zero, from := startCheckpointed(t, c)
	d := &abuseDriver{c: c, zero: zero, dir: dir}
	t.Cleanup(func() {
		c.Stop()
		c.closeCheckpoint()
	})
	for k := 1; k <= batches; k++ {
		bt := zero.Add(time.Duration(k) * spillBI)
		if !bt.After(from) {
			continue
		}
		q.Push(spillInput(k)...)
		if _, err := c.RunBatch(context.Background(), bt); err != nil {
			t.Fatal(err)
		}
	}
	d.bcast, err = c.broadcastBytes("big")
	if err != nil {
		t.Fatal(err)
	}
	addr, stop, err := c.serveInputs(cluster.Env{DriverAddr: "127.0.0.1:7077", JobID: "job-1"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("the job driver serves on %s", addr)
	}
	d.addr = addr
	t.Cleanup(func() {
		stopped := make(chan struct{})
		go func() { stop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(20 * time.Second):
			t.Errorf("the JobDriver server did not stop")
		}
	})
	d.client = sluicev1.NewJobDriverClient(abuseDial(t, addr))
	return d
}

func abuseDial(t *testing.T, addr string, extra ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	secret, err := cluster.NewSecret(abuseSecret, "test")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, append(secret.DialOptions(), extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func abuseWant(t *testing.T, what string, err error, want codes.Code, words ...string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != want {
		t.Errorf("%s: got %v (%.300q), want %v", what, st.Code(), st.Message(), want)
		return
	}
	// An error names what was wrong without echoing a client's megabytes
	// back (cluster.Quote).
	if len(st.Message()) > 2<<10 {
		t.Errorf("%s: a %d-byte error message %.300q: it echoes the request", what, len(st.Message()), st.Message())
	}
	for _, w := range words {
		if !strings.Contains(strings.ToLower(st.Message()), strings.ToLower(w)) {
			t.Errorf("%s: %v message %q does not name %q", what, st.Code(), st.Message(), w)
		}
	}
}

// abuseNoLeaks runs f and checks that goroutines and open files come back
// to what they were.
func abuseNoLeaks(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	count := func() (int, int) {
		ents, err := os.ReadDir("/proc/self/fd")
		n := -1
		if err == nil {
			n = len(ents)
		}
		return runtime.NumGoroutine(), n
	}
	g0, f0 := count()
	f(t)
	if t.Failed() {
		return
	}
	var g, fd int
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if g, fd = count(); g <= g0 && fd <= f0 {
			return
		}
		if time.Now().After(deadline) {
			break
		}
	}
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	t.Errorf("leak: %d goroutines before, %d after; %d open files before, %d after\n%s", g0, g, f0, fd, buf)
}

// drainInput reads a FetchInput stream to its end.
func drainInput(stream sluicev1.JobDriver_FetchInputClient, err error) ([]*sluicev1.InputChunk, error) {
	if err != nil {
		return nil, err
	}
	var out []*sluicev1.InputChunk
	for {
		c, err := stream.Recv()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, c)
	}
}

// drainChunks reads a Chunk stream to its end.
func drainChunks(stream interface {
	Recv() (*sluicev1.Chunk, error)
}, err error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	var b []byte
	for {
		c, err := stream.Recv()
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(c.GetData()) > cluster.ChunkBytes {
			return b, fmt.Errorf("a chunk of %d bytes", len(c.GetData()))
		}
		b = append(b, c.GetData()...)
	}
}

// drainState reads a FetchState stream to its end.
func drainState(stream sluicev1.JobDriver_FetchStateClient, err error) ([]*sluicev1.StateChunk, error) {
	if err != nil {
		return nil, err
	}
	var out []*sluicev1.StateChunk
	for {
		c, err := stream.Recv()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, c)
	}
}

// putState sends msgs on a PutState stream and returns the outcome.
func putState(ctx context.Context, jc sluicev1.JobDriverClient, msgs ...*sluicev1.StateChunk) error {
	stream, err := jc.PutState(ctx)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if err := stream.Send(m); err != nil {
			break
		}
	}
	_, err = stream.CloseAndRecv()
	return err
}

func TestAbuseJobDriverService(t *testing.T) {
	abuseNoLeaks(t, func(t *testing.T) {
		dir := t.TempDir()
		t.Run("first run", func(t *testing.T) {
			d := newAbuseDriver(t, dir, 4)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			b2 := d.zero.Add(2 * spillBI).UnixNano()

			t.Run("FetchInput", func(t *testing.T) {
				for name, in := range map[string]int32{"negative": -1, "min": math.MinInt32, "past the sources": 1, "max": math.MaxInt32} {
					_, err := drainInput(d.client.FetchInput(ctx, &sluicev1.FetchInputRequest{JobId: "job-1", Input: in, BatchTimeUnixNano: b2}))
					abuseWant(t, name, err, codes.InvalidArgument, "out of range")
				}
				for name, ns := range map[string]int64{"zero": 0, "negative": -1, "min": math.MinInt64, "max": math.MaxInt64,
					"between batches": b2 + 1, "a future batch": d.zero.Add(99 * spillBI).UnixNano()} {
					_, err := drainInput(d.client.FetchInput(ctx, &sluicev1.FetchInputRequest{JobId: "job-1", BatchTimeUnixNano: ns}))
					abuseWant(t, "batch time "+name, err, codes.NotFound, "no longer remembered")
				}
				_, err := drainInput(d.client.FetchInput(ctx, &sluicev1.FetchInputRequest{}))
				abuseWant(t, "empty request", err, codes.InvalidArgument, "job id is empty")
				_, err = drainInput(d.client.FetchInput(ctx, &sluicev1.FetchInputRequest{JobId: strings.Repeat("j", 1<<20), BatchTimeUnixNano: b2}))
				abuseWant(t, "1 MiB job id", err, codes.NotFound, "not of \"jjj", "(1048576 bytes)")
				chunks, err := drainInput(d.client.FetchInput(ctx, &sluicev1.FetchInputRequest{JobId: "job-1", BatchTimeUnixNano: b2}))
				if err != nil || len(chunks) == 0 {
					t.Fatalf("batch 2's input: %d chunks, %v", len(chunks), err)
				}
				want := chunks
				// One partition at a time: exactly that partition's chunks
				// of the whole batch; a partition out of range is refused.
				parts := int(chunks[0].GetPartitions())
				for p := range parts {
					one, err := drainInput(d.client.FetchInput(ctx, &sluicev1.FetchInputRequest{JobId: "job-1", BatchTimeUnixNano: b2, OnePartition: true, Partition: int32(p)}))
					var wantData, gotData []byte
					for _, c := range chunks {
						if int(c.GetPartition()) == p {
							wantData = append(wantData, c.GetData()...)
						}
					}
					for _, c := range one {
						if int(c.GetPartition()) != p || int(c.GetPartitions()) != parts {
							t.Fatalf("partition %d: a chunk of partition %d of %d", p, c.GetPartition(), c.GetPartitions())
						}
						gotData = append(gotData, c.GetData()...)
					}
					if err != nil || len(one) == 0 || !one[len(one)-1].GetLast() || !bytes.Equal(gotData, wantData) {
						t.Fatalf("partition %d alone: %d chunks, %d bytes (want %d), %v", p, len(one), len(gotData), len(wantData), err)
					}
				}
				for name, p := range map[string]int32{"negative": -1, "past the end": int32(parts), "max": math.MaxInt32} {
					_, err := drainInput(d.client.FetchInput(ctx, &sluicev1.FetchInputRequest{JobId: "job-1", BatchTimeUnixNano: b2, OnePartition: true, Partition: p}))
					abuseWant(t, "one partition "+name, err, codes.InvalidArgument, "partition")
				}
				// Cancelled after the first chunk, never read, many at once.
				var wg sync.WaitGroup
				for i := range 64 {
					wg.Go(func() {
						cctx, ccancel := context.WithCancel(ctx)
						defer ccancel()
						stream, err := d.client.FetchInput(cctx, &sluicev1.FetchInputRequest{JobId: "job-1", BatchTimeUnixNano: b2})
						if err != nil {
							t.Errorf("FetchInput: %v", err)
							return
						}
						switch i % 3 {
						case 0:
							stream.Recv()
							ccancel()
						case 1:
							ccancel()
						default:
							got, err := drainInput(stream, nil)
							if err != nil || len(got) != len(want) {
								t.Errorf("concurrent FetchInput: %d chunks, %v", len(got), err)
							}
						}
					})
				}
				wg.Wait()
			})

			t.Run("FetchBroadcast", func(t *testing.T) {
				for name, n := range map[string]string{"empty": "", "unknown": "nope", "1 MiB": strings.Repeat("n", 1<<20), "path": "../big"} {
					_, err := drainChunks(d.client.FetchBroadcast(ctx, &sluicev1.FetchBroadcastRequest{JobId: "job-1", Name: n}))
					abuseWant(t, name, err, codes.NotFound, "no broadcast value")
				}
				var wg sync.WaitGroup
				for i := range 32 {
					wg.Go(func() {
						cctx, ccancel := context.WithCancel(ctx)
						defer ccancel()
						stream, err := d.client.FetchBroadcast(cctx, &sluicev1.FetchBroadcastRequest{JobId: "job-1", Name: "big"})
						if i%2 == 0 {
							if err == nil {
								stream.Recv()
							}
							ccancel()
							return
						}
						b, err := drainChunks(stream, err)
						if err != nil || !bytes.Equal(b, d.bcast) {
							t.Errorf("concurrent FetchBroadcast: %d bytes, %v", len(b), err)
						}
					})
				}
				wg.Wait()
			})

			t.Run("PutState", func(t *testing.T) {
				// Another job's, or no job's: refused, naming the job.
				for name, msgs := range map[string][]*sluicev1.StateChunk{
					"another job": {{JobId: "job-2", SnapshotUnixNano: b2, Op: "win", Part: 0, Data: []byte("x"), Last: true}},
				} {
					err := putState(ctx, d.client, msgs...)
					abuseWant(t, name, err, codes.NotFound, "job")
				}
				err := putState(ctx, d.client, &sluicev1.StateChunk{Last: true})
				abuseWant(t, "zero fields", err, codes.InvalidArgument, "job id is empty")
				err = putState(ctx, d.client, &sluicev1.StateChunk{JobId: "job-1", SnapshotUnixNano: b2, Op: strings.Repeat("o", 1<<20), Data: []byte("x"), Last: true})
				abuseWant(t, "1 MiB operator name", err, codes.InvalidArgument, "no stateful operator", "(1048576 bytes)")
				// Malformed parts: refused, naming what is wrong.
				for name, msgs := range map[string][]*sluicev1.StateChunk{
					"not Arrow":      {{JobId: "job-1", SnapshotUnixNano: b2, Op: "win", Part: 0, Data: []byte("x"), Last: true}},
					"garbage":        {{JobId: "job-1", Op: "\x00", Part: -1, SnapshotUnixNano: math.MinInt64, Data: bytes.Repeat([]byte{0xff}, 4096), Last: true}},
					"two partitions": {{JobId: "job-1", Op: "win", Part: 1, Data: []byte("a")}, {JobId: "job-1", Op: "win", Part: 2, Last: true}},
				} {
					err := putState(ctx, d.client, msgs...)
					abuseWant(t, name, err, codes.InvalidArgument)
				}
				// A well-formed part, but no snapshot is being taken: refused, naming it.
				part, err := d.c.stateful[0].savePart(0)
				if err != nil {
					t.Fatal(err)
				}
				err = putState(ctx, d.client, &sluicev1.StateChunk{JobId: "job-1", SnapshotUnixNano: b2, Op: part.Op, Part: 0, Data: part.Data, Last: true})
				abuseWant(t, "no snapshot", err, codes.FailedPrecondition, "snapshot")
				if err := putState(ctx, d.client); err != nil {
					t.Errorf("an empty stream: %v", err)
				}
				err = putState(ctx, d.client, &sluicev1.StateChunk{JobId: "job-1", Op: "win", Data: []byte("half")})
				abuseWant(t, "a stream ending inside a partition", err, codes.InvalidArgument, "inside a partition")
				huge := sluicev1.NewJobDriverClient(abuseDial(t, d.addr, grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20))))
				err = putState(ctx, huge, &sluicev1.StateChunk{JobId: "job-1", Op: "win", Data: make([]byte, 9<<20), Last: true})
				abuseWant(t, "a 9 MiB message", err, codes.ResourceExhausted)
				// Half a partition, then nothing, the stream open: the
				// server ends it after the idle limit.
				func() {
					defer cluster.SetStreamIdle(300 * time.Millisecond)()
					stream, err := d.client.PutState(ctx)
					if err != nil {
						t.Fatal(err)
					}
					if err := stream.Send(&sluicev1.StateChunk{JobId: "job-1", Op: "win", Data: []byte("half")}); err != nil {
						t.Fatal(err)
					}
					err = stream.RecvMsg(new(sluicev1.PutStateResponse)) // the answer, without closing the stream
					abuseWant(t, "an idle stream", err, codes.DeadlineExceeded, "put state: no message for 300ms", "idle")
				}()
				// Cut half-way, never closed, many at once.
				var wg sync.WaitGroup
				for i := range 32 {
					wg.Go(func() {
						cctx, ccancel := context.WithTimeout(ctx, 200*time.Millisecond)
						defer ccancel()
						stream, err := d.client.PutState(cctx)
						if err != nil {
							t.Errorf("PutState: %v", err)
							return
						}
						stream.Send(&sluicev1.StateChunk{JobId: "job-1", Op: "win", Part: int32(i), Data: make([]byte, 512<<10)})
						if i%2 == 0 {
							ccancel()
						} else {
							<-cctx.Done()
						}
						_, err = stream.CloseAndRecv()
						// The server may see the cut as the end of the
						// stream inside a partition first.
						if c := status.Code(err); c != codes.Canceled && c != codes.DeadlineExceeded &&
							!(c == codes.InvalidArgument && strings.Contains(err.Error(), "inside a partition")) {
							t.Errorf("cut PutState: %v", err)
						}
					})
				}
				wg.Wait()
			})

			t.Run("FetchState", func(t *testing.T) {
				// This job driver restored nothing.
				_, err := drainState(d.client.FetchState(ctx, &sluicev1.FetchStateRequest{}))
				abuseWant(t, "no job", err, codes.InvalidArgument, "job id is empty")
				for name, req := range map[string]*sluicev1.FetchStateRequest{
					"batch 3":  {JobId: "job-1", SnapshotUnixNano: d.zero.Add(3 * spillBI).UnixNano(), Op: "win"},
					"garbage":  {JobId: "job-1", Op: "\x00/..", Part: -1, SnapshotUnixNano: math.MaxInt64},
					"min time": {JobId: "job-1", Op: "win", SnapshotUnixNano: math.MinInt64},
				} {
					_, err := drainState(d.client.FetchState(ctx, req))
					abuseWant(t, name, err, codes.FailedPrecondition, "did not restore snapshot")
				}
			})

			t.Run("wrong role", func(t *testing.T) {
				conn := abuseDial(t, d.addr)
				_, err := sluicev1.NewExecutorClient(conn).RunTask(ctx, &sluicev1.TaskRequest{JobId: "job-1"})
				abuseWant(t, "RunTask at a job driver", err, codes.Unimplemented)
				_, err = sluicev1.NewDriverClient(conn).ListJobs(ctx, &sluicev1.ListJobsRequest{})
				abuseWant(t, "ListJobs at a job driver", err, codes.Unimplemented)
				_, err = drainChunks(sluicev1.NewShuffleClient(conn).FetchBlock(ctx, &sluicev1.FetchBlockRequest{JobId: "job-1"}))
				abuseWant(t, "FetchBlock at a job driver", err, codes.Unimplemented)
			})

			// Still healthy.
			if _, err := drainInput(d.client.FetchInput(ctx, &sluicev1.FetchInputRequest{JobId: "job-1", BatchTimeUnixNano: b2})); err != nil {
				t.Fatalf("FetchInput after abuse: %v", err)
			}
			if b, err := drainChunks(d.client.FetchBroadcast(ctx, &sluicev1.FetchBroadcastRequest{JobId: "job-1", Name: "big"})); err != nil || !bytes.Equal(b, d.bcast) {
				t.Fatalf("FetchBroadcast after abuse: %d bytes, %v", len(b), err)
			}
		})

		t.Run("restarted", func(t *testing.T) {
			// The same job again: it restores the snapshot of batch 3.
			d := newAbuseDriver(t, dir, 0)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			snap := d.c.restoreSnapshotOf()
			if snap.IsZero() {
				t.Fatal("no snapshot restored")
			}
			parts, err := d.c.restoredParts(snap)
			if err != nil || len(parts) == 0 {
				t.Fatalf("restored parts: %d, %v", len(parts), err)
			}
			op := strings.SplitN(parts[0].Op, "#", 2)[0]
			sn := snap.UnixNano()
			for name, req := range map[string]*sluicev1.FetchStateRequest{
				"garbage everywhere": {JobId: "../..", Op: "\x00", Part: math.MinInt32, SnapshotUnixNano: math.MinInt64},
			} {
				_, err := drainState(d.client.FetchState(ctx, req))
				abuseWant(t, name, err, codes.NotFound, "job")
			}
			_, err = drainState(d.client.FetchState(ctx, &sluicev1.FetchStateRequest{}))
			abuseWant(t, "empty", err, codes.InvalidArgument, "job id is empty")
			for name, req := range map[string]*sluicev1.FetchStateRequest{
				"another snapshot":  {JobId: "job-1", Op: op, SnapshotUnixNano: sn + 1},
				"snapshot max":      {JobId: "job-1", Op: op, SnapshotUnixNano: math.MaxInt64},
				"snapshot negative": {JobId: "job-1", Op: op, SnapshotUnixNano: -sn},
				"snapshot zero":     {JobId: "job-1", Op: op},
			} {
				_, err := drainState(d.client.FetchState(ctx, req))
				abuseWant(t, name, err, codes.FailedPrecondition, "did not restore snapshot")
			}
			for name, req := range map[string]*sluicev1.FetchStateRequest{
				"no op":          {JobId: "job-1", SnapshotUnixNano: sn},
				"unknown op":     {JobId: "job-1", SnapshotUnixNano: sn, Op: "nope"},
				"part -1":        {JobId: "job-1", SnapshotUnixNano: sn, Op: op, Part: -1},
				"part max":       {JobId: "job-1", SnapshotUnixNano: sn, Op: op, Part: math.MaxInt32},
				"op with suffix": {JobId: "job-1", SnapshotUnixNano: sn, Op: op + "#"},
			} {
				_, err := drainState(d.client.FetchState(ctx, req))
				abuseWant(t, name, err, codes.NotFound, "has no partition")
			}
			got, err := drainState(d.client.FetchState(ctx, &sluicev1.FetchStateRequest{JobId: "job-1", SnapshotUnixNano: sn, Op: op, Part: 0}))
			if err != nil || len(got) == 0 || !got[len(got)-1].GetLast() {
				t.Fatalf("partition 0 of %s: %d chunks, %v", op, len(got), err)
			}
			var wg sync.WaitGroup
			for i := range 48 {
				wg.Go(func() {
					cctx, ccancel := context.WithCancel(ctx)
					defer ccancel()
					stream, err := d.client.FetchState(cctx, &sluicev1.FetchStateRequest{JobId: "job-1", SnapshotUnixNano: sn, Op: op, Part: int32(i % 3)})
					if i%2 == 0 {
						ccancel()
						return
					}
					if _, err := drainState(stream, err); err != nil {
						t.Errorf("concurrent FetchState: %v", err)
					}
				})
			}
			wg.Wait()
			// A snapshot is not being taken here either: PutState refused.
			part, err := d.c.stateful[0].savePart(0)
			if err != nil {
				t.Fatal(err)
			}
			err = putState(ctx, d.client, &sluicev1.StateChunk{JobId: "job-1", SnapshotUnixNano: sn, Op: part.Op, Part: 0, Data: part.Data, Last: true})
			abuseWant(t, "PutState of the restored snapshot", err, codes.FailedPrecondition, "snapshot")
		})
	})
}
