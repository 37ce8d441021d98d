package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/cluster"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	"google.golang.org/grpc"
)

// healthcheck answers for a serving driver (a real `driver serve`), and
// fails for a wrong secret and for a driver that is gone.
func TestHealthcheck(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	other := filepath.Join(dir, "other")
	os.WriteFile(secret, []byte("0123456789abcdef0123456789"), 0o600)
	os.WriteFile(other, []byte("fedcba9876543210fedcba9876"), 0o600)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--listen", addr, "--state-dir", filepath.Join(dir, "state"), "--secret-file", secret}, &bytes.Buffer{}, &bytes.Buffer{})
	}()
	var out bytes.Buffer
	deadline := time.Now().Add(20 * time.Second)
	for {
		out.Reset()
		err = run(context.Background(), []string{"healthcheck", "--master", addr, "--secret-file", secret}, &out, &out)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || !strings.Contains(out.String(), "answers: 0 jobs") {
		t.Fatalf("healthcheck of a serving driver: %v %q", err, out.String())
	}
	if err := run(context.Background(), []string{"healthcheck", "--master", addr, "--secret-file", other}, &out, &out); err == nil {
		t.Fatal("healthcheck with another secret: no error")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), []string{"healthcheck", "--master", addr, "--secret-file", secret}, &out, &out); err == nil {
		t.Fatal("healthcheck of a stopped driver: no error")
	}
}

// listingDriver lists one job and counts submissions.
type listingDriver struct {
	countingDriver
	name, state string
	submits     int
}

func (d *listingDriver) ListJobs(context.Context, *sluicev1.ListJobsRequest) (*sluicev1.ListJobsResponse, error) {
	return &sluicev1.ListJobsResponse{Jobs: []*sluicev1.JobInfo{{JobId: "job-0", Name: d.name, State: d.state}}}, nil
}

func (d *listingDriver) SubmitJob(s sluicev1.Driver_SubmitJobServer) error {
	d.submits++
	return d.countingDriver.SubmitJob(s)
}

// submit --unless-running submits nothing while a job of that name runs,
// and submits when the job of that name failed or has another name.
func TestSubmitUnlessRunning(t *testing.T) {
	job := filepath.Join(t.TempDir(), "demo")
	os.WriteFile(job, []byte("\x7fELF then some bytes"), 0o755)
	for _, tc := range []struct {
		name, state string
		want        string
		submits     int
	}{
		{"demo", "running", "job-0", 0},
		{"demo", "failed", "job-1", 1},
		{"other", "running", "job-1", 1},
	} {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := grpc.NewServer(cluster.Insecure().ServerOptions(nil)...)
		d := &listingDriver{name: tc.name, state: tc.state}
		sluicev1.RegisterDriverServer(srv, d)
		go srv.Serve(lis)
		var out bytes.Buffer
		err = run(context.Background(), []string{"submit", "--insecure", "--master", lis.Addr().String(), "--unless-running", job}, &out, &out)
		srv.Stop()
		if err != nil || strings.TrimSpace(out.String()) != tc.want || d.submits != tc.submits {
			t.Errorf("listed %s %s: %v, printed %q, %d submits; want %s and %d", tc.name, tc.state, err, out.String(), d.submits, tc.want, tc.submits)
		}
	}
}
