package dstream_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/internal/checkpoint"
	"github.com/sluicehq/sluice/rdd"
)

// recorder keeps every output of a job by operator and batch time.
type recorder struct {
	mu   sync.Mutex
	outs map[string]map[time.Time][]string // name -> batch -> sorted values
	n    map[string]int                    // outputs per name, replays included
}

func newRecorder() *recorder {
	return &recorder{outs: map[string]map[time.Time][]string{}, n: map[string]int{}}
}

// put records one batch's output; a replayed batch must repeat it exactly.
func (r *recorder) put(t *testing.T, name string, at time.Time, vals []string) {
	slices.Sort(vals)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.outs[name] == nil {
		r.outs[name] = map[time.Time][]string{}
	}
	if old, ok := r.outs[name][at.UTC()]; ok && !slices.Equal(old, vals) {
		t.Errorf("%s at %v replayed with other output:\n  first %v\n  again %v", name, at, old, vals)
	}
	r.outs[name][at.UTC()] = vals
	r.n[name]++
}

func record[T any](t *testing.T, rec *recorder, name string, s *dstream.DStream[T]) {
	dstream.ForeachRDD(s, func(b *dstream.Batch, r *rdd.RDD[T]) error {
		vals, err := dstream.Collect(b, r)
		if err != nil {
			return err
		}
		strs := make([]string, len(vals))
		for i, v := range vals {
			strs[i] = fmt.Sprint(v)
		}
		rec.put(t, name, b.Time(), strs)
		return nil
	})
}

// statefulJob is a job with every kind of stateful operator over a Rate
// source (its batches depend only on the zero time and the batch index).
func statefulJob(t *testing.T, ctx *dstream.Context, rec *recorder, out string) {
	rate := dstream.Rate(ctx, 400) // 20 values per 50ms batch
	kv := dstream.Map(rate, func(v int64) dstream.KV[string, int64] {
		return dstream.KV[string, int64]{Key: fmt.Sprintf("k%d", v%7), Value: v}
	})
	sums := dstream.UpdateStateByKey(kv, "sums", func(vs []int64, s int64, _ bool) (int64, bool) {
		for _, v := range vs {
			s += v
		}
		return s, true
	})
	counts := dstream.MapWithState(kv, dstream.StateSpec[string, int64, int64, string]{
		Name: "counts",
		Func: func(k string, v dstream.Option[int64], st *dstream.State[int64]) (string, bool) {
			st.Update(st.Get() + 1)
			return fmt.Sprintf("%s#%d", k, st.Get()), true
		},
	})
	win := dstream.ReduceByKeyAndWindowInv(kv, "window", func(a, b int64) int64 { return a + b }, func(a, b int64) int64 { return a - b },
		200*time.Millisecond, 0, nil)
	ev := dstream.ReduceByKeyAndEventWindow(kv, dstream.EventTimeSpec[string, int64]{
		Name: "events",
		Timestamp: func(kv dstream.KV[string, int64]) time.Time {
			return time.Unix(0, 0).Add(time.Duration(kv.Value) * time.Millisecond)
		},
		Window:          100 * time.Millisecond,
		AllowedLateness: 20 * time.Millisecond,
		Reduce:          func(a, b int64) int64 { return a + b },
	})
	// Keys that go idle and time out: a new key every 5 batches, timing out
	// 3 batches after its last data, whatever partition it is in (a
	// restored key must wake up without any other change in its partition).
	idle := dstream.MapWithState(dstream.Map(rate, func(v int64) dstream.KV[string, int64] {
		return dstream.KV[string, int64]{Key: fmt.Sprintf("t%d", v/100), Value: v}
	}), dstream.StateSpec[string, int64, int64, string]{
		Name:    "idle",
		Timeout: 2 * ckptInterval,
		Func: func(k string, v dstream.Option[int64], st *dstream.State[int64]) (string, bool) {
			if st.IsTimingOut() {
				return fmt.Sprintf("%s timed out after %d", k, st.Get()), true
			}
			st.Update(st.Get() + 1)
			return "", false
		},
	})
	record(t, rec, "idle", idle.DStream)
	record(t, rec, "sums", sums)
	record(t, rec, "counts", counts.Snapshots())
	record(t, rec, "window", win)
	record(t, rec, "events", ev.DStream)
	dstream.SaveAsTextFiles(dstream.Map(sums, func(kv dstream.KV[string, int64]) string { return fmt.Sprintf("%s\t%d", kv.Key, kv.Value) }), out, "")
}

const ckptInterval = 50 * time.Millisecond

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// runUntil runs the job with the checkpoint directory until the recorder
// saw `batches` more outputs of "sums" (replays included), then stops it
// gracefully.
func runUntil(t *testing.T, dir string, rec *recorder, batches int) error {
	return runUntilOut(t, dir, filepath.Join(dir, "out", "sums"), rec, batches)
}

func runUntilOut(t *testing.T, dir, out string, rec *recorder, batches int) error {
	t.Helper()
	c, err := dstream.New(dstream.Config{AppName: "ckpt", BatchInterval: ckptInterval, Master: "local[2]", Parallelism: 3,
		Checkpoint: dir, CheckpointInterval: 3 * ckptInterval, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	statefulJob(t, c, rec, out)
	rec.mu.Lock()
	target := rec.n["sums"] + batches
	rec.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dstream.ForeachRDD(dstream.Rate(c, 1), func(b *dstream.Batch, _ *rdd.RDD[int64]) error {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if rec.n["sums"] >= target {
			cancel()
		}
		return nil
	})
	return c.Run(ctx)
}

func TestCheckpointRestartMatchesAnUninterruptedRun(t *testing.T) {
	dir, outDir := t.TempDir(), t.TempDir()
	rec := newRecorder()
	written := map[string]os.FileInfo{} // output directories after each run
	// At least 3 runs, and more until a restart replayed a batch (a run
	// that stops right at a snapshot replays nothing).
	replayed := func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return rec.n["sums"] > len(rec.outs["sums"])
	}
	for run := 0; run < 3 || (!replayed() && run < 10); run++ {
		if err := runUntilOut(t, dir, filepath.Join(outDir, "sums"), rec, 7); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		// A replayed batch leaves its committed output alone.
		dirs, _ := filepath.Glob(filepath.Join(outDir, "sums-*"))
		for _, d := range dirs {
			fi, err := os.Stat(filepath.Join(d, "part-00000"))
			if err != nil {
				t.Fatal(err)
			}
			if was, ok := written[d]; ok && !os.SameFile(was, fi) {
				t.Errorf("run %d rewrote the committed output %s", run, d)
			}
			written[d] = fi
		}
		time.Sleep(4 * ckptInterval) // missed batch times: caught up at the restart
	}
	n, refOut := checkAgainstReference(t, dir, rec)
	if len(written) != n {
		t.Errorf("%d output directories, want one per batch (%d)", len(written), n)
	}
	for d := range written {
		ref := filepath.Join(refOut, filepath.Base(d))
		for _, f := range []string{"part-00000", "part-00001", "part-00002", "_SUCCESS"} {
			got, err1 := os.ReadFile(filepath.Join(d, f))
			want, err2 := os.ReadFile(filepath.Join(ref, f))
			if err1 != nil || err2 != nil || string(got) != string(want) {
				t.Errorf("%s/%s after restarts: %q (%v), want %q (%v)", d, f, got, err1, want, err2)
			}
		}
	}
	if rec.n["sums"] <= n {
		t.Errorf("%d outputs for %d batches: no batch was replayed, the test proves nothing", rec.n["sums"], n)
	}
}

// checkAgainstReference runs the job uninterrupted, batch by batch, from the
// checkpoint's zero time, and compares every output rec saw; it returns the
// number of batches and the reference's output directory.
func checkAgainstReference(t *testing.T, dir string, rec *recorder) (int, string) {
	t.Helper()
	st, err := checkpoint.Open(checkpoint.Config{Dir: dir, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	m, ok, err := st.LoadMeta()
	st.Close()
	if err != nil || !ok {
		t.Fatalf("metadata: %v %v", ok, err)
	}
	if len(m.Snapshots) == 0 {
		t.Fatal("no snapshot was written")
	}

	// The reference: the same graph, uninterrupted, batch by batch.
	ref := newRecorder()
	c, err := dstream.New(dstream.Config{AppName: "ref", BatchInterval: ckptInterval, Master: "local[2]", Parallelism: 3, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	refOut := t.TempDir()
	statefulJob(t, c, ref, filepath.Join(refOut, "sums"))
	dstream.ForeachRDD(dstream.Rate(c, 1), func(*dstream.Batch, *rdd.RDD[int64]) error { return nil })
	if err := c.StartManual(m.Zero); err != nil {
		t.Fatal(err)
	}
	last := slices.MaxFunc(slices.Collect(maps.Keys(rec.outs["sums"])), time.Time.Compare)
	n := int(last.Sub(m.Zero) / ckptInterval)
	for k := 1; k <= n; k++ {
		if _, err := c.RunBatch(context.Background(), m.Zero.Add(time.Duration(k)*ckptInterval)); err != nil {
			t.Fatal(err)
		}
	}
	c.Stop()
	for name, byTime := range rec.outs {
		if len(byTime) != n {
			t.Errorf("%s: %d batch times output, want %d (every batch time from the first to %v)", name, len(byTime), n, last)
		}
		for at, got := range byTime {
			if want := ref.outs[name][at]; !slices.Equal(got, want) {
				t.Errorf("%s at %v after restarts:\n  got  %v\n  want %v", name, at, got, want)
			}
		}
	}
	t.Logf("%d batches, %d outputs of sums (replays included), snapshots %v", n, rec.n["sums"], m.Snapshots)
	return n, refOut
}

func TestCheckpointRefusesAnIncompatibleJob(t *testing.T) {
	dir := t.TempDir()
	if err := runUntil(t, dir, newRecorder(), 4); err != nil {
		t.Fatal(err)
	}
	c, err := dstream.New(dstream.Config{AppName: "ckpt", BatchInterval: ckptInterval, Parallelism: 3, Checkpoint: dir, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	kv := dstream.Map(dstream.Rate(c, 10), func(v int64) dstream.KV[string, string] { return dstream.KV[string, string]{Key: "k", Value: "v"} })
	st := dstream.UpdateStateByKey(kv, "sums", func(vs []string, s string, _ bool) (string, bool) { return s, true })
	dstream.ForeachRDD(st, func(*dstream.Batch, *rdd.RDD[dstream.KV[string, string]]) error { return nil })
	err = c.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), `"sums" changed type`) || !strings.Contains(err.Error(), `"counts"`) {
		t.Fatalf("incompatible restart: %v, want a refusal naming sums (type) and counts (missing)", err)
	}
}

func TestCheckpointDirectoryInUse(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: holds a directory for 3s")
	}
	dir := t.TempDir()
	rec := newRecorder()
	done := make(chan error, 1)
	go func() { done <- runUntil(t, dir, rec, 60) }() // 3s, past the 1s lock timeout
	for {
		rec.mu.Lock()
		n := rec.n["sums"]
		rec.mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	err := runUntil(t, dir, newRecorder(), 1)
	if !errors.Is(err, checkpoint.ErrLocked) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second run on the same directory: %v, want ErrLocked naming it", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestCheckpointDirectorySource restarts a job over a directory source:
// every line is counted once, including the files that arrived while the
// job was down.
func TestCheckpointDirectorySource(t *testing.T) {
	dir, in := t.TempDir(), t.TempDir()
	written := 0
	writeFile := func() {
		var b strings.Builder
		for i := range 10 {
			fmt.Fprintf(&b, "k%d\n", (written+i)%3)
		}
		name := fmt.Sprintf("%s/f%04d", in, written/10)
		if err := os.WriteFile(name+".tmp", []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(name+".tmp", name); err != nil {
			t.Fatal(err)
		}
		written += 10
	}
	var mu sync.Mutex
	perBatch := map[time.Time]int{}
	var state map[string]int
	run := func(until func() bool) {
		c, err := dstream.New(dstream.Config{AppName: "files", BatchInterval: ckptInterval, Master: "local[2]", Parallelism: 2,
			Checkpoint: dir, CheckpointInterval: 2 * ckptInterval, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		lines := dstream.TextFileStream(c, in)
		counts := dstream.UpdateStateByKey(dstream.Map(lines, func(l string) dstream.KV[string, int] { return dstream.KV[string, int]{Key: l, Value: 1} }),
			"lines", func(vs []int, s int, _ bool) (int, bool) { return s + len(vs), true })
		dstream.ForeachRDD(lines, func(b *dstream.Batch, r *rdd.RDD[string]) error {
			n, err := dstream.CountRDD(b, r)
			mu.Lock()
			perBatch[b.Time().UTC()] = int(n)
			mu.Unlock()
			return err
		})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		dstream.ForeachRDD(counts, func(b *dstream.Batch, r *rdd.RDD[dstream.KV[string, int]]) error {
			kvs, err := dstream.Collect(b, r)
			mu.Lock()
			state = map[string]int{}
			for _, kv := range kvs {
				state[kv.Key] = kv.Value
			}
			mu.Unlock()
			if until() {
				cancel()
			}
			return err
		})
		if err := c.Run(ctx); err != nil {
			t.Fatal(err)
		}
	}
	total := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, v := range state {
			n += v
		}
		return n
	}
	// Files of the first run are "existing" for nobody: the job starts
	// before them.
	batches := 0
	run(func() bool {
		if batches++; batches%2 == 0 && written < 60 {
			writeFile()
		}
		return batches >= 14
	})
	for range 5 { // while the job is down
		writeFile()
	}
	deadline := time.Now().Add(20 * time.Second) // a lost file never arrives
	run(func() bool { return total() >= written || time.Now().After(deadline) })
	want := map[string]int{}
	for i := range written {
		want[fmt.Sprintf("k%d", i%3)]++
	}
	mu.Lock()
	defer mu.Unlock()
	if !maps.Equal(state, want) {
		t.Fatalf("state after a restart %v, want %v (%d lines written)", state, want, written)
	}
	sum := 0
	for _, n := range perBatch {
		sum += n
	}
	if sum != written {
		var ts []time.Time
		for bt := range perBatch {
			ts = append(ts, bt)
		}
		slices.SortFunc(ts, time.Time.Compare)
		for _, bt := range ts {
			if perBatch[bt] > 0 {
				t.Logf("batch %v: %d lines", bt.Format("15:04:05.000"), perBatch[bt])
			}
		}
		t.Fatalf("per-batch line counts add up to %d, want %d", sum, written)
	}
}

// A checkpointed job that does not choose its partition count resumes
// with the checkpoint's when its default changed (more slots: --master in
// local mode, a grown cluster), as Spark's recovered graph keeps its
// partitioners; one that chooses another count (--partitions) is refused,
// the error naming the count to use.
func TestCheckpointRestartKeepsItsPartitions(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) (int, string, int64) {
		var stderr bytes.Buffer
		var total int64
		code := dstream.RunArgs(dstream.Config{AppName: "parts", BatchInterval: 20 * time.Millisecond, Stdout: io.Discard}, append([]string{"--checkpoint=" + dir, "--checkpoint-interval=20ms", "--log-level=info"}, args...), &stderr,
			func(ctx *dstream.Context) error {
				kv := dstream.Map(dstream.Rate(ctx, 500), func(v int64) dstream.KV[string, int64] {
					return dstream.KV[string, int64]{Key: fmt.Sprintf("k%d", v%5), Value: 1}
				})
				sums := dstream.UpdateStateByKey(kv, "sums", func(vs []int64, s int64, _ bool) (int64, bool) {
					for _, v := range vs {
						s += v
					}
					return s, true
				})
				batches := 0
				dstream.ForeachRDD(sums, func(b *dstream.Batch, r *rdd.RDD[dstream.KV[string, int64]]) error {
					vals, err := dstream.Collect(b, r)
					var n int64
					for _, kv := range vals {
						n += kv.Value
					}
					total = n
					if batches++; batches == 5 {
						ctx.Stop()
					}
					return err
				})
				return nil
			})
		return code, stderr.String(), total
	}
	code, stderr, first := run("--master=local[2]")
	if code != 0 || first == 0 {
		t.Fatalf("first run: exit %d, %d counted:\n%s", code, first, stderr)
	}
	code, stderr, second := run("--master=local[3]")
	if code != 0 || !strings.Contains(stderr, "resuming with the checkpoint's partition count") || !strings.Contains(stderr, "partitions=2") {
		t.Fatalf("restart with more slots: exit %d:\n%s", code, stderr)
	}
	if second <= first {
		t.Fatalf("restart: state total %d after %d: it did not resume", second, first)
	}
	code, stderr, _ = run("--master=local[2]", "--partitions=3")
	if code == 0 || !strings.Contains(stderr, "--partitions=2") {
		t.Fatalf("restart choosing 3 partitions: exit %d, want a refusal naming --partitions=2:\n%s", code, stderr)
	}
}
