package dstream

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/sluicehq/sluice/internal/cluster"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type stdFlags struct {
	master       *string
	logLevel     *string
	logFormat    *string
	checkpoint   *string
	ckptInterval *time.Duration
	partitions   *int
}

func newFlagSet(app, master string) (*flag.FlagSet, stdFlags) {
	fs := flag.NewFlagSet(app, flag.ContinueOnError)
	return fs, stdFlags{
		master:    fs.String("master", master, "where tasks run: local[N] (N slots), local[*] (one per core)"),
		logLevel:  fs.String("log-level", "info", "log level: debug, info, warn or error"),
		logFormat: fs.String("log-format", "text", "log format: text or json"),
		checkpoint: fs.String("checkpoint", "", "checkpoint directory: input is written ahead, state snapshotted, "+
			"and a run with the same directory resumes where the last one stopped"),
		ckptInterval: fs.Duration("checkpoint-interval", 0, "how often state is snapshotted, a multiple of the batch interval (default: the smallest multiple of the slides >= 10s)"),
		partitions: fs.Int("partitions", 0, "partitions of every shuffle and state without its own Partitions option "+
			"(default: the task slots; in a cluster, the cluster's slots when the job was submitted)"),
	}
}

// Flags returns the job's flag set. It holds the standard flags (--master,
// --log-level, --log-format). A job usually declares its own flags with the
// standard flag package instead (flag.String and friends, before Run or
// Main): those are parsed together with the standard ones. Flags added here
// work too; read them after ParseFlags, or inside the build function of Run.
func (c *Context) Flags() *flag.FlagSet { return c.flags }

// commandLine is the flag set whose flags ParseFlags adds to the job's, as
// long as nothing parsed it yet: flag.CommandLine (tests replace it).
var commandLine = flag.CommandLine

// ParseFlags parses args (os.Args[1:] under Main) into the flag set and
// applies the standard flags. Flags declared with the standard flag package
// (flag.CommandLine) are parsed too; if the program parsed them itself
// first (flag.Parse), they keep the values it parsed. With --help (or -h) it prints the flags to stderr (os.Stderr if nil)
// and returns ErrHelp. Calling it again does nothing.
func (c *Context) ParseFlags(args []string, stderr io.Writer) error {
	if c.flags.Parsed() {
		return nil
	}
	if stderr == nil {
		stderr = os.Stderr
	}
	c.args = append([]string(nil), args...)
	if err := c.adoptCommandLine(); err != nil {
		return err
	}
	// The flag package would print the error and the whole usage; print
	// the usage only when asked, and let the caller report the error once.
	c.flags.SetOutput(io.Discard)
	if err := c.flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			c.flags.SetOutput(stderr)
			fmt.Fprintf(stderr, "Usage of %s:\n", c.cfg.AppName)
			c.flags.PrintDefaults()
			return ErrHelp
		}
		return &usageError{fmt.Errorf("%w (run with --help for the flags)", err)}
	}
	if c.flags.NArg() > 0 {
		return &usageError{fmt.Errorf("unexpected argument %q: flags are written --name=value", c.flags.Arg(0))}
	}
	if _, err := parseMaster(*c.std.master); err != nil {
		return &usageError{fmt.Errorf("--master: %w", err)}
	}
	c.cfg.Master = *c.std.master
	switch n := *c.std.partitions; {
	case n < 0:
		return &usageError{fmt.Errorf("--partitions %d: must be > 0", n)}
	case n > 0 && len(c.streams) > 0 && n != c.Parallelism():
		// Streams already defined were partitioned by the old count.
		return &usageError{fmt.Errorf("--partitions %d: the job defined its streams before its flags were parsed (New, then Main); use dstream.Run, or call ParseFlags before defining streams", n)}
	case n > 0:
		c.cfg.Parallelism, c.partitionsChosen = n, true
	}
	if *c.std.checkpoint != "" {
		c.cfg.Checkpoint = *c.std.checkpoint
	}
	if d := *c.std.ckptInterval; d != 0 {
		if d < 0 || d%c.cfg.BatchInterval != 0 {
			return &usageError{fmt.Errorf("--checkpoint-interval %v: must be a positive multiple of the batch interval %v", d, c.cfg.BatchInterval)}
		}
		c.cfg.CheckpointInterval = d
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*c.std.logLevel)); err != nil {
		return &usageError{fmt.Errorf("--log-level %q: use debug, info, warn or error", *c.std.logLevel)}
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(*c.std.logFormat) {
	case "text":
		c.cfg.Logger = slog.New(slog.NewTextHandler(stderr, opts))
	case "json":
		c.cfg.Logger = slog.New(slog.NewJSONHandler(stderr, opts))
	default:
		return &usageError{fmt.Errorf("--log-format %q: use text or json", *c.std.logFormat)}
	}
	return nil
}

// adoptCommandLine adds the flags of the standard flag package's command
// line to the job's flag set. If the program parsed them itself (flag.Parse
// before Run), they are accepted again but keep the values it parsed.
func (c *Context) adoptCommandLine() error {
	cl := commandLine
	if cl == nil {
		return nil
	}
	parsed := cl.Parsed()
	var err error
	cl.VisitAll(func(f *flag.Flag) {
		if err != nil {
			return
		}
		if c.flags.Lookup(f.Name) != nil {
			err = &usageError{fmt.Errorf("flag --%s is defined twice (by the job and by Sluice or the job's flag set); rename the job's flag", f.Name)}
			return
		}
		v := f.Value
		if parsed {
			if b, ok := v.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
				v = parsedBool{parsedValue{v}}
			} else {
				v = parsedValue{v}
			}
		}
		c.flags.Var(v, f.Name, f.Usage)
		c.flags.Lookup(f.Name).DefValue = f.DefValue // --help shows the default, not the parsed value
	})
	return err
}

// parsedValue is a flag the program already parsed: setting it again is
// accepted and changes nothing (a flag that accumulates would count twice).
type parsedValue struct{ flag.Value }

func (parsedValue) Set(string) error { return nil }

// String and Get forward to the flag; flag.PrintDefaults calls String on a
// zero parsedValue too.
func (p parsedValue) String() string {
	if p.Value == nil {
		return ""
	}
	return p.Value.String()
}

func (p parsedValue) Get() any {
	if g, ok := p.Value.(flag.Getter); ok {
		return g.Get()
	}
	return nil
}

type parsedBool struct{ parsedValue }

func (parsedBool) IsBoolFlag() bool { return true }

// ErrHelp is returned by ParseFlags when --help was given; the usage was
// printed and the program should exit 0.
var ErrHelp = flag.ErrHelp

type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// Usagef returns an error that tells Run (or MainArgs's caller) that the
// command line was wrong: Run prints it and exits 2, as for a malformed
// flag. Use it for flag values the flag package accepts but the job does
// not, naming the flag and the accepted values:
//
//	if *rate < 0 {
//		return dstream.Usagef("--lines-per-second=%d: must be >= 0", *rate)
//	}
func Usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// IsUsage reports whether err is (or wraps) a command-line error made by
// ParseFlags or Usagef.
func IsUsage(err error) bool {
	var u *usageError
	return errors.As(err, &u)
}

// Run is the whole main function of a job whose graph depends on its
// flags. It makes the Context from cfg, parses the command line (the
// standard flags plus every flag the program declared with the standard
// flag package), calls build to define the job's streams and outputs, and
// runs the job as Main does. It does not return:
//
//	func main() {
//		addr := flag.String("addr", "localhost:9999", "text server to read")
//		dstream.Run(dstream.Config{AppName: "wc", BatchInterval: time.Second}, func(ctx *dstream.Context) error {
//			lines := dstream.SocketTextStream(ctx, *addr)
//			dstream.Print(dstream.CountByValue(dstream.FlatMap(lines, strings.Fields)), 10)
//			return nil
//		})
//	}
//
// --help prints the flags and exits 0. A malformed flag, or an error from
// build made with Usagef, exits 2; any other error from build exits 1.
func Run(cfg Config, build func(ctx *Context) error) {
	os.Exit(RunArgs(cfg, os.Args[1:], os.Stderr, build))
}

// RunArgs is Run with explicit arguments; it returns the exit code.
func RunArgs(cfg Config, args []string, stderr io.Writer, build func(ctx *Context) error) int {
	if stderr == nil {
		stderr = os.Stderr
	}
	app := cfg.AppName
	if app == "" {
		app = "sluice"
	}
	c, err := New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", app, err)
		return 2
	}
	if err := c.ParseFlags(args, stderr); err != nil {
		if errors.Is(err, ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "%s: %v\n", app, err)
		return 2
	}
	if build == nil {
		fmt.Fprintf(stderr, "%s: dstream.Run: the build function is nil\n", app)
		return 2
	}
	if err := c.adoptCheckpointPartitions(); err != nil {
		fmt.Fprintf(stderr, "%s: --checkpoint %s: %v\n", app, c.cfg.Checkpoint, err)
		return 1
	}
	if err := callBuild(build, c); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", app, err)
		if IsUsage(err) {
			return 2
		}
		return 1
	}
	return MainArgs(c, args, stderr)
}

// callBuild runs build. The API's own argument checks panic with a message
// starting "dstream: " (Rate(-5), Repartition(0)): under Run such a value
// most likely came from a flag, so it is reported as a usage error, not a
// crash. Any other panic propagates.
func callBuild(build func(*Context) error, c *Context) (err error) {
	defer func() {
		if v := recover(); v != nil {
			msg, ok := v.(string)
			if !ok || !strings.HasPrefix(msg, "dstream: ") {
				panic(v)
			}
			err = &usageError{errors.New(msg)}
		}
	}()
	return build(c)
}

// Main is the last call of a job's main function: it parses the flags,
// runs the job until SIGINT or SIGTERM (or Context.Stop) and exits. On a
// signal the batches already generated finish their outputs and the
// process exits 0 (within Config.StopTimeout); a failed batch exits 1; bad
// flags exit 2; --help prints the flags and exits 0. A job whose graph
// depends on its flags uses Run instead.
func Main(c *Context) {
	os.Exit(MainArgs(c, os.Args[1:], os.Stderr))
}

// MainArgs is Main with explicit arguments; it returns the exit code.
func MainArgs(c *Context, args []string, stderr io.Writer) int {
	if stderr == nil {
		stderr = os.Stderr
	}
	if err := c.ParseFlags(args, stderr); err != nil {
		if errors.Is(err, ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "%s: %v\n", c.cfg.AppName, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal kills the process
	}()
	defer stop()
	run := c.Run
	env := cluster.EnvFromOS()
	if env.Role != "" {
		if env.Role == roleDriver && env.Attempt > 1 && c.cfg.Checkpoint == "" && len(c.stateful) > 0 {
			// Starting again from empty state would be a silent reset.
			fmt.Fprintf(stderr, "%s: the job driver was restarted (attempt %d) but the job runs without --checkpoint, so its operator state is lost; submit it with --checkpoint DIR to make restarts recover the state\n", c.cfg.AppName, env.Attempt)
			return cluster.ExitUsage
		}
		run = func(ctx context.Context) error { return c.runCluster(ctx, env) }
	}
	if err := run(ctx); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", c.cfg.AppName, err)
		if env.Role == roleDriver && c.cfg.Checkpoint != "" && stateLost(err) {
			fmt.Fprintf(stderr, "%s: operator state was lost with an executor: exiting with code %d so that driver serve restarts the job from its checkpoint\n", c.cfg.AppName, cluster.ExitRestart)
			return cluster.ExitRestart
		}
		return 1
	}
	return 0
}

// runs holds the cancel function of every context running under Run, so
// that Context.Stop can end it.
var runs sync.Map // *Context -> context.CancelFunc

// requestStop asks a context running under Run (and so Main) to stop
// gracefully, as a signal would, and reports whether one was running. It
// does not wait: Run returns once the generated batches finished.
func (c *Context) requestStop() bool {
	v, ok := runs.Load(c)
	if ok {
		v.(context.CancelFunc)()
	}
	return ok
}

// finishRun stops the runtime of a context whose Run returns.
func (c *Context) finishRun() {
	runs.Delete(c)
	c.mu.Lock()
	wasStarted := c.state == started
	c.state = stopped
	c.mu.Unlock()
	if wasStarted {
		c.stopRuntime()
	}
}

// Run starts the context and runs batches on the batch clock until ctx is
// cancelled or a batch fails. Cancellation is a graceful stop: no new batch
// is generated, the ones already generated run to the end (within
// Config.StopTimeout), and Run returns nil.
//
// Context.Stop, from any goroutine (an output function included), stops it
// the same way; Stop does not wait for Run to return.
func (c *Context) Run(ctx context.Context) error {
	interval := c.cfg.BatchInterval
	zero := time.Now().Truncate(interval)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if _, running := runs.LoadOrStore(c, context.CancelFunc(cancel)); running {
		return ErrStarted
	}
	genFrom := zero // the generator's first batch is the one after it
	if c.cfg.Checkpoint != "" {
		z, err := c.openCheckpoint(time.Now())
		if err != nil {
			runs.Delete(c)
			return err
		}
		zero, genFrom = z, c.ckpt.from
		c.obs.ckptStore.Store(c.ckpt.store) // the UI's checkpoint figures
		defer c.closeCheckpoint()
	}
	if err := c.start(zero); err != nil {
		runs.Delete(c)
		return err
	}
	defer c.finishRun()
	if err := c.restoreCheckpoint(); err != nil {
		return err
	}
	stopUI, err := c.startUI() // --ui: ui.go
	if err != nil {
		return err
	}
	defer stopUI()
	master, slots := c.cfg.Master, c.slots
	if c.role == roleDriver { // a cluster job: its tasks run on the executors
		master, slots = "cluster "+c.clusterAddr, c.Parallelism()
	}
	c.log.Info("started", slog.Duration("batch_interval", interval), slog.String("master", master),
		slog.Int("slots", slots), slog.Int("streams", len(c.streams)), slog.Int("outputs", len(c.outputs)))

	// The batches are processed under procCtx, which a graceful stop cancels
	// StopTimeout after the signal: then the batch in flight is abandoned and
	// Run reports the timeout.
	procCtx, cancelProc := context.WithCancel(context.Background())
	defer cancelProc()

	genCtx, cancelGen := context.WithCancel(ctx)
	defer cancelGen()
	batches := make(chan *batch, 1024)
	genDone := make(chan struct{})
	go func() { // owned by Run, which waits on genDone
		defer close(genDone)
		defer close(batches)
		// A generated batch is always handed over (its input was cut: a
		// stop arriving meanwhile must not drop it); only the end of
		// processing (Run returning, the stop timeout) abandons it.
		next := c.timerLoop(genCtx, genFrom, func(t time.Time) {
			b := c.generate(t)
			select {
			case batches <- b:
			case <-procCtx.Done():
			}
		})
		// A graceful stop (ctx, not a failed batch) processes what the
		// receivers took in, as Spark's does: they stop reading, and one
		// more batch takes what they hold. It is generated at once, with
		// the next batch time (early rather than waiting up to an
		// interval, which the stop timeout would count).
		if ctx.Err() == nil || !c.quiesceReceivers() {
			return
		}
		c.log.Info("stopping: receivers stopped; one more batch takes what they received", slog.String("batch", fmtTime(next)))
		b := c.generate(next)
		select {
		case batches <- b:
		case <-procCtx.Done():
		}
	}()
	defer func() { cancelGen(); cancelProc(); <-genDone }()

	var timedOut atomic.Bool
	stopTimer := context.AfterFunc(ctx, func() {
		c.log.Info("stopping: finishing generated batches", slog.Int("pending", len(batches)))
		time.AfterFunc(c.cfg.StopTimeout, func() { timedOut.Store(true); cancelProc() })
	})
	defer stopTimer()
	for b := range batches {
		if timedOut.Load() {
			break
		}
		if _, err := c.process(procCtx, b, b.time); err != nil {
			if timedOut.Load() {
				break
			}
			return err
		}
	}
	if timedOut.Load() {
		return fmt.Errorf("dstream: graceful stop timed out after %v with %d batches unprocessed", c.cfg.StopTimeout, len(batches)+1)
	}
	c.log.Info("stopped")
	return nil
}

// timerLoop calls tick at every multiple of the batch interval after zero,
// in order, until ctx is done, and returns the first batch time it did not
// tick. A late tick (the process was paused) is not skipped: every batch
// time is generated.
func (c *Context) timerLoop(ctx context.Context, zero time.Time, tick func(t time.Time)) time.Time {
	interval := c.cfg.BatchInterval
	next := zero.Add(interval)
	timer := time.NewTimer(time.Until(next))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return next
		case <-timer.C:
		}
		for !time.Now().Before(next) {
			if ctx.Err() != nil {
				return next
			}
			tick(next)
			next = next.Add(interval)
		}
		timer.Reset(time.Until(next))
	}
}

// quiesceReceivers stops every receiver reading (keeping what each holds)
// and reports whether one holds input no batch took yet.
func (c *Context) quiesceReceivers() bool {
	c.mu.Lock()
	inputs := c.inputs
	c.mu.Unlock()
	any := false
	for _, in := range inputs {
		if in.quiesce() {
			any = true
		}
	}
	return any
}
