package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
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

func run(ctx context.Context, args []string, stderr io.Writer) error {
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
	if err := fs.Parse(args); err != nil {
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
		ID: *id, DriverAddr: *driver, Advertise: adv, WorkDir: *workDir, Slots: *slots,
		Secret: secret, SecretFile: secretFile, DrainGrace: *drain,
		Log: slog.New(slog.NewTextHandler(stderr, nil)).With(slog.String("role", "executor")),
	})
	if err != nil {
		return err
	}
	return d.Run(ctx, lis)
}
