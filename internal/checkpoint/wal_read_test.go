package checkpoint

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestReadInputOfWhileTheLogIsCompacted: a job reads back one input of a
// batch (ReadInputOf) from task goroutines while the processing goroutine
// writes new batches, deletes old ones and compacts the file (which
// replaces the open database). Every read of a batch still in the log
// returns its bytes; a deleted batch reads as absent; a closed store
// fails cleanly. Run with -race: reads used to take the database pointer
// without the store's lock.
func TestReadInputOfWhileTheLogIsCompacted(t *testing.T) {
	old := compactMinBytes
	compactMinBytes = 0 // compact whenever half the file is free
	defer func() { compactMinBytes = old }()
	s := open(t, t.TempDir())
	at := func(n int) time.Time { return time.Unix(5000+int64(n), 0) }
	data := func(n int, name string) []byte {
		return append([]byte(fmt.Sprintf("%s-%d:", name, n)), bytes.Repeat([]byte{byte(n)}, 500_000)...)
	}
	write := func(n int) {
		if err := s.WriteInput(at(n), map[string][]byte{"0:queue": data(n, "0:queue"), "1:socket": data(n, "1:socket")}); err != nil {
			t.Error(err)
		}
	}
	const keep = 5
	for n := 1; n <= keep; n++ {
		write(n)
	}
	// Readers read the batches in [oldest, oldest+keep); the writer
	// deletes only below oldest after moving it.
	var mu sync.Mutex
	oldest := 1 // batches >= oldest are in the log
	done := make(chan struct{})
	var wg sync.WaitGroup
	for r := range 3 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				mu.Lock()
				n := oldest + (i+r)%keep
				mu.Unlock()
				got, ok, err := s.ReadInputOf(at(n), "1:socket")
				if err != nil {
					t.Error(err)
					return
				}
				if ok && !bytes.Equal(got, data(n, "1:socket")) {
					t.Errorf("batch %d read back %d bytes starting %q", n, len(got), got[:12])
					return
				}
			}
		})
	}
	compactions := 0
	for n := keep + 1; n <= 100; n++ {
		write(n)
		if n%20 != 0 {
			continue
		}
		// Twenty batches at once: over half the file is free, so it is
		// compacted.
		mu.Lock()
		oldest = n - keep + 1
		mu.Unlock()
		db := s.wal
		if err := s.DeleteInputThrough(at(n - keep)); err != nil {
			t.Fatal(err)
		}
		if s.wal != db {
			compactions++
		}
	}
	if compactions < 3 {
		t.Fatalf("the log was compacted %d times, want several", compactions)
	}
	close(done)
	wg.Wait()
	if got, ok, err := s.ReadInputOf(at(100), "0:queue"); err != nil || !ok || !bytes.Equal(got, data(100, "0:queue")) {
		t.Fatalf("batch 100: ok=%v err=%v", ok, err)
	}
	if _, ok, err := s.ReadInputOf(at(3), "0:queue"); err != nil || ok {
		t.Fatalf("deleted batch 3: ok=%v err=%v", ok, err)
	}
	if _, ok, err := s.ReadInputOf(at(100), "2:files"); err != nil || ok {
		t.Fatalf("an input batch 100 does not have: ok=%v err=%v", ok, err)
	}
	s.Close()
	if _, _, err := s.ReadInputOf(at(100), "0:queue"); err == nil {
		t.Fatal("a closed store read input")
	}
}
