package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"runtime"
	"time"

	"github.com/sluicehq/sluice/internal/cluster"
)

type usageError struct{ error }

func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

const usage = `usage: executor --driver HOST:PORT --work-dir DIR (--secret-file FILE | --insecure) [flags]
Relative paths in flags are relative to the working directory of the command.
A job's executor processes run in WORK-DIR/jobs/JOB-ID, deleted when the job ends.`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("executor", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	driver := fs.String("driver", "", "the driver's address, HOST:PORT (required)")
	listen := fs.String("listen", ":7078", "address to serve tasks and shuffle data on")
	advertise := fs.String("advertise", "", "address the driver and other executors reach this one at (default: the listen address, 127.0.0.1 for an empty host)")
	workDir := fs.String("work-dir", "", "directory for job binaries, processes and shuffle data (required)")
	slots := fs.Int("slots", runtime.NumCPU(), "tasks run at once")
	id := fs.String("id", "", "executor id (default: host name and port)")
	sf := cluster.AddSecurityFlags(fs)
	drain := fs.Duration("drain-grace", 10*time.Second, "after SIGTERM, how long to keep serving shuffle data once the last task finished")
	orphan := fs.Duration("orphan-grace", cluster.DefaultOrphanGrace, "how long the driver may not answer before this executor stops its job processes and deletes their data")
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(stdout, "%s\n\nflags:\n", usage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return nil
	}
	if err != nil {
		return usageError{fmt.Errorf("%w (run with --help for the flags)", err)}
	}
	switch {
	case *driver == "":
		return usageError{errors.New("--driver HOST:PORT is required")}
	case *workDir == "":
		return usageError{errors.New("--work-dir is required")}
	case *slots <= 0:
		return usageError{fmt.Errorf("--slots %d: must be > 0", *slots)}
	}
	work, err := filepath.Abs(*workDir) // job processes run in other directories
	if err != nil {
		return err
	}
	secret, secretFile, err := sf.Load()
	if errors.Is(err, cluster.ErrNoSecret) {
		return usageError{err}
	}
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	adv := *advertise
	if adv == "" {
		host, port, _ := net.SplitHostPort(lis.Addr().String())
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			host = "127.0.0.1"
		}
		adv = net.JoinHostPort(host, port)
	}
	d, err := cluster.NewDaemon(cluster.DaemonConfig{
		ID: *id, DriverAddr: *driver, Advertise: adv, WorkDir: work, Slots: *slots,
		Secret: secret, SecretFile: secretFile, DrainGrace: *drain, OrphanGrace: *orphan,
		Log: slog.New(slog.NewTextHandler(stderr, nil)).With(slog.String("role", "executor")),
	})
	if err != nil {
		return err
	}
	return d.Run(ctx, lis)
}
