package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/internal/cluster"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	"google.golang.org/grpc"
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
A job's executor processes run in WORK-DIR/jobs/JOB-ID, deleted when the job ends.
In --advertise and --work-dir, {hostname} stands for this machine's host name
(containers: one flag set for every replica).
       executor healthcheck --driver HOST:PORT (--secret-file FILE | --insecure) [--advertise ADDR | --id ID]
exits 0 if the driver lists this executor as registered and not draining
(for container health checks and readiness probes), else 1.`

// hostnameVar in --advertise and --work-dir is replaced by the host name.
const hostnameVar = "{hostname}"

// expandHostname replaces {hostname} in s by the machine's host name.
func expandHostname(s string) (string, error) {
	if !strings.Contains(s, hostnameVar) {
		return s, nil
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "", fmt.Errorf("%s in %q: no host name (%v)", hostnameVar, s, err)
	}
	return strings.ReplaceAll(s, hostnameVar, h), nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "healthcheck" {
		return healthcheck(ctx, args[1:], stdout)
	}
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
	if *workDir, err = expandHostname(*workDir); err != nil {
		return usageError{fmt.Errorf("--work-dir: %w", err)}
	}
	if *advertise, err = expandHostname(*advertise); err != nil {
		return usageError{fmt.Errorf("--advertise: %w", err)}
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
	// The daemon's log and its job processes' lines share stderr, a line
	// (one Write) at a time.
	out := &lockedWriter{w: stderr}
	d, err := cluster.NewDaemon(cluster.DaemonConfig{
		ID: *id, DriverAddr: *driver, Advertise: adv, WorkDir: work, Slots: *slots,
		Secret: secret, SecretFile: secretFile, DrainGrace: *drain, OrphanGrace: *orphan,
		Log:    slog.New(slog.NewTextHandler(out, nil)).With(slog.String("role", "executor")),
		JobLog: out,
	})
	if err != nil {
		lis.Close()
		return err
	}
	return d.Run(ctx, lis)
}

// healthcheck asks the driver whether this executor is registered.
func healthcheck(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("executor healthcheck", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	driver := fs.String("driver", "", "the driver's address, HOST:PORT (required)")
	advertise := fs.String("advertise", "", "the executor's --advertise (its id is HOST-PORT of it; {hostname} is expanded)")
	id := fs.String("id", "", "the executor's --id, if it was given one")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the driver")
	sf := cluster.AddSecurityFlags(fs)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(stdout, "%s\n\nflags of executor healthcheck:\n", usage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return nil
	}
	if err != nil {
		return usageError{fmt.Errorf("healthcheck: %w (run with --help for the flags)", err)}
	}
	if *driver == "" {
		return usageError{errors.New("healthcheck: --driver HOST:PORT is required")}
	}
	want := *id
	if want == "" {
		adv, err := expandHostname(*advertise)
		if err != nil {
			return usageError{fmt.Errorf("healthcheck: --advertise: %w", err)}
		}
		_, port, err := net.SplitHostPort(adv)
		if err != nil {
			return usageError{fmt.Errorf("healthcheck: give --advertise HOST:PORT (as the executor's) or --id: %w", err)}
		}
		want = cluster.DefaultExecutorID(net.JoinHostPort("", port)) // the daemon's default id
	}
	secret, _, err := sf.Load()
	if errors.Is(err, cluster.ErrNoSecret) {
		return usageError{err}
	}
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(*driver, secret.DialOptions()...)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	resp, err := sluicev1.NewDriverClient(conn).ListExecutors(ctx, &sluicev1.ListExecutorsRequest{})
	if err != nil {
		return fmt.Errorf("healthcheck: ask the driver at %s: %w", *driver, err)
	}
	for _, e := range resp.GetExecutors() {
		if e.GetExecutorId() == want {
			if e.GetDraining() {
				return fmt.Errorf("healthcheck: executor %s is draining", want)
			}
			fmt.Fprintf(stdout, "executor %s registered at %s with %d slots\n", want, e.GetAddress(), e.GetSlots())
			return nil
		}
	}
	return fmt.Errorf("healthcheck: the driver at %s does not list executor %s (registered: %d executors)", *driver, want, len(resp.GetExecutors()))
}

// lockedWriter serializes Writes.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
