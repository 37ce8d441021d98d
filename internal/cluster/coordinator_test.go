package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"strings"
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

func coordinator(t *testing.T) sluicev1.DriverClient {
	t.Helper()
	secret := mustSecret(t, "the-right-cluster-secret")
	c, err := NewCoordinator(CoordinatorConfig{StateDir: t.TempDir(), Advertise: "127.0.0.1:1", Secret: secret,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, secret.ServerOptions(nil), func(s *grpc.Server) { sluicev1.RegisterDriverServer(s, c) })
	conn, err := grpc.NewClient(addr, secret.DialOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return sluicev1.NewDriverClient(conn)
}

func submitBytes(ctx context.Context, dc sluicev1.DriverClient, h *sluicev1.SubmitHeader, data []byte) error {
	stream, err := dc.SubmitJob(ctx)
	if err != nil {
		return err
	}
	if err := stream.Send(&sluicev1.SubmitJobRequest{Part: &sluicev1.SubmitJobRequest_Header{Header: h}}); err != nil {
		return err
	}
	stream.Send(&sluicev1.SubmitJobRequest{Part: &sluicev1.SubmitJobRequest_Data{Data: data}})
	_, err = stream.CloseAndRecv()
	return err
}

func TestSubmitRefusals(t *testing.T) {
	ctx := context.Background()
	dc := coordinator(t)
	if _, err := dc.RegisterExecutor(ctx, &sluicev1.RegisterExecutorRequest{ExecutorId: "e", Address: "127.0.0.1:2", Slots: 1,
		Platform: &sluicev1.Platform{Goos: "linux", Goarch: "amd64"}}); err != nil {
		t.Fatal(err)
	}
	data := []byte("#!/bin/sh\nexit 0\n")
	sum := sha256.Sum256(data)
	sha := hex.EncodeToString(sum[:])
	err := submitBytes(ctx, dc, &sluicev1.SubmitHeader{Sha256: sha, Size: int64(len(data)), Platform: &sluicev1.Platform{Goos: "windows", Goarch: "arm64"}}, data)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "GOOS=linux GOARCH=amd64 CGO_ENABLED=0 go build") {
		t.Fatalf("wrong platform: %v", err)
	}
	bad := sha256.Sum256([]byte("other"))
	err = submitBytes(ctx, dc, &sluicev1.SubmitHeader{Sha256: hex.EncodeToString(bad[:]), Size: int64(len(data)), Platform: &sluicev1.Platform{Goos: "linux", Goarch: "amd64"}}, data)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "hash mismatch") {
		t.Fatalf("hash mismatch: %v", err)
	}
	err = submitBytes(ctx, dc, &sluicev1.SubmitHeader{Sha256: sha, Size: MaxBinaryBytes + 1}, data)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("oversized: %v", err)
	}
	if _, err := dc.JobStatus(ctx, &sluicev1.JobStatusRequest{JobId: "nope"}); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown job: %v", err)
	}
	// Heartbeats from an unknown epoch are told to register again.
	hb, err := dc.Heartbeat(ctx, &sluicev1.HeartbeatRequest{ExecutorId: "e", Epoch: 99})
	if err != nil || !hb.GetReregister() {
		t.Fatalf("stale heartbeat: %v %v", hb, err)
	}
}

type fixedResolver struct{ r Resolved }

func (f fixedResolver) Resolve(context.Context, TaskSpec) (Resolved, error) {
	return f.r, nil
}

func (fixedResolver) Commit(context.Context, time.Time, map[string][]byte, []string) error {
	return nil
}

func TestTaskServerRefusesAnotherGraph(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	driverSide := rdd.Map(rdd.Generate("gen", 2, func(int, func(int) bool) {}), func(i int) int { return i })
	executorSide := rdd.Filter(rdd.Generate("gen", 2, func(int, func(int) bool) {}), func(int) bool { return true })
	job := &scheduler.Job{Final: driverSide.Node(), BatchTime: time.Unix(2, 0)}
	task := &scheduler.Task{ID: 1, Job: job, Stage: scheduler.PlanStages(driverSide.Node()), Partition: 0}
	req, err := Request("job", strings.Repeat("0", 64), nil, time.Unix(0, 0), task)
	if err != nil {
		t.Fatal(err)
	}
	ts := NewTaskServer(TaskServerConfig{
		Resolver: fixedResolver{Resolved{Final: executorSide.Node(), Func: func(*rdd.TaskContext, int) (arrow.Record, error) { return nil, nil }}},
		Shuffle:  func(ShuffleInputs) rdd.ShuffleService { return rdd.NewMemShuffle() },
		Alloc:    mem,
	})
	resp, err := ts.RunTask(context.Background(), req)
	if err != nil || !strings.Contains(resp.GetError(), "graph mismatch") {
		t.Fatalf("got %v / %v", resp, err)
	}
	// The same graph runs.
	ts.cfg.Resolver = fixedResolver{Resolved{Final: driverSide.Node(), Func: func(*rdd.TaskContext, int) (arrow.Record, error) { return nil, nil }}}
	if resp, err := ts.RunTask(context.Background(), req); err != nil || resp.GetError() != "" {
		t.Fatalf("same graph: %v / %v", resp, err)
	}
}
