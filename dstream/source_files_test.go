package dstream_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/rdd"
)

// dirJob runs a TextFileStream over dir by hand. Batches are an hour apart
// and start at the current hour, so every file written by the test has a
// modification time before the next batch.
type dirJob struct {
	t    *testing.T
	ctx  *dstream.Context
	zero time.Time
	n    int
	log  *syncBuffer
	mu   sync.Mutex
	got  [][]string
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newDirJob(t *testing.T, dir string, opts ...dstream.FileOption) *dirJob {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	j := &dirJob{t: t, log: &syncBuffer{}, zero: time.Now().Truncate(time.Hour)}
	ctx, err := dstream.New(dstream.Config{AppName: "dir", BatchInterval: time.Hour, Master: "local[2]", Allocator: mem,
		Logger: slog.New(slog.NewTextHandler(j.log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	j.ctx = ctx
	dstream.ForeachRDD(dstream.TextFileStream(ctx, dir, opts...), func(b *dstream.Batch, r *rdd.RDD[string]) error {
		vals, err := dstream.Collect(b, r)
		if err != nil {
			return err
		}
		slices.Sort(vals)
		j.mu.Lock()
		j.got = append(j.got, vals)
		j.mu.Unlock()
		return nil
	})
	if err := ctx.StartManual(j.zero); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx.Stop()
		mem.AssertSize(t, 0)
	})
	return j
}

// batch runs the next batch and returns the lines it read.
func (j *dirJob) batch() []string {
	j.t.Helper()
	j.n++
	if _, err := j.ctx.RunBatch(context.Background(), j.zero.Add(time.Duration(j.n)*time.Hour)); err != nil {
		j.t.Fatalf("batch %d: %v", j.n, err)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.got[len(j.got)-1]
}

// lastBatchLine returns the log's last "batch" line.
func (j *dirJob) lastBatchLine() string {
	var last string
	for _, l := range strings.Split(j.log.String(), "\n") {
		if strings.Contains(l, "msg=batch ") {
			last = l
		}
	}
	return last
}

// put writes a file atomically (temporary name, then rename).
func put(t *testing.T, dir, name, content string) {
	t.Helper()
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func TestTextFileStreamReadsByNameOnce(t *testing.T) {
	dir := t.TempDir()
	j := newDirJob(t, dir)
	put(t, dir, "a.txt", "x\ny\n")
	if got := j.batch(); !slices.Equal(got, []string{"x", "y"}) {
		t.Fatalf("batch 1: %q", got)
	}
	// Touched: a newer modification time, same name.
	later := time.Now().Add(time.Second)
	if err := os.Chtimes(filepath.Join(dir, "a.txt"), later, later); err != nil {
		t.Fatal(err)
	}
	if got := j.batch(); len(got) != 0 {
		t.Fatalf("a touched file was read again: %q", got)
	}
	// Rewritten in place, and replaced under the same name.
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("x\ny\nz\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	put(t, dir, "b.txt", "b\n")
	if got := j.batch(); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("batch 3: %q, want only the new file", got)
	}
	put(t, dir, "b.txt", "b2\n")
	if got := j.batch(); len(got) != 0 {
		t.Fatalf("a file replaced under its name was read again: %q", got)
	}
	// Removed, then created again: a new file.
	if err := os.Remove(filepath.Join(dir, "b.txt")); err != nil {
		t.Fatal(err)
	}
	if got := j.batch(); len(got) != 0 {
		t.Fatalf("batch 5: %q", got)
	}
	put(t, dir, "b.txt", "b3\n")
	if got := j.batch(); !slices.Equal(got, []string{"b3"}) {
		t.Fatalf("batch 6: %q", got)
	}
}

func TestTextFileStreamExistingFiles(t *testing.T) {
	dir := t.TempDir()
	put(t, dir, "old.txt", "old\n")
	j := newDirJob(t, dir)
	put(t, dir, "new.txt", "new\n")
	if got := j.batch(); !slices.Equal(got, []string{"new"}) {
		t.Fatalf("default: %q, want the file present at start ignored", got)
	}

	dir2 := t.TempDir()
	put(t, dir2, "old.txt", "old\n")
	j2 := newDirJob(t, dir2, dstream.IncludeExisting())
	if got := j2.batch(); !slices.Equal(got, []string{"old"}) {
		t.Fatalf("IncludeExisting: %q", got)
	}
}

func TestTextFileStreamLongLine(t *testing.T) {
	dir := t.TempDir()
	j := newDirJob(t, dir)
	long := strings.Repeat("w", 2<<20) // 2 MiB, over the 1 MiB default
	put(t, dir, "a.txt", "before\n"+long+"\nafter\r\nlast")
	if got := j.batch(); !slices.Equal(got, []string{"after", "before", "last"}) {
		t.Fatalf("got %d lines, want the three short ones", len(got))
	}
	line := j.lastBatchLine()
	if !strings.Contains(line, "skipped_lines=1") || !strings.Contains(line, "skipped_files=0") {
		t.Fatalf("batch line: %s", line)
	}
	if !strings.Contains(j.log.String(), "level=WARN") || !strings.Contains(j.log.String(), "a.txt") {
		t.Fatalf("no warning naming the file:\n%s", j.log.String())
	}
	// The job goes on, and the next batch's line counts nothing.
	put(t, dir, "b.txt", "b\n")
	if got := j.batch(); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("next batch: %q", got)
	}
	if line := j.lastBatchLine(); !strings.Contains(line, "skipped_lines=0") {
		t.Fatalf("batch line: %s", line)
	}

	// A configured limit: lines of exactly the limit are kept.
	dir2 := t.TempDir()
	j2 := newDirJob(t, dir2, dstream.MaxLineBytes(4))
	put(t, dir2, "a.txt", "abcd\nabcde\nab\n")
	if got := j2.batch(); !slices.Equal(got, []string{"ab", "abcd"}) {
		t.Fatalf("MaxLineBytes(4): %q", got)
	}
}

func TestTextFileStreamUnreadableFile(t *testing.T) {
	dir := t.TempDir()
	j := newDirJob(t, dir)
	// A dangling link cannot be opened, whoever runs the test.
	if err := os.Symlink(filepath.Join(dir, "_nowhere"), filepath.Join(dir, "dangling.txt")); err != nil {
		t.Fatal(err)
	}
	want := int64(1)
	// A link to this process's memory opens but fails to read (EIO).
	if _, err := os.Stat("/proc/self/mem"); err == nil {
		if err := os.Symlink("/proc/self/mem", filepath.Join(dir, "mem.txt")); err != nil {
			t.Fatal(err)
		}
		want++
	}
	// A file without read permission (root reads it anyway).
	if os.Getuid() != 0 {
		put(t, dir, "secret.txt", "s\n")
		if err := os.Chmod(filepath.Join(dir, "secret.txt"), 0); err != nil {
			t.Fatal(err)
		}
		want++
	}
	put(t, dir, "good.txt", "g\n")
	if got := j.batch(); !slices.Equal(got, []string{"g"}) {
		t.Fatalf("got %q, want only the readable file", got)
	}
	line := j.lastBatchLine()
	if !strings.Contains(line, "skipped_files="+strconv.FormatInt(want, 10)) {
		t.Fatalf("batch line: %s (want skipped_files=%d)", line, want)
	}
	// Skipped once, not retried: the next batch skips nothing.
	if got := j.batch(); len(got) != 0 {
		t.Fatalf("batch 2: %q", got)
	}
	if line := j.lastBatchLine(); !strings.Contains(line, "skipped_files=0") {
		t.Fatalf("batch line: %s", line)
	}
}

// A ".gz" file is read decompressed, as Spark's file streams read it; one
// that is not gzip is skipped and counted, not read as text.
func TestTextFileStreamGzip(t *testing.T) {
	dir := t.TempDir()
	j := newDirJob(t, dir)
	var z bytes.Buffer
	w := gzip.NewWriter(&z)
	w.Write([]byte("one two\nthree\n"))
	w.Close()
	put(t, dir, "a.txt.gz", z.String())
	put(t, dir, "b.gz", "plain text, not gzip\n")
	put(t, dir, "c.txt", "four\n")
	if got := j.batch(); !slices.Equal(got, []string{"four", "one two", "three"}) {
		t.Fatalf("got %q, want the decompressed lines and the plain file's", got)
	}
	if line := j.lastBatchLine(); !strings.Contains(line, "skipped_files=1") {
		t.Fatalf("batch line: %s (want skipped_files=1, the file that is not gzip)", line)
	}
}

// Every input stream is described in the batch's Inputs (as Spark's
// streamIdToInputInfo): its name, its records, and for the directory
// source what it skipped, the figures of the batch log line. (Before, only
// planned sources were; found by a README audit of the batch API.)
func TestBatchInputsDescribeEverySource(t *testing.T) {
	dir := t.TempDir()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	ctx, err := dstream.New(dstream.Config{AppName: "inputs", BatchInterval: time.Hour, Master: "local[2]", Allocator: mem,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { ctx.Stop(); mem.AssertSize(t, 0) }()
	files := dstream.TextFileStream(ctx, dir, dstream.MaxLineBytes(4))
	q := dstream.NewQueue[string](ctx)
	dstream.Print(dstream.Union(files, q.Stream()), 1)
	zero := time.Now().Truncate(time.Hour)
	if err := ctx.StartManual(zero); err != nil {
		t.Fatal(err)
	}
	put(t, dir, "a.txt", "ab\nabcdefg\ncd\n")
	q.Push("x", "y", "z", "w")
	info, err := ctx.RunBatch(context.Background(), zero.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Inputs) != 2 {
		t.Fatalf("Inputs = %+v, want the directory and the queue", info.Inputs)
	}
	byOp := map[string]dstream.InputInfo{}
	for _, in := range info.Inputs {
		byOp[strings.SplitN(in.Stream, "@", 2)[0]] = in
	}
	d, qi := byOp["textFileStream"], byOp["queue"]
	if d.Records != 2 || qi.Records != 4 || info.InputRecords != 6 {
		t.Errorf("records: directory %d, queue %d, batch %d; want 2, 4, 6 (%+v)", d.Records, qi.Records, info.InputRecords, info.Inputs)
	}
	if got := fmt.Sprint(d.Attrs); got != "[skipped_files=0 skipped_lines=1]" {
		t.Errorf("the directory's attrs %s, want what it skipped", got)
	}
	if len(qi.Attrs) != 0 {
		t.Errorf("the queue's attrs %v, want none", qi.Attrs)
	}
}
