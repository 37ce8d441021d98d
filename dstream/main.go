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
	"sync/atomic"
	"syscall"
	"time"
)

type stdFlags struct {
	master    *string
	logLevel  *string
	logFormat *string
}

func newFlagSet(app, master string) (*flag.FlagSet, stdFlags) {
	fs := flag.NewFlagSet(app, flag.ContinueOnError)
	return fs, stdFlags{
		master:    fs.String("master", master, "where tasks run: local[N] (N slots), local[*] (one per core)"),
		logLevel:  fs.String("log-level", "info", "log level: debug, info, warn or error"),
		logFormat: fs.String("log-format", "text", "log format: text or json"),
	}
}

// Flags returns the job's flag set. It holds the standard flags (--master,
// --log-level, --log-format); a job adds its own before calling Main, and
// reads them after ParseFlags (or inside functions that run after Main
// parsed them).
func (c *Context) Flags() *flag.FlagSet { return c.flags }

// ParseFlags parses args (os.Args[1:] under Main) into the flag set and
// applies the standard flags. Calling it again does nothing.
func (c *Context) ParseFlags(args []string, stderr io.Writer) error {
	if c.flags.Parsed() {
		return nil
	}
	c.args = append([]string(nil), args...)
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

// ErrHelp is returned by ParseFlags when --help was given; the usage was
// printed and the program should exit 0.
var ErrHelp = flag.ErrHelp

type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// Main is the last call of a job's main function: it parses the flags,
// runs the job until SIGINT or SIGTERM and exits. On a signal the batches
// already generated finish their outputs and the process exits 0 (within
// Config.StopTimeout); a failed batch exits 1; bad flags exit 2.
func Main(c *Context) {
	os.Exit(MainArgs(c, os.Args[1:], os.Stderr))
}

// MainArgs is Main with explicit arguments; it returns the exit code.
func MainArgs(c *Context, args []string, stderr io.Writer) int {
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
	if env := cluster.EnvFromOS(); env.Role != "" {
		run = func(ctx context.Context) error { return c.runCluster(ctx, env) }
	}
	if err := run(ctx); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", c.cfg.AppName, err)
		return 1
	}
	return 0
}

// Run starts the context and runs batches on the batch clock until ctx is
// cancelled or a batch fails. Cancellation is a graceful stop: no new batch
// is generated, the ones already generated run to the end (within
// Config.StopTimeout), and Run returns nil.
func (c *Context) Run(ctx context.Context) error {
	interval := c.cfg.BatchInterval
	zero := time.Now().Truncate(interval)
	if err := c.start(zero); err != nil {
		return err
	}
	defer c.Stop()
	c.log.Info("started", slog.Duration("batch_interval", interval), slog.String("master", c.cfg.Master),
		slog.Int("slots", c.slots), slog.Int("streams", len(c.streams)), slog.Int("outputs", len(c.outputs)))

	genCtx, cancelGen := context.WithCancel(ctx)
	defer cancelGen()
	batches := make(chan *batch, 1024)
	genDone := make(chan struct{})
	go func() { // owned by Run, which waits on genDone
		defer close(genDone)
		defer close(batches)
		c.timerLoop(genCtx, zero, func(t time.Time) {
			b := c.generate(t)
			select {
			case batches <- b:
			case <-genCtx.Done():
			}
		})
	}()
	defer func() { cancelGen(); <-genDone }()

	// The batches are processed under procCtx, which a graceful stop cancels
	// StopTimeout after the signal: then the batch in flight is abandoned and
	// Run reports the timeout.
	procCtx, cancelProc := context.WithCancel(context.Background())
	defer cancelProc()
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
// in order, until ctx is done. A late tick (the process was paused) is not
// skipped: every batch time is generated.
func (c *Context) timerLoop(ctx context.Context, zero time.Time, tick func(t time.Time)) {
	interval := c.cfg.BatchInterval
	next := zero.Add(interval)
	timer := time.NewTimer(time.Until(next))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		for !time.Now().Before(next) {
			if ctx.Err() != nil {
				return
			}
			tick(next)
			next = next.Add(interval)
		}
		timer.Reset(time.Until(next))
	}
}
