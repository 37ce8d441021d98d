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
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
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
  driver serve  --listen :7077 --state-dir DIR (--secret-file FILE | --insecure) [--max-restarts N]
  driver submit --master HOST:PORT (--secret-file FILE | --insecure) [--supervise] ./job [-- ARGS]
  driver jobs   --master HOST:PORT ...
  driver status --master HOST:PORT ... JOB
  driver status --ui HOST:PORT [--watch] ... JOB
  driver stop   --master HOST:PORT ... JOB
  driver healthcheck --master HOST:PORT ...  (exit 0 if the driver answers; for container health checks)
Relative paths in flags are relative to the working directory of the command.
Run "driver COMMAND --help" for the flags of a command.`

// errHelp ends a command that printed its help.
var errHelp = errors.New("help printed")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{errors.New("no command\n" + usage)}
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, args[1:], stdout, stderr)
	case "submit", "jobs", "status", "stop", "healthcheck":
		err = client(ctx, args[0], args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, usage)
		for _, cmd := range []string{"serve", "submit", "jobs"} {
			fmt.Fprintf(stdout, "\nflags of driver %s:\n", cmd)
			fs, _ := flagSet(cmd)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
		}
		return nil
	default:
		return usageError{fmt.Errorf("unknown command %q\n%s", args[0], usage)}
	}
	if errors.Is(err, errHelp) {
		return nil
	}
	return err
}

// flags of the commands
type serveFlags struct {
	listen, advertise, stateDir, ui *string
	maxRestarts                     *int
	sec                             cluster.SecurityFlags
}

type clientFlags struct {
	master, name, ui *string
	watch            *bool
	supervise        *bool
	interval         *time.Duration
	batches          *int
	unlessRunning    *bool
	minExecutors     *int
	wait             *time.Duration
	sec              cluster.SecurityFlags
}

// flagSet defines the flags of a command; the second result is serveFlags
// or clientFlags.
func flagSet(cmd string) (*flag.FlagSet, any) {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	if cmd == "serve" {
		return fs, serveFlags{
			listen:    fs.String("listen", ":7077", "address to serve the cluster on"),
			advertise: fs.String("advertise", "", "address executors and jobs reach this driver at (default: the listen address, 127.0.0.1 for an empty host)"),
			stateDir: fs.String("state-dir", "", "directory for job binaries, job logs and the job registry (required); a job's driver runs in STATE-DIR/jobs/JOB-ID. "+
				"The registry (STATE-DIR/registry.db) survives a restart: a new driver serve on the same directory lists the old jobs and starts again those that ran"),
			maxRestarts: fs.Int("max-restarts", cluster.DefaultMaxRestarts,
				"restarts of one job's driver allowed within 10 minutes (supervised jobs, and jobs that exit 75 to ask for a restart); one more death fails the job. 0: never restart"),
			ui:  fs.String("ui", "", "serve the web UI, JSON API (/api/v1/) and /metrics at this address (\":4040\" means 127.0.0.1:4040); off when empty. Beyond loopback, everything but /metrics asks for the cluster secret"),
			sec: cluster.AddSecurityFlags(fs),
		}
	}
	return fs, clientFlags{
		master: fs.String("master", "127.0.0.1:7077", "the driver's address"),
		name:   fs.String("name", "", "submit: the job's name (default: the binary's file name)"),
		ui:     fs.String("ui", "", "status: the address of `driver serve --ui` (host:port, or an http:// or https:// URL): show the job's batch figures from its JSON API"),
		watch:  fs.Bool("watch", false, "status: follow the job live, redrawing its figures in the terminal until it ends (needs --ui)"),
		supervise: fs.Bool("supervise", false,
			"submit: restart the job's driver when it dies (killed, or exits non-zero other than 2, a usage error), from its checkpoint, at most --max-restarts (of driver serve) times in 10 minutes"),
		interval: fs.Duration("interval", time.Second, "status --watch: time between refreshes"),
		batches:  fs.Int("batches", 10, "status: the last batches to show"),
		unlessRunning: fs.Bool("unless-running", false,
			"submit: if a job of this name is running already, print its id and submit nothing (for a submit step that may run again)"),
		minExecutors: fs.Int("min-executors", 1,
			"submit: wait until at least this many executors (not draining) are registered before submitting: a job's default partition count is the slots registered when it starts, fixed for its life. 0: do not wait"),
		wait: fs.Duration("wait", time.Minute, "submit: how long --min-executors waits before giving up"),
		sec:  cluster.AddSecurityFlags(fs),
	}
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

// parse parses a command's flags; --help prints them to stdout.
func parse(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(stdout, "%s\n\nflags of driver %s:\n", usage, fs.Name())
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return errHelp
	}
	if err != nil {
		return usageError{fmt.Errorf("%s: %w\n%s", fs.Name(), err, usage)}
	}
	return nil
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, f := flagSet("serve")
	flags := f.(serveFlags)
	listen, advertise, stateDir, sf := flags.listen, flags.advertise, flags.stateDir, flags.sec
	if err := parse(fs, args, stdout); err != nil {
		return err
	}
	if *stateDir == "" {
		return usageError{errors.New("serve: --state-dir is required")}
	}
	maxRestarts := *flags.maxRestarts
	switch {
	case maxRestarts < 0:
		return usageError{fmt.Errorf("serve: --max-restarts=%d: must be 0 (never restart) or more", maxRestarts)}
	case maxRestarts == 0:
		maxRestarts = -1 // the config's "never"; its 0 means the default
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
	state, err := filepath.Abs(*stateDir) // job drivers run in other directories
	if err != nil {
		return err
	}
	coord, err := cluster.NewCoordinator(cluster.CoordinatorConfig{
		StateDir: state, Advertise: adv, Secret: secret, SecretFile: secretFile, Log: log, MaxRestarts: maxRestarts,
	})
	if err != nil {
		lis.Close()
		return err
	}
	defer coord.Close() // after Run returned (wg.Wait below)
	if *flags.ui != "" {
		srv, err := serveUI(coord, *flags.ui, secret, log)
		if err != nil {
			lis.Close()
			return err
		}
		defer srv.Close()
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

// clientTimeout bounds a client command's calls to the driver (for submit:
// from the end of its wait for executors).
var clientTimeout = 5 * time.Minute

func client(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	fs, f := flagSet(cmd)
	flags := f.(clientFlags)
	master, name, sf, unlessRunning := flags.master, flags.name, flags.sec, flags.unlessRunning
	if err := parse(fs, args, stdout); err != nil {
		return err
	}
	if *flags.minExecutors < 0 || *flags.wait < 0 {
		return usageError{fmt.Errorf("submit: --min-executors=%d and --wait=%v must be >= 0", *flags.minExecutors, *flags.wait)}
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
	watchCtx := ctx // status --watch runs until the job ends
	ctx, cancel := context.WithTimeout(ctx, clientTimeout)
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
		waited := false
		ready := func() error { // once: before --unless-running asks, or the upload
			if waited {
				return nil
			}
			waited = true
			return waitExecutors(watchCtx, dc, *master, *flags.minExecutors, *flags.wait, stderr)
		}
		if *unlessRunning {
			if err := ready(); err != nil { // a driver still starting too
				return err
			}
			jobName := *name
			if jobName == "" {
				jobName = filepath.Base(rest[0])
			}
			lctx, cancel := context.WithTimeout(watchCtx, clientTimeout) // from the end of the wait
			defer cancel()
			resp, err := dc.ListJobs(lctx, &sluicev1.ListJobsRequest{})
			if err != nil {
				return err
			}
			for _, j := range resp.GetJobs() {
				if s := j.GetState(); j.GetName() == jobName && (s == "running" || s == "starting" || s == "restarting") {
					fmt.Fprintln(stdout, j.GetJobId())
					return nil
				}
			}
		}
		id, err := submit(watchCtx, dc, rest[0], *name, jobArgs, *flags.supervise, ready)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, id)
	case "healthcheck":
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		resp, err := dc.ListJobs(hctx, &sluicev1.ListJobsRequest{})
		if err != nil {
			return fmt.Errorf("healthcheck: the driver at %s: %w", *master, err)
		}
		fmt.Fprintf(stdout, "driver at %s answers: %d jobs\n", *master, len(resp.GetJobs()))
	case "jobs":
		resp, err := dc.ListJobs(ctx, &sluicev1.ListJobsRequest{})
		if err != nil {
			return err
		}
		return writeJobs(stdout, resp.GetJobs())
	case "status", "stop":
		if len(rest) != 1 {
			return usageError{fmt.Errorf("%s: give one job id (see `driver jobs`)", cmd)}
		}
		if cmd == "status" && *flags.watch && *flags.ui == "" {
			return usageError{errors.New("status --watch: give --ui, the address of `driver serve --ui` (e.g. --ui 127.0.0.1:4040)")}
		}
		if cmd == "status" && *flags.ui != "" {
			if *flags.interval <= 0 || *flags.batches < 1 || *flags.batches > 1000 {
				return usageError{fmt.Errorf("status: --interval=%v must be > 0 and --batches=%d from 1 to 1000", *flags.interval, *flags.batches)}
			}
			api, err := newAPIClient(*flags.ui, secret)
			if err != nil {
				return err
			}
			return status(watchCtx, api, rest[0], *flags.batches, *flags.watch, *flags.interval, stdout)
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
		if j.GetAttempt() > 1 {
			fmt.Fprintf(stdout, " (attempt %d)", j.GetAttempt())
		}
		if j.GetError() != "" {
			fmt.Fprintf(stdout, ": %s", j.GetError())
		}
		fmt.Fprintln(stdout)
	}
	return nil
}

// writeJobs prints `driver jobs`: one line per job; the ATTEMPT column
// appears when a job's driver was restarted.
func writeJobs(w io.Writer, jobs []*sluicev1.JobInfo) error {
	restarted := false
	for _, j := range jobs {
		restarted = restarted || j.GetAttempt() > 1
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if restarted {
		fmt.Fprintln(tw, "JOB\tNAME\tSTATE\tSTARTED\tATTEMPT")
	} else {
		fmt.Fprintln(tw, "JOB\tNAME\tSTATE\tSTARTED")
	}
	for _, j := range jobs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s", j.GetJobId(), j.GetName(), j.GetState(), time.UnixMilli(j.GetStartedUnixMs()).UTC().Format(time.RFC3339))
		if restarted {
			fmt.Fprintf(tw, "\t%d", max(1, j.GetAttempt()))
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// waitExecutors polls the coordinator every 200 ms until at least n
// executors that are not draining are registered, or wait has passed; a
// driver that cannot be reached yet (Unavailable: just started beside its
// executors, as in a script) is polled again too. A job
// takes its default partition count from the slots registered when it
// starts, for its whole life: submitted right after its executors were
// started, it would get the slots of those that happened to be registered.
func waitExecutors(ctx context.Context, dc sluicev1.DriverClient, master string, n int, wait time.Duration, stderr io.Writer) error {
	if n <= 0 {
		return nil
	}
	deadline := time.Now().Add(wait)
	for said := false; ; {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := dc.ListExecutors(lctx, &sluicev1.ListExecutorsRequest{})
		cancel()
		unavailable := grpcstatus.Code(err) == codes.Unavailable // a driver still starting
		if err != nil && (!unavailable || !time.Now().Before(deadline)) {
			return fmt.Errorf("submit: list the executors of the driver at %s: %w", master, err)
		}
		live := 0
		for _, e := range resp.GetExecutors() {
			if !e.GetDraining() {
				live++
			}
		}
		if live >= n {
			return nil
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("submit: %d executor(s) registered with the driver at %s after waiting %v; --min-executors=%d: start executors (executor --driver %s ...), wait longer (--wait), or lower --min-executors",
				live, master, wait, n, master)
		}
		if !said {
			fmt.Fprintf(stderr, "submit: waiting up to %v for %d executor(s) to register (%d now)\n", wait, n, live)
			said = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(200*time.Millisecond, time.Until(deadline))):
		}
	}
}

// submit streams a job binary to the driver. The file is checked (size,
// kind) before anything is read, hashed in one streaming pass, and sent in
// chunks: it is never held in memory whole. ready runs between the checks
// and the upload, which has clientTimeout from then.
func submit(ctx context.Context, dc sluicev1.DriverClient, path, name string, args []string, supervise bool, ready func() error) (string, error) {
	// Checked before the wait, read after it: a binary rebuilt meanwhile
	// is sent as it is then.
	f, _, err := openJobBinary(path)
	if err != nil {
		return "", err
	}
	f.Close()
	if err := ready(); err != nil {
		return "", err
	}
	f, size, err := openJobBinary(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sum := sha256.New()
	if _, err := io.Copy(sum, f); err != nil {
		return "", fmt.Errorf("submit: read %s: %w", path, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", fmt.Errorf("submit: %w", err)
	}
	goos, goarch := platform(path)
	if name == "" {
		name = filepath.Base(path)
	}
	ctx, cancel := context.WithTimeout(ctx, clientTimeout) // from the end of the wait
	defer cancel()
	stream, err := dc.SubmitJob(ctx)
	if err != nil {
		return "", err
	}
	if err := stream.Send(&sluicev1.SubmitJobRequest{Part: &sluicev1.SubmitJobRequest_Header{Header: &sluicev1.SubmitHeader{
		Name: name, Args: args, Sha256: hex.EncodeToString(sum.Sum(nil)), Size: size, Supervise: supervise,
		Platform: &sluicev1.Platform{Goos: goos, Goarch: goarch},
	}}}); err != nil {
		return "", err
	}
	buf := make([]byte, cluster.ChunkBytes)
	for {
		n, err := io.ReadFull(f, buf)
		if n > 0 {
			if err := stream.Send(&sluicev1.SubmitJobRequest{Part: &sluicev1.SubmitJobRequest_Data{Data: buf[:n]}}); err != nil {
				break // the server's reason comes with CloseAndRecv
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return "", fmt.Errorf("submit: read %s: %w", path, err)
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return "", err
	}
	return resp.GetJobId(), nil
}

// openJobBinary opens a job binary after checking, from its metadata and
// first bytes only, that it can be one.
func openJobBinary(path string) (*os.File, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("submit: %w", err)
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", path)
	}
	if err == nil && st.Size() == 0 {
		err = fmt.Errorf("%s is empty", path)
	}
	if err == nil && st.Size() > cluster.MaxBinaryBytes {
		err = fmt.Errorf("%s is %d MiB; a job binary may have at most %d MiB (is it the job binary? build it with go build -o job ./yourjob)",
			path, st.Size()>>20, cluster.MaxBinaryBytes>>20)
	}
	if err == nil {
		head := make([]byte, 4)
		n, _ := f.ReadAt(head, 0)
		if !isProgram(head[:n]) {
			err = fmt.Errorf("%s is not a program (no ELF, Mach-O, PE or #! header); submit the job binary built with go build", path)
		}
	}
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("submit: %w", err)
	}
	return f, st.Size(), nil
}

// isProgram reports whether a file's first bytes start a program.
func isProgram(head []byte) bool {
	for _, magic := range []string{"\x7fELF", "#!", "MZ", "\xfe\xed\xfa\xce", "\xfe\xed\xfa\xcf", "\xce\xfa\xed\xfe", "\xcf\xfa\xed\xfe"} {
		if strings.HasPrefix(string(head), magic) {
			return true
		}
	}
	return false
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
