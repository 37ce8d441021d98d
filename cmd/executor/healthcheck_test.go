package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/cluster"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	"google.golang.org/grpc"
)

func TestExpandHostname(t *testing.T) {
	h, err := os.Hostname()
	if err != nil {
		t.Skip(err)
	}
	for in, want := range map[string]string{
		"{hostname}:7078":       h + ":7078",
		"/work/{hostname}":      "/work/" + h,
		"10.0.0.1:7078":         "10.0.0.1:7078",
		"{hostname}-{hostname}": h + "-" + h,
	} {
		if got, err := expandHostname(in); err != nil || got != want {
			t.Errorf("expandHostname(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestHealthcheckFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--driver HOST:PORT is required"},
		{[]string{"--driver", "127.0.0.1:1", "--advertise", "nohostport", "--insecure"}, "give --advertise HOST:PORT"},
		{[]string{"--driver", "127.0.0.1:1", "--advertise", "h:1"}, "--secret-file is required"},
	} {
		t.Setenv("SLUICE_SECRET", "")
		err := run(context.Background(), append([]string{"healthcheck"}, tc.args...), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) || exitCode(err) != 2 {
			t.Errorf("%v: got %v (exit %d), want %q", tc.args, err, exitCode(err), tc.want)
		}
	}
}

// healthcheck passes once the driver lists the executor (a real
// coordinator and a real executor daemon), and fails for an id it does not.
func TestHealthcheckOfARegisteredExecutor(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	os.WriteFile(secretFile, []byte("0123456789abcdef0123456789"), 0o600)
	secret, err := cluster.SecretFromFile(secretFile)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	coord, err := cluster.NewCoordinator(cluster.CoordinatorConfig{StateDir: filepath.Join(dir, "state"), Advertise: lis.Addr().String(),
		Secret: secret, SecretFile: secretFile, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(secret.ServerOptions(nil)...)
	sluicev1.RegisterDriverServer(srv, coord)
	ctx, cancel := context.WithCancel(context.Background())
	go coord.Run(ctx)
	go srv.Serve(lis)
	defer srv.Stop()
	el, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	eaddr := el.Addr().String()
	el.Close()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--driver", lis.Addr().String(), "--listen", eaddr, "--advertise", "{hostname}:" + eaddr[strings.LastIndexByte(eaddr, ':')+1:],
			"--work-dir", filepath.Join(dir, "{hostname}"), "--slots", "1", "--secret-file", secretFile, "--drain-grace", "10ms"}, io.Discard, io.Discard)
	}()
	check := []string{"healthcheck", "--driver", lis.Addr().String(), "--advertise", "{hostname}:" + eaddr[strings.LastIndexByte(eaddr, ':')+1:], "--secret-file", secretFile}
	var out strings.Builder
	deadline := time.Now().Add(20 * time.Second)
	for {
		out.Reset()
		err = run(context.Background(), check, &out, io.Discard)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || !strings.Contains(out.String(), "registered at") {
		t.Fatalf("healthcheck of a registered executor: %v %q", err, out.String())
	}
	host, _ := os.Hostname()
	if _, err := os.Stat(filepath.Join(dir, host, "jobs")); err != nil {
		t.Errorf("--work-dir with {hostname}: %v", err)
	}
	if err := run(context.Background(), []string{"healthcheck", "--driver", lis.Addr().String(), "--id", "nobody", "--secret-file", secretFile}, io.Discard, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "does not list executor nobody") {
		t.Errorf("healthcheck of an unknown executor: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
