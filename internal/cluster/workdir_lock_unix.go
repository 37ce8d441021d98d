//go:build unix

package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockWorkDir takes an exclusive lock on dir/executor.lock for as long as
// the file stays open (the kernel drops it when the process dies, kill -9
// included), and writes this process's id in it. A second executor on one
// work directory would delete the first's shuffle files at its start and
// clash with it on the job processes' sockets: it is refused, naming the
// holder.
func lockWorkDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cluster: work directory: %w", err)
	}
	path := filepath.Join(dir, "executor.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cluster: work directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := "another process"
			if b, _ := os.ReadFile(path); len(b) > 0 {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
					holder = "process " + strconv.Itoa(pid)
				}
			}
			return nil, fmt.Errorf("cluster: work directory %s is in use by another executor (%s holds %s): give each executor its own --work-dir", dir, holder, path)
		}
		return nil, fmt.Errorf("cluster: work directory: lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}
