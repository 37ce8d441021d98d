// Command bench runs the standard workload of the mission (section 4) and
// reports every Sluice figure next to a like-for-like hand-written baseline
// measured in the same process (or, for memory figures, in sibling child
// processes): same input bytes, same splitter, as many goroutines as Sluice
// has task slots, the same output work. Sluice and its baselines run
// interleaved (A, B, A, B...) for -rounds rounds, each side after a garbage
// collection; medians and minimums are
// printed with the load average. Lines containing "like-for-like" carry the
// ratio Sluice/baseline (above 1 means Sluice is faster).
//
//	go run ./bench                               # default workloads (a couple of minutes)
//	go run ./bench -workloads local,socket -rounds 5
//	go run ./bench -workloads state,latency       # opt-in: 1M keys of state, 100 ms batches at 1.5M lines/s
//	go run ./bench -workloads cluster-socket      # opt-in: socket input, 100k keys, driver + 2 executors vs local
//	go run ./bench -workloads kafka               # opt-in: Kafka WordCount vs hand-written consumers
//	go run ./bench -workloads local -cpuprofile cpu.out  # profile of the whole run, baselines included
//
// Workloads register themselves with register (one line per workload), in
// file order; -workloads picks them by name.
package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/internal/wordgen"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// config holds the flags every workload may read.
type config struct {
	lines     int
	batches   int
	rounds    int
	slots     int
	empty     int
	workloads string
	child     string
	cpuprof   string

	socketLines   int
	socketBatch   time.Duration
	receiverBytes int64

	stateKeys    int
	stateBatches int

	latencyRate     int
	latencySeconds  int
	latencyInterval time.Duration

	longBatch   int
	longBatches int

	clusterLines   int
	clusterBatches int
	clusterRate    int
}

// workload is one named benchmark; byDefault ones run without -workloads.
type workload struct {
	name      string
	byDefault bool
	run       func(cfg config, out io.Writer) error
}

var workloads []workload

// register adds a workload. Each workload file registers itself with one
// line, e.g. `var _ = register("kafka", false, kafkaBench)`.
func register(name string, byDefault bool, run func(cfg config, out io.Writer) error) bool {
	workloads = append(workloads, workload{name: name, byDefault: byDefault, run: run})
	return true
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var cfg config
	fs.IntVar(&cfg.lines, "lines", 1_000_000, "in-memory workloads: lines per batch")
	fs.IntVar(&cfg.batches, "batches", 4, "in-memory workloads: batches per round")
	fs.IntVar(&cfg.rounds, "rounds", 3, "interleaved rounds (A, B, A, B...) per comparison")
	fs.IntVar(&cfg.slots, "slots", runtime.NumCPU(), "local task slots (and baseline goroutines)")
	fs.IntVar(&cfg.empty, "empty-batches", 300, "batches for the empty-batch overhead")
	fs.StringVar(&cfg.workloads, "workloads", "", "comma-separated workloads (default: the default ones; 'all' for every one)")
	fs.StringVar(&cfg.child, "child", "", "internal: run one measured side of a workload in this process")
	fs.StringVar(&cfg.cpuprof, "cpuprofile", "", "write a CPU profile of the whole run (every side, baselines included) to this file")
	fs.IntVar(&cfg.socketLines, "socket-lines", 4_000_000, "socket: lines sent per round")
	fs.DurationVar(&cfg.socketBatch, "socket-batch", 250*time.Millisecond, "socket: batch interval")
	fs.Int64Var(&cfg.receiverBytes, "receiver-bytes", 128<<20, "socket, latency: receiver memory bound in bytes (0: the engine default, 256 MiB)")
	fs.IntVar(&cfg.stateKeys, "state-keys", 1_000_000, "state: distinct keys")
	fs.IntVar(&cfg.stateBatches, "state-batches", 5, "state: empty batches measured")
	fs.IntVar(&cfg.latencyRate, "latency-rate", 1_500_000, "latency: socket input lines per second")
	fs.IntVar(&cfg.latencySeconds, "latency-seconds", 10, "latency: seconds of input")
	fs.DurationVar(&cfg.latencyInterval, "latency-batch", 100*time.Millisecond, "latency: batch interval")
	fs.IntVar(&cfg.clusterLines, "cluster-lines", 400_000, "cluster: generated lines per 1 s batch")
	fs.IntVar(&cfg.clusterBatches, "cluster-batches", 7, "cluster, cluster-socket: batches measured per run")
	fs.IntVar(&cfg.clusterRate, "cluster-rate", 200_000, "cluster-socket: socket input lines per second")
	fs.IntVar(&cfg.longBatch, "long-lines", 2000, "longwindow: lines per 1 s batch")
	fs.IntVar(&cfg.longBatches, "long-batches", 4000, "longwindow: batches to run through the 1 h window")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.rounds < 1 || cfg.batches < 1 || cfg.slots < 1 {
		return fmt.Errorf("-rounds, -batches and -slots must be >= 1")
	}
	if cfg.child != "" {
		return runChild(cfg, fs.Args(), out)
	}
	want := map[string]bool{}
	for _, w := range strings.Split(cfg.workloads, ",") {
		if w = strings.TrimSpace(w); w != "" {
			want[w] = true
		}
	}
	for w := range want {
		if w != "all" && !slices.ContainsFunc(workloads, func(x workload) bool { return x.name == w }) {
			return fmt.Errorf("-workloads: unknown workload %q (have %s)", w, names())
		}
	}
	if cfg.cpuprof != "" {
		f, err := os.Create(cfg.cpuprof)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	fmt.Fprintf(out, "bench: %d cores, local[%d], %d interleaved rounds; workloads %s\n", runtime.NumCPU(), cfg.slots, cfg.rounds, names())
	for _, w := range workloads {
		if len(want) == 0 && !w.byDefault || len(want) > 0 && !want[w.name] && !want["all"] {
			continue
		}
		fmt.Fprintf(out, "\n== %s (load average %s)\n", w.name, loadavg())
		if err := w.run(cfg, out); err != nil {
			return fmt.Errorf("%s: %w", w.name, err)
		}
	}
	fmt.Fprintf(out, "\nload average at the end: %s\n", loadavg())
	return nil
}

func names() string {
	var s []string
	for _, w := range workloads {
		n := w.name
		if !w.byDefault {
			n += "(opt-in)"
		}
		s = append(s, n)
	}
	return strings.Join(s, ",")
}

// loadavg returns the 1, 5 and 15 minute load averages.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// side is one measured variant of a comparison: each call runs one round
// and returns its duration.
type side struct {
	name  string
	round func() (time.Duration, error)
	times []time.Duration
}

// interleave runs the sides' rounds in turn, A, B, C, A, B, C... for rounds
// rounds, after one unmeasured warm-up round of each.
func interleave(rounds int, sides ...*side) error {
	for _, s := range sides {
		if _, err := s.round(); err != nil {
			return fmt.Errorf("%s (warm-up): %w", s.name, err)
		}
	}
	for r := 0; r < rounds; r++ {
		for _, s := range sides {
			// Each side starts from a collected heap: a side that leaves
			// garbage (strings.Fields allocates per line) would otherwise
			// have the next one pay for its collection. Measured: the hand
			// loop ran 0.66 s alone and 0.96-1.18 s right after the
			// strings.Fields reference.
			runtime.GC()
			d, err := s.round()
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			s.times = append(s.times, d)
		}
	}
	return nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// printRates prints a side's rate (unit per second for work units per
// round): median and best round.
func printRates(out io.Writer, s *side, work float64, unit string) {
	fmt.Fprintf(out, "  %-58s median %7s %s/s  best %7s %s/s  (rounds: %s)\n", s.name,
		wordgen.Label(work/median(s.times).Seconds()), unit, wordgen.Label(work/slices.Min(s.times).Seconds()), unit, fmtDurations(s.times))
}

func fmtDurations(ds []time.Duration) string {
	var s []string
	for _, d := range ds {
		s = append(s, d.Round(time.Millisecond).String())
	}
	return strings.Join(s, " ")
}

// printRatio prints the ratio of a's speed to b's: medians, and the range
// over rounds paired in the order they ran.
func printRatio(out io.Writer, label string, a, b *side, target string) {
	lo, hi := 0.0, 0.0
	for i := range a.times {
		r := b.times[i].Seconds() / a.times[i].Seconds()
		if i == 0 || r < lo {
			lo = r
		}
		if r > hi {
			hi = r
		}
	}
	fmt.Fprintf(out, "  %s: %.2fx (median of %d interleaved rounds; paired rounds %.2fx-%.2fx)%s\n",
		label, median(b.times).Seconds()/median(a.times).Seconds(), len(a.times), lo, hi, target)
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newContext(cfg config, interval time.Duration) (*dstream.Context, error) {
	return dstream.New(dstream.Config{
		AppName:       "bench",
		BatchInterval: interval,
		Master:        fmt.Sprintf("local[%d]", cfg.slots),
		Logger:        quietLogger(),
	})
}

// rss returns the resident set size of this process in bytes after a GC that
// returns freed memory to the system (0 if unknown).
func rss() int64 {
	debug.FreeOSMemory() // a GC, and freed pages back to the system
	return procStatus("VmRSS:")
}

// peakRSS returns the peak resident set size of this process in bytes.
func peakRSS() int64 { return procStatus("VmHWM:") }

func procStatus(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field) {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, field)), "%d", &kb)
			return kb * 1024
		}
	}
	return 0
}

func mb(b int64) string { return fmt.Sprintf("%.0f MB", float64(b)/1e6) }
