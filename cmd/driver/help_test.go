package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/sluicehq/sluice/internal/cluster"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	"google.golang.org/grpc"
)

// TestMain runs the command itself when SLUICE_TEST_MAIN is set, so that
// tests can check exit codes and resource use of the real process.
func TestMain(m *testing.M) {
	if os.Getenv("SLUICE_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// command runs this command as a process.
func command(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "SLUICE_TEST_MAIN=1", "SLUICE_SECRET=")
	return cmd
}

func TestHelpListsFlagsAndExits0(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		flags []string
	}{
		{[]string{"--help"}, []string{"-listen", "-state-dir", "-master", "-secret-file", "-insecure", "-tls-cert"}},
		{[]string{"-h"}, []string{"-listen", "-master"}},
		{[]string{"serve", "--help"}, []string{"-listen", "-advertise", "-state-dir", "-secret-file", "-insecure", "-tls-cert", "-tls-key", "-tls-ca"}},
		{[]string{"submit", "--help"}, []string{"-master", "-name", "-secret-file", "-insecure", "-tls-ca"}},
		{[]string{"submit", "-h"}, []string{"-master", "-name"}},
		{[]string{"jobs", "--help"}, []string{"-master", "-secret-file"}},
		{[]string{"status", "--help"}, []string{"-master", "-ui", "-watch", "-interval", "-batches"}},
		{[]string{"serve", "--help"}, []string{"-ui"}},
		{[]string{"serve", "--help"}, []string{"-max-restarts"}},
		{[]string{"submit", "--help"}, []string{"-supervise"}},
	} {
		out, err := command(tc.args...).Output()
		if err != nil {
			t.Errorf("driver %v: %v", tc.args, err)
			continue
		}
		for _, f := range tc.flags {
			if !strings.Contains(string(out), "  "+f) {
				t.Errorf("driver %v does not list %s:\n%s", tc.args, f, out)
			}
		}
	}
	err := command("serve", "--bogus").Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Errorf("a bad flag: %v, want exit 2", err)
	}
}

// A file too large to be a job binary is refused from its size alone: the
// command never holds it in memory.
func TestSubmitRefusesAHugeFileBeforeReadingIt(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the command")
	}
	path := filepath.Join(t.TempDir(), "huge")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("\x7fELF"))
	if err := f.Truncate(600 << 20); err != nil { // sparse: no disk used
		t.Fatal(err)
	}
	f.Close()
	cmd := command("submit", "--insecure", "--master", "127.0.0.1:1", path)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "is 600 MiB; a job binary may have at most 512 MiB") {
		t.Fatalf("submit of a 600 MiB file: %v %s", err, out)
	}
	rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10
	t.Logf("max RSS of driver submit: %d MiB", rss>>20)
	if rss > 100<<20 {
		t.Fatalf("driver submit used %d MiB to refuse a 600 MiB file", rss>>20)
	}
}

func TestSubmitRefusesWhatIsNoProgram(t *testing.T) {
	path := filepath.Join(t.TempDir(), "words.txt")
	os.WriteFile(path, []byte("hello world\n"), 0o644)
	_, _, err := openJobBinary(path)
	if err == nil || !strings.Contains(err.Error(), "is not a program") {
		t.Fatalf("text file: %v", err)
	}
	if _, _, err := openJobBinary(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("directory: %v", err)
	}
}

// countingDriver takes submissions and counts their bytes; it lists one
// executor.
type countingDriver struct {
	sluicev1.UnimplementedDriverServer
	got atomic.Int64
}

func (d *countingDriver) ListExecutors(context.Context, *sluicev1.ListExecutorsRequest) (*sluicev1.ListExecutorsResponse, error) {
	return &sluicev1.ListExecutorsResponse{Executors: []*sluicev1.ExecutorInfo{{ExecutorId: "e1", Slots: 2}}}, nil
}

func (d *countingDriver) SubmitJob(s sluicev1.Driver_SubmitJobServer) error {
	first, err := s.Recv()
	if err != nil {
		return err
	}
	sum := sha256.New()
	for {
		m, err := s.Recv()
		if err == io.EOF {
			if got := hex.EncodeToString(sum.Sum(nil)); got != first.GetHeader().GetSha256() {
				return fmt.Errorf("received bytes hash to %s, the header says %s", got, first.GetHeader().GetSha256())
			}
			return s.SendAndClose(&sluicev1.SubmitJobResponse{JobId: "job-1"})
		}
		if err != nil {
			return err
		}
		sum.Write(m.GetData())
		d.got.Add(int64(len(m.GetData())))
	}
}

// A large job binary is streamed, never held in memory whole.
func TestSubmitStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 300 MiB")
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(cluster.Insecure().ServerOptions(nil)...)
	d := &countingDriver{}
	sluicev1.RegisterDriverServer(srv, d)
	go srv.Serve(lis)
	defer srv.Stop()
	path := filepath.Join(t.TempDir(), "job")
	f, _ := os.Create(path)
	f.Write([]byte("\x7fELF"))
	f.WriteAt([]byte("the end"), 300<<20-7)
	f.Close()
	cmd := command("submit", "--insecure", "--master", lis.Addr().String(), path)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "job-1" {
		t.Fatalf("submit: %v %s", err, out)
	}
	if d.got.Load() != 300<<20 {
		t.Fatalf("the driver got %d bytes", d.got.Load())
	}
	rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10
	t.Logf("max RSS of driver submit of 300 MiB: %d MiB", rss>>20)
	if rss > 100<<20 {
		t.Fatalf("driver submit used %d MiB to send a 300 MiB file", rss>>20)
	}
}
