package main

import (
	"context"
	"io"
	"strings"
	"testing"
)

func TestRunFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--driver HOST:PORT is required"},
		{[]string{"--driver", "127.0.0.1:1"}, "--work-dir is required"},
		{[]string{"--driver", "127.0.0.1:1", "--work-dir", "w", "--slots", "0"}, "--slots 0"},
		{[]string{"--driver", "127.0.0.1:1", "--work-dir", "w"}, "--secret-file is required"},
		{[]string{"--bogus"}, "flag provided but not defined"},
	} {
		t.Setenv("SLUICE_SECRET", "")
		err := run(context.Background(), tc.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) || exitCode(err) != 2 {
			t.Errorf("%v: got %v (exit %d), want %q", tc.args, err, exitCode(err), tc.want)
		}
	}
	err := run(context.Background(), []string{"--driver", "127.0.0.1:1", "--work-dir", t.TempDir(), "--secret-file", "/nonexistent"}, io.Discard, io.Discard)
	if err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), "cluster secret") {
		t.Errorf("missing secret file: %v", err)
	}
}
