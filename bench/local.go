package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/internal/wordgen"
	"github.com/sluicehq/sluice/rdd"
)

var (
	_ = register("local", true, localBench)
	_ = register("windowed", true, windowedBench)
	_ = register("empty", true, emptyBench)
)

// localBench is in-memory WordCount: Sluice in local mode from a queue
// source, against the like-for-like hand loop (same lines, same splitter,
// one goroutine per Sluice slot over contiguous chunks, per-goroutine maps
// merged into one) and the one-goroutine strings.Fields reference.
func localBench(cfg config, out io.Writer) error {
	lines := wordgen.New(1).Lines(cfg.lines)
	words := float64(cfg.lines * wordgen.WordsPerLine * cfg.batches)
	fmt.Fprintf(out, "in-memory WordCount: %d lines x %d words per batch (vocabulary %d), %d batches per round\n",
		cfg.lines, wordgen.WordsPerLine, wordgen.VocabularySize, cfg.batches)
	sl, err := newSluiceWordCount(cfg, lines, 0)
	if err != nil {
		return err
	}
	defer sl.stop()
	sluice := &side{name: fmt.Sprintf("sluice local[%d], allocation-free splitter", cfg.slots), round: sl.round}
	like := &side{name: fmt.Sprintf("hand loop: %d goroutines, same splitter, maps merged", cfg.slots), round: func() (time.Duration, error) {
		return handLoop(lines, cfg.batches, cfg.slots)
	}}
	ref := &side{name: "reference: 1 goroutine, strings.Fields + map[string]int", round: func() (time.Duration, error) {
		return fieldsLoop(lines, cfg.batches)
	}}
	if err := interleave(cfg.rounds, sluice, like, ref); err != nil {
		return err
	}
	for _, s := range []*side{sluice, like, ref} {
		printRates(out, s, words, "words")
	}
	printRatio(out, "ratio to like-for-like baseline", sluice, like, " (target >= 1.0x, >= 60M words/s)")
	printRatio(out, "ratio to the 1-goroutine strings.Fields reference", sluice, ref, "")
	return nil
}

// handLoop is the like-for-like baseline: per batch, goroutines goroutines
// count contiguous chunks of lines into their own maps with the splitter
// Sluice uses, and the maps are merged into one.
func handLoop(lines []string, batches, goroutines int) (time.Duration, error) {
	start := time.Now()
	for b := 0; b < batches; b++ {
		maps := make([]map[string]int64, goroutines)
		var wg sync.WaitGroup
		for g := range maps {
			wg.Go(func() {
				m := make(map[string]int64)
				for _, l := range lines[g*len(lines)/goroutines : (g+1)*len(lines)/goroutines] {
					wordgen.Fields(l, func(w string) { m[w]++ })
				}
				maps[g] = m
			})
		}
		wg.Wait()
		merged := maps[0]
		for _, m := range maps[1:] {
			for w, n := range m {
				merged[w] += n
			}
		}
		if err := checkTotal(merged, len(lines)); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// fieldsLoop is the mission's reference loop: one goroutine, strings.Fields
// and a map, counts per batch.
func fieldsLoop(lines []string, batches int) (time.Duration, error) {
	start := time.Now()
	for b := 0; b < batches; b++ {
		counts := make(map[string]int)
		for _, l := range lines {
			for _, w := range strings.Fields(l) {
				counts[w]++
			}
		}
		if err := checkTotal(counts, len(lines)); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

func checkTotal[N int | int64](m map[string]N, lines int) error {
	var total N
	for _, n := range m {
		total += n
	}
	if int(total) != lines*wordgen.WordsPerLine {
		return fmt.Errorf("counted %d words, want %d", total, lines*wordgen.WordsPerLine)
	}
	return nil
}

// sluiceWordCount is a started context running WordCount over a queue, one
// batch per call, with manual batch times.
type sluiceWordCount struct {
	ctx     *dstream.Context
	q       *dstream.Queue[string]
	lines   []string
	batches int
	next    int
	bad     error
}

// newSluiceWordCount builds WordCount over lines; with window > 0 it counts
// over a sliding window of that length (1 s slide) instead.
func newSluiceWordCount(cfg config, lines []string, window time.Duration) (*sluiceWordCount, error) {
	ctx, err := newContext(cfg, time.Second)
	if err != nil {
		return nil, err
	}
	s := &sluiceWordCount{ctx: ctx, lines: lines, batches: cfg.batches}
	s.q = dstream.NewQueue[string](ctx)
	words := dstream.FlatMapEmit(s.q.Stream(), wordgen.Fields)
	pairs := dstream.Map(words, func(w string) dstream.KV[string, int64] { return dstream.KV[string, int64]{Key: w, Value: 1} })
	sum := func(a, b int64) int64 { return a + b }
	counts := dstream.ReduceByKey(pairs, sum)
	want := int64(len(lines) * wordgen.WordsPerLine)
	if window > 0 {
		counts = dstream.ReduceByKeyAndWindow(pairs, sum, window, time.Second)
	}
	batchNo := 0
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
		w := want
		if window > 0 { // until a window is full it holds fewer batches
			w *= min(int64(batchNo), int64(window/time.Second))
		}
		if total != w && s.bad == nil {
			s.bad = fmt.Errorf("batch %v counted %d words, want %d", b.Time(), total, w)
		}
		return nil
	})
	if err := ctx.StartManual(time.Unix(0, 0)); err != nil {
		ctx.Stop()
		return nil, err
	}
	return s, nil
}

// round runs s.batches batches and returns the time spent in them.
func (s *sluiceWordCount) round() (time.Duration, error) {
	var total time.Duration
	for b := 0; b < s.batches; b++ {
		s.q.Push(s.lines...)
		s.next++
		start := time.Now()
		if _, err := s.ctx.RunBatch(context.Background(), time.Unix(int64(s.next), 0)); err != nil {
			return 0, err
		}
		total += time.Since(start)
	}
	return total, s.bad
}

func (s *sluiceWordCount) stop() { s.ctx.Stop() }

// windowedBench compares WordCount over a 10 s window sliding by 1 s with
// the unwindowed WordCount, interleaved.
func windowedBench(cfg config, out io.Writer) error {
	lines := wordgen.New(1).Lines(cfg.lines)
	words := float64(cfg.lines * wordgen.WordsPerLine * cfg.batches)
	plain, err := newSluiceWordCount(cfg, lines, 0)
	if err != nil {
		return err
	}
	defer plain.stop()
	win, err := newSluiceWordCount(cfg, lines, 10*time.Second)
	if err != nil {
		return err
	}
	defer win.stop()
	a := &side{name: "sluice windowed WordCount (10 s window, 1 s slide)", round: win.round}
	b := &side{name: "sluice WordCount, no window", round: plain.round}
	if err := interleave(cfg.rounds, a, b); err != nil {
		return err
	}
	printRates(out, a, words, "words")
	printRates(out, b, words, "words")
	printRatio(out, "ratio windowed/unwindowed (not a like-for-like figure)", a, b, " (target >= 0.7x)")
	return nil
}

// emptyBench measures the overhead of a batch with no input: both stages of
// a ReduceByKey job run with nothing to do.
func emptyBench(cfg config, out io.Writer) error {
	ctx, err := newContext(cfg, time.Second)
	if err != nil {
		return err
	}
	defer ctx.Stop()
	counts := dstream.ReduceByKey(dstream.Map(dstream.Rate(ctx, 0), func(w int64) dstream.KV[int64, int64] {
		return dstream.KV[int64, int64]{Key: w, Value: 1}
	}), func(a, b int64) int64 { return a + b })
	dstream.ForeachRDD(counts, func(b *dstream.Batch, r *rdd.RDD[dstream.KV[int64, int64]]) error {
		_, err := dstream.Collect(b, r)
		return err
	})
	if err := ctx.StartManual(time.Unix(0, 0)); err != nil {
		return err
	}
	var ds []time.Duration
	for b := 1; b <= cfg.empty; b++ {
		start := time.Now()
		if _, err := ctx.RunBatch(context.Background(), time.Unix(int64(b), 0)); err != nil {
			return err
		}
		ds = append(ds, time.Since(start))
	}
	fmt.Fprintf(out, "  empty-batch overhead (local, ReduceByKey + Collect): median %v, min %v over %d batches (target <= 2ms)\n",
		median(ds).Round(time.Microsecond), slices.Min(ds).Round(time.Microsecond), len(ds))
	return nil
}
