package dstream

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/sluicehq/sluice/rdd"
)

// DefaultMaxLineBytes is the default limit on one line of TextFileStream
// and TextFile: 1 MiB. Set another with MaxLineBytes.
const DefaultMaxLineBytes = 1 << 20

// FileOption is an optional setting of TextFileStream.
type FileOption func(*fileOpts)

type fileOpts struct {
	existing bool
	maxLine  int
}

// IncludeExisting makes TextFileStream also read the files already in the
// directory when the job starts (in its first batch). By default they are
// ignored, as Spark's file streams do.
func IncludeExisting() FileOption { return func(o *fileOpts) { o.existing = true } }

// MaxLineBytes sets the longest line TextFileStream reads (line end
// excluded); a longer line is skipped, with a warning and a count on the
// batch log line. n <= 0 means DefaultMaxLineBytes.
func MaxLineBytes(n int) FileOption { return func(o *fileOpts) { o.maxLine = n } }

// TextFileStream watches a directory and reads every new file in it as
// lines of text, one element per line.
//
// A file is read once, by name, in the first batch whose batch time is not
// before its modification time; a later change of the file (touched,
// rewritten in place, replaced under the same name) is not read again. A
// name that disappears from the directory is forgotten, so a file created
// again under it later is new. Files already in the directory when the job
// starts are ignored unless IncludeExisting is given.
//
// Files must appear atomically (write elsewhere on the same file system,
// then rename into dir); names starting with "." or "_" are ignored, so
// they can serve as temporary names. A file whose name ends in ".gz" is
// decompressed (gzip), as Spark's file streams do. A line longer than the limit
// (DefaultMaxLineBytes, or MaxLineBytes) is skipped, and a file that
// cannot be read is skipped; each is logged as a warning and counted on the
// batch log line (skipped_lines, skipped_files), and the job goes on.
func TextFileStream(ctx *Context, dir string, opts ...FileOption) *DStream[string] {
	o := fileOpts{maxLine: DefaultMaxLineBytes}
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	if o.maxLine <= 0 {
		o.maxLine = DefaultMaxLineBytes
	}
	seen := map[string]bool{} // names read (or ignored at start) and still present
	var figs *skipFigures
	in := newInput[string](ctx, "textFileStream", func(t time.Time) ([]arrow.Record, int64, error) {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return nil, 0, fmt.Errorf("list %s: %w", dir, err)
		}
		present := map[string]bool{}
		var names []string
		var skippedFiles int64
		for _, e := range ents {
			name := e.Name()
			if strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
				continue
			}
			if !e.Type().IsRegular() && e.Type()&fs.ModeSymlink == 0 {
				continue // directories, pipes, sockets, devices
			}
			present[name] = true
			if seen[name] {
				continue
			}
			path := filepath.Join(dir, name)
			info, err := os.Stat(path) // follows a symbolic link
			if err != nil {
				if _, lerr := os.Lstat(path); lerr != nil {
					delete(present, name) // removed meanwhile
					continue
				}
				// A dangling link, or a target this process may not see.
				seen[name] = true
				skippedFiles++
				ctx.logger().Warn("textFileStream: skipped an unreadable file", slog.String("batch", fmtTime(t)),
					slog.String("file", path), slog.Any("err", err))
				continue
			}
			if !info.Mode().IsRegular() {
				continue
			}
			if info.ModTime().After(t) {
				continue // a later batch reads it
			}
			seen[name] = true
			names = append(names, name)
		}
		for name := range seen {
			if !present[name] {
				delete(seen, name)
			}
		}
		sort.Strings(names)
		codec := rdd.CodecOf[string]()
		var recs []arrow.Record
		var n, skippedLines int64
		for _, name := range names {
			path := filepath.Join(dir, name)
			b := rdd.NewBuilder(ctx.cfg.Allocator, codec)
			long, err := readLines(path, o.maxLine, b.Append)
			if err != nil {
				b.Release()
				skippedFiles++
				ctx.logger().Warn("textFileStream: skipped an unreadable file", slog.String("batch", fmtTime(t)),
					slog.String("file", path), slog.Any("err", err))
				continue
			}
			if long > 0 {
				skippedLines += long
				ctx.logger().Warn("textFileStream: skipped lines longer than the limit (set it with dstream.MaxLineBytes)",
					slog.String("batch", fmtTime(t)), slog.String("file", path), slog.Int64("lines", long), slog.Int("max_line_bytes", o.maxLine))
			}
			n += int64(b.Len())
			recs = append(recs, b.NewRecord())
			b.Release()
		}
		figs.set(t, skippedFiles, skippedLines)
		return recs, n, nil
	})
	figs = &skipFigures{}
	in.s.b.skipped = figs.take
	// With a checkpoint, each batch's write-ahead record keeps the names
	// read so far, so a restarted job reads exactly the files that came
	// after them, including those that arrived while it was down.
	in.extra = func(time.Time) []byte {
		names := make([]string, 0, len(seen))
		for name := range seen {
			names = append(names, name)
		}
		sort.Strings(names)
		var b []byte
		for _, name := range names {
			b = binary.BigEndian.AppendUint32(b, uint32(len(name)))
			b = append(b, name...)
		}
		return b
	}
	in.restoreExtra = func(_ time.Time, b []byte) (int64, error) {
		clear(seen)
		for len(b) > 0 {
			if len(b) < 4 || uint64(len(b)-4) < uint64(binary.BigEndian.Uint32(b)) {
				return 0, fmt.Errorf("file names truncated")
			}
			n := binary.BigEndian.Uint32(b)
			seen[string(b[4:4+n])] = true
			b = b[4+n:]
		}
		return -1, nil
	}
	in.startFn = func() error {
		st, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("directory %s: %w (create it before starting the job)", dir, err)
		}
		if !st.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		if !o.existing {
			ents, err := os.ReadDir(dir)
			if err != nil {
				return fmt.Errorf("list %s: %w", dir, err)
			}
			for _, e := range ents {
				seen[e.Name()] = true
			}
		}
		return nil
	}
	return in.s
}

// skipFigures holds what a source skipped per batch, until the batch log
// line takes it.
type skipFigures struct {
	mu    sync.Mutex
	files map[time.Time]int64
	lines map[time.Time]int64
}

func (f *skipFigures) set(t time.Time, files, lines int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.files == nil {
		f.files, f.lines = map[time.Time]int64{}, map[time.Time]int64{}
	}
	f.files[t] += files
	f.lines[t] += lines
}

// take returns and forgets the figures of batch t.
func (f *skipFigures) take(t time.Time) (files, lines int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for bt := range f.files {
		if bt.Equal(t) {
			files, lines = f.files[bt], f.lines[bt]
			delete(f.files, bt)
			delete(f.lines, bt)
		} else if bt.Before(t) {
			delete(f.files, bt)
			delete(f.lines, bt)
		}
	}
	return files, lines
}

// describeSkipped adds to b's input descriptions what each source that
// skips input (files that could not be read, lines longer than the limit)
// skipped in the batch, and forgets it; it returns the batch log line's
// sums (none when the job has no such source).
func (c *Context) describeSkipped(b *batch) []any {
	var files, lines int64
	some := false
	for i := range b.inputs {
		in := &b.inputs[i]
		for _, s := range c.streams {
			if s.skipped == nil || s.name != in.Stream {
				continue
			}
			f, l := s.skipped(b.time)
			in.Attrs = append(in.Attrs, slog.Int64("skipped_files", f), slog.Int64("skipped_lines", l))
			files, lines, some = files+f, lines+l, true
		}
	}
	if !some {
		return nil
	}
	return []any{slog.Int64("skipped_files", files), slog.Int64("skipped_lines", lines)}
}

func (c *Context) logger() *slog.Logger {
	if c.log != nil {
		return c.log
	}
	if c.cfg.Logger != nil {
		return c.cfg.Logger
	}
	return slog.Default()
}

// readLines calls each for every line of the file at path, without its line
// end ("\n" or "\r\n"), skipping lines longer than maxLine bytes; it returns
// how many it skipped.
func readLines(path string, maxLine int, each func(string)) (skipped int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var src io.Reader = f
	if strings.HasSuffix(path, ".gz") { // as Hadoop's TextInputFormat: by extension
		z, err := gzip.NewReader(f)
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", path, err)
		}
		defer z.Close()
		src = z
	}
	r := bufio.NewReaderSize(src, 64<<10)
	var line []byte
	tooLong := false
	for {
		chunk, err := r.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(chunk) > maxLine+2 { // room for "\r\n"
				tooLong, line = true, line[:0]
			} else {
				line = append(line, chunk...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return skipped, fmt.Errorf("read %s: %w", path, err)
		}
		atEOF := err != nil
		if atEOF && len(chunk) == 0 && len(line) == 0 && !tooLong {
			return skipped, nil
		}
		s := strings.TrimSuffix(strings.TrimSuffix(string(line), "\n"), "\r")
		switch {
		case tooLong, len(s) > maxLine:
			skipped++
		default:
			each(s)
		}
		line, tooLong = line[:0], false
		if atEOF {
			return skipped, nil
		}
	}
}
