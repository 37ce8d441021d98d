package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestMain(m *testing.M) {
	if os.Getenv("SLUICE_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestHelpListsFlagsAndExits0(t *testing.T) {
	for _, arg := range []string{"--help", "-h"} {
		cmd := exec.Command(os.Args[0], arg)
		cmd.Env = append(os.Environ(), "SLUICE_TEST_MAIN=1")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("executor %s: %v", arg, err)
		}
		for _, f := range []string{"-driver", "-listen", "-advertise", "-work-dir", "-slots", "-id", "-drain-grace", "-orphan-grace", "-secret-file", "-insecure", "-tls-cert", "-tls-key", "-tls-ca"} {
			if !strings.Contains(string(out), "  "+f) {
				t.Errorf("executor %s does not list %s:\n%s", arg, f, out)
			}
		}
	}
}
