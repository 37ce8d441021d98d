package dstream_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/dstream/dstreamtest"
	"github.com/sluicehq/sluice/rdd"
)

type clickKVs = []dstream.KV[string, int]

// show sorts the printed form of a batch's elements.
func show[T any](vals []T) []string {
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = fmt.Sprint(v)
	}
	slices.Sort(out)
	return out
}

func TestDatasetJoins(t *testing.T) {
	h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second})
	clicks := dstreamtest.Input(h, clickKVs{dstream.KVOf("u1", 1), dstream.KVOf("u3", 1)}, clickKVs{dstream.KVOf("u2", 1), dstream.KVOf("u1", 1)})
	users := dstream.Parallelize(h.Ctx, []dstream.KV[string, string]{dstream.KVOf("u1", "ann"), dstream.KVOf("u2", "bob")})
	join := dstreamtest.Output(h, dstream.Join(clicks, users.Stream()))
	left := dstreamtest.Output(h, dstream.LeftOuterJoin(clicks, users.Stream()))
	cg := dstreamtest.Output(h, dstream.CoGroup(users.Stream(), clicks, dstream.Partitions(3)))
	// A window slides every 2 batches; the dataset's stream follows it.
	win := dstreamtest.Output(h, dstream.Join(dstream.Window(clicks, 2*time.Second, 2*time.Second), users.Stream()))
	extra := dstream.Parallelize(h.Ctx, clickKVs{dstream.KVOf("u9", 9)})
	uni := dstreamtest.Output(h, dstream.Union(extra.Stream(), dstream.Window(clicks, 2*time.Second, 2*time.Second)))
	h.Run(2)
	if uni.Has(0) {
		t.Errorf("the union with a window produced at batch 0, not a slide time")
	}
	if got := show(uni.Batch(1)); !slices.Equal(got, []string{"{u1 1}", "{u1 1}", "{u2 1}", "{u3 1}", "{u9 9}"}) {
		t.Errorf("union batch 1: %v", got)
	}
	if got := show(join.Batch(0)); !slices.Equal(got, []string{"{u1 {1 ann}}"}) {
		t.Errorf("join batch 0: %v", got)
	}
	if got := show(join.Batch(1)); !slices.Equal(got, []string{"{u1 {1 ann}}", "{u2 {1 bob}}"}) {
		t.Errorf("join batch 1: %v", got)
	}
	if got := show(left.Batch(0)); !slices.Equal(got, []string{"{u1 {1 Some(ann)}}", "{u3 {1 None}}"}) {
		t.Errorf("leftOuterJoin batch 0: %v", got)
	}
	if got := show(cg.Batch(0)); !slices.Equal(got, []string{"{u1 {[ann] [1]}}", "{u2 {[bob] []}}", "{u3 {[] [1]}}"}) {
		t.Errorf("cogroup batch 0: %v", got)
	}
	if win.Has(0) {
		t.Errorf("the windowed join produced at batch 0, not a slide time")
	}
	if got := show(win.Batch(1)); !slices.Equal(got, []string{"{u1 {1 ann}}", "{u1 {1 ann}}", "{u2 {1 bob}}"}) {
		t.Errorf("windowed join batch 1: %v", got)
	}
}

// TestRDDJoinsInTransform: the RDD-level joins, inside Transform, with a
// Dataset's RDD.
func TestRDDJoinsInTransform(t *testing.T) {
	h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second})
	clicks := dstreamtest.Input(h, clickKVs{dstream.KVOf("u1", 1), dstream.KVOf("u3", 1)})
	users := dstream.Parallelize(h.Ctx, []dstream.KV[string, string]{dstream.KVOf("u1", "ann"), dstream.KVOf("u2", "bob")}, dstream.Partitions(2))
	type click = dstream.KV[string, int]
	join := dstreamtest.Output(h, dstream.Transform(clicks, func(_ time.Time, r *rdd.RDD[click]) *rdd.RDD[dstream.KV[string, dstream.Pair[int, string]]] {
		return rdd.Join(r, users.RDD(), 2)
	}))
	left := dstreamtest.Output(h, dstream.Transform(clicks, func(_ time.Time, r *rdd.RDD[click]) *rdd.RDD[dstream.KV[string, dstream.Pair[int, dstream.Option[string]]]] {
		return rdd.LeftOuterJoin(r, users.RDD(), 2)
	}))
	right := dstreamtest.Output(h, dstream.Transform(clicks, func(_ time.Time, r *rdd.RDD[click]) *rdd.RDD[dstream.KV[string, dstream.Pair[dstream.Option[int], string]]] {
		return rdd.RightOuterJoin(r, users.RDD(), 2)
	}))
	full := dstreamtest.Output(h, dstream.Transform(clicks, func(_ time.Time, r *rdd.RDD[click]) *rdd.RDD[dstream.KV[string, dstream.Pair[dstream.Option[int], dstream.Option[string]]]] {
		return rdd.FullOuterJoin(r, users.RDD(), 3)
	}))
	h.Run(1)
	for _, tc := range []struct {
		name string
		got  []string
		want []string
	}{
		{"join", show(join.Batch(0)), []string{"{u1 {1 ann}}"}},
		{"leftOuterJoin", show(left.Batch(0)), []string{"{u1 {1 Some(ann)}}", "{u3 {1 None}}"}},
		{"rightOuterJoin", show(right.Batch(0)), []string{"{u1 {Some(1) ann}}", "{u2 {None bob}}"}},
		{"fullOuterJoin", show(full.Batch(0)), []string{"{u1 {Some(1) Some(ann)}}", "{u2 {None Some(bob)}}", "{u3 {Some(1) None}}"}},
	} {
		if !slices.Equal(tc.got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	if users.Len() != 2 || users.RDD().NumPartitions() != 2 {
		t.Errorf("Len %d, partitions %d", users.Len(), users.RDD().NumPartitions())
	}
}

func TestTextFileDataset(t *testing.T) {
	path := filepath.Join(t.TempDir(), "blocked.txt")
	if err := os.WriteFile(path, []byte("spam\nham\r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second})
	blocked, err := dstream.TextFile(h.Ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	words := dstreamtest.Input(h, []string{"spam", "eggs", "ham"})
	tag := func(w string) dstream.KV[string, bool] { return dstream.KVOf(w, true) }
	hits := dstream.Join(dstream.Map(words, tag), dstream.Map(blocked.Stream(), tag))
	all := dstreamtest.Output(h, dstream.Union(words, blocked.Stream()))
	out := dstreamtest.Output(h, hits)
	h.Run(1)
	if got := show(out.Batch(0)); !slices.Equal(got, []string{"{ham {true true}}", "{spam {true true}}"}) {
		t.Errorf("got %v", got)
	}
	if got := show(all.Batch(0)); !slices.Equal(got, []string{"eggs", "ham", "ham", "spam", "spam"}) {
		t.Errorf("union: %v", got)
	}
	if _, err := dstream.TextFile(h.Ctx, filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: %v", err)
	}
}
