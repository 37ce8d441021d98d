package dstream

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/sluicehq/sluice/rdd"
)

// withCommandLine makes fs the standard flag set that ParseFlags adopts.
func withCommandLine(t *testing.T, fs *flag.FlagSet) {
	old := commandLine
	commandLine = fs
	t.Cleanup(func() { commandLine = old })
}

func TestParseFlagsHelpNilWriter(t *testing.T) {
	withCommandLine(t, flag.NewFlagSet("x", flag.ContinueOnError))
	for _, args := range [][]string{{"--help"}, {"-h"}, {"--bogus"}, {"--master=nope"}} {
		c, err := New(Config{BatchInterval: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		err = c.ParseFlags(args, nil) // must not panic
		if args[0] == "--help" || args[0] == "-h" {
			if !errors.Is(err, ErrHelp) {
				t.Errorf("%v: got %v, want ErrHelp", args, err)
			}
		} else if !IsUsage(err) {
			t.Errorf("%v: got %v, want a usage error", args, err)
		}
	}
}

func TestRunArgsHelpListsJobFlags(t *testing.T) {
	fs := flag.NewFlagSet("job", flag.ContinueOnError)
	fs.Int("lines-per-second", 10, "lines per second of the demo source")
	withCommandLine(t, fs)
	var stderr bytes.Buffer
	built := false
	code := RunArgs(Config{AppName: "job", BatchInterval: time.Second}, []string{"--help"}, &stderr, func(*Context) error {
		built = true
		return nil
	})
	if code != 0 || built {
		t.Fatalf("exit %d, built %v", code, built)
	}
	for _, want := range []string{"Usage of job", "-lines-per-second", "lines per second of the demo source", "-master"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("help output lacks %q:\n%s", want, stderr.String())
		}
	}
}

func TestRunArgsBadValues(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--lines-per-second=-5"}, "--lines-per-second=-5: must be >= 0"},
		{[]string{"--lines-per-second=many"}, `invalid value "many" for flag -lines-per-second`},
		{[]string{"extra"}, `unexpected argument "extra"`},
	} {
		fs := flag.NewFlagSet("job", flag.ContinueOnError)
		rate := fs.Int64("lines-per-second", 10, "lines per second")
		withCommandLine(t, fs)
		var stderr bytes.Buffer
		code := RunArgs(Config{AppName: "job", BatchInterval: time.Second}, tc.args, &stderr, func(ctx *Context) error {
			if *rate < 0 {
				return Usagef("--lines-per-second=%d: must be >= 0", *rate)
			}
			return nil
		})
		if code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr.String(), tc.want)
		}
	}
	// An argument the API refuses (here a negative rate from a flag) is a
	// usage error too, not a crash.
	withCommandLine(t, flag.NewFlagSet("job", flag.ContinueOnError))
	var perr bytes.Buffer
	if code := RunArgs(Config{AppName: "job", BatchInterval: time.Second}, nil, &perr, func(ctx *Context) error {
		Print(Rate(ctx, -5), 1)
		return nil
	}); code != 2 || !strings.Contains(perr.String(), "job: dstream: Rate(-5): rows per second must be >= 0") {
		t.Errorf("exit %d, stderr %q", code, perr.String())
	}
	// A build error that is not about the command line exits 1.
	withCommandLine(t, flag.NewFlagSet("job", flag.ContinueOnError))
	var stderr bytes.Buffer
	code := RunArgs(Config{AppName: "job", BatchInterval: time.Second}, nil, &stderr, func(*Context) error {
		return errors.New("table missing")
	})
	if code != 1 || !strings.Contains(stderr.String(), "job: table missing") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}

// TestRunGraphFromFlagAndStop: the graph reads a flag declared with the
// standard flag package, and Context.Stop called from an output function
// ends Run gracefully (exit 0) with that batch's output written.
func TestRunGraphFromFlagAndStop(t *testing.T) {
	fs := flag.NewFlagSet("job", flag.ContinueOnError)
	per := fs.Int64("per-batch", 1, "elements per batch")
	withCommandLine(t, fs)
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	var mu sync.Mutex
	var got []int64
	cfg := Config{AppName: "job", BatchInterval: 20 * time.Millisecond, Allocator: mem, Stdout: io.Discard,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	var stderr bytes.Buffer
	code := RunArgs(cfg, []string{"--per-batch=7", "--master=local[2]", "--log-level=error"}, &stderr, func(ctx *Context) error {
		q := NewQueue[int64](ctx)
		for range 5 {
			q.Push(*per)
		}
		ForeachRDD(Count(Flat(q.Stream(), *per)), func(b *Batch, r *rdd.RDD[int64]) error {
			vals, err := Collect(b, r)
			if err != nil {
				return err
			}
			mu.Lock()
			got = append(got, vals...)
			n := len(got)
			mu.Unlock()
			if n == 2 {
				ctx.Stop() // from inside an output: must not deadlock
			}
			return nil
		})
		return nil
	})
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) < 2 || got[0] != 7 || got[1] != 7 {
		t.Fatalf("counts %v, want each 7 (the flag's value)", got)
	}
}

// Flat repeats every element n times.
func Flat(s *DStream[int64], n int64) *DStream[int64] {
	return FlatMap(s, func(v int64) []int64 {
		out := make([]int64, n)
		for i := range out {
			out[i] = v
		}
		return out
	})
}

// A program that called flag.Parse itself before Run: its flags are still
// accepted on the command line Run parses, and keep the values the
// program's parse gave them (set once, not twice).
func TestParseFlagsAfterTheProgramParsedItsFlags(t *testing.T) {
	fs := flag.NewFlagSet("job", flag.ContinueOnError)
	n := fs.Int("n", 1, "how many")
	verbose := fs.Bool("v", false, "verbose")
	var seen []string
	fs.Func("tag", "repeatable", func(s string) error { seen = append(seen, s); return nil })
	args := []string{"--n=5", "-v", "--tag=a", "--tag=b"}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	withCommandLine(t, fs)
	c, err := New(Config{BatchInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ParseFlags(args, io.Discard); err != nil {
		t.Fatalf("ParseFlags after the program's flag.Parse: %v", err)
	}
	if *n != 5 || !*verbose || strings.Join(seen, ",") != "a,b" {
		t.Fatalf("n=%d v=%v tags=%v, want 5 true [a b]", *n, *verbose, seen)
	}
}

// --partitions sets the job's default partition count before its graph is
// built; a count <= 0 is a usage error; after streams were defined (New,
// then Main) it is refused rather than applied to half the graph.
func TestPartitionsFlag(t *testing.T) {
	withCommandLine(t, flag.NewFlagSet("job", flag.ContinueOnError))
	got := 0
	code := RunArgs(Config{AppName: "job", BatchInterval: time.Second}, []string{"--partitions=5", "--help"}, io.Discard, func(ctx *Context) error {
		got = ctx.Parallelism()
		return nil
	})
	if code != 0 || got != 0 {
		t.Fatalf("--help: exit %d, build ran: %v", code, got != 0)
	}
	var stderr bytes.Buffer
	code = RunArgs(Config{AppName: "job", BatchInterval: time.Second}, []string{"--partitions=5", "--master=local[2]"}, &stderr, func(ctx *Context) error {
		got = ctx.Parallelism()
		return errors.New("stop here")
	})
	if got != 5 {
		t.Fatalf("Parallelism %d in the build function with --partitions=5 (exit %d: %s)", got, code, stderr.String())
	}
	c, err := New(Config{BatchInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ParseFlags([]string{"--partitions=-1"}, io.Discard); !IsUsage(err) {
		t.Fatalf("--partitions=-1: %v, want a usage error", err)
	}
	c, _ = New(Config{BatchInterval: time.Second, Master: "local[2]"})
	NewQueue[int](c)
	if err := c.ParseFlags([]string{"--partitions=7"}, io.Discard); !IsUsage(err) || !strings.Contains(err.Error(), "before") {
		t.Fatalf("--partitions after streams were defined: %v, want a usage error", err)
	}
}
