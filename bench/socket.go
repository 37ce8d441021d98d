package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/internal/wordgen"
	"github.com/sluicehq/sluice/rdd"
)

var (
	_ = register("socket", true, socketBench)
	_ = register("latency", false, latencyBench)
)

func init() {
	children["socket-sluice"] = socketSluiceChild
	children["socket-reader"] = socketReaderChild
}

// feedBlock is the text a feeder repeats: lines of the standard workload.
func feedBlock() ([]byte, int) {
	var b strings.Builder
	lines := wordgen.New(1).Lines(100_000)
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return []byte(b.String()), len(lines)
}

// feeder serves n lines (whole blocks) to the first connection on a
// 127.0.0.1 listener as fast as the reader takes them, then closes it; later
// connections (a receiver reconnecting) are held open idle until stop.
type feeder struct {
	ln       net.Listener
	accepted chan time.Time
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

func newFeeder(block []byte, blockLines, n int) (*feeder, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &feeder{ln: ln, accepted: make(chan time.Time, 1)}
	f.wg.Go(func() {
		first := true
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns = append(f.conns, c)
			f.mu.Unlock()
			if !first {
				continue
			}
			first = false
			f.accepted <- time.Now()
			f.wg.Go(func() {
				for sent := 0; sent < n; sent += blockLines {
					if _, err := c.Write(block); err != nil {
						return
					}
				}
				c.Close()
			})
		}
	})
	return f, nil
}

func (f *feeder) addr() string { return f.ln.Addr().String() }

func (f *feeder) stop() {
	f.ln.Close()
	f.mu.Lock()
	for _, c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// socketFigures is what a socket child reports on its last stdout line.
type socketFigures struct {
	End           int64 // unix nanoseconds when the last line was counted
	PeakRSS       int64
	MaxBatchLines int64
	MaxBuffered   int64
}

// socketBench is socket WordCount: a feeder in this process sends the same
// lines to Sluice (SocketTextStream, timer-driven batches) and to the
// single-goroutine bufio.Scanner + map reader, each in a child process so
// that its peak RSS is its own; rounds are interleaved.
func socketBench(cfg config, out io.Writer) error {
	block, blockLines := feedBlock()
	n := (cfg.socketLines + blockLines - 1) / blockLines * blockLines
	fmt.Fprintf(out, "socket WordCount: %d lines (%s bytes) from a feeder on 127.0.0.1, %v batches, receiver bound %s\n",
		n, wordgen.Label(float64(len(block)*(n/blockLines))), cfg.socketBatch, boundLabel(cfg.receiverBytes))
	figs := map[string][]socketFigures{}
	cpus := map[string][]time.Duration{}
	round := func(name string) func() (time.Duration, error) {
		return func() (time.Duration, error) {
			f, err := newFeeder(block, blockLines, n)
			if err != nil {
				return 0, err
			}
			defer f.stop()
			var fig socketFigures
			cpu, err := runChildCPU(cfg, name, &fig, "-socket-lines", strconv.Itoa(n), "-socket-batch", cfg.socketBatch.String(),
				"-receiver-bytes", strconv.FormatInt(cfg.receiverBytes, 10), "--", f.addr())
			if err != nil {
				return 0, err
			}
			var start time.Time
			select {
			case start = <-f.accepted:
			default:
				return 0, fmt.Errorf("child %s never connected", name)
			}
			figs[name] = append(figs[name], fig)
			cpus[name] = append(cpus[name], cpu)
			return time.Unix(0, fig.End).Sub(start), nil
		}
	}
	sl := &side{name: fmt.Sprintf("sluice local[%d], SocketTextStream", cfg.slots), round: round("socket-sluice")}
	rd := &side{name: "reader: 1 goroutine, bufio.Scanner + same splitter + map", round: round("socket-reader")}
	if err := interleave(cfg.rounds, sl, rd); err != nil {
		return err
	}
	printRates(out, sl, float64(n), "lines")
	printRates(out, rd, float64(n), "lines")
	printRatio(out, "ratio to like-for-like baseline (single-goroutine reader)", sl, rd, " (target >= 1.3x)")
	fmt.Fprintf(out, "  CPU per million lines (user+system, whole process; less sensitive to load): sluice %v, reader %v (medians)\n",
		(median(cpus["socket-sluice"]) * 1e6 / time.Duration(n)).Round(time.Millisecond), (median(cpus["socket-reader"]) * 1e6 / time.Duration(n)).Round(time.Millisecond))
	medFig := func(name string, get func(socketFigures) int64) int64 {
		var v []int64
		for _, f := range figs[name] {
			v = append(v, get(f))
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	lineBytes := int64(len(block) / blockLines)
	batchIn := medFig("socket-sluice", func(f socketFigures) int64 { return f.MaxBatchLines }) * lineBytes
	peakS := medFig("socket-sluice", func(f socketFigures) int64 { return f.PeakRSS })
	fmt.Fprintf(out, "  peak RSS: sluice %s, reader %s (medians); sluice's largest batch held %s of input (max buffered by the receiver %s);\n",
		mb(peakS), mb(medFig("socket-reader", func(f socketFigures) int64 { return f.PeakRSS })), mb(batchIn),
		mb(medFig("socket-sluice", func(f socketFigures) int64 { return f.MaxBuffered })))
	fmt.Fprintf(out, "  sluice peak RSS / largest batch's input: %.2fx (target <= 3x one batch's input + state; WordCount keeps no state)\n",
		float64(peakS)/float64(max(batchIn, 1)))
	return nil
}

func boundLabel(b int64) string {
	if b <= 0 {
		return mb(dstream.DefaultReceiverBytes) + " (default)"
	}
	return mb(b) + " (-receiver-bytes)"
}

func socketOpts(cfg config) []dstream.SocketOption {
	if cfg.receiverBytes > 0 {
		return []dstream.SocketOption{dstream.MaxBufferedBytes(cfg.receiverBytes)}
	}
	return nil
}

// batchLog captures the figures of the context's per-batch log lines.
type batchLog struct {
	mu       sync.Mutex
	delays   []time.Duration
	inputs   []int64
	buffered int64
}

func (h *batchLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *batchLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *batchLog) WithGroup(string) slog.Handler            { return h }
func (h *batchLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "batch" {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if os.Getenv("BENCH_BATCH_LOG") != "" { // for looking into a run's batches
		var b strings.Builder
		r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
		fmt.Fprintln(os.Stderr, "batch"+b.String())
	}
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "total_delay":
			h.delays = append(h.delays, a.Value.Duration())
		case "input_records":
			h.inputs = append(h.inputs, a.Value.Int64())
		case "receiver_buffered_bytes":
			h.buffered = max(h.buffered, a.Value.Int64())
		}
		return true
	})
	return nil
}

// socketWordCount runs WordCount over a socket stream in real time until
// want words were counted, and returns when that happened.
func socketWordCount(cfg config, addr string, interval time.Duration, want int64, log *batchLog) (time.Time, error) {
	ctx, err := dstream.New(dstream.Config{
		AppName:       "bench",
		BatchInterval: interval,
		Master:        fmt.Sprintf("local[%d]", cfg.slots),
		Logger:        slog.New(log),
	})
	if err != nil {
		return time.Time{}, err
	}
	lines := dstream.SocketTextStream(ctx, addr, socketOpts(cfg)...)
	pairs := dstream.Map(dstream.FlatMapEmit(lines, wordgen.Fields), func(w string) dstream.KV[string, int64] {
		return dstream.KV[string, int64]{Key: w, Value: 1}
	})
	counts := dstream.ReduceByKey(pairs, func(a, b int64) int64 { return a + b })
	run, cancel := context.WithCancel(context.Background())
	defer cancel()
	var total int64
	var end time.Time
	dstream.ForeachRDD(counts, func(b *dstream.Batch, r *rdd.RDD[dstream.KV[string, int64]]) error {
		all, err := dstream.Collect(b, r)
		for _, kv := range all {
			total += kv.Value
		}
		if total >= want && end.IsZero() {
			end = time.Now()
			cancel()
		}
		return err
	})
	if err := ctx.Run(run); err != nil && !errors.Is(err, context.Canceled) {
		return time.Time{}, err
	}
	if total != want {
		return time.Time{}, fmt.Errorf("counted %d words, want %d", total, want)
	}
	return end, nil
}

func childAddr(args []string) (string, error) {
	if len(args) != 1 {
		return "", fmt.Errorf("want the feeder address as the only argument, got %q", args)
	}
	return args[0], nil
}

func socketSluiceChild(cfg config, args []string, out io.Writer) error {
	addr, err := childAddr(args)
	if err != nil {
		return err
	}
	var log batchLog
	end, err := socketWordCount(cfg, addr, cfg.socketBatch, int64(cfg.socketLines)*wordgen.WordsPerLine, &log)
	if err != nil {
		return err
	}
	fig := socketFigures{End: end.UnixNano(), PeakRSS: peakRSS(), MaxBuffered: log.buffered}
	fig.MaxBatchLines = slices.Max(append(log.inputs, 0))
	return json.NewEncoder(out).Encode(fig)
}

// socketReaderChild is the hand-written reader: one goroutine, a
// bufio.Scanner over the connection, the same splitter, one map.
func socketReaderChild(cfg config, args []string, out io.Writer) error {
	addr, err := childAddr(args)
	if err != nil {
		return err
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	counts := make(map[string]int64)
	sc := bufio.NewScanner(conn)
	lines := 0
	for sc.Scan() {
		wordgen.Fields(sc.Text(), func(w string) { counts[w]++ })
		lines++
	}
	end := time.Now()
	if err := sc.Err(); err != nil {
		return err
	}
	if err := checkTotal(counts, cfg.socketLines); err != nil {
		return err
	}
	return json.NewEncoder(out).Encode(socketFigures{End: end.UnixNano(), PeakRSS: peakRSS()})
}

// latencyBench feeds cfg.latencyRate lines per second (paced every
// millisecond) to WordCount with cfg.latencyInterval batches for
// cfg.latencySeconds, and reports the total delay of the batches (from
// batch time to the end of its processing) from the batch log lines.
func latencyBench(cfg config, out io.Writer) error {
	block, blockLines := feedBlock()
	n := cfg.latencyRate * cfg.latencySeconds
	fmt.Fprintf(out, "latency: WordCount of %s lines/s of socket input for %d s, %v batches\n",
		wordgen.Label(float64(cfg.latencyRate)), cfg.latencySeconds, cfg.latencyInterval)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	var starts []int // where each line of the block starts, and the end
	for i := 0; i < len(block); i++ {
		if i == 0 || block[i-1] == '\n' {
			starts = append(starts, i)
		}
	}
	starts = append(starts, len(block))
	var wg sync.WaitGroup
	defer wg.Wait()
	feedErr := make(chan error, 1)
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			feedErr <- err
			return
		}
		defer c.Close()
		start := time.Now()
		sent, line := 0, 0 // lines sent; next line of the block
		for sent < n {
			due := min(n, int(time.Since(start).Seconds()*float64(cfg.latencyRate)))
			for sent < due { // whole lines, in pieces of the block
				k := min(due-sent, blockLines-line)
				if _, err := c.Write(block[starts[line]:starts[line+k]]); err != nil {
					feedErr <- err
					return
				}
				sent += k
				if line += k; line == blockLines {
					line = 0
				}
			}
			time.Sleep(time.Millisecond)
		}
		feedErr <- nil
		for { // hold the connection open until the job stops
			if _, err := c.Read(make([]byte, 1)); err != nil {
				return
			}
		}
	})
	var log batchLog
	if _, err := socketWordCount(cfg, ln.Addr().String(), cfg.latencyInterval, int64(n)*wordgen.WordsPerLine, &log); err != nil {
		return err
	}
	if err := <-feedErr; err != nil {
		return err
	}
	d := slices.Clone(log.delays)
	slices.Sort(d)
	if len(d) == 0 {
		return fmt.Errorf("no batch log lines")
	}
	p := func(q float64) time.Duration { return d[int(float64(len(d)-1)*q)].Round(time.Millisecond) }
	fmt.Fprintf(out, "  %d batches: total delay p50 %v, p99 %v, max %v (target p99 <= %v = 3 intervals); receiver held at most %s\n",
		len(d), p(0.5), p(0.99), p(1), 3*cfg.latencyInterval, mb(log.buffered))
	return nil
}
