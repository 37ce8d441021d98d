package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/internal/wordgen"
	"github.com/sluicehq/sluice/rdd"
)

var _ = register("longwindow", false, longWindow)

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
