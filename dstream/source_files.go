package dstream

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/sluicehq/sluice/rdd"
)

// TextFileStream watches a directory and reads every new file in it as
// lines of text, one element per line. Each file is read by exactly one
// batch: the first whose batch time is not before the file's modification
// time. Files must appear atomically (write elsewhere on the same file
// system, then rename into dir); names starting with "." or "_" are
// ignored, so they can serve as temporary names.
func TextFileStream(ctx *Context, dir string) *DStream[string] {
	seen := map[string]time.Time{} // file name -> modification time when read
	in := newInput[string](ctx, "textFileStream", func(t time.Time) ([]arrow.Record, int64, error) {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return nil, 0, fmt.Errorf("list %s: %w", dir, err)
		}
		present := map[string]bool{}
		var names []string
		for _, e := range ents {
			name := e.Name()
			if !e.Type().IsRegular() || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
				continue
			}
			present[name] = true
			info, err := e.Info()
			if err != nil {
				continue // removed meanwhile
			}
			if mt, ok := seen[name]; ok && mt.Equal(info.ModTime()) {
				continue
			}
			if info.ModTime().After(t) {
				continue // a later batch reads it
			}
			seen[name] = info.ModTime()
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
		var n int64
		for _, name := range names {
			b := rdd.NewBuilder(ctx.cfg.Allocator, codec)
			err := readLines(filepath.Join(dir, name), b.Append)
			if err != nil {
				b.Release()
				for _, r := range recs {
					r.Release()
				}
				return nil, 0, err
			}
			n += int64(b.Len())
			recs = append(recs, b.NewRecord())
			b.Release()
		}
		return recs, n, nil
	})
	in.startFn = func() error {
		st, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("directory %s: %w (create it before starting the job)", dir, err)
		}
		if !st.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	return in.s
}

func readLines(path string, each func(string)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), maxLineBytes)
	for sc.Scan() {
		each(sc.Text())
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w (lines are limited to %d bytes)", path, err, maxLineBytes)
	}
	return nil
}
