package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/internal/wordgen"
	"github.com/sluicehq/sluice/rdd"
)

var (
	_ = register("longwindow", false, longWindowAll)
	_ = register("longwindow-socket", false, longWindowSocket)
)

func init() { children["longwindow-socket"] = longWindowSocketChild }

// longWindowAll is the longwindow workload: the generated source, then
// socket input with and without a checkpoint directory.
func longWindowAll(cfg config, out io.Writer) error {
	if err := longWindow(cfg, out); err != nil {
		return err
	}
	fmt.Fprintln(out)
	return longWindowSocket(cfg, out)
}

// longWindow runs word counts over a 1-hour window sliding by 1 s with an
// inverse function, from a generated source, and reports the state size and
// the process's resident memory as batches accumulate: both must follow the
// number of keys, not the number of batches.
func longWindow(cfg config, out io.Writer) error {
	ctx, err := newContext(cfg, time.Second)
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

// The socket variant: real input, whose records the input stream remembers
// for the whole window (a window reads the batches that leave it again).
// Scaled from the 1 h window over 2,000 lines/s (~430 MB of input
// in the window) to about a minute: 100 ms batches, a 30 s window sliding
// by one batch, 20,000 lines/s from a paced feeder on 127.0.0.1 (~36 MB of
// input in the window, what a 5-minute window holds at 2,000 lines/s).
const (
	lwsInterval = 100 * time.Millisecond
	lwsWindow   = 30 * time.Second
	lwsRate     = 20_000
	lwsRun      = 60 * time.Second
	lwsEvery    = 2 * time.Second
)

// lwsFigures is what a longwindow-socket child reports.
type lwsFigures struct {
	Samples  []lwsSample
	Batches  int
	Lines    int64
	MedDelay time.Duration // total delay of the batches
	MaxDelay time.Duration
	WALBytes int64
	PeakRSS  int64
}

// lwsSample is the process's memory at a time after the first batch.
type lwsSample struct {
	At              time.Duration
	RSS, Anon, File int64
}

// longWindowSocket runs the socket variant without and with --checkpoint,
// each in its own process fed by its own paced feeder, and prints their
// memory over time: while the window fills and once it is full.
func longWindowSocket(cfg config, out io.Writer) error {
	block, blockLines := feedBlock()
	lineBytes := float64(len(block)) / float64(blockLines)
	inWindow := lwsWindow.Seconds() * lwsRate
	fmt.Fprintf(out, "socket input, %v window sliding by %v (ReduceByKeyAndWindowInv word counts), %v batches, %d lines/s from a paced feeder on 127.0.0.1;\n",
		lwsWindow, lwsInterval, lwsInterval, lwsRate)
	fmt.Fprintf(out, "  the window holds %s lines, %s of text; each side runs %v in its own process, sampled every %v (after a GC):\n",
		wordgen.Label(inWindow), mb(int64(inWindow*lineBytes)), lwsRun, lwsEvery)
	figs := map[bool]lwsFigures{}
	for _, ckpt := range []bool{false, true} {
		f, err := pacedFeeder(block, blockLines, lwsRate)
		if err != nil {
			return err
		}
		dir := "-"
		if ckpt {
			if dir, err = os.MkdirTemp("", "sluice-longwindow-"); err != nil {
				f.stop()
				return err
			}
		}
		var fig lwsFigures
		err = runChildJSON(cfg, "longwindow-socket", &fig, "--", f.addr(), dir)
		f.stop()
		if ckpt {
			os.RemoveAll(dir)
		}
		if err != nil {
			return err
		}
		figs[ckpt] = fig
	}
	no, yes := figs[false], figs[true]
	fmt.Fprintf(out, "  %8s  %-34s  %-34s\n", "time", "without a checkpoint: RSS (anon+file)", "--checkpoint DIR: RSS (anon+file)")
	for i := range min(len(no.Samples), len(yes.Samples)) {
		a, b := no.Samples[i], yes.Samples[i]
		full := ""
		if a.At >= lwsWindow {
			full = "  window full"
		}
		fmt.Fprintf(out, "  %7.0fs  %-34s  %-34s%s\n", a.At.Seconds(),
			fmt.Sprintf("%s (%s+%s)", mb(a.RSS), mb(a.Anon), mb(a.File)), fmt.Sprintf("%s (%s+%s)", mb(b.RSS), mb(b.Anon), mb(b.File)), full)
	}
	for _, side := range []struct {
		name string
		fig  lwsFigures
	}{{"without a checkpoint", no}, {"--checkpoint DIR    ", yes}} {
		fill := slopeMBPerMin(side.fig.Samples, 0, lwsWindow, func(s lwsSample) int64 { return s.Anon })
		after := slopeMBPerMin(side.fig.Samples, lwsWindow+lwsEvery, lwsRun, func(s lwsSample) int64 { return s.Anon })
		afterRSS := slopeMBPerMin(side.fig.Samples, lwsWindow+lwsEvery, lwsRun, func(s lwsSample) int64 { return s.RSS })
		fmt.Fprintf(out, "  %s: anonymous memory %+.1f MB/min while the window fills, %+.1f MB/min once it is full (RSS %+.1f MB/min); %d batches, %s lines, total delay median %v max %v, peak RSS %s",
			side.name, fill, after, afterRSS, side.fig.Batches, wordgen.Label(float64(side.fig.Lines)), side.fig.MedDelay.Round(time.Millisecond), side.fig.MaxDelay.Round(time.Millisecond), mb(side.fig.PeakRSS))
		if side.fig.WALBytes > 0 {
			fmt.Fprintf(out, ", wal.db %s", mb(side.fig.WALBytes))
		}
		fmt.Fprintln(out)
	}
	last := func(f lwsFigures) lwsSample { return f.Samples[len(f.Samples)-1] }
	fmt.Fprintf(out, "  at the end the checkpointed run holds %s less anonymous memory (the window's input: %s of text);\n",
		mb(last(no).Anon-last(yes).Anon), mb(int64(inWindow*lineBytes)))
	fmt.Fprintf(out, "  target: RSS flat after the window fills, and with --checkpoint not growing with the window's length while it fills\n")
	fmt.Fprintf(out, "  (file-backed RSS: mostly the binary; the pages of wal.db that bbolt maps and the job reads back leave the map after each read)\n")
	return nil
}

// slopeMBPerMin fits a line through the samples in [from, to] by least
// squares and returns its slope in MB per minute.
func slopeMBPerMin(samples []lwsSample, from, to time.Duration, v func(lwsSample) int64) float64 {
	var n, sx, sy, sxx, sxy float64
	for _, s := range samples {
		if s.At < from || s.At > to {
			continue
		}
		x, y := s.At.Minutes(), float64(v(s))/1e6
		n, sx, sy, sxx, sxy = n+1, sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	if n < 2 || n*sxx == sx*sx {
		return 0
	}
	return (n*sxy - sx*sy) / (n*sxx - sx*sx)
}

// longWindowSocketChild runs the job for lwsRun in real time: arguments
// are the feeder's address and the checkpoint directory ("-": none).
func longWindowSocketChild(cfg config, args []string, out io.Writer) error {
	if len(args) != 2 {
		return fmt.Errorf("want the feeder address and a checkpoint directory (or -), got %q", args)
	}
	dir := args[1]
	if dir == "-" {
		dir = ""
	}
	var log batchLog
	ctx, err := dstream.New(dstream.Config{
		AppName:       "bench-longwindow",
		BatchInterval: lwsInterval,
		Master:        fmt.Sprintf("local[%d]", cfg.slots),
		Checkpoint:    dir,
		Logger:        slog.New(&log),
	})
	if err != nil {
		return err
	}
	lines := dstream.SocketTextStream(ctx, args[0])
	pairs := dstream.Map(dstream.FlatMapEmit(lines, wordgen.Fields), func(w string) dstream.KV[string, int64] {
		return dstream.KV[string, int64]{Key: w, Value: 1}
	})
	counts := dstream.ReduceByKeyAndWindowInv(pairs, "window", func(a, b int64) int64 { return a + b },
		func(a, b int64) int64 { return a - b }, lwsWindow, lwsInterval, func(kv dstream.KV[string, int64]) bool { return kv.Value != 0 })
	total := dstream.Reduce(dstream.Map(counts, func(kv dstream.KV[string, int64]) int64 { return kv.Value }), func(a, b int64) int64 { return a + b })
	// Every window must count exactly the words of its batches' lines.
	var mu sync.Mutex
	perBatch := map[time.Time]int64{}
	var fig lwsFigures
	dstream.ForeachRDD(dstream.Count(lines), func(b *dstream.Batch, r *rdd.RDD[int64]) error {
		n, err := dstream.Collect(b, r)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		for _, v := range n {
			perBatch[b.Time()] += v
			fig.Lines += v
		}
		delete(perBatch, b.Time().Add(-lwsWindow-time.Minute))
		return nil
	})
	run, cancel := context.WithCancel(context.Background())
	defer cancel()
	var first time.Time
	var samples []lwsSample
	sample := func() {
		samples = append(samples, lwsSample{At: time.Since(first).Round(time.Second), RSS: rss(), Anon: procStatus("RssAnon:"), File: procStatus("RssFile:")})
	}
	dstream.ForeachRDD(total, func(b *dstream.Batch, r *rdd.RDD[int64]) error {
		got, err := dstream.Collect(b, r)
		if err != nil {
			return err
		}
		mu.Lock()
		var want int64
		for t, n := range perBatch {
			if t.After(b.Time().Add(-lwsWindow)) && !t.After(b.Time()) {
				want += n * wordgen.WordsPerLine
			}
		}
		mu.Unlock()
		var sum int64
		for _, v := range got {
			sum += v
		}
		if sum != want {
			return fmt.Errorf("the window at %v counted %d words, want %d", b.Time(), sum, want)
		}
		fig.Batches++
		if first.IsZero() {
			first = time.Now()
			sample()
		}
		// Samples in the processing goroutine, between batches (a GC each).
		if d := time.Since(first); d >= time.Duration(len(samples))*lwsEvery {
			sample()
		}
		if time.Since(first) >= lwsRun {
			cancel()
		}
		return nil
	})
	if err := ctx.Run(run); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	fig.Samples = samples
	fig.PeakRSS = peakRSS()
	log.mu.Lock()
	delays := slices.Clone(log.delays)
	log.mu.Unlock()
	if len(delays) > 0 {
		fig.MedDelay, fig.MaxDelay = median(delays), slices.Max(delays)
	}
	if dir != "" {
		if fi, err := os.Stat(filepath.Join(dir, "wal.db")); err == nil {
			fig.WALBytes = fi.Size()
		}
	}
	return json.NewEncoder(out).Encode(fig)
}
