//go:build unix

package main

import (
	"os/exec"
	"syscall"
)

// ownGroup runs cmd in its own process group and kills the whole group when
// its context ends, so a hung test binary does not outlive its mutant.
func ownGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}
