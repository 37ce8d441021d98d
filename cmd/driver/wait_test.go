package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/cluster"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	"google.golang.org/grpc"
)

// growingDriver lists the executors of lists[i] on its i-th ListExecutors
// call (the last one from then on) and records the listings seen before
// each submission.
type growingDriver struct {
	countingDriver
	mu       sync.Mutex
	lists    [][]*sluicev1.ExecutorInfo
	calls    int
	atSubmit []int  // calls made before each submission
	onList   func() // called at each listing, if set
}

func (d *growingDriver) ListExecutors(context.Context, *sluicev1.ListExecutorsRequest) (*sluicev1.ListExecutorsResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	l := d.lists[min(d.calls, len(d.lists)-1)]
	d.calls++
	if d.onList != nil {
		d.onList()
	}
	return &sluicev1.ListExecutorsResponse{Executors: l}, nil
}

func (d *growingDriver) ListJobs(context.Context, *sluicev1.ListJobsRequest) (*sluicev1.ListJobsResponse, error) {
	return &sluicev1.ListJobsResponse{}, nil
}

func (d *growingDriver) SubmitJob(s sluicev1.Driver_SubmitJobServer) error {
	d.mu.Lock()
	d.atSubmit = append(d.atSubmit, d.calls)
	d.mu.Unlock()
	return d.countingDriver.SubmitJob(s)
}

func serveDriver(t *testing.T, d sluicev1.DriverServer) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(cluster.Insecure().ServerOptions(nil)...)
	sluicev1.RegisterDriverServer(srv, d)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// submit waits for --min-executors executors that are not draining before
// it sends the binary (a job's default partition count is the slots
// registered when it starts), gives up after --wait naming what it saw,
// and does not wait with --min-executors 0.
func TestSubmitWaitsForExecutors(t *testing.T) {
	job := filepath.Join(t.TempDir(), "job")
	os.WriteFile(job, []byte("\x7fELF then some bytes"), 0o755)
	one := &sluicev1.ExecutorInfo{ExecutorId: "e1", Slots: 1}
	two := &sluicev1.ExecutorInfo{ExecutorId: "e2", Slots: 1}
	draining := &sluicev1.ExecutorInfo{ExecutorId: "e3", Slots: 1, Draining: true}
	growing := [][]*sluicev1.ExecutorInfo{nil, {one}, {one, draining}, {one, draining}, {one, two, draining}}

	t.Run("waits", func(t *testing.T) {
		d := &growingDriver{lists: growing}
		var out, errOut bytes.Buffer
		err := run(context.Background(), []string{"submit", "--insecure", "--master", serveDriver(t, d), "--min-executors", "2", job}, &out, &errOut)
		if err != nil || strings.TrimSpace(out.String()) != "job-1" {
			t.Fatalf("submit: %v, printed %q", err, out.String())
		}
		if len(d.atSubmit) != 1 || d.atSubmit[0] != 5 {
			t.Errorf("submitted after %v listings, want once after 5 (the first with two executors not draining)", d.atSubmit)
		}
		if !strings.Contains(errOut.String(), "waiting up to 1m0s for 2 executor(s) to register (0 now)") {
			t.Errorf("stderr: %q", errOut.String())
		}
	})
	t.Run("default waits for one", func(t *testing.T) {
		d := &growingDriver{lists: growing}
		if err := run(context.Background(), []string{"submit", "--insecure", "--master", serveDriver(t, d), job}, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
			t.Fatal(err)
		}
		if len(d.atSubmit) != 1 || d.atSubmit[0] != 2 {
			t.Errorf("submitted after %v listings, want once after 2", d.atSubmit)
		}
	})
	t.Run("gives up", func(t *testing.T) {
		d := &growingDriver{lists: [][]*sluicev1.ExecutorInfo{{one, draining}}}
		addr := serveDriver(t, d)
		err := run(context.Background(), []string{"submit", "--insecure", "--master", addr, "--min-executors", "2", "--wait", "500ms", job}, &bytes.Buffer{}, &bytes.Buffer{})
		want := "submit: 1 executor(s) registered with the driver at " + addr + " after waiting 500ms; --min-executors=2"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("got %v, want %q", err, want)
		}
		if len(d.atSubmit) != 0 || d.calls < 2 {
			t.Errorf("%d submissions after %d listings; want none, after polling", len(d.atSubmit), d.calls)
		}
	})
	t.Run("zero does not wait", func(t *testing.T) {
		d := &growingDriver{lists: [][]*sluicev1.ExecutorInfo{nil}}
		if err := run(context.Background(), []string{"submit", "--insecure", "--master", serveDriver(t, d), "--min-executors", "0", job}, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
			t.Fatal(err)
		}
		if len(d.atSubmit) != 1 || d.calls != 0 {
			t.Errorf("%v submissions after %d listings; want one, without listing", d.atSubmit, d.calls)
		}
	})
}

// A driver that does not answer yet (started in the same script) is
// polled again until --wait, as executors that have not registered are.
func TestSubmitWaitsForADriverStarting(t *testing.T) {
	job := filepath.Join(t.TempDir(), "job")
	os.WriteFile(job, []byte("\x7fELF then some bytes"), 0o755)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	done := make(chan error, 1)
	var out bytes.Buffer
	go func() {
		done <- run(context.Background(), []string{"submit", "--insecure", "--master", addr, "--wait", "20s", job}, &out, &bytes.Buffer{})
	}()
	time.Sleep(700 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("submit ended before the driver listened: %v", err)
	default:
	}
	lis, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("the port was taken meanwhile: %v", err)
	}
	srv := grpc.NewServer(cluster.Insecure().ServerOptions(nil)...)
	d := &growingDriver{lists: [][]*sluicev1.ExecutorInfo{{{ExecutorId: "e1", Slots: 1}}}}
	sluicev1.RegisterDriverServer(srv, d)
	go srv.Serve(lis)
	defer srv.Stop()
	if err := <-done; err != nil || strings.TrimSpace(out.String()) != "job-1" {
		t.Fatalf("submit: %v, printed %q", err, out.String())
	}
	// Without waiting, an unreachable driver fails at once.
	err = run(context.Background(), []string{"submit", "--insecure", "--master", "127.0.0.1:1", "--wait", "0s", job}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "list the executors of the driver at 127.0.0.1:1") {
		t.Fatalf("unreachable driver, --wait 0s: %v", err)
	}
}

// closingListener closes the first connection it accepts, as a driver's
// port does while it is still starting (the client sees Unavailable), and
// hands on the next ones.
type closingListener struct {
	net.Listener
	closed bool
}

func (l *closingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil || l.closed {
			return c, err
		}
		l.closed = true
		c.Close()
	}
}

// submit --unless-running (a submit step run again by a script) also waits
// for a driver that is still starting, before it asks which jobs run.
func TestSubmitUnlessRunningWaitsForADriverStarting(t *testing.T) {
	job := filepath.Join(t.TempDir(), "demo")
	os.WriteFile(job, []byte("\x7fELF then some bytes"), 0o755)
	for _, tc := range []struct{ state, want string }{{"running", "job-0"}, {"failed", "job-1"}} {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := grpc.NewServer(cluster.Insecure().ServerOptions(nil)...)
		d := &listingDriver{name: "demo", state: tc.state}
		sluicev1.RegisterDriverServer(srv, d)
		go srv.Serve(&closingListener{Listener: lis})
		var out bytes.Buffer
		err = run(context.Background(), []string{"submit", "--insecure", "--master", lis.Addr().String(), "--wait", "30s", "--unless-running", job}, &out, &bytes.Buffer{})
		srv.Stop()
		if err != nil || strings.TrimSpace(out.String()) != tc.want {
			t.Errorf("a job %s, the driver's first connection closed: %v, printed %q; want %s", tc.state, err, out.String(), tc.want)
		}
	}
}

// The time a client call may take (clientTimeout) starts after the wait
// for executors: executors that came late in a long --wait did not leave
// the upload, or --unless-running's listing, a deadline already passed.
func TestSubmitCallsGetTheirTimeAfterTheWait(t *testing.T) {
	defer func(d time.Duration) { clientTimeout = d }(clientTimeout)
	clientTimeout = 2 * time.Second
	job := filepath.Join(t.TempDir(), "demo")
	os.WriteFile(job, []byte("\x7fELF then some bytes"), 0o755)
	// 15 listings without an executor: 14 polls 200 ms apart, longer
	// than clientTimeout.
	lists := make([][]*sluicev1.ExecutorInfo, 16)
	lists[15] = []*sluicev1.ExecutorInfo{{ExecutorId: "e1", Slots: 1}}
	for _, args := range [][]string{{job}, {"--unless-running", job}} {
		d := &growingDriver{lists: lists}
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"submit", "--insecure", "--master", serveDriver(t, d)}, args...), &out, &bytes.Buffer{})
		if err != nil || strings.TrimSpace(out.String()) != "job-1" || len(d.atSubmit) != 1 || d.atSubmit[0] != 16 {
			t.Errorf("submit %v, an executor after 16 listings: %v, printed %q, submitted after %v listings", args, err, out.String(), d.atSubmit)
		}
	}
}

// A binary rebuilt while submit waits for executors is sent as it is
// after the wait: its hash and its bytes agree (the driver refuses a
// mismatch), and the new bytes are what arrives.
func TestSubmitSendsTheBinaryAsItIsAfterTheWait(t *testing.T) {
	job := filepath.Join(t.TempDir(), "job")
	os.WriteFile(job, []byte("\x7fELF the first build"), 0o755)
	rebuilt := []byte("\x7fELF the second build, a longer one")
	d := &growingDriver{lists: [][]*sluicev1.ExecutorInfo{nil, {{ExecutorId: "e1", Slots: 1}}}}
	d.onList = func() { os.WriteFile(job, rebuilt, 0o755) }
	var out bytes.Buffer
	if err := run(context.Background(), []string{"submit", "--insecure", "--master", serveDriver(t, d), job}, &out, &bytes.Buffer{}); err != nil {
		t.Fatalf("submit of a binary rebuilt during the wait: %v", err)
	}
	if got := d.got.Load(); got != int64(len(rebuilt)) {
		t.Errorf("the driver received %d bytes, want the rebuilt binary's %d", got, len(rebuilt))
	}
}
