// Command bench runs the standard workload of the mission (section 4) and
// reports Sluice's throughput next to a baseline measured in the same run:
// WordCount over lines of 10 words from a 10,000-word vocabulary, counted per
// batch, in local mode from an in-memory source.
//
//	go run ./bench                      # all workloads
//	go run ./bench -lines 2000000 -batches 10
//	go run ./bench -workloads kafka     # Kafka WordCount vs hand-written consumers
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/internal/wordgen"
	"github.com/sluicehq/sluice/rdd"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type config struct {
	lines       int
	batches     int
	slots       int
	empty       int
	workloads   string
	longBatch   int
	longBatches int

	clusterLines   int
	clusterBatches int
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var cfg config
	fs.IntVar(&cfg.lines, "lines", 1_000_000, "lines per batch")
	fs.IntVar(&cfg.batches, "batches", 8, "batches per measurement")
	fs.IntVar(&cfg.slots, "slots", runtime.NumCPU(), "local task slots")
	fs.IntVar(&cfg.empty, "empty-batches", 300, "batches for the empty-batch overhead")
	fs.StringVar(&cfg.workloads, "workloads", "local,strings,windowed,empty,longwindow,cluster", "comma-separated workloads to run")
	fs.IntVar(&cfg.clusterLines, "cluster-lines", 400_000, "cluster: generated lines per 1 s batch")
	fs.IntVar(&cfg.clusterBatches, "cluster-batches", 7, "cluster: batches measured per mode")
	fs.IntVar(&cfg.longBatch, "long-lines", 2000, "longwindow: lines per 1 s batch")
	fs.IntVar(&cfg.longBatches, "long-batches", 4000, "longwindow: batches to run through the 1 h window")
	if err := fs.Parse(args); err != nil {
		return err
	}
	want := map[string]bool{}
	for _, w := range strings.Split(cfg.workloads, ",") {
		want[strings.TrimSpace(w)] = true
	}
	fmt.Fprintf(out, "workload: WordCount, %d lines x %d words per batch, vocabulary %d, %d batches, %d cores, local[%d]\n",
		cfg.lines, wordgen.WordsPerLine, wordgen.VocabularySize, cfg.batches, runtime.NumCPU(), cfg.slots)
	lines := wordgen.New(1).Lines(cfg.lines)
	words := float64(cfg.lines * wordgen.WordsPerLine * cfg.batches)

	base := baseline(lines, cfg.batches)
	report(out, "baseline: one goroutine, strings.Fields + map[string]int", words, base, nil)

	var local result
	if want["local"] || want["windowed"] {
		res, err := sluiceWordCount(cfg, lines, splitFast, 0)
		if err != nil {
			return err
		}
		local = res
		report(out, "sluice local, allocation-free splitter", words, res.total, res.batchTimes)
		fmt.Fprintf(out, "  ratio to baseline: %.2fx (target >= 1.2x, >= 30M words/s)\n", base.Seconds()/res.total.Seconds())
	}
	if want["strings"] {
		res, err := sluiceWordCount(cfg, lines, splitStrings, 0)
		if err != nil {
			return err
		}
		report(out, "sluice local, strings.Fields", words, res.total, res.batchTimes)
		fmt.Fprintf(out, "  ratio to baseline: %.2fx\n", base.Seconds()/res.total.Seconds())
	}
	if want["windowed"] {
		res, err := sluiceWordCount(cfg, lines, splitFast, 10*time.Second)
		if err != nil {
			return err
		}
		report(out, "sluice local, windowed WordCount (10 s window, 1 s slide)", words, res.total, res.batchTimes)
		fmt.Fprintf(out, "  ratio to unwindowed: %.2fx (target >= 0.7x)\n", local.total.Seconds()/res.total.Seconds())
	}
	if want["empty"] {
		per, err := emptyBatches(cfg)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "empty-batch overhead (local): %v per batch (target <= 2ms)\n", per)
	}
	if want["cluster"] {
		if err := clusterBench(cfg, out); err != nil {
			return err
		}
	}
	if want["kafka"] {
		if err := kafkaBench(cfg, out); err != nil {
			return err
		}
	}
	if want["longwindow"] {
		if err := longWindow(cfg, out); err != nil {
			return err
		}
	}
	return nil
}

func report(out io.Writer, name string, words float64, total time.Duration, batchTimes []time.Duration) {
	fmt.Fprintf(out, "%s\n  %s words/s, %s lines/s", name,
		wordgen.Label(words/total.Seconds()), wordgen.Label(words/wordgen.WordsPerLine/total.Seconds()))
	if len(batchTimes) > 0 {
		s := slices.Clone(batchTimes)
		slices.Sort(s)
		fmt.Fprintf(out, ", batch processing p50 %v p99 %v", pct(s, 0.50).Round(time.Microsecond), pct(s, 0.99).Round(time.Microsecond))
	}
	fmt.Fprintln(out)
}

func pct(sorted []time.Duration, p float64) time.Duration {
	i := int(float64(len(sorted)-1) * p)
	return sorted[i]
}

// baseline is the hand-written loop of the mission: one goroutine,
// strings.Fields and a map, counts per batch.
func baseline(lines []string, batches int) time.Duration {
	start := time.Now()
	for b := 0; b < batches; b++ {
		counts := make(map[string]int)
		for _, l := range lines {
			for _, w := range strings.Fields(l) {
				counts[w]++
			}
		}
		if len(counts) == 0 {
			panic("no words")
		}
	}
	return time.Since(start)
}

type result struct {
	total      time.Duration
	batchTimes []time.Duration
}

func newContext(cfg config) (*dstream.Context, error) {
	return dstream.New(dstream.Config{
		AppName:       "bench",
		BatchInterval: time.Second,
		Master:        fmt.Sprintf("local[%d]", cfg.slots),
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
}

const (
	splitFast    = true
	splitStrings = false
)

// sluiceWordCount runs WordCount over lines in every batch; with window > 0
// it counts over a sliding window of that length (1 s slide) instead.
func sluiceWordCount(cfg config, lines []string, fast bool, window time.Duration) (result, error) {
	ctx, err := newContext(cfg)
	if err != nil {
		return result{}, err
	}
	defer ctx.Stop()
	q := dstream.NewQueue[string](ctx)
	var words *dstream.DStream[string]
	if fast {
		words = dstream.FlatMapEmit(q.Stream(), wordgen.Fields)
	} else {
		words = dstream.FlatMap(q.Stream(), strings.Fields)
	}
	pairs := dstream.Map(words, func(w string) dstream.KV[string, int64] { return dstream.KV[string, int64]{Key: w, Value: 1} })
	sum := func(a, b int64) int64 { return a + b }
	counts := dstream.ReduceByKey(pairs, sum)
	want := int64(len(lines) * wordgen.WordsPerLine)
	if window > 0 {
		counts = dstream.ReduceByKeyAndWindow(pairs, sum, window, time.Second)
		want *= int64(window / time.Second)
	}
	batchNo := 0
	var bad error
	dstream.ForeachRDD(counts, func(b *dstream.Batch, r *rdd.RDD[dstream.KV[string, int64]]) error {
		all, err := dstream.Collect(b, r)
		if err != nil {
			return err
		}
		var total int64
		for _, kv := range all {
			total += kv.Value
		}
		batchNo++
		// Until a window is full it holds fewer batches.
		w := want
		if window > 0 && int64(batchNo) < int64(window/time.Second) {
			w = want / int64(window/time.Second) * int64(batchNo)
		}
		if total != w {
			bad = fmt.Errorf("batch %v counted %d words, want %d", b.Time(), total, w)
		}
		return nil
	})
	zero := time.Unix(0, 0)
	if err := ctx.StartManual(zero); err != nil {
		return result{}, err
	}
	// One warm-up batch, not measured.
	q.Push(lines...)
	if _, err := ctx.RunBatch(context.Background(), zero.Add(time.Second)); err != nil {
		return result{}, err
	}
	var res result
	for b := 0; b < cfg.batches; b++ {
		q.Push(lines...)
		start := time.Now()
		if _, err := ctx.RunBatch(context.Background(), zero.Add(time.Duration(b+2)*time.Second)); err != nil {
			return result{}, err
		}
		d := time.Since(start)
		res.total += d
		res.batchTimes = append(res.batchTimes, d)
	}
	return res, bad
}

func emptyBatches(cfg config) (time.Duration, error) {
	ctx, err := newContext(cfg)
	if err != nil {
		return 0, err
	}
	defer ctx.Stop()
	// A rate source at 0 rows/s: every batch has one empty partition per
	// slot, so both stages of the job run, with nothing to do.
	counts := dstream.ReduceByKey(dstream.Map(dstream.Rate(ctx, 0), func(w int64) dstream.KV[int64, int64] {
		return dstream.KV[int64, int64]{Key: w, Value: 1}
	}), func(a, b int64) int64 { return a + b })
	dstream.ForeachRDD(counts, func(b *dstream.Batch, r *rdd.RDD[dstream.KV[int64, int64]]) error {
		_, err := dstream.Collect(b, r)
		return err
	})
	zero := time.Unix(0, 0)
	if err := ctx.StartManual(zero); err != nil {
		return 0, err
	}
	start := time.Now()
	for b := 1; b <= cfg.empty; b++ {
		if _, err := ctx.RunBatch(context.Background(), zero.Add(time.Duration(b)*time.Second)); err != nil {
			return 0, err
		}
	}
	return time.Since(start) / time.Duration(cfg.empty), nil
}

// longWindow runs word counts over a 1-hour window sliding by 1 s with an
// inverse function, from a generated source, and reports the state size and
// the process's resident memory as batches accumulate: both must follow the
// number of keys, not the number of batches.
func longWindow(cfg config, out io.Writer) error {
	ctx, err := newContext(cfg)
	if err != nil {
		return err
	}
	defer ctx.Stop()
	vocab := wordgen.Vocabulary(wordgen.VocabularySize)
	lines := dstream.Map(dstream.Rate(ctx, int64(cfg.longBatch)), func(i int64) string { return wordgen.LineAt(vocab, i) })
	pairs := dstream.Map(dstream.FlatMapEmit(lines, wordgen.Fields), func(w string) dstream.KV[string, int64] {
		return dstream.KV[string, int64]{Key: w, Value: 1}
	})
	counts := dstream.ReduceByKeyAndWindowInv(pairs, "hour", func(a, b int64) int64 { return a + b },
		func(a, b int64) int64 { return a - b }, time.Hour, time.Second, func(kv dstream.KV[string, int64]) bool { return kv.Value != 0 })
	var total int64
	dstream.ForeachRDD(counts, func(b *dstream.Batch, r *rdd.RDD[dstream.KV[string, int64]]) error {
		all, err := dstream.Collect(b, r)
		total = 0
		for _, kv := range all {
			total += kv.Value
		}
		return err
	})
	zero := time.Unix(0, 0)
	if err := ctx.StartManual(zero); err != nil {
		return err
	}
	fmt.Fprintf(out, "1 h window, 1 s slide, inverse function, %d lines per batch, vocabulary %d:\n", cfg.longBatch, wordgen.VocabularySize)
	marks := map[int]bool{60: true, 600: true, 1800: true, 3600: true, cfg.longBatches: true}
	start := time.Now()
	for b := 1; b <= cfg.longBatches; b++ {
		info, err := ctx.RunBatch(context.Background(), zero.Add(time.Duration(b)*time.Second))
		if err != nil {
			return err
		}
		if marks[b] {
			keys, bytes := ctx.StateSize()
			inWindow := int64(min(b, 3600) * cfg.longBatch * wordgen.WordsPerLine)
			fmt.Fprintf(out, "  after %5d batches: state %d keys, %s bytes; window holds %d words (counted %d); RSS %s; batch %v\n",
				b, keys, wordgen.Label(float64(bytes)), inWindow, total, wordgen.Label(float64(rss())), info.ProcessingTime.Round(time.Microsecond))
			if total != inWindow {
				return fmt.Errorf("1 h window after %d batches counted %d words, want %d", b, total, inWindow)
			}
		}
	}
	fmt.Fprintf(out, "  %d batches in %v\n", cfg.longBatches, time.Since(start).Round(time.Millisecond))
	return nil
}

// rss returns the resident set size of this process in bytes (0 if unknown).
func rss() int64 {
	runtime.GC()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "VmRSS:")), "%d", &kb)
			return kb * 1024
		}
	}
	return 0
}
