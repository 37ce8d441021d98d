package main

import (
	"context"
	"io"
	"strings"
	"testing"
)

func TestRunFlagErrors(t *testing.T) {
	t.Setenv("SLUICE_SECRET", "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "no command"},
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"serve"}, "--state-dir is required"},
		{[]string{"serve", "--state-dir", t.TempDir()}, "--secret-file is required"},
		{[]string{"serve", "--no-such"}, "flag provided but not defined"},
		{[]string{"submit", "--insecure"}, "which job binary"},
		{[]string{"submit", "--insecure", "--min-executors", "-1", "job"}, "--min-executors=-1 and --wait=1m0s must be >= 0"},
		{[]string{"submit", "--insecure", "--wait", "-1s", "job"}, "--wait=-1s must be >= 0"},
		{[]string{"status", "--insecure"}, "give one job id"},
		{[]string{"jobs", "--secret-file", "/nonexistent/secret"}, "cluster secret"},
		{[]string{"serve", "--listen", "127.0.0.1:0", "--state-dir", t.TempDir(), "--insecure", "--ui", "0.0.0.0:0"}, "binds beyond loopback"},
		{[]string{"serve", "--listen", "127.0.0.1:0", "--state-dir", t.TempDir(), "--insecure", "--ui", "h:x"}, "--ui"},
		{[]string{"status", "--insecure", "--watch", "job-1"}, "status --watch: give --ui"},
		{[]string{"status", "--insecure", "--ui", ":4040", "--interval", "0s", "job-1"}, "--interval"},
	} {
		err := run(context.Background(), tc.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want %q", tc.args, err, tc.want)
			continue
		}
		if strings.Contains(tc.want, "secret ") || tc.want == "cluster secret" {
			continue
		}
		if code := exitCode(err); code != 2 {
			t.Errorf("%v: exit %d, want 2", tc.args, code)
		}
	}
}
