package main

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
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
	"text/tabwriter"
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

const usage = `usage:
  driver serve  --listen :7077 --state-dir DIR (--secret-file FILE | --insecure)
  driver submit --master HOST:PORT (--secret-file FILE | --insecure) ./job [-- ARGS]
  driver jobs   --master HOST:PORT ...
  driver status --master HOST:PORT ... JOB
  driver stop   --master HOST:PORT ... JOB`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{errors.New("no command\n" + usage)}
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stderr)
	case "submit", "jobs", "status", "stop":
		return client(ctx, args[0], args[1:], stdout)
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	return usageError{fmt.Errorf("unknown command %q\n%s", args[0], usage)}
}

// loadSecret turns the security flags into a secret; a missing one is a
// usage error.
func loadSecret(f cluster.SecurityFlags) (cluster.Secret, string, error) {
	s, file, err := f.Load()
	if errors.Is(err, cluster.ErrNoSecret) {
		err = usageError{err}
	}
	return s, file, err
}

func parse(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return usageError{fmt.Errorf("%s: %w\n%s", fs.Name(), err, usage)}
	}
	return nil
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	listen := fs.String("listen", ":7077", "address to serve the cluster on")
	advertise := fs.String("advertise", "", "address executors and jobs reach this driver at (default: the listen address, 127.0.0.1 for an empty host)")
	stateDir := fs.String("state-dir", "", "directory for job binaries and job logs (required)")
	sf := cluster.AddSecurityFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *stateDir == "" {
		return usageError{errors.New("serve: --state-dir is required")}
	}
	secret, secretFile, err := loadSecret(sf)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil)).With(slog.String("role", "driver"))
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	adv := *advertise
	if adv == "" {
		adv = advertised(lis.Addr())
	}
	coord, err := cluster.NewCoordinator(cluster.CoordinatorConfig{
		StateDir: *stateDir, Advertise: adv, Secret: secret, SecretFile: secretFile, Log: log,
	})
	if err != nil {
		return err
	}
	srv := grpc.NewServer(secret.ServerOptions(log)...)
	sluicev1.RegisterDriverServer(srv, coord)
	var wg sync.WaitGroup
	wg.Go(func() { coord.Run(ctx) }) // stops the jobs when ctx ends
	log.Info("driver serving", slog.String("listen", lis.Addr().String()), slog.String("advertise", adv))
	go func() { <-ctx.Done(); srv.GracefulStop() }()
	err = srv.Serve(lis)
	wg.Wait()
	return err
}

// advertised turns a listen address into one others can dial.
func advertised(a net.Addr) string {
	host, port, _ := net.SplitHostPort(a.String())
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func client(ctx context.Context, cmd string, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	master := fs.String("master", "127.0.0.1:7077", "the driver's address")
	name := fs.String("name", "", "submit: the job's name (default: the binary's file name)")
	sf := cluster.AddSecurityFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	secret, _, err := loadSecret(sf)
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(*master, secret.DialOptions()...)
	if err != nil {
		return err
	}
	defer conn.Close()
	dc := sluicev1.NewDriverClient(conn)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	rest := fs.Args()
	switch cmd {
	case "submit":
		if len(rest) == 0 {
			return usageError{errors.New("submit: which job binary? driver submit --master HOST:PORT ./job -- ARGS")}
		}
		jobArgs := rest[1:]
		if len(jobArgs) > 0 && jobArgs[0] == "--" {
			jobArgs = jobArgs[1:]
		}
		id, err := submit(ctx, dc, rest[0], *name, jobArgs)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, id)
	case "jobs":
		resp, err := dc.ListJobs(ctx, &sluicev1.ListJobsRequest{})
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "JOB\tNAME\tSTATE\tSTARTED")
		for _, j := range resp.GetJobs() {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", j.GetJobId(), j.GetName(), j.GetState(), time.UnixMilli(j.GetStartedUnixMs()).UTC().Format(time.RFC3339))
		}
		return tw.Flush()
	case "status", "stop":
		if len(rest) != 1 {
			return usageError{fmt.Errorf("%s: give one job id (see `driver jobs`)", cmd)}
		}
		var j *sluicev1.JobInfo
		if cmd == "status" {
			j, err = dc.JobStatus(ctx, &sluicev1.JobStatusRequest{JobId: rest[0]})
		} else {
			j, err = dc.StopJob(ctx, &sluicev1.StopJobRequest{JobId: rest[0]})
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "job %s (%s): %s", j.GetJobId(), j.GetName(), j.GetState())
		if j.GetError() != "" {
			fmt.Fprintf(stdout, ": %s", j.GetError())
		}
		fmt.Fprintln(stdout)
	}
	return nil
}

func submit(ctx context.Context, dc sluicev1.DriverClient, path, name string, args []string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("submit: %w", err)
	}
	sum := sha256.Sum256(data)
	goos, goarch := platform(path)
	if name == "" {
		name = filepath.Base(path)
	}
	stream, err := dc.SubmitJob(ctx)
	if err != nil {
		return "", err
	}
	if err := stream.Send(&sluicev1.SubmitJobRequest{Part: &sluicev1.SubmitJobRequest_Header{Header: &sluicev1.SubmitHeader{
		Name: name, Args: args, Sha256: hex.EncodeToString(sum[:]), Size: int64(len(data)),
		Platform: &sluicev1.Platform{Goos: goos, Goarch: goarch},
	}}}); err != nil {
		return "", err
	}
	for len(data) > 0 {
		n := min(len(data), cluster.ChunkBytes)
		if err := stream.Send(&sluicev1.SubmitJobRequest{Part: &sluicev1.SubmitJobRequest_Data{Data: data[:n]}}); err != nil {
			break // the server's reason comes with CloseAndRecv
		}
		data = data[n:]
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return "", err
	}
	return resp.GetJobId(), nil
}

// platform reads the OS and architecture a binary was built for.
func platform(path string) (goos, goarch string) {
	f, err := elf.Open(path)
	if err != nil {
		return runtime.GOOS, runtime.GOARCH // not ELF: the driver checks what it can
	}
	defer f.Close()
	goos = "linux"
	if f.OSABI == elf.ELFOSABI_FREEBSD {
		goos = "freebsd"
	}
	switch f.Machine {
	case elf.EM_X86_64:
		goarch = "amd64"
	case elf.EM_AARCH64:
		goarch = "arm64"
	case elf.EM_386:
		goarch = "386"
	case elf.EM_ARM:
		goarch = "arm"
	default:
		goarch = strings.ToLower(strings.TrimPrefix(f.Machine.String(), "EM_"))
	}
	return goos, goarch
}
