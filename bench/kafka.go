package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/internal/devkafka"
	"github.com/sluicehq/sluice/internal/wordgen"
	"github.com/sluicehq/sluice/kafka"
	"github.com/sluicehq/sluice/rdd"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The Kafka workload: the standard lines in a 4-partition topic of a
// development broker (kfake) running as a separate process on loopback.
// Each round reads the whole topic from its start with three consumers, in
// turn: Sluice's Kafka WordCount (local mode, 1 s batches, counts per
// batch), a hand-written kafka-go consumer (one goroutine per partition,
// Conn.ReadBatchWith, a map each, merged) and a franz-go consumer (one
// goroutine polling, one map). All split lines with the same
// allocation-free splitter. Throughput is lines read and counted per
// second of wall time; the broker's CPU is measured from /proc.
const (
	kafkaLines      = 2_000_000
	kafkaPartitions = 4
	kafkaRounds     = 3
	kafkaBatches    = 4 // Sluice reads the topic in this many 1 s batches
)

var _ = register("kafka", false, kafkaBench)

func kafkaBench(cfg config, out io.Writer) error {
	dir, err := os.MkdirTemp("", "sluice-bench-kafka-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	build := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "./cmd/devbroker")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build devbroker: %v\n%s", err, b)
	}
	brk := exec.Command(filepath.Join(dir, "devbroker"), "--port=0", fmt.Sprintf("--partitions=%d", kafkaPartitions), "--topics=lines,bp")
	stdout, err := brk.StdoutPipe()
	if err != nil {
		return err
	}
	brk.Stderr = os.Stderr
	if err := brk.Start(); err != nil {
		return err
	}
	defer func() { brk.Process.Kill(); brk.Wait() }()
	addr, err := brokerAddr(stdout)
	if err != nil {
		return err
	}
	go io.Copy(io.Discard, stdout)
	addrs := []string{addr}

	start := time.Now()
	n, err := devkafka.Generate(context.Background(), addrs, "lines", 0, 0, kafkaLines)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "kafka: WordCount of %d lines x %d words in %d partitions on a devbroker (kfake) process at %s, filled in %v; %d rounds, interleaved, the order rotated each round\n",
		n, wordgen.WordsPerLine, kafkaPartitions, addr, time.Since(start).Round(time.Millisecond), kafkaRounds)

	type contender struct {
		name string
		run  func() (int64, error) // returns the words counted
	}
	contenders := []contender{
		{fmt.Sprintf("sluice local[%d], kafka.NewValueStream, %d x 1 s batches", cfg.slots, kafkaBatches), func() (int64, error) { return sluiceKafka(cfg, addrs) }},
		{"kafka-go: a goroutine per partition, Conn.ReadBatchWith + map", func() (int64, error) { return kafkaGoConsumer(addrs) }},
		{"franz-go: one goroutine, PollFetches + map", func() (int64, error) { return franzConsumer(addrs) }},
	}
	// KAFKA_BENCH_CPUPROFILE=file writes a CPU profile of Sluice's runs.
	var prof *os.File
	if path := os.Getenv("KAFKA_BENCH_CPUPROFILE"); path != "" {
		if prof, err = os.Create(path); err != nil {
			return err
		}
		defer prof.Close()
	}
	rates := make([][]float64, len(contenders))
	shares := make([][]float64, len(contenders))
	cpu := make([][]float64, len(contenders)) // consumer CPU µs per line
	for round := range kafkaRounds {
		// The order rotates every round, so that no contender always
		// follows the same one (and pays for the broker's garbage of it).
		for k := range contenders {
			i := (k + round) % len(contenders)
			c := contenders[i]
			b0, s0 := cpuTicks(brk.Process.Pid), cpuTicks(os.Getpid())
			if prof != nil && i == 0 {
				if err := pprof.StartCPUProfile(prof); err != nil {
					return err
				}
			}
			t0 := time.Now()
			words, err := c.run()
			wall := time.Since(t0)
			if prof != nil && i == 0 {
				pprof.StopCPUProfile()
				if round == 0 { // one round: a profile file holds one profile
					prof = nil
				}
			}
			b1, s1 := cpuTicks(brk.Process.Pid), cpuTicks(os.Getpid())
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			if want := n * wordgen.WordsPerLine; words != want {
				return fmt.Errorf("%s counted %d words, want %d", c.name, words, want)
			}
			rates[i] = append(rates[i], float64(n)/wall.Seconds())
			if tot := (b1 - b0) + (s1 - s0); tot > 0 {
				shares[i] = append(shares[i], float64(b1-b0)/float64(tot))
			}
			cpu[i] = append(cpu[i], float64(s1-s0)/clockTicks*1e6/float64(n))
		}
	}
	best := 0.0
	for i, c := range contenders {
		med, lo := medianF(rates[i]), slices.Min(rates[i])
		fmt.Fprintf(out, "  %s\n    median %s lines/s (min %s), consumer CPU %.2f µs/line, broker CPU share %.0f%%\n", c.name,
			wordgen.Label(med), wordgen.Label(lo), medianF(cpu[i]), 100*medianF(shares[i]))
		if i > 0 {
			best = max(best, med)
		}
	}
	sl := medianF(rates[0])
	fmt.Fprintf(out, "  sluice / faster hand-written consumer: %.2fx (target >= 1.0x and >= 2M lines/s); load average %s\n", sl/best, loadavg())
	return backpressureDemo(cfg, addrs, out)
}

// backpressureDemo runs a deliberately slowed Kafka job (at most about
// 20,000 lines/s: each of its 2 tasks sleeps 10 ms per 100 lines) with
// backpressure on the wall clock: input is offered at 3x that for 20 s,
// then at 0.3x until the backlog is gone. It prints every batch's size,
// processing time, scheduling delay, lag and rate.
func backpressureDemo(cfg config, addrs []string, out io.Writer) error {
	const capacity, overload = 20_000, 10 * time.Second
	ctx, err := newContext(cfg, time.Second)
	if err != nil {
		return err
	}
	lines, err := kafka.NewValueStream(ctx, kafka.Config{
		Brokers: addrs, Topics: []string{"bp"}, Start: kafka.StartLatest,
		Backpressure: true, InitialRate: capacity, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, kafka.String())
	if err != nil {
		return err
	}
	slowed := dstream.MapPartitions(lines, func(in iter.Seq[string]) iter.Seq[int64] {
		return func(yield func(int64) bool) {
			var n int64
			for range in {
				if n++; n%100 == 0 {
					time.Sleep(10 * time.Millisecond)
				}
			}
			yield(n)
		}
	})
	dstream.ForeachRDD(slowed, func(b *dstream.Batch, r *rdd.RDD[int64]) error {
		_, err := dstream.Collect(b, r)
		return err
	})
	fmt.Fprintf(out, "kafka backpressure (wall clock): a job that processes about %d lines/s, 1 s batches; input at 3x for %v, then at 0.3x\n", capacity, overload)
	start := time.Now()
	var mu sync.Mutex
	var dropped time.Time // when input dropped to 0.3x
	var lastLag, backlog int64
	var overloadBatches []int64
	var maxSched time.Duration
	drained := make(chan time.Duration, 1)
	ctx.AddBatchListener(func(info dstream.BatchInfo) {
		var lag, rate int64
		for _, in := range info.Inputs {
			for _, a := range in.Attrs {
				switch a.Key {
				case "lag":
					lag = a.Value.Int64()
				case "rate":
					rate = a.Value.Int64()
				}
			}
		}
		mu.Lock()
		defer mu.Unlock()
		lastLag = lag
		fmt.Fprintf(out, "  +%3.0fs records %6d processing %6v scheduling delay %6v lag %7d rate %6d\n", time.Since(start).Seconds(),
			info.InputRecords, info.ProcessingTime.Round(time.Millisecond), info.SchedulingDelay.Round(time.Millisecond), lag, rate)
		if dropped.IsZero() {
			if time.Since(start) > overload/2 {
				overloadBatches = append(overloadBatches, info.InputRecords)
				maxSched = max(maxSched, info.SchedulingDelay)
			}
		} else if lag == 0 {
			select {
			case drained <- time.Since(dropped):
			default:
			}
		}
	})
	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- ctx.Run(runCtx) }() // waited for below
	time.Sleep(2 * time.Second)             // the job starts at the end of the topic
	genCtx, stopGen := context.WithTimeout(context.Background(), overload)
	var next int64
	next, err = devkafka.Generate(genCtx, addrs, "bp", 3*capacity, 0, 0)
	stopGen()
	if err != nil {
		return err
	}
	mu.Lock()
	dropped, backlog = time.Now(), lastLag
	mu.Unlock()
	slowCtx, stopSlow := context.WithCancel(context.Background())
	genDone := make(chan struct{})
	go func() { // owned here: stopped and waited for below
		defer close(genDone)
		devkafka.Generate(slowCtx, addrs, "bp", 3*capacity/10, next, 0)
	}()
	var took time.Duration
	select {
	case took = <-drained:
	case <-time.After(3 * time.Minute):
		took = -1
	case err = <-done:
	}
	stopSlow()
	<-genDone
	stop()
	if err == nil {
		err = <-done
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  under 3x load (second half): median batch %d lines (capacity %d per 1 s batch), max scheduling delay %v\n",
		int64(medianF(toFloats(overloadBatches))), capacity, maxSched.Round(time.Millisecond))
	if took < 0 {
		fmt.Fprintln(out, "  backlog NOT drained within 3 minutes of the input dropping")
	} else {
		fmt.Fprintf(out, "  backlog (%d lines when the input dropped to 0.3x) drained %v later\n", backlog, took.Round(time.Second))
	}
	return nil
}

func toFloats(v []int64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

var brokerRE = regexp.MustCompile(`on (127\.0\.0\.1:\d+)`)

func brokerAddr(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if m := brokerRE.FindStringSubmatch(sc.Text()); m != nil {
			return m[1], nil
		}
	}
	return "", errors.New("devbroker exited without printing its address")
}

func medianF(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// clockTicks is the kernel's USER_HZ, the unit of /proc/<pid>/stat times.
const clockTicks = 100

// cpuTicks returns the user+system CPU ticks of a process (0 if unknown).
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st
}

// sluiceKafka reads the whole topic with Sluice in kafkaBatches batches
// and counts words per batch.
func sluiceKafka(cfg config, addrs []string) (int64, error) {
	ctx, err := newContext(cfg, time.Second)
	if err != nil {
		return 0, err
	}
	defer ctx.Stop()
	lines, err := kafka.NewValueStream(ctx, kafka.Config{
		Brokers: addrs, Topics: []string{"lines"}, Start: kafka.StartEarliest,
		MaxRatePerPartition: float64(kafkaLines/kafkaPartitions/kafkaBatches + 1),
		Logger:              slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, kafka.String())
	if err != nil {
		return 0, err
	}
	pairs := dstream.FlatMapEmit(lines, func(line string, emit func(dstream.KV[string, int64])) {
		wordgen.Fields(line, func(w string) { emit(dstream.KV[string, int64]{Key: w, Value: 1}) })
	})
	counts := dstream.ReduceByKey(pairs, func(a, b int64) int64 { return a + b })
	var words int64
	dstream.ForeachRDD(counts, func(b *dstream.Batch, r *rdd.RDD[dstream.KV[string, int64]]) error {
		all, err := dstream.Collect(b, r)
		for _, kv := range all {
			words += kv.Value
		}
		return err
	})
	zero := time.Unix(0, 0)
	if err := ctx.StartManual(zero); err != nil {
		return 0, err
	}
	for b := 1; words < kafkaLines*wordgen.WordsPerLine && b <= 10*kafkaBatches; b++ {
		if _, err := ctx.RunBatch(context.Background(), zero.Add(time.Duration(b)*time.Second)); err != nil {
			return words, err
		}
	}
	return words, nil
}

// kafkaGoConsumer is the hand-written kafka-go consumer: one goroutine per
// partition reading with Conn.ReadBatchWith into its own map, merged.
func kafkaGoConsumer(addrs []string) (int64, error) {
	ctx := context.Background()
	maps := make([]map[string]int64, kafkaPartitions)
	errs := make([]error, kafkaPartitions)
	var wg sync.WaitGroup
	for p := range kafkaPartitions {
		wg.Go(func() {
			conn, err := kafkago.DialLeader(ctx, "tcp", addrs[0], "lines", p)
			if err != nil {
				errs[p] = err
				return
			}
			defer conn.Close()
			end, err := conn.ReadLastOffset()
			if err != nil {
				errs[p] = err
				return
			}
			if _, err := conn.Seek(0, kafkago.SeekAbsolute|kafkago.SeekDontCheck); err != nil {
				errs[p] = err
				return
			}
			m := make(map[string]int64, wordgen.VocabularySize)
			next := int64(0)
			for next < end {
				batch := conn.ReadBatchWith(kafkago.ReadBatchConfig{MinBytes: 1, MaxBytes: 8 << 20, MaxWait: time.Second})
				for {
					msg, err := batch.ReadMessage()
					if err != nil {
						break
					}
					next = msg.Offset + 1
					wordgen.Fields(unsafeString(msg.Value), func(w string) { m[w]++ })
				}
				if err := batch.Close(); err != nil {
					errs[p] = err
					return
				}
			}
			maps[p] = m
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	total := map[string]int64{}
	for _, m := range maps {
		for w, c := range m {
			total[w] += c
		}
	}
	var words int64
	for _, c := range total {
		words += c
	}
	return words, nil
}

// franzConsumer is the hand-written franz-go consumer: one goroutine
// polling fetches from the topic's start into one map.
func franzConsumer(addrs []string) (int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics("lines"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxBytes(64<<20), kgo.FetchMaxPartitionBytes(8<<20))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m := make(map[string]int64, wordgen.VocabularySize)
	var lines int64
	for lines < kafkaLines {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("after %d lines: %w", lines, err)
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return 0, ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			lines++
			wordgen.Fields(unsafeString(r.Value), func(w string) { m[w]++ })
		})
	}
	var words int64
	for _, c := range m {
		words += c
	}
	return words, nil
}

// unsafeString views b as a string without copying, as kafka.String does,
// so that the baselines do the same work per record as Sluice.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
