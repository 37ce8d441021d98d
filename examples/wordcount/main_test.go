package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestMain runs the job's main instead of the tests when asked, so that the
// tests can run the real program as a process.
func TestMain(m *testing.M) {
	if os.Getenv("WORDCOUNT_RUN_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func runMain(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "WORDCOUNT_RUN_MAIN=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), out.String(), errb.String()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, out.String(), errb.String()
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		t.Fatalf("%v did not exit", args)
		return 0, "", ""
	}
}

// TestBadFlagValues: flag values the flag package accepts but the job does
// not exit 2 with a message naming the flag, never a panic.
func TestBadFlagValues(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--lines-per-second=-5"}, "wordcount: --lines-per-second=-5: must be >= 0"},
		{[]string{"--top=-1"}, "wordcount: --top=-1: must be >= 0"},
		{[]string{"--lines-per-second=fast"}, `wordcount: invalid value "fast" for flag -lines-per-second`},
		{[]string{"--source=dir"}, "wordcount: --source=dir needs --dir=DIRECTORY"},
	} {
		code, stdout, stderr := runMain(t, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) || strings.Contains(stderr, "panic") || stdout != "" {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

// TestHelp: --help prints every flag and exits 0.
func TestHelp(t *testing.T) {
	code, _, stderr := runMain(t, "--help")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, f := range []string{"-lines-per-second", "-source", "-top", "-master", "-log-format"} {
		if !strings.Contains(stderr, f) {
			t.Errorf("--help lacks %s:\n%s", f, stderr)
		}
	}
}
