package cluster

// An abuse campaign against every method of the Driver, Executor and
// Shuffle services, from a real gRPC client (the cluster secret, TLS) to the
// real servers on 127.0.0.1: a Coordinator (behind `driver serve`) with Run
// going, and an executor Daemon running (Daemon.Run, registered with that
// coordinator), plus a job process's TaskServer. Every call must end with
// a status that names what was wrong, nothing may hang, panic or leak, and
// the servers must answer well-formed calls afterwards. (The JobDriver
// service is served by a job driver process: dstream/abuse_jobdriver_test.go.)
// Known defects are in abuse_defects_test.go, skipped.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/memory"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	"github.com/sluicehq/sluice/rdd"
	"github.com/sluicehq/sluice/scheduler"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// abuseCallTimeout bounds every abusive call: a call still running past it
// is a hang.
const abuseCallTimeout = 20 * time.Second

// abuseCluster is a coordinator and one executor daemon, both serving on
// 127.0.0.1 over TLS with call credentials, as `driver serve` and
// `executor` do.
type abuseCluster struct {
	secret    Secret
	coord     *Coordinator
	coordAddr string
	daemon    *Daemon
	execAddr  string
	state     string
	work      string
	dc        sluicev1.DriverClient
	ec        sluicev1.ExecutorClient
	sc        sluicev1.ShuffleClient
	conn      map[string]*grpc.ClientConn
}

// newAbuseCluster starts the servers; they stop (and are waited for) when t
// ends. A server that cannot stop because a call hangs fails the test.
func newAbuseCluster(t *testing.T) *abuseCluster {
	t.Helper()
	secret := mustSecret(t, "the-right-cluster-secret")
	a := &abuseCluster{secret: secret, state: t.TempDir(), work: filepath.Join(t.TempDir(), "work"), conn: map[string]*grpc.ClientConn{}}

	coordLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a.coordAddr = coordLis.Addr().String()
	c, err := NewCoordinator(CoordinatorConfig{StateDir: a.state, Advertise: a.coordAddr, Secret: secret, Log: quietLog(),
		StopTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	a.coord = c
	coordSrv := grpc.NewServer(secret.ServerOptions(nil)...)
	sluicev1.RegisterDriverServer(coordSrv, c)
	runCtx, stopRun := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { coordSrv.Serve(coordLis) })
	wg.Go(func() { c.Run(runCtx) })
	t.Cleanup(func() {
		stopRun()
		stopped := make(chan struct{})
		go func() {
			coordSrv.GracefulStop() // waits for every call: a hung one shows here
			close(stopped)
		}()
		select {
		case <-stopped:
		case <-time.After(abuseCallTimeout):
			t.Errorf("the coordinator's server did not stop within %v: a call still runs", abuseCallTimeout)
			coordSrv.Stop()
		}
		wg.Wait()
		c.Close()
	})

	execLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a.execAddr = execLis.Addr().String()
	d, err := NewDaemon(DaemonConfig{ID: "abuse-exec", DriverAddr: a.coordAddr, Advertise: a.execAddr, WorkDir: a.work, Slots: 2,
		Secret: secret, Log: quietLog(), DrainGrace: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	a.daemon = d
	dctx, stopDaemon := context.WithCancel(context.Background())
	daemonDone := make(chan error, 1)
	go func() { daemonDone <- d.Run(dctx, execLis) }()
	t.Cleanup(func() { // runs before the coordinator's cleanup
		stopDaemon()
		select {
		case err := <-daemonDone:
			if err != nil {
				t.Errorf("daemon: %v", err)
			}
		case <-time.After(abuseCallTimeout + 15*time.Second):
			t.Errorf("the executor daemon did not stop: a call still runs")
		}
	})

	a.dc = sluicev1.NewDriverClient(a.dial(t, a.coordAddr))
	ec := a.dial(t, a.execAddr)
	a.ec, a.sc = sluicev1.NewExecutorClient(ec), sluicev1.NewShuffleClient(ec)
	eventually(t, "the executor registered", func() bool {
		resp, err := a.dc.ListExecutors(context.Background(), &sluicev1.ListExecutorsRequest{})
		return err == nil && len(resp.GetExecutors()) == 1
	})
	return a
}

// dial returns a client connection to addr, closed when t ends; extra
// options come after the cluster's (so they win).
func (a *abuseCluster) dial(t *testing.T, addr string, extra ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, append(a.secret.DialOptions(), extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// healthy checks that both servers answer well-formed calls.
func (a *abuseCluster) healthy(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), abuseCallTimeout)
	defer cancel()
	if _, err := a.dc.ListJobs(ctx, &sluicev1.ListJobsRequest{}); err != nil {
		t.Fatalf("coordinator unhealthy after abuse: ListJobs: %v", err)
	}
	resp, err := a.dc.ListExecutors(ctx, &sluicev1.ListExecutorsRequest{})
	if err != nil {
		t.Fatalf("coordinator unhealthy after abuse: ListExecutors: %v", err)
	}
	found := false
	for _, e := range resp.GetExecutors() {
		found = found || e.GetExecutorId() == "abuse-exec"
	}
	if !found {
		t.Fatalf("the executor daemon is no longer registered after abuse: %v", resp.GetExecutors())
	}
	if _, err := a.ec.EndJob(ctx, &sluicev1.EndJobRequest{JobId: "job-health"}); err != nil {
		t.Fatalf("executor unhealthy after abuse: EndJob: %v", err)
	}
	if _, err := a.ec.KillTask(ctx, &sluicev1.KillTaskRequest{JobId: "job-health", TaskId: 1}); status.Code(err) != codes.NotFound {
		t.Fatalf("executor unhealthy after abuse: KillTask: %v", err)
	}
}

// wantCode fails t unless err has code want and its message holds every
// one of words (case-insensitive): the status names what was wrong.
func wantCode(t *testing.T, what string, err error, want codes.Code, words ...string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != want {
		t.Errorf("%s: got %v (%q), want %v", what, st.Code(), abbrev(st.Message()), want)
		return
	}
	// An error names what was wrong; it does not echo a client's
	// megabytes back (Quote).
	if len(st.Message()) > maxEchoMessage {
		t.Errorf("%s: a %d-byte error message %q: it echoes the request", what, len(st.Message()), abbrev(st.Message()))
	}
	for _, w := range words {
		if !strings.Contains(strings.ToLower(st.Message()), strings.ToLower(w)) {
			t.Errorf("%s: %v message %q does not name %q", what, st.Code(), abbrev(st.Message()), w)
		}
	}
}

// wantRefused fails t unless err is a refusal (not OK, not Unknown or
// Internal: a status the caller can act on).
func wantRefused(t *testing.T, what string, err error) {
	t.Helper()
	switch c := status.Code(err); c {
	case codes.OK, codes.Unknown, codes.Internal:
		t.Errorf("%s: got %v (%v), want a refusal", what, c, err)
	}
}

// maxEchoMessage bounds an error message in answer to abuse.
const maxEchoMessage = 2 << 10

func abbrev(s string) string {
	if len(s) > 300 {
		return s[:300] + fmt.Sprintf("...(%d bytes)", len(s))
	}
	return s
}

// noLeaks runs f (which starts and stops servers, in subtests) and then
// checks that the goroutines and open files are back to what they were.
func noLeaks(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	beforeG := runtime.NumGoroutine()
	beforeF := openFiles()
	f(t)
	if t.Failed() {
		return
	}
	var g, fd int
	deadline := time.Now().Add(15 * time.Second)
	for {
		g, fd = runtime.NumGoroutine(), openFiles()
		if g <= beforeG && fd <= beforeF {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	t.Errorf("leak: %d goroutines before, %d after; %d open files before, %d after\n%s", beforeG, g, beforeF, fd, buf)
}

// openFiles counts this process's open file descriptors (-1 where /proc is
// missing, which makes the check a no-op).
func openFiles() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// shaOf returns the hex SHA-256 of b.
func shaOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// submitParts sends msgs on a SubmitJob stream and returns the outcome.
func submitParts(ctx context.Context, dc sluicev1.DriverClient, msgs ...*sluicev1.SubmitJobRequest) (*sluicev1.SubmitJobResponse, error) {
	stream, err := dc.SubmitJob(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range msgs {
		if err := stream.Send(m); err != nil {
			break // the server's reason comes with CloseAndRecv
		}
	}
	return stream.CloseAndRecv()
}

func hdr(h *sluicev1.SubmitHeader) *sluicev1.SubmitJobRequest {
	return &sluicev1.SubmitJobRequest{Part: &sluicev1.SubmitJobRequest_Header{Header: h}}
}

func dat(b []byte) *sluicev1.SubmitJobRequest {
	return &sluicev1.SubmitJobRequest{Part: &sluicev1.SubmitJobRequest_Data{Data: b}}
}

// incoming lists temporary upload files left in a binaries directory.
func incoming(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".incoming-") {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestAbuseDriverService(t *testing.T) {
	noLeaks(t, func(t *testing.T) {
		t.Run("abuse", func(t *testing.T) {
			a := newAbuseCluster(t)
			ctx, cancel := context.WithTimeout(context.Background(), 2*abuseCallTimeout)
			defer cancel()
			big := strings.Repeat("x", 1<<20)

			t.Run("RegisterExecutor", func(t *testing.T) {
				for name, req := range map[string]*sluicev1.RegisterExecutorRequest{
					"empty":          {},
					"no id":          {Address: "127.0.0.1:1", Slots: 1},
					"no address":     {ExecutorId: "e1", Slots: 1},
					"zero slots":     {ExecutorId: "e1", Address: "127.0.0.1:1"},
					"negative slots": {ExecutorId: "e1", Address: "127.0.0.1:1", Slots: -5},
					"min slots":      {ExecutorId: "e1", Address: "127.0.0.1:1", Slots: math.MinInt32},
				} {
					_, err := a.dc.RegisterExecutor(ctx, req)
					wantCode(t, name, err, codes.InvalidArgument, "register: executor")
				}
				// Too big for a message: refused by gRPC before the handler.
				huge := sluicev1.NewDriverClient(a.dial(t, a.coordAddr, grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20))))
				_, err := huge.RegisterExecutor(ctx, &sluicev1.RegisterExecutorRequest{ExecutorId: strings.Repeat("e", 9<<20), Address: "x:1", Slots: 1})
				wantCode(t, "9 MiB id", err, codes.ResourceExhausted)
			})

			t.Run("Heartbeat", func(t *testing.T) {
				for name, req := range map[string]*sluicev1.HeartbeatRequest{
					"empty":          {},
					"unknown":        {ExecutorId: "nobody", Epoch: 1},
					"negative epoch": {ExecutorId: "abuse-exec", Epoch: -1},
					"huge epoch":     {ExecutorId: "abuse-exec", Epoch: math.MaxInt64},
					"1 MiB id":       {ExecutorId: big, Epoch: 1},
				} {
					resp, err := a.dc.Heartbeat(ctx, req)
					if err != nil || !resp.GetReregister() {
						t.Errorf("%s: %v %v, want an answer telling it to register", name, resp, err)
					}
				}
			})

			t.Run("FetchBinary", func(t *testing.T) {
				for name, sha := range map[string]string{
					"empty": "", "short": "abc", "upper": strings.Repeat("A", 64), "path": "../../../../etc/passwd",
					"65 hex": strings.Repeat("0", 65), "1 MiB": big,
				} {
					stream, err := a.dc.FetchBinary(ctx, &sluicev1.FetchBinaryRequest{Sha256: sha})
					if err == nil {
						_, err = stream.Recv()
					}
					wantCode(t, name, err, codes.InvalidArgument, "sha-256")
				}
				stream, err := a.dc.FetchBinary(ctx, &sluicev1.FetchBinaryRequest{Sha256: strings.Repeat("0", 64)})
				if err == nil {
					_, err = stream.Recv()
				}
				wantCode(t, "unknown binary", err, codes.NotFound, strings.Repeat("0", 64))

				// A stored 5 MiB binary: cut the stream after one chunk, many
				// times over and at once; then a whole fetch still works.
				bin := bytes.Repeat([]byte("0123456789abcdef"), 5<<16)
				sha := shaOf(bin)
				if err := os.WriteFile(filepath.Join(a.state, "binaries", sha), bin, 0o755); err != nil {
					t.Fatal(err)
				}
				var wg sync.WaitGroup
				for range 32 {
					wg.Go(func() {
						cctx, ccancel := context.WithCancel(ctx)
						defer ccancel()
						stream, err := a.dc.FetchBinary(cctx, &sluicev1.FetchBinaryRequest{Sha256: sha})
						if err != nil {
							t.Errorf("fetch: %v", err)
							return
						}
						if _, err := stream.Recv(); err != nil {
							t.Errorf("first chunk: %v", err)
						}
						ccancel()
						for {
							if _, err := stream.Recv(); err != nil {
								if status.Code(err) != codes.Canceled {
									t.Errorf("after cancel: %v", err)
								}
								return
							}
						}
					})
				}
				// Streams never read from: the server blocks on flow control
				// until the client goes away.
				for range 8 {
					wg.Go(func() {
						cctx, ccancel := context.WithTimeout(ctx, 500*time.Millisecond)
						defer ccancel()
						if _, err := a.dc.FetchBinary(cctx, &sluicev1.FetchBinaryRequest{Sha256: sha}); err != nil {
							t.Errorf("fetch: %v", err)
						}
						<-cctx.Done()
					})
				}
				wg.Wait()
				stream, err = a.dc.FetchBinary(ctx, &sluicev1.FetchBinaryRequest{Sha256: sha})
				if err != nil {
					t.Fatal(err)
				}
				var got []byte
				for {
					c, err := stream.Recv()
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
					if len(c.GetData()) > ChunkBytes {
						t.Fatalf("chunk of %d bytes", len(c.GetData()))
					}
					got = append(got, c.GetData()...)
				}
				if !bytes.Equal(got, bin) {
					t.Fatalf("fetched %d bytes, want the %d stored", len(got), len(bin))
				}
			})

			t.Run("SubmitJob idle", func(t *testing.T) {
				// A client that sends the header and part of the binary,
				// then nothing, with its stream open: the server ends the
				// call after the idle limit (and drops the partial file).
				defer SetStreamIdle(300 * time.Millisecond)()
				script := bytes.Repeat([]byte("#"), 4096)
				for _, msgs := range [][]*sluicev1.SubmitJobRequest{
					nil, // not even a header
					{hdr(&sluicev1.SubmitHeader{Name: "idle", Sha256: shaOf(script), Size: int64(len(script)), Platform: here()}), dat(script[:100])},
				} {
					stream, err := a.dc.SubmitJob(ctx)
					if err != nil {
						t.Fatal(err)
					}
					for _, m := range msgs {
						if err := stream.Send(m); err != nil {
							t.Fatal(err)
						}
					}
					start := time.Now()
					err = stream.RecvMsg(new(sluicev1.SubmitJobResponse)) // the answer, without closing the stream
					wantCode(t, fmt.Sprintf("idle after %d messages", len(msgs)), err, codes.DeadlineExceeded, "submit: no message for 300ms", "idle")
					if d := time.Since(start); d > 30*time.Second {
						t.Errorf("the idle stream ended after %v", d)
					}
				}
				if in := incoming(t, filepath.Join(a.state, "binaries")); len(in) > 0 {
					t.Errorf("partial binaries left: %v", in)
				}
			})

			t.Run("SubmitJob", func(t *testing.T) {
				script := []byte("#!/bin/sh\nexit 0\n")
				good := &sluicev1.SubmitHeader{Name: "abuse", Sha256: shaOf(script), Size: int64(len(script)), Platform: here()}
				with := func(f func(h *sluicev1.SubmitHeader)) *sluicev1.SubmitHeader {
					h := &sluicev1.SubmitHeader{Name: good.Name, Sha256: good.Sha256, Size: good.Size, Platform: good.Platform}
					f(h)
					return h
				}
				_, err := submitParts(ctx, a.dc, dat(script))
				wantCode(t, "data first", err, codes.InvalidArgument, "header")
				_, err = submitParts(ctx, a.dc, &sluicev1.SubmitJobRequest{})
				wantCode(t, "an empty message first", err, codes.InvalidArgument, "header")
				_, err = submitParts(ctx, a.dc, hdr(&sluicev1.SubmitHeader{}), dat(script))
				wantCode(t, "empty header", err, codes.InvalidArgument, "sha-256")
				_, err = submitParts(ctx, a.dc, hdr(with(func(h *sluicev1.SubmitHeader) { h.Sha256 = "../../x" })), dat(script))
				wantCode(t, "path as sha", err, codes.InvalidArgument, "sha-256")
				_, err = submitParts(ctx, a.dc, hdr(with(func(h *sluicev1.SubmitHeader) { h.Size = MaxBinaryBytes + 1 })), dat(script))
				wantCode(t, "size over the limit", err, codes.ResourceExhausted, "size")
				_, err = submitParts(ctx, a.dc, hdr(with(func(h *sluicev1.SubmitHeader) { h.Size = math.MaxInt64 })), dat(script))
				wantCode(t, "size max int64", err, codes.ResourceExhausted, "size")
				for _, n := range []int64{0, -1, math.MinInt64} {
					_, err = submitParts(ctx, a.dc, hdr(with(func(h *sluicev1.SubmitHeader) { h.Size = n })), dat(script))
					wantRefused(t, fmt.Sprintf("size %d", n), err) // the code: abuse_defects_test.go
				}
				_, err = submitParts(ctx, a.dc, hdr(good), dat(script[:5]))
				wantCode(t, "fewer bytes", err, codes.InvalidArgument, "mismatch")
				_, err = submitParts(ctx, a.dc, hdr(good), dat(script), dat([]byte("more")))
				wantCode(t, "more bytes", err, codes.InvalidArgument, "too large")
				_, err = submitParts(ctx, a.dc, hdr(good), dat([]byte("#!/bin/sh\nexit 1\n")))
				wantCode(t, "other bytes", err, codes.InvalidArgument, "mismatch")
				_, err = submitParts(ctx, a.dc, hdr(with(func(h *sluicev1.SubmitHeader) { h.Platform = &sluicev1.Platform{Goos: "plan9", Goarch: "mips"} })), dat(script))
				wantCode(t, "another platform", err, codes.FailedPrecondition, "plan9/mips")

				// One message over the 8 MiB bound.
				huge := sluicev1.NewDriverClient(a.dial(t, a.coordAddr, grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20))))
				blob := make([]byte, 9<<20)
				_, err = submitParts(ctx, huge, hdr(&sluicev1.SubmitHeader{Sha256: shaOf(blob), Size: int64(len(blob)), Platform: here()}), dat(blob))
				wantCode(t, "a 9 MiB message", err, codes.ResourceExhausted)
				_, err = submitParts(ctx, huge, hdr(&sluicev1.SubmitHeader{Sha256: good.Sha256, Size: good.Size, Args: []string{string(blob)}}))
				wantCode(t, "a 9 MiB header", err, codes.ResourceExhausted)

				// Streams cut half-way: cancelled after the header and part of
				// the data; never closed (a deadline ends it); the client's
				// connection closed.
				for range 16 {
					cctx, ccancel := context.WithCancel(ctx)
					stream, err := a.dc.SubmitJob(cctx)
					if err != nil {
						t.Fatal(err)
					}
					stream.Send(hdr(good))
					stream.Send(dat(script[:3]))
					ccancel()
					_, err = stream.CloseAndRecv()
					wantCode(t, "cancelled mid-upload", err, codes.Canceled)
				}
				dctx, dcancel := context.WithTimeout(ctx, 300*time.Millisecond)
				stream, err := a.dc.SubmitJob(dctx)
				if err != nil {
					t.Fatal(err)
				}
				stream.Send(hdr(good))
				<-dctx.Done()
				_, err = stream.CloseAndRecv()
				dcancel()
				wantCode(t, "never closed", err, codes.DeadlineExceeded)
				conn := a.dial(t, a.coordAddr)
				stream, err = sluicev1.NewDriverClient(conn).SubmitJob(ctx)
				if err != nil {
					t.Fatal(err)
				}
				stream.Send(hdr(good))
				stream.Send(dat(script[:3]))
				time.Sleep(50 * time.Millisecond)
				conn.Close()

				// Many at once, some good, some bad.
				var wg sync.WaitGroup
				var mu sync.Mutex
				var ids []string
				for i := range 24 {
					wg.Go(func() {
						if i%3 == 0 {
							// Each its own binary: two submissions of one binary
							// race with a job of it ending (abuse_defects_test.go).
							own := fmt.Appendf(nil, "#!/bin/sh\n# %d\nexit 0\n", i)
							resp, err := submitParts(ctx, a.dc, hdr(&sluicev1.SubmitHeader{Sha256: shaOf(own), Size: int64(len(own)), Platform: here()}), dat(own))
							if err != nil {
								t.Errorf("good submission: %v", err)
								return
							}
							mu.Lock()
							ids = append(ids, resp.GetJobId())
							mu.Unlock()
							return
						}
						_, err := submitParts(ctx, a.dc, hdr(good), dat(script[:i%len(script)]))
						wantCode(t, "concurrent bad submission", err, codes.InvalidArgument)
					})
				}
				wg.Wait()
				for _, id := range ids {
					eventually(t, "job "+id+" finished", func() bool {
						j, err := a.dc.JobStatus(ctx, &sluicev1.JobStatusRequest{JobId: id})
						return err == nil && j.GetState() == "finished"
					})
				}
				eventually(t, "no upload left in the state directory", func() bool {
					return len(incoming(t, filepath.Join(a.state, "binaries"))) == 0
				})
			})

			t.Run("ListJobs ListExecutors", func(t *testing.T) {
				var wg sync.WaitGroup
				for range 64 {
					wg.Go(func() {
						if _, err := a.dc.ListJobs(ctx, &sluicev1.ListJobsRequest{}); err != nil {
							t.Errorf("ListJobs: %v", err)
						}
						if _, err := a.dc.ListExecutors(ctx, &sluicev1.ListExecutorsRequest{}); err != nil {
							t.Errorf("ListExecutors: %v", err)
						}
					})
				}
				wg.Wait()
				cctx, ccancel := context.WithCancel(ctx)
				ccancel()
				_, err := a.dc.ListJobs(cctx, &sluicev1.ListJobsRequest{})
				wantCode(t, "cancelled before the call", err, codes.Canceled)
			})

			t.Run("JobStatus StopJob", func(t *testing.T) {
				// An id no job can have is InvalidArgument; a well-formed one
				// of no job NotFound.
				for name, id := range map[string]string{
					"empty": "", "path": "../../etc", "nul": "a\x00b", "64 KiB": strings.Repeat("j", 64<<10),
				} {
					_, err := a.dc.JobStatus(ctx, &sluicev1.JobStatusRequest{JobId: id})
					wantCode(t, "JobStatus "+name, err, codes.InvalidArgument, "job id")
					_, err = a.dc.StopJob(ctx, &sluicev1.StopJobRequest{JobId: id})
					wantCode(t, "StopJob "+name, err, codes.InvalidArgument, "job id")
				}
				_, err := a.dc.JobStatus(ctx, &sluicev1.JobStatusRequest{JobId: "job-20260101T000000-999"})
				wantCode(t, "JobStatus unknown", err, codes.NotFound, "no job", "job-20260101T000000-999")
				_, err = a.dc.StopJob(ctx, &sluicev1.StopJobRequest{JobId: "job-20260101T000000-999"})
				wantCode(t, "StopJob unknown", err, codes.NotFound, "no job", "job-20260101T000000-999")
				// A finished job: stopping it again is harmless, many times at once.
				script := []byte("#!/bin/sh\n# stopped\nexit 0\n")
				resp, err := submitParts(ctx, a.dc, hdr(&sluicev1.SubmitHeader{Sha256: shaOf(script), Size: int64(len(script)), Platform: here()}), dat(script))
				if err != nil {
					t.Fatal(err)
				}
				id := resp.GetJobId()
				var wg sync.WaitGroup
				for range 32 {
					wg.Go(func() {
						if _, err := a.dc.StopJob(ctx, &sluicev1.StopJobRequest{JobId: id}); err != nil {
							t.Errorf("StopJob: %v", err)
						}
						if _, err := a.dc.JobStatus(ctx, &sluicev1.JobStatusRequest{JobId: id}); err != nil {
							t.Errorf("JobStatus: %v", err)
						}
					})
				}
				wg.Wait()
				eventually(t, "the stopped job ended", func() bool {
					j, err := a.dc.JobStatus(ctx, &sluicev1.JobStatusRequest{JobId: id})
					return err == nil && jobEnded(j.GetState())
				})
			})

			t.Run("registry storm", func(t *testing.T) {
				// One id registered, heartbeated with stale and fresh epochs,
				// and listed, from many callers at once.
				var wg sync.WaitGroup
				for i := range 64 {
					wg.Go(func() {
						id := fmt.Sprintf("storm-%d", i%4)
						resp, err := a.dc.RegisterExecutor(ctx, &sluicev1.RegisterExecutorRequest{ExecutorId: id, Address: "127.0.0.1:1", Slots: int32(1 + i%3)})
						if err != nil {
							t.Errorf("RegisterExecutor: %v", err)
							return
						}
						for _, e := range []int64{resp.GetEpoch(), resp.GetEpoch() - 1, 0} {
							if _, err := a.dc.Heartbeat(ctx, &sluicev1.HeartbeatRequest{ExecutorId: id, Epoch: e, RunningTasks: -1, ShuffleBytesServed: -1, Draining: i%2 == 0}); err != nil {
								t.Errorf("Heartbeat: %v", err)
							}
						}
						if _, err := a.dc.ListExecutors(ctx, &sluicev1.ListExecutorsRequest{}); err != nil {
							t.Errorf("ListExecutors: %v", err)
						}
					})
				}
				wg.Wait()
				resp, err := a.dc.ListExecutors(ctx, &sluicev1.ListExecutorsRequest{})
				if err != nil {
					t.Fatal(err)
				}
				seen := map[string]int{}
				for _, e := range resp.GetExecutors() {
					seen[e.GetExecutorId()]++
				}
				for id, n := range seen {
					if n != 1 {
						t.Errorf("executor %s listed %d times", id, n)
					}
				}
			})

			t.Run("wrong role", func(t *testing.T) {
				coordConn := a.dial(t, a.coordAddr)
				_, err := sluicev1.NewExecutorClient(coordConn).RunTask(ctx, &sluicev1.TaskRequest{JobId: "job-1"})
				wantCode(t, "RunTask at the coordinator", err, codes.Unimplemented)
				stream, err := sluicev1.NewShuffleClient(coordConn).FetchBlock(ctx, &sluicev1.FetchBlockRequest{JobId: "job-1"})
				if err == nil {
					_, err = stream.Recv()
				}
				wantCode(t, "FetchBlock at the coordinator", err, codes.Unimplemented)
				in, err := sluicev1.NewJobDriverClient(coordConn).FetchInput(ctx, &sluicev1.FetchInputRequest{})
				if err == nil {
					_, err = in.Recv()
				}
				wantCode(t, "FetchInput at the coordinator", err, codes.Unimplemented)
			})

			a.healthy(t)
		})
	})
}

func TestAbuseExecutorService(t *testing.T) {
	noLeaks(t, func(t *testing.T) {
		t.Run("abuse", func(t *testing.T) {
			a := newAbuseCluster(t)
			ctx, cancel := context.WithTimeout(context.Background(), 2*abuseCallTimeout)
			defer cancel()
			zeroSHA := strings.Repeat("0", 64)

			t.Run("RunTask", func(t *testing.T) {
				for _, id := range badIDs {
					_, err := a.ec.RunTask(ctx, &sluicev1.TaskRequest{JobId: id, BinarySha256: zeroSHA})
					wantCode(t, fmt.Sprintf("job id %q", abbrev(id)), err, codes.InvalidArgument, "job id")
				}
				_, err := a.ec.RunTask(ctx, &sluicev1.TaskRequest{})
				wantCode(t, "empty request", err, codes.InvalidArgument, "job id")
				// A binary the coordinator does not have: the task fails (in
				// its response) naming it.
				resp, err := a.ec.RunTask(ctx, &sluicev1.TaskRequest{JobId: "job-x", BinarySha256: zeroSHA, Partition: -1, TaskId: -7})
				if err != nil || !strings.Contains(resp.GetError(), "NotFound") || resp.GetTaskId() != -7 {
					t.Errorf("unknown binary: %v %v", resp, err)
				}
				// Required state that is not here: fatal, says lost.
				resp, err = a.ec.RunTask(ctx, &sluicev1.TaskRequest{JobId: "job-x", BinarySha256: zeroSHA, RequiredIncarnation: math.MaxInt64})
				if err != nil || !resp.GetFatal() || !strings.Contains(resp.GetError(), "lost") {
					t.Errorf("required incarnation: %v %v", resp, err)
				}
				// Garbage where the binary is expected: the job process cannot
				// start; the task fails saying so, the daemon lives on.
				garbage := bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 1024)
				gsha := shaOf(garbage)
				if err := os.WriteFile(filepath.Join(a.work, "binaries", gsha), garbage, 0o755); err != nil {
					t.Fatal(err)
				}
				resp, err = a.ec.RunTask(ctx, &sluicev1.TaskRequest{JobId: "job-garbage", BinarySha256: gsha})
				if err != nil || !strings.Contains(resp.GetError(), "start job process") {
					t.Errorf("garbage binary: %v %v", resp, err)
				}
				// A binary that exits at once.
				quits := []byte("#!/bin/sh\necho no tasks here >&2\nexit 3\n")
				qsha := shaOf(quits)
				if err := os.WriteFile(filepath.Join(a.work, "binaries", qsha), quits, 0o755); err != nil {
					t.Fatal(err)
				}
				resp, err = a.ec.RunTask(ctx, &sluicev1.TaskRequest{JobId: "job-quits", BinarySha256: qsha, Parallelism: -3, DriverAttempt: -2})
				if err != nil || !strings.Contains(resp.GetError(), "no tasks here") {
					t.Errorf("binary that exits: %v %v", resp, err)
				}
				// Many at once: refused beyond the slots, never hung.
				var wg sync.WaitGroup
				for i := range 48 {
					wg.Go(func() {
						cctx, ccancel := context.WithTimeout(ctx, abuseCallTimeout)
						defer ccancel()
						resp, err := a.ec.RunTask(cctx, &sluicev1.TaskRequest{JobId: fmt.Sprintf("job-c%d", i%4), BinarySha256: qsha})
						switch status.Code(err) {
						case codes.OK:
							if resp.GetError() == "" {
								t.Errorf("concurrent task: succeeded?")
							}
						case codes.ResourceExhausted:
							wantCode(t, "concurrent task", err, codes.ResourceExhausted, "slots")
						default:
							t.Errorf("concurrent task: %v", err)
						}
					})
				}
				wg.Wait()
				// Cancelled while the daemon fetches the binary / starts the process.
				for range 8 {
					cctx, ccancel := context.WithTimeout(ctx, time.Millisecond)
					_, err := a.ec.RunTask(cctx, &sluicev1.TaskRequest{JobId: "job-cancel", BinarySha256: shaOf([]byte{1})})
					ccancel()
					// (The slots of earlier cancelled calls come back when
					// their handlers notice.)
					if c := status.Code(err); err != nil && c != codes.DeadlineExceeded && c != codes.ResourceExhausted {
						t.Errorf("cancelled task: %v", err)
					}
				}
				// Oversized request.
				huge := sluicev1.NewExecutorClient(a.dial(t, a.execAddr, grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20))))
				_, err = huge.RunTask(ctx, &sluicev1.TaskRequest{JobId: "job-1", Args: []string{strings.Repeat("a", 9<<20)}})
				wantCode(t, "9 MiB task", err, codes.ResourceExhausted)
				for _, job := range []string{"job-x", "job-garbage", "job-quits", "job-c0", "job-c1", "job-c2", "job-c3", "job-cancel"} {
					if _, err := a.ec.EndJob(ctx, &sluicev1.EndJobRequest{JobId: job}); err != nil {
						t.Errorf("EndJob %s: %v", job, err)
					}
				}
			})

			t.Run("KillTask", func(t *testing.T) {
				for name, req := range map[string]*sluicev1.KillTaskRequest{
					"unknown": {JobId: "job-1", TaskId: 1}, "negative": {JobId: "job-1", TaskId: -1},
					"max": {JobId: "job-1", TaskId: math.MaxInt64},
				} {
					_, err := a.ec.KillTask(ctx, req)
					wantCode(t, name, err, codes.NotFound, "not running")
				}
				for _, id := range badIDs {
					_, err := a.ec.KillTask(ctx, &sluicev1.KillTaskRequest{JobId: id, TaskId: 1})
					wantCode(t, fmt.Sprintf("job id %q", abbrev(id)), err, codes.InvalidArgument, "job id")
				}
			})

			t.Run("EndJob", func(t *testing.T) {
				sentinel := filepath.Join(a.work, "keep")
				if err := os.WriteFile(sentinel, []byte("x"), 0o644); err != nil {
					t.Fatal(err)
				}
				for _, id := range badIDs {
					_, err := a.ec.EndJob(ctx, &sluicev1.EndJobRequest{JobId: id})
					wantCode(t, fmt.Sprintf("job id %q", abbrev(id)), err, codes.InvalidArgument, "job id")
				}
				var wg sync.WaitGroup
				for i := range 64 {
					wg.Go(func() {
						if _, err := a.ec.EndJob(ctx, &sluicev1.EndJobRequest{JobId: fmt.Sprintf("job-%d", i%3)}); err != nil {
							t.Errorf("EndJob of an unknown job: %v", err)
						}
					})
				}
				wg.Wait()
				for _, p := range []string{sentinel, filepath.Join(a.work, "binaries"), filepath.Join(a.work, "jobs"), filepath.Join(a.work, "shuffle")} {
					if _, err := os.Stat(p); err != nil {
						t.Errorf("EndJob damaged the work directory: %v", err)
					}
				}
			})

			t.Run("CommitState", func(t *testing.T) {
				for _, id := range badIDs {
					_, err := a.ec.CommitState(ctx, &sluicev1.CommitStateRequest{JobId: id})
					wantCode(t, fmt.Sprintf("job id %q", abbrev(id)), err, codes.InvalidArgument, "job id")
				}
				for name, req := range map[string]*sluicev1.CommitStateRequest{
					"unknown job":          {JobId: "job-nope"},
					"negative incarnation": {JobId: "job-nope", Incarnation: -1, BatchTimeUnixNano: -1},
					"garbage reports":      {JobId: "job-nope", Incarnation: 1, Reports: map[string][]byte{"x/y": {0xff}}},
				} {
					_, err := a.ec.CommitState(ctx, req)
					wantCode(t, name, err, codes.FailedPrecondition, "job-nope")
				}
				_, err := a.ec.CommitState(ctx, &sluicev1.CommitStateRequest{JobId: "job-nope", Incarnation: 1, Snapshot: []string{"../..", ""}})
				wantCode(t, "garbage snapshot keys", err, codes.InvalidArgument, "../..")
			})

			t.Run("wrong role", func(t *testing.T) {
				conn := a.dial(t, a.execAddr)
				_, err := sluicev1.NewDriverClient(conn).ListJobs(ctx, &sluicev1.ListJobsRequest{})
				wantCode(t, "ListJobs at an executor", err, codes.Unimplemented)
				_, err = sluicev1.NewDriverClient(conn).RegisterExecutor(ctx, &sluicev1.RegisterExecutorRequest{ExecutorId: "e", Address: "a:1", Slots: 1})
				wantCode(t, "RegisterExecutor at an executor", err, codes.Unimplemented)
				ps, err := sluicev1.NewJobDriverClient(conn).PutState(ctx)
				if err == nil {
					_, err = ps.CloseAndRecv()
				}
				wantCode(t, "PutState at an executor", err, codes.Unimplemented)
			})

			a.healthy(t)
		})
	})
}

func TestAbuseShuffleService(t *testing.T) {
	noLeaks(t, func(t *testing.T) {
		t.Run("abuse", func(t *testing.T) {
			a := newAbuseCluster(t)
			ctx, cancel := context.WithTimeout(context.Background(), 2*abuseCallTimeout)
			defer cancel()
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			store := a.daemon.store
			// A small block (map 0, reduce 1) and a large one (map 1, reduce 0).
			if err := store.Write("job-s", 7, 0, records(t, mem, nil, []string{"a", "b"})); err != nil {
				t.Fatal(err)
			}
			large := make([]string, 200_000)
			for i := range large {
				large[i] = fmt.Sprintf("value-%08d-%s", i, strings.Repeat("z", 10))
			}
			if err := store.Write("job-s", 7, 1, records(t, mem, large)); err != nil {
				t.Fatal(err)
			}
			fetch := func(ctx context.Context, req *sluicev1.FetchBlockRequest) ([]byte, error) {
				stream, err := a.sc.FetchBlock(ctx, req)
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
						return nil, err
					}
					b = append(b, c.GetData()...)
				}
			}

			for _, id := range badIDs {
				_, err := fetch(ctx, &sluicev1.FetchBlockRequest{JobId: id, ShuffleId: 7})
				wantCode(t, fmt.Sprintf("job id %q", abbrev(id)), err, codes.InvalidArgument, "job id")
			}
			_, err := fetch(ctx, &sluicev1.FetchBlockRequest{})
			wantCode(t, "empty request", err, codes.InvalidArgument, "job id")
			for name, req := range map[string]*sluicev1.FetchBlockRequest{
				"negative shuffle": {JobId: "job-s", ShuffleId: -1},
				"negative map":     {JobId: "job-s", ShuffleId: 7, MapPartition: -1},
				"negative reduce":  {JobId: "job-s", ShuffleId: 7, ReducePartition: -1},
				"all min":          {JobId: "job-s", ShuffleId: math.MinInt64, MapPartition: math.MinInt32, ReducePartition: math.MinInt32},
			} {
				_, err := fetch(ctx, req)
				wantCode(t, name, err, codes.InvalidArgument, "shuffle") // which field: abuse_defects_test.go
			}
			for name, req := range map[string]*sluicev1.FetchBlockRequest{
				"unknown job":     {JobId: "job-none", ShuffleId: 7},
				"unknown shuffle": {JobId: "job-s", ShuffleId: math.MaxInt64},
				"unknown map":     {JobId: "job-s", ShuffleId: 7, MapPartition: math.MaxInt32},
			} {
				_, err := fetch(ctx, req)
				wantCode(t, name, err, codes.NotFound, "not on this executor")
			}
			// A reduce partition the map output has no block for is empty.
			if b, err := fetch(ctx, &sluicev1.FetchBlockRequest{JobId: "job-s", ShuffleId: 7, ReducePartition: math.MaxInt32}); err != nil || len(b) != 0 {
				t.Errorf("empty block: %d bytes, %v", len(b), err)
			}
			want, err := store.Read("job-s", 7, 1, 0)
			if err != nil || len(want) < 2*ChunkBytes {
				t.Fatalf("large block: %d bytes, %v", len(want), err)
			}
			// Cut half-way, cancelled, never read, many at once.
			var wg sync.WaitGroup
			for i := range 48 {
				wg.Go(func() {
					cctx, ccancel := context.WithCancel(ctx)
					defer ccancel()
					stream, err := a.sc.FetchBlock(cctx, &sluicev1.FetchBlockRequest{JobId: "job-s", ShuffleId: 7, MapPartition: 1})
					if err != nil {
						t.Errorf("fetch: %v", err)
						return
					}
					if i%2 == 0 {
						if _, err := stream.Recv(); err != nil {
							t.Errorf("first chunk: %v", err)
						}
					}
					ccancel()
				})
			}
			wg.Wait()
			for range 16 {
				wg.Go(func() {
					b, err := fetch(ctx, &sluicev1.FetchBlockRequest{JobId: "job-s", ShuffleId: 7, MapPartition: 1})
					if err != nil || !bytes.Equal(b, want) {
						t.Errorf("concurrent whole fetch: %d bytes, %v", len(b), err)
					}
				})
			}
			wg.Wait()
			// The block decodes after all that.
			b, err := fetch(ctx, &sluicev1.FetchBlockRequest{JobId: "job-s", ShuffleId: 7, MapPartition: 0, ReducePartition: 1})
			if err != nil {
				t.Fatal(err)
			}
			rec, err := DecodeIPC(b, mem)
			if err != nil || rec.NumRows() != 2 {
				t.Fatalf("decode: %v", err)
			}
			rec.Release()
			// Ending the job removes its blocks: NotFound afterwards.
			if _, err := a.ec.EndJob(ctx, &sluicev1.EndJobRequest{JobId: "job-s"}); err != nil {
				t.Fatal(err)
			}
			_, err = fetch(ctx, &sluicev1.FetchBlockRequest{JobId: "job-s", ShuffleId: 7})
			wantCode(t, "after EndJob", err, codes.NotFound, "not on this executor")
			a.healthy(t)
		})
	})
}

// abuseTaskServer serves a TaskServer (a job process's Executor service)
// over TCP on 127.0.0.1 with a graph that has one shuffle: ordinals,
// partitions and cached blocks are checked against it.
func abuseTaskServer(t *testing.T, secret Secret, mem memory.Allocator) (sluicev1.ExecutorClient, *scheduler.Job) {
	t.Helper()
	pairs := rdd.Map(rdd.Generate("gen", 3, func(p int, yield func(int) bool) {
		for i := range 10 {
			if !yield(p*10 + i) {
				return
			}
		}
	}), func(i int) rdd.KV[string, int64] { return rdd.KV[string, int64]{Key: fmt.Sprint(i % 4), Value: 1} })
	final := rdd.ReduceByKey(pairs, func(a, b int64) int64 { return a + b }, 2)
	job := &scheduler.Job{Final: final.Node(), BatchTime: time.Unix(2, 0)}
	ts := NewTaskServer(TaskServerConfig{
		Resolver: fixedResolver{Resolved{Final: final.Node(), Func: func(tc *rdd.TaskContext, p int) (arrow.Record, error) {
			var vals []rdd.KV[string, int64]
			if err := final.Iterate(tc, p, func(v rdd.KV[string, int64]) bool { vals = append(vals, v); return true }); err != nil {
				return nil, err
			}
			return rdd.Encode(tc.Alloc, final.Codec(), vals), nil
		}}},
		Shuffle: func(ShuffleInputs) rdd.ShuffleService { return rdd.NewMemShuffle() },
		Alloc:   mem,
	})
	addr := serve(t, secret.ServerOptions(nil), func(s *grpc.Server) { sluicev1.RegisterExecutorServer(s, ts) })
	return sluicev1.NewExecutorClient(dial(t, addr, secret.DialOptions()...)), job
}

func TestAbuseTaskServer(t *testing.T) {
	noLeaks(t, func(t *testing.T) {
		t.Run("abuse", func(t *testing.T) {
			secret := mustSecret(t, "the-right-cluster-secret")
			// Not a checked allocator: the map outputs stay in the
			// in-memory shuffle service, as they would until a job ends.
			ec, job := abuseTaskServer(t, secret, memory.NewGoAllocator())
			ctx, cancel := context.WithTimeout(context.Background(), 2*abuseCallTimeout)
			defer cancel()
			stages := scheduler.PlanStages(job.Final)
			good, err := Request("job-t", strings.Repeat("0", 64), nil, time.Unix(0, 0), &scheduler.Task{ID: 1, Job: job, Stage: stages, Partition: 0})
			if err != nil {
				t.Fatal(err)
			}
			mut := func(f func(r *sluicev1.TaskRequest)) *sluicev1.TaskRequest {
				r := &sluicev1.TaskRequest{}
				*r = sluicev1.TaskRequest{JobId: good.JobId, GraphFingerprint: good.GraphFingerprint, Shuffles: good.Shuffles, BatchTimeUnixNano: good.BatchTimeUnixNano}
				f(r)
				return r
			}
			for name, req := range map[string]*sluicev1.TaskRequest{
				"partition -1":              mut(func(r *sluicev1.TaskRequest) { r.Partition = -1 }),
				"partition max":             mut(func(r *sluicev1.TaskRequest) { r.Partition = math.MaxInt32 }),
				"map partition 3":           mut(func(r *sluicev1.TaskRequest) { r.ShuffleMap, r.Partition = true, 3 }),
				"stage node -1":             mut(func(r *sluicev1.TaskRequest) { r.ShuffleMap, r.StageNode = true, -1 }),
				"stage node max":            mut(func(r *sluicev1.TaskRequest) { r.ShuffleMap, r.StageNode = true, math.MaxInt32 }),
				"shuffle ordinal -1":        mut(func(r *sluicev1.TaskRequest) { r.Shuffles = []*sluicev1.ShuffleInput{{Ordinal: -1}} }),
				"shuffle ordinal 1":         mut(func(r *sluicev1.TaskRequest) { r.Shuffles = []*sluicev1.ShuffleInput{{Ordinal: 1, ShuffleId: 9}} }),
				"cached ordinal -1":         mut(func(r *sluicev1.TaskRequest) { r.Cached = []*sluicev1.CachedBlock{{Ordinal: -1}} }),
				"cached ordinal max":        mut(func(r *sluicev1.TaskRequest) { r.Cached = []*sluicev1.CachedBlock{{Ordinal: math.MaxInt32}} }),
				"cached partition negative": mut(func(r *sluicev1.TaskRequest) { r.Cached = []*sluicev1.CachedBlock{{Ordinal: 0, Partition: -1}} }),
			} {
				_, err := ec.RunTask(ctx, req)
				wantCode(t, name, err, codes.InvalidArgument, "out of range")
			}
			// A fingerprint that is not the graph's: fatal, in the response.
			resp, err := ec.RunTask(ctx, mut(func(r *sluicev1.TaskRequest) { r.GraphFingerprint = "garbage" }))
			if err != nil || !resp.GetFatal() || !strings.Contains(resp.GetError(), "graph mismatch") {
				t.Errorf("bad fingerprint: %v %v", resp, err)
			}
			// The reduce task with map outputs nowhere (no locations, garbage
			// addresses): a fetch failure naming the shuffle, not a hang.
			for name, locs := range map[string][]string{"none": nil, "garbage": {"\x00::bad", "", "256.0.0.1:99999"}} {
				req := mut(func(r *sluicev1.TaskRequest) {
					r.Shuffles = []*sluicev1.ShuffleInput{{Ordinal: 0, ShuffleId: 5, MapLocations: locs}}
				})
				resp, err := ec.RunTask(ctx, req)
				if err != nil || !resp.GetFetchFailed() || resp.GetFetchFailedShuffle() != 5 {
					t.Errorf("reduce with map outputs %s: %v %v", name, resp, err)
				}
			}
			// Every map task runs; cancelled calls end.
			var wg sync.WaitGroup
			for p := range 3 {
				for range 8 {
					wg.Go(func() {
						resp, err := ec.RunTask(ctx, mut(func(r *sluicev1.TaskRequest) {
							r.ShuffleMap, r.StageNode, r.Partition = true, 0, int32(p)
							r.Shuffles = []*sluicev1.ShuffleInput{{Ordinal: 0, ShuffleId: 5}}
						}))
						if err != nil || resp.GetError() != "" {
							t.Errorf("map task %d: %v %v", p, resp, err)
						}
					})
				}
			}
			wg.Wait()
			cctx, ccancel := context.WithCancel(ctx)
			ccancel()
			_, err = ec.RunTask(cctx, good)
			wantCode(t, "cancelled", err, codes.Canceled)
			// CommitState through a resolver that accepts it.
			if _, err := ec.CommitState(ctx, &sluicev1.CommitStateRequest{JobId: "job-t", BatchTimeUnixNano: math.MinInt64,
				Reports: map[string][]byte{"": nil, "a/b/c/d": {0xff, 0x00}}}); err != nil {
				t.Errorf("CommitState: %v", err)
			}
			if _, err := ec.KillTask(ctx, &sluicev1.KillTaskRequest{}); status.Code(err) != codes.Unimplemented {
				t.Errorf("KillTask at a job process: %v", err)
			}
		})
	})
}

var _ = errors.New

// Uploads that are started and never finished hold a call each: past the
// per-host cap further calls are refused with ResourceExhausted naming the
// bound, and when the clients give up every place, open file and
// temporary upload is given back.
func TestAbuseCallCapAndRelease(t *testing.T) {
	noLeaks(t, func(t *testing.T) {
		t.Run("abuse", func(t *testing.T) {
			secret := mustSecret(t, "the-right-cluster-secret")
			state := t.TempDir()
			c, err := NewCoordinator(CoordinatorConfig{StateDir: state, Advertise: "127.0.0.1:1", Secret: secret, Log: quietLog()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			addr := serve(t, secret.ServerOptions(nil), func(s *grpc.Server) { sluicev1.RegisterDriverServer(s, c) })
			dc := sluicev1.NewDriverClient(dial(t, addr, secret.DialOptions()...))
			ctx, cancel := context.WithTimeout(context.Background(), 2*abuseCallTimeout)
			defer cancel()
			if _, err := dc.ListJobs(ctx, &sluicev1.ListJobsRequest{}); err != nil { // connected
				t.Fatal(err)
			}
			beforeFiles := openFiles()
			held, release := context.WithCancel(ctx)
			data := []byte("0123456789")
			h := &sluicev1.SubmitHeader{Sha256: shaOf(data), Size: int64(len(data)), Platform: here()}
			var streams []sluicev1.Driver_SubmitJobClient
			for range MaxCallsPerPeer + 20 {
				s, err := dc.SubmitJob(held)
				if err != nil {
					t.Fatal(err)
				}
				s.Send(hdr(h))
				streams = append(streams, s)
			}
			eventually(t, "the per-host cap is reached", func() bool {
				_, err := dc.ListJobs(ctx, &sluicev1.ListJobsRequest{})
				return status.Code(err) == codes.ResourceExhausted
			})
			_, err = dc.ListJobs(ctx, &sluicev1.ListJobsRequest{})
			wantCode(t, "a call past the cap", err, codes.ResourceExhausted, "too many calls", strconv.Itoa(MaxCallsPerPeer))
			if n := len(incoming(t, filepath.Join(state, "binaries"))); n == 0 || n > MaxCallsPerPeer {
				t.Errorf("%d uploads in progress, want between 1 and %d", n, MaxCallsPerPeer)
			}
			release()
			for _, s := range streams {
				if _, err := s.CloseAndRecv(); status.Code(err) != codes.Canceled && status.Code(err) != codes.ResourceExhausted {
					t.Errorf("an abandoned upload: %v", err)
				}
			}
			eventually(t, "the places are given back", func() bool {
				_, err := dc.ListJobs(ctx, &sluicev1.ListJobsRequest{})
				return err == nil
			})
			eventually(t, "no upload left", func() bool { return len(incoming(t, filepath.Join(state, "binaries"))) == 0 })
			eventually(t, fmt.Sprintf("the uploads' files are closed (%d open before)", beforeFiles), func() bool { return openFiles() <= beforeFiles })
			// A whole call's worth of places again.
			var wg sync.WaitGroup
			for range MaxCallsPerPeer {
				wg.Go(func() {
					if _, err := dc.ListJobs(ctx, &sluicev1.ListJobsRequest{}); err != nil && status.Code(err) != codes.ResourceExhausted {
						t.Errorf("ListJobs: %v", err)
					}
				})
			}
			wg.Wait()
			if _, err := dc.ListJobs(ctx, &sluicev1.ListJobsRequest{}); err != nil {
				t.Errorf("ListJobs after all that: %v", err)
			}
		})
	})
}
