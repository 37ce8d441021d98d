package checkpoint

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(Config{Dir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func meta(n int) Meta {
	return Meta{Job: fmt.Sprintf("job-generation-%04d", n), Zero: time.Unix(1000, 0).UTC(),
		Completed: time.Unix(1000+int64(n), 0).UTC(), Operators: []Operator{{Name: "counts", Type: "updateStateByKey[string,int]", Partitions: 4}}}
}

func saveN(t *testing.T, s *Store, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := s.SaveMeta(meta(i)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMetaGenerations(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	if _, ok, err := s.LoadMeta(); err != nil || ok {
		t.Fatalf("new directory: ok=%v err=%v, want nothing", ok, err)
	}
	saveN(t, s, 0, 7)
	s.Close()
	s = open(t, dir)
	defer s.Close()
	m, ok, err := s.LoadMeta()
	if err != nil || !ok || m.Job != meta(6).Job || !m.Completed.Equal(meta(6).Completed) {
		t.Fatalf("got %+v ok=%v err=%v, want generation 6", m, ok, err)
	}
	// Two kept per file: generations 3..6 remain.
	var gens []uint64
	for i, db := range s.meta {
		g, err := readGenerations(db, i)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range g {
			gens = append(gens, x.gen)
		}
	}
	if len(gens) != 4 {
		t.Fatalf("kept generations %v, want 4 (two per file)", gens)
	}
	// Numbering continues after a reopen.
	saveN(t, s, 7, 8)
	if s.gen != 8 {
		t.Fatalf("next generation %d, want 8", s.gen)
	}
}

// damage overwrites the bytes of marker in path with x's.
func damage(t *testing.T, path, marker string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(marker)) {
		t.Fatalf("%s does not hold %q", path, marker)
	}
	// Every copy: bbolt writes changed pages elsewhere, so an old copy
	// may remain in a free page.
	b = bytes.ReplaceAll(b, []byte(marker), bytes.Repeat([]byte("x"), len(marker)))
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestMetaFallsBackFromDamage(t *testing.T) {
	cases := []struct {
		name   string
		break_ func(t *testing.T, dir string)
		want   string // the job of the generation loaded
	}{
		{"newest record checksum", func(t *testing.T, dir string) {
			damage(t, filepath.Join(dir, "driver-1.db"), meta(5).Job) // generation 5 is odd
		}, meta(4).Job},
		{"one meta page of the newest file", func(t *testing.T, dir string) {
			f, err := os.OpenFile(filepath.Join(dir, "driver-1.db"), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			// bbolt keeps two meta pages (0 and 1); garbage over page 1's
			// header makes it use page 0, possibly one commit older.
			if _, err := f.WriteAt(bytes.Repeat([]byte{0xAB}, 64), int64(os.Getpagesize())); err != nil {
				t.Fatal(err)
			}
		}, ""},
		{"newest file garbage", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "driver-1.db"), bytes.Repeat([]byte("garbage!"), 4096), 0o644); err != nil {
				t.Fatal(err)
			}
		}, meta(4).Job},
		{"newest file truncated", func(t *testing.T, dir string) {
			if err := os.Truncate(filepath.Join(dir, "driver-1.db"), 1000); err != nil {
				t.Fatal(err)
			}
		}, meta(4).Job},
		{"newest file truncated mid data", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "driver-1.db")
			fi, _ := os.Stat(p)
			if err := os.Truncate(p, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
		}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir)
			saveN(t, s, 0, 6)
			s.Close()
			tc.break_(t, dir)
			var logs bytes.Buffer
			s, err := Open(Config{Dir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			m, ok, err := s.LoadMeta()
			if err != nil || !ok {
				t.Fatalf("ok=%v err=%v, want a fallback", ok, err)
			}
			if tc.want != "" && m.Job != tc.want {
				t.Fatalf("loaded %s, want %s", m.Job, tc.want)
			}
			if m.Job != meta(5).Job && m.Job != meta(4).Job && m.Job != meta(3).Job {
				t.Fatalf("loaded %s, want one of the newest generations", m.Job)
			}
			if m.Job != meta(5).Job && !strings.Contains(logs.String(), "WARN") {
				t.Fatalf("fell back to %s without a warning; log:\n%s", m.Job, logs.String())
			}
			// Saving works again, and the new generation is the newest.
			saveN(t, s, 10, 12)
			s.Close()
			s = open(t, dir)
			m, ok, err = s.LoadMeta()
			if err != nil || !ok || m.Job != meta(11).Job {
				t.Fatalf("after repair: %s ok=%v err=%v, want %s", m.Job, ok, err, meta(11).Job)
			}
		})
	}
}

func TestMetaRefusesWhenNothingIsGood(t *testing.T) {
	cases := []struct {
		name   string
		break_ func(t *testing.T, dir string)
	}{
		{"every record damaged", func(t *testing.T, dir string) {
			for i := 0; i < 4; i++ {
				damage(t, filepath.Join(dir, fmt.Sprintf("driver-%d.db", i%2)), meta(i).Job)
			}
		}},
		{"both files garbage", func(t *testing.T, dir string) {
			for i := range 2 {
				os.WriteFile(filepath.Join(dir, fmt.Sprintf("driver-%d.db", i)), bytes.Repeat([]byte{0x5A}, 20000), 0o644)
			}
		}},
		{"both files truncated to nothing", func(t *testing.T, dir string) {
			for i := range 2 {
				os.Truncate(filepath.Join(dir, fmt.Sprintf("driver-%d.db", i)), 0)
			}
		}},
		{"both files deleted", func(t *testing.T, dir string) {
			for i := range 2 {
				os.Remove(filepath.Join(dir, fmt.Sprintf("driver-%d.db", i)))
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir)
			saveN(t, s, 0, 4)
			s.Close()
			tc.break_(t, dir)
			for attempt := range 2 { // the refusal holds on every attempt
				s, err := Open(Config{Dir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
				if err == nil {
					_, ok, lerr := s.LoadMeta()
					s.Close()
					err = lerr
					if err == nil {
						t.Fatalf("attempt %d: LoadMeta ok=%v with nothing good, want a refusal", attempt, ok)
					}
				}
				if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "refusing to start from empty state") {
					t.Fatalf("attempt %d: error %v, want ErrDamaged naming %s and refusing", attempt, err, dir)
				}
			}
		})
	}
}

// TestHoldLock is not a test: the lock test runs it in a second process,
// which opens the store named by SLUICE_CKPT_HOLD and waits to be killed.
func TestHoldLock(t *testing.T) {
	dir := os.Getenv("SLUICE_CKPT_HOLD")
	if dir == "" {
		t.Skip("helper for TestSecondProcessFailsFast")
	}
	s, err := Open(Config{Dir: dir})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	defer s.Close()
	fmt.Println("locked")
	time.Sleep(time.Minute)
}

func TestSecondProcessFailsFast(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHoldLock$", "-test.v")
	cmd.Env = append(os.Environ(), "SLUICE_CKPT_HOLD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	buf := make([]byte, 4096)
	var seen string
	for !strings.Contains(seen, "locked") {
		n, err := out.Read(buf)
		if err != nil {
			t.Fatalf("helper process: %v (output %q)", err, seen)
		}
		seen += string(buf[:n])
	}
	start := time.Now()
	_, err = Open(Config{Dir: dir, LockTimeout: 200 * time.Millisecond})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "another --checkpoint directory") {
		t.Fatalf("Open of a directory held by process %d: %v, want ErrLocked naming %s and what to do", cmd.Process.Pid, err, dir)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("Open took %v: it must give up after its lock timeout", d)
	}
	// Once the holder is gone the directory opens.
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	s := open(t, dir)
	s.Close()
}

func TestSnapshots(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	defer s.Close()
	at := func(n int) time.Time { return time.Unix(2000+int64(n), 0) }
	write := func(n int) {
		t.Helper()
		if err := s.BeginSnapshot(at(n)); err != nil {
			t.Fatal(err)
		}
		for p := range 3 {
			if err := s.PutState(at(n), StatePart{Op: "counts", Part: p, Data: []byte(fmt.Sprintf("snapshot-%d-part-%d", n, p))}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.PutState(at(n), StatePart{Op: "other/op", Part: 0, Data: nil}); err != nil {
			t.Fatal(err)
		}
		if err := s.CommitSnapshot(at(n)); err != nil {
			t.Fatal(err)
		}
	}
	write(1)
	write(2)
	// An unfinished snapshot changes nothing.
	if err := s.BeginSnapshot(at(3)); err != nil {
		t.Fatal(err)
	}
	s.PutState(at(3), StatePart{Op: "counts", Part: 0, Data: []byte("partial")})
	s.AbortSnapshot()
	snaps := s.Snapshots()
	if len(snaps) != 2 || !snaps[0].Time.Equal(at(2)) || !snaps[1].Time.Equal(at(1)) {
		t.Fatalf("snapshots %+v, want 2 then 1", snaps)
	}
	write(4) // replaces the oldest (1)
	snaps = s.Snapshots()
	if len(snaps) != 2 || !snaps[0].Time.Equal(at(4)) || !snaps[1].Time.Equal(at(2)) {
		t.Fatalf("snapshots %+v, want 4 then 2", snaps)
	}
	parts, err := s.ReadSnapshot(at(4))
	if err != nil || len(parts) != 4 {
		t.Fatalf("read: %d parts, %v", len(parts), err)
	}
	for _, p := range parts {
		if p.Op == "counts" && string(p.Data) != fmt.Sprintf("snapshot-4-part-%d", p.Part) {
			t.Fatalf("part %+v", p)
		}
		if p.Op == "other/op" && len(p.Data) != 0 {
			t.Fatalf("part %+v", p)
		}
	}
	// A damaged record fails the read of that snapshot; the other stays.
	damage(t, snaps[0].File, "snapshot-4-part-1")
	if _, err := s.ReadSnapshot(at(4)); !errors.Is(err, ErrDamaged) {
		t.Fatalf("damaged snapshot read: %v, want ErrDamaged", err)
	}
	if _, err := s.ReadSnapshot(at(2)); err != nil {
		t.Fatal(err)
	}
	// A garbage file is skipped; the next snapshot replaces it.
	os.WriteFile(snaps[0].File, bytes.Repeat([]byte{1}, 10000), 0o644)
	if got := s.Snapshots(); len(got) != 1 || !got[0].Time.Equal(at(2)) {
		t.Fatalf("snapshots %+v with one file garbage, want only 2", got)
	}
	write(5)
	if got := s.Snapshots(); len(got) != 2 || !got[0].Time.Equal(at(5)) || !got[1].Time.Equal(at(2)) {
		t.Fatalf("snapshots %+v, want 5 then 2", got)
	}
}

func TestWriteAheadLog(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	at := func(n int) time.Time { return time.Unix(3000+int64(n), 0) }
	big := bytes.Repeat([]byte("line of input\n"), 20000) // ~280 KB per batch
	for n := 1; n <= 40; n++ {
		in := map[string][]byte{"socket": append([]byte(fmt.Sprintf("batch-%d:", n)), big...)}
		if n%5 == 0 {
			in = map[string][]byte{} // a batch with no input is still recorded
		}
		if err := s.WriteInput(at(n), in); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s = open(t, dir)
	defer s.Close()
	times, err := s.InputTimes()
	if err != nil || len(times) != 40 || !times[0].Equal(at(1)) || !times[39].Equal(at(40)) {
		t.Fatalf("times %v %v", len(times), err)
	}
	in, ok, err := s.ReadInput(at(7))
	if err != nil || !ok || !bytes.HasPrefix(in["socket"], []byte("batch-7:")) || len(in["socket"]) != len("batch-7:")+len(big) {
		t.Fatalf("read 7: ok=%v err=%v", ok, err)
	}
	if in, ok, err := s.ReadInput(at(10)); err != nil || !ok || len(in) != 0 {
		t.Fatalf("read 10: %v %v %v", in, ok, err)
	}
	if _, ok, _ := s.ReadInput(at(41)); ok {
		t.Fatal("batch 41 has no record")
	}
	before, _ := os.Stat(filepath.Join(dir, walFile))
	if err := s.DeleteInputThrough(at(38)); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(filepath.Join(dir, walFile))
	if after.Size()*3 > before.Size() {
		t.Fatalf("log %d bytes after deleting 38 of 40 batches (was %d): not compacted", after.Size(), before.Size())
	}
	times, _ = s.InputTimes()
	if len(times) != 2 || !times[0].Equal(at(39)) {
		t.Fatalf("after delete: %v", times)
	}
	if in, ok, err := s.ReadInput(at(39)); err != nil || !ok || !bytes.HasPrefix(in["socket"], []byte("batch-39:")) {
		t.Fatalf("read 39 after compaction: %v %v", ok, err)
	}
	// A damaged record is an error naming the batch, never empty input.
	s.WriteInput(at(50), map[string][]byte{"queue": []byte("record-of-batch-fifty")})
	s.Close()
	damage(t, filepath.Join(dir, walFile), "record-of-batch-fifty")
	s = open(t, dir)
	defer s.Close()
	if _, _, err := s.ReadInput(at(50)); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "batch") {
		t.Fatalf("damaged record: %v", err)
	}
}

func TestCompatible(t *testing.T) {
	was := []Operator{{"counts", "updateStateByKey[string,int64]", 4}, {"sessions", "mapWithState[string,int]", 4}}
	if err := Compatible(was, append(was, Operator{"new", "x", 1})); err != nil {
		t.Fatalf("adding an operator: %v", err)
	}
	for _, tc := range []struct {
		now  []Operator
		want string
	}{
		{[]Operator{was[0]}, `"sessions"`},
		{[]Operator{was[0], {"sessions", "mapWithState[string,string]", 4}}, `"sessions" changed type`},
		{[]Operator{{"counts", "updateStateByKey[string,int64]", 8}, was[1]}, `"counts" changed from 4 to 8 partitions`},
	} {
		if err := Compatible(was, tc.now); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Compatible(%v): %v, want %s", tc.now, err, tc.want)
		}
	}
}

// Stats reports the newest generation and snapshot as written, and the
// same figures, read back from the files, after a reopen.
func TestStats(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	if st := s.Stats(); st != (Stats{}) {
		t.Fatalf("new directory: stats %+v, want none", st)
	}
	before := time.Now()
	saveN(t, s, 0, 3)
	st := s.Stats()
	if st.Generation != 2 || !st.Completed.Equal(meta(2).Completed) || st.Written.Before(before) || st.MetaBytes < 20 || !st.SnapshotWritten.IsZero() {
		t.Fatalf("after 3 generations: %+v", st)
	}
	at := time.Unix(2000, 0)
	if err := s.BeginSnapshot(at); err != nil {
		t.Fatal(err)
	}
	if err := s.PutState(at, StatePart{Op: "counts", Part: 0, Data: bytes.Repeat([]byte("s"), 100_000)}); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitSnapshot(at); err != nil {
		t.Fatal(err)
	}
	st = s.Stats()
	if !st.Snapshot.Equal(at) || st.SnapshotBytes < 100_000 || st.SnapshotWritten.Before(before) || st.Generation != 2 {
		t.Fatalf("after a snapshot: %+v", st)
	}
	s.Close()
	if s.Stats() != st {
		t.Fatalf("stats changed at Close: %+v, was %+v", s.Stats(), st)
	}
	s = open(t, dir)
	defer s.Close()
	if _, _, err := s.LoadMeta(); err != nil {
		t.Fatal(err)
	}
	s.Snapshots()
	re := s.Stats()
	if re.Generation != st.Generation || !re.Completed.Equal(st.Completed) || re.MetaBytes != st.MetaBytes ||
		!re.Snapshot.Equal(st.Snapshot) || re.SnapshotBytes != st.SnapshotBytes {
		t.Fatalf("after a reopen: %+v, as written %+v", re, st)
	}
	if re.Written.IsZero() || re.SnapshotWritten.IsZero() {
		t.Fatalf("after a reopen: no write times (the files' modification times): %+v", re)
	}
}
