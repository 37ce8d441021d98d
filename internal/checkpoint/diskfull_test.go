package checkpoint

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mountTmpfs mounts a tmpfs of size bytes on a fresh directory, or skips
// the test (visibly) where mounting is not permitted.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("SKIPPED: disk-full test needs `mount -t tmpfs` (root): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill writes a file until the file system is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return
		}
	}
}

func TestDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: mounts a tmpfs")
	}
	dir := mountTmpfs(t, 4<<20)
	s := open(t, dir)
	at := func(n int) time.Time { return time.Unix(4000+int64(n), 0) }
	payload := func(n int) []byte {
		return append([]byte(fmt.Sprintf("batch-%d:", n)), bytes.Repeat([]byte("y"), 50000)...)
	}
	saveN(t, s, 0, 3)
	acked := 0
	for n := 1; n <= 10; n++ {
		if err := s.WriteInput(at(n), map[string][]byte{"socket": payload(n)}); err != nil {
			t.Fatal(err)
		}
		acked = n
	}
	filler := filepath.Join(dir, "filler")
	fill(t, filler)

	// Writes fail with a clear error; nothing acknowledged is lost.
	var walErr error
	for n := acked + 1; n <= acked+40 && walErr == nil; n++ {
		if walErr = s.WriteInput(at(n), map[string][]byte{"socket": payload(n)}); walErr == nil {
			acked = n
		}
	}
	if walErr == nil || !errors.Is(walErr, syscall.ENOSPC) || !strings.Contains(walErr.Error(), "write-ahead input of batch") {
		t.Fatalf("write on a full disk: %v, want ENOSPC naming the batch", walErr)
	}
	t.Logf("full disk: %v", walErr)
	var metaErr error
	for i := 3; i < 200 && metaErr == nil; i++ {
		metaErr = s.SaveMeta(Meta{Job: fmt.Sprintf("big-%d", i), Extra: map[string][]byte{"pad": bytes.Repeat([]byte{byte(i)}, 40000)}})
	}
	if metaErr == nil || !errors.Is(metaErr, syscall.ENOSPC) {
		t.Fatalf("metadata on a full disk: %v, want ENOSPC", metaErr)
	}
	snapErr := s.BeginSnapshot(at(1))
	if snapErr == nil {
		snapErr = s.PutState(at(1), StatePart{Op: "counts", Part: 0, Data: bytes.Repeat([]byte("z"), 200000)})
		if snapErr == nil {
			snapErr = s.CommitSnapshot(at(1))
		} else {
			s.AbortSnapshot()
		}
	}
	if snapErr == nil {
		t.Fatal("a 200 KB snapshot fit on a full disk")
	}
	for n := 1; n <= acked; n++ {
		in, ok, err := s.ReadInput(at(n))
		if err != nil || !ok || !bytes.Equal(in["socket"], payload(n)) {
			t.Fatalf("acknowledged batch %d after the failures: ok=%v err=%v", n, ok, err)
		}
	}

	// Space returns: writing works again, and everything survives a reopen.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteInput(at(acked+1), map[string][]byte{"socket": payload(acked + 1)}); err != nil {
		t.Fatalf("write after space returned: %v", err)
	}
	acked++
	if err := s.SaveMeta(meta(99)); err != nil {
		t.Fatalf("metadata after space returned: %v", err)
	}
	if err := s.BeginSnapshot(at(acked)); err != nil {
		t.Fatal(err)
	}
	if err := s.PutState(at(acked), StatePart{Op: "counts", Part: 0, Data: []byte("state")}); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitSnapshot(at(acked)); err != nil {
		t.Fatalf("snapshot after space returned: %v", err)
	}
	s.Close()
	s = open(t, dir)
	defer s.Close()
	m, ok, err := s.LoadMeta()
	if err != nil || !ok || m.Job != meta(99).Job {
		t.Fatalf("metadata after reopen: %s %v %v", m.Job, ok, err)
	}
	for n := 1; n <= acked; n++ {
		in, ok, err := s.ReadInput(at(n))
		if err != nil || !ok || !bytes.Equal(in["socket"], payload(n)) {
			t.Fatalf("batch %d after reopen: ok=%v err=%v", n, ok, err)
		}
	}
	if snaps := s.Snapshots(); len(snaps) != 1 || !snaps[0].Time.Equal(at(acked)) {
		t.Fatalf("snapshots %+v", snaps)
	}
}
