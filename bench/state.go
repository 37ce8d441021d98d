package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/pprof"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/rdd"
)

var _ = register("state", false, stateBench)

func init() {
	children["state-sluice"] = stateSluiceChild
	children["state-map"] = stateMapChild
}

// stateFigures is what a state child reports on its last stdout line.
type stateFigures struct {
	RSS        int64   // after GC, with the state held
	PeakRSS    int64   // VmHWM
	StateBytes int64   // Sluice's own state size figure
	StateKeys  int64   //
	Empty      []int64 // nanoseconds per empty batch (or per pass over the map)
	EmptyCPU   []int64 // process CPU nanoseconds (user+system) per empty batch
}

// cpuTime returns the CPU time this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func stateKey(i int) string { return "user-" + strconv.Itoa(10_000_000+i) }

// stateBench holds cfg.stateKeys string -> int64 keys in updateStateByKey
// and in a plain Go map, each in its own child process (run interleaved)
// and fed the same input slice, and compares resident memory after GC and
// at peak; then it times batches with no input, which call the update
// function for every idle key, against one pass over the map applying the
// same function.
func stateBench(cfg config, out io.Writer) error {
	fmt.Fprintf(out, "updateStateByKey: %d keys of string -> int64 (keys %q...), then %d empty batches\n",
		cfg.stateKeys, stateKey(0), cfg.stateBatches)
	var sl, mp []stateFigures
	for r := 0; r < cfg.rounds; r++ {
		for _, name := range []string{"state-sluice", "state-map"} {
			var f stateFigures
			if err := runChildJSON(cfg, name, &f); err != nil {
				return err
			}
			if name == "state-sluice" {
				sl = append(sl, f)
			} else {
				mp = append(mp, f)
			}
		}
	}
	med := func(fs []stateFigures, get func(stateFigures) int64) int64 {
		var v []int64
		for _, f := range fs {
			v = append(v, get(f))
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	emptyMed := func(fs []stateFigures, cpu bool) time.Duration {
		var v []time.Duration
		for _, f := range fs {
			es := f.Empty
			if cpu {
				es = f.EmptyCPU
			}
			for _, e := range es {
				v = append(v, time.Duration(e))
			}
		}
		return median(v)
	}
	rssS, rssM := med(sl, func(f stateFigures) int64 { return f.RSS }), med(mp, func(f stateFigures) int64 { return f.RSS })
	fmt.Fprintf(out, "  sluice updateStateByKey: RSS %s after GC (peak %s); state figure %s for %d keys\n",
		mb(rssS), mb(med(sl, func(f stateFigures) int64 { return f.PeakRSS })), mb(med(sl, func(f stateFigures) int64 { return f.StateBytes })), sl[0].StateKeys)
	fmt.Fprintf(out, "  plain map[string]int64:  RSS %s after GC (peak %s)\n", mb(rssM), mb(med(mp, func(f stateFigures) int64 { return f.PeakRSS })))
	fmt.Fprintf(out, "  RSS ratio sluice/map: %.2fx (median of %d interleaved rounds; target <= 2x)\n", float64(rssS)/float64(rssM), cfg.rounds)
	fmt.Fprintf(out, "  peak RSS ratio sluice/map: %.2fx (the first batch, which groups and inserts every key; not a target)\n",
		float64(med(sl, func(f stateFigures) int64 { return f.PeakRSS }))/float64(med(mp, func(f stateFigures) int64 { return f.PeakRSS })))
	es, em := emptyMed(sl, false), emptyMed(mp, false)
	fmt.Fprintf(out, "  empty batch over %d idle keys: sluice median %v wall, %v CPU (target <= 0.3s); one pass over the map median %v wall, %v CPU\n",
		cfg.stateKeys, es.Round(time.Millisecond), emptyMed(sl, true).Round(time.Millisecond), em.Round(time.Millisecond), emptyMed(mp, true).Round(time.Millisecond))
	fmt.Fprintf(out, "  ratio to like-for-like baseline (empty batch vs map pass): %.2fx\n", em.Seconds()/es.Seconds())
	return nil
}

// runChildJSON runs this binary as child name and decodes the JSON on the
// last line of its stdout into v.
func runChildJSON(cfg config, name string, v any, extra ...string) error {
	_, err := runChildCPU(cfg, name, v, extra...)
	return err
}

// runChildCPU is runChildJSON that also returns the CPU time (user +
// system) the child used.
func runChildCPU(cfg config, name string, v any, extra ...string) (time.Duration, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	args := append([]string{"-child", name, "-slots", strconv.Itoa(cfg.slots),
		"-state-keys", strconv.Itoa(cfg.stateKeys), "-state-batches", strconv.Itoa(cfg.stateBatches)}, extra...)
	cmd := exec.Command(self, args...)
	cmd.Stderr = os.Stderr
	b, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("child %s: %w", name, err)
	}
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	lines := splitLines(b)
	if len(lines) == 0 {
		return 0, fmt.Errorf("child %s printed nothing", name)
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), v); err != nil {
		return 0, fmt.Errorf("child %s: %w in %q", name, err, lines[len(lines)-1])
	}
	return cpu, nil
}

func splitLines(b []byte) []string {
	var out []string
	start := 0
	for i, c := range b {
		if c == '\n' {
			if i > start {
				out = append(out, string(b[start:i]))
			}
			start = i + 1
		}
	}
	if start < len(b) {
		out = append(out, string(b[start:]))
	}
	return out
}

func update(values []int64, state int64, exists bool) (int64, bool) {
	for _, v := range values {
		state += v
	}
	return state, true
}

func stateSluiceChild(cfg config, _ []string, out io.Writer) error {
	ctx, err := newContext(cfg, time.Second)
	if err != nil {
		return err
	}
	defer ctx.Stop()
	q := dstream.NewQueue[dstream.KV[string, int64]](ctx)
	st := dstream.UpdateStateByKey(q.Stream(), "bench-state", update)
	n := dstream.Count(st)
	var counted int64
	dstream.ForeachRDD(n, func(b *dstream.Batch, r *rdd.RDD[int64]) error {
		c, err := dstream.Collect(b, r)
		counted = 0
		for _, v := range c {
			counted += v
		}
		return err
	})
	if err := ctx.StartManual(time.Unix(0, 0)); err != nil {
		return err
	}
	func() { // the input is dropped once the first batch took it
		in := make([]dstream.KV[string, int64], cfg.stateKeys)
		for i := range in {
			in[i] = dstream.KV[string, int64]{Key: stateKey(i), Value: 1}
		}
		q.Push(in...)
	}()
	if _, err := ctx.RunBatch(context.Background(), time.Unix(1, 0)); err != nil {
		return err
	}
	if counted != int64(cfg.stateKeys) {
		return fmt.Errorf("state holds %d keys, want %d", counted, cfg.stateKeys)
	}
	var f stateFigures
	for b := 0; b < cfg.stateBatches; b++ {
		start, cpu := time.Now(), cpuTime()
		if _, err := ctx.RunBatch(context.Background(), time.Unix(int64(b+2), 0)); err != nil {
			return err
		}
		f.Empty = append(f.Empty, int64(time.Since(start)))
		f.EmptyCPU = append(f.EmptyCPU, int64(cpuTime()-cpu))
	}
	if counted != int64(cfg.stateKeys) {
		return fmt.Errorf("state holds %d keys after empty batches, want %d", counted, cfg.stateKeys)
	}
	f.RSS, f.PeakRSS = rss(), peakRSS()
	f.StateKeys, f.StateBytes = ctx.StateSize()
	if p := os.Getenv("BENCH_HEAPPROFILE"); p != "" {
		if w, err := os.Create(p); err == nil {
			pprof.WriteHeapProfile(w)
			w.Close()
		}
	}
	return json.NewEncoder(out).Encode(f)
}

func stateMapChild(cfg config, _ []string, out io.Writer) error {
	m := make(map[string]int64)
	func() { // the same input as Sluice's, dropped once folded in
		in := make([]dstream.KV[string, int64], cfg.stateKeys)
		for i := range in {
			in[i] = dstream.KV[string, int64]{Key: stateKey(i), Value: 1}
		}
		for _, kv := range in {
			m[kv.Key] += kv.Value
		}
	}()
	var f stateFigures
	for b := 0; b < cfg.stateBatches; b++ {
		start, cpu := time.Now(), cpuTime()
		for k, v := range m { // what an empty batch asks: update every idle key
			if ns, keep := update(nil, v, true); keep {
				m[k] = ns
			} else {
				delete(m, k)
			}
		}
		f.Empty = append(f.Empty, int64(time.Since(start)))
		f.EmptyCPU = append(f.EmptyCPU, int64(cpuTime()-cpu))
	}
	f.RSS, f.PeakRSS = rss(), peakRSS()
	f.StateKeys = int64(len(m))
	return json.NewEncoder(out).Encode(f)
}
