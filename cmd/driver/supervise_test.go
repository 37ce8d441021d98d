package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/cluster"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	"google.golang.org/grpc"
)

// headerDriver records the header of each submission and answers jobs and
// status with restarted jobs.
type headerDriver struct {
	sluicev1.UnimplementedDriverServer
	headers chan *sluicev1.SubmitHeader
}

func (d *headerDriver) SubmitJob(s sluicev1.Driver_SubmitJobServer) error {
	first, err := s.Recv()
	if err != nil {
		return err
	}
	for {
		if _, err := s.Recv(); err == io.EOF {
			break
		} else if err != nil {
			return err
		}
	}
	d.headers <- first.GetHeader()
	return s.SendAndClose(&sluicev1.SubmitJobResponse{JobId: "job-1"})
}

var restartedJobs = []*sluicev1.JobInfo{
	{JobId: "job-x-1", Name: "plain", State: "finished", Attempt: 1},
	{JobId: "job-x-2", Name: "again", State: "running", Attempt: 3, Supervise: true},
}

func (d *headerDriver) ListExecutors(context.Context, *sluicev1.ListExecutorsRequest) (*sluicev1.ListExecutorsResponse, error) {
	return &sluicev1.ListExecutorsResponse{Executors: []*sluicev1.ExecutorInfo{{ExecutorId: "e1", Slots: 2}}}, nil
}

func (d *headerDriver) ListJobs(context.Context, *sluicev1.ListJobsRequest) (*sluicev1.ListJobsResponse, error) {
	return &sluicev1.ListJobsResponse{Jobs: restartedJobs}, nil
}

func (d *headerDriver) JobStatus(_ context.Context, req *sluicev1.JobStatusRequest) (*sluicev1.JobInfo, error) {
	return restartedJobs[1], nil
}

// Kills: --supervise not sent with the submission (or sent without it);
// the attempt of a restarted job not shown by `driver jobs` and `driver
// status`, or shown for jobs never restarted.
func TestSuperviseFlagAndAttempts(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(cluster.Insecure().ServerOptions(nil)...)
	d := &headerDriver{headers: make(chan *sluicev1.SubmitHeader, 2)}
	sluicev1.RegisterDriverServer(srv, d)
	go srv.Serve(lis)
	defer srv.Stop()
	job := filepath.Join(t.TempDir(), "job")
	os.WriteFile(job, []byte("#!/bin/sh\nexit 0\n"), 0o755)
	addr := lis.Addr().String()
	ctx := context.Background()
	for _, supervise := range []bool{true, false} {
		args := []string{"submit", "--insecure", "--master", addr}
		if supervise {
			args = append(args, "--supervise")
		}
		if err := run(ctx, append(args, job, "--", "--x"), io.Discard, io.Discard); err != nil {
			t.Fatal(err)
		}
		if h := <-d.headers; h.GetSupervise() != supervise || strings.Join(h.GetArgs(), " ") != "--x" {
			t.Errorf("submit %v: header %v", args, h)
		}
	}
	var out bytes.Buffer
	if err := run(ctx, []string{"jobs", "--insecure", "--master", addr}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasSuffix(lines[0], "ATTEMPT") || !strings.HasSuffix(lines[1], " 1") || !strings.HasSuffix(lines[2], " 3") {
		t.Errorf("driver jobs:\n%s", out.String())
	}
	restartedJobs[1].Attempt = 1
	out.Reset()
	run(ctx, []string{"jobs", "--insecure", "--master", addr}, &out, io.Discard)
	if strings.Contains(out.String(), "ATTEMPT") {
		t.Errorf("driver jobs without restarted jobs shows attempts:\n%s", out.String())
	}
	restartedJobs[1].Attempt = 3
	out.Reset()
	if err := run(ctx, []string{"status", "--insecure", "--master", addr, "job-x-2"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out.String()); got != "job job-x-2 (again): running (attempt 3)" {
		t.Errorf("driver status: %q", got)
	}
}

func TestServeRefusesNegativeMaxRestarts(t *testing.T) {
	err := run(context.Background(), []string{"serve", "--insecure", "--state-dir", t.TempDir(), "--max-restarts", "-1"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--max-restarts") || exitCode(err) != 2 {
		t.Fatalf("--max-restarts -1: %v", err)
	}
}
