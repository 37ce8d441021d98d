// Package seqjob is the job and the output readers of the checkpoint fault
// tests (dstream and kafka): input lines "KEY SEQ" with per-key sequence
// numbers, written as they come and folded into per-key state, both through
// the committing SaveAsTextFiles, so that loss, duplication and wrong state
// after a kill -9 and a restart are all visible in the files.
package seqjob

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/dstream"
)

// Build writes lines under out/lines-<batch> and each key's count and sum of
// sequence numbers ("KEY COUNT SUM") under out/state-<batch>, where the
// state is an UpdateStateByKey named "perkey".
func Build(lines *dstream.DStream[string], out string) {
	dstream.SaveAsTextFiles(lines, filepath.Join(out, "lines"), "")
	kv := dstream.Map(lines, func(l string) dstream.KV[string, int64] {
		k, s, _ := strings.Cut(l, " ")
		n, _ := strconv.ParseInt(s, 10, 64)
		return dstream.KV[string, int64]{Key: k, Value: n}
	})
	st := dstream.UpdateStateByKey(kv, "perkey", func(seqs []int64, s dstream.Pair[int64, int64], _ bool) (dstream.Pair[int64, int64], bool) {
		for _, n := range seqs {
			s.First++
			s.Second += n
		}
		return s, true
	})
	dstream.SaveAsTextFiles(dstream.Map(st, func(kv dstream.KV[string, dstream.Pair[int64, int64]]) string {
		return fmt.Sprintf("%s %d %d", kv.Key, kv.Value.First, kv.Value.Second)
	}), filepath.Join(out, "state"), "")
}

// BatchDirs returns the committed output directories of a sink by batch
// time (ms); a directory without its _SUCCESS marker fails the test.
func BatchDirs(t *testing.T, prefix string) map[int64]string {
	t.Helper()
	dirs, _ := filepath.Glob(prefix + "-*")
	out := map[int64]string{}
	for _, d := range dirs {
		ms, err := strconv.ParseInt(strings.TrimPrefix(d, prefix+"-"), 10, 64)
		if err != nil {
			continue // ._temporary, ._replaced
		}
		if _, err := os.Stat(filepath.Join(d, "_SUCCESS")); err != nil {
			t.Errorf("%s has no _SUCCESS: a partial batch is visible", d)
		}
		out[ms] = d
	}
	return out
}

// DirLines returns the non-empty lines of a batch directory's part files.
func DirLines(t *testing.T, dir string) []string {
	t.Helper()
	parts, _ := filepath.Glob(filepath.Join(dir, "part-*"))
	var lines []string
	for _, p := range parts {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if l != "" {
				lines = append(lines, l)
			}
		}
	}
	return lines
}
