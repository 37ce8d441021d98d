package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testDaemon(t *testing.T) (*Daemon, string) {
	t.Helper()
	work := filepath.Join(t.TempDir(), "work")
	d, err := NewDaemon(DaemonConfig{DriverAddr: "127.0.0.1:1", Advertise: "127.0.0.1:2", WorkDir: work, Slots: 2,
		Secret: mustSecret(t, "the-right-cluster-secret"), Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	return d, work
}

var badIDs = []string{"", ".", "..", "a/b", "../x", "/abs", ".hidden", "a\\b", "a\x00b", strings.Repeat("x", 200)}

func TestBadIDsAreRefusedEverywhere(t *testing.T) {
	d, work := testDaemon(t)
	sentinel := filepath.Join(work, "shuffle", "keep")
	if err := os.WriteFile(sentinel, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	store, err := NewShuffleStore(filepath.Join(work, "shuffle"), mem)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, id := range badIDs {
		calls := map[string]error{}
		_, calls["RunTask"] = d.RunTask(ctx, &sluicev1.TaskRequest{JobId: id, BinarySha256: strings.Repeat("0", 64)})
		_, calls["EndJob"] = d.EndJob(ctx, &sluicev1.EndJobRequest{JobId: id})
		_, calls["CommitState"] = d.CommitState(ctx, &sluicev1.CommitStateRequest{JobId: id})
		calls["FetchBlock"] = (&ShuffleServer{Store: store}).FetchBlock(&sluicev1.FetchBlockRequest{JobId: id}, nil)
		calls["store.Write"] = store.Write(id, 1, 0, records(t, mem, []string{"a"}))
		_, calls["store.Read"] = store.Read(id, 1, 0, 0)
		calls["store.RemoveJob"] = store.RemoveJob(id)
		for name, err := range calls {
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("%s(%q): %v, want InvalidArgument", name, id, err)
			}
		}
		store.RemoveShuffles(id, 1)
	}
	for _, sha := range []string{"", ".", "..", "a/b", strings.Repeat("A", 64), strings.Repeat("0", 63)} {
		if err := checkSHA(sha); status.Code(err) != codes.InvalidArgument {
			t.Errorf("sha %q: %v", sha, err)
		}
		if _, err := (&Coordinator{cfg: CoordinatorConfig{StateDir: work}}).binaryPath(sha); status.Code(err) != codes.InvalidArgument {
			t.Errorf("coordinator binary %q: %v", sha, err)
		}
	}
	for _, dir := range []string{"binaries", "jobs", "shuffle"} {
		if _, err := os.Stat(filepath.Join(work, dir)); err != nil {
			t.Errorf("work directory damaged: %v", err)
		}
	}
	if _, err := os.Stat(sentinel); err != nil {
		t.Errorf("a file of the work directory was removed: %v", err)
	}
	for _, ok := range []string{"job-20260101T000000-1", "a", "A.b_c-9"} {
		if err := checkID("job id", ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
}

// A cached job binary that changed after it was stored is refused before
// it is executed, and deleted.
func TestTamperedCachedBinaryIsRefusedBeforeExec(t *testing.T) {
	d, work := testDaemon(t)
	marker := filepath.Join(t.TempDir(), "ran")
	script := func(what string) []byte {
		return []byte("#!/bin/sh\necho " + what + " > " + marker + "\nexit 3\n")
	}
	right := script("right")
	sum := sha256.Sum256(right)
	sha := hex.EncodeToString(sum[:])
	bin := filepath.Join(work, "binaries", sha)
	if err := os.WriteFile(bin, script("tampered"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := d.RunTask(ctx, &sluicev1.TaskRequest{JobId: "job-1", BinarySha256: sha})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(resp.GetError(), "hash mismatch") {
		t.Fatalf("task error %q, want a hash mismatch", resp.GetError())
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the tampered binary ran")
	}
	if _, err := os.Stat(bin); err == nil {
		t.Fatal("the tampered binary is still cached")
	}
	// The right bytes do run (the check is not refusing everything).
	if err := os.WriteFile(bin, right, 0o755); err != nil {
		t.Fatal(err)
	}
	resp, err = d.RunTask(ctx, &sluicev1.TaskRequest{JobId: "job-1", BinarySha256: sha})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(marker); strings.TrimSpace(string(b)) != "right" {
		t.Fatalf("the right binary did not run (task error %q)", resp.GetError())
	}
}
