package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/wordgen"
)

var _ = register("cluster", false, clusterBench)

// clusterBench runs the demo WordCount (its lines are generated in the tasks,
// the standard workload's shape) in local mode and on a cluster of a driver
// and two executors on loopback, with the same total task slots, and compares
// batch processing times from the jobs' own batch log lines.
func clusterBench(cfg config, out io.Writer) error {
	dir, err := os.MkdirTemp("", "sluice-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	build := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "./cmd/driver", "./cmd/executor", "./examples/wordcount")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build: %v\n%s", err, b)
	}
	lines := cfg.clusterLines
	batches := cfg.clusterBatches
	fmt.Fprintf(out, "cluster: WordCount of generated lines, %d lines x %d words per 1 s batch, median of %d batches\n", lines, wordgen.WordsPerLine, batches)
	local, err := localTimes(dir, lines, batches, cfg.slots)
	if err != nil {
		return err
	}
	remote, err := clusterTimes(dir, lines, batches, cfg.slots)
	if err != nil {
		return err
	}
	words := float64(lines * wordgen.WordsPerLine)
	fmt.Fprintf(out, "  local[%d]:                     %s words/s (batch %v)\n", cfg.slots, wordgen.Label(words/local.Seconds()), local.Round(time.Millisecond))
	fmt.Fprintf(out, "  driver + 2 executors (%d slots): %s words/s (batch %v)\n", cfg.slots, wordgen.Label(words/remote.Seconds()), remote.Round(time.Millisecond))
	fmt.Fprintf(out, "  ratio cluster/local: %.2fx (target >= 0.6x)\n", local.Seconds()/remote.Seconds())
	// Empty batches are short and noisy: more of them.
	empties := max(batches, 15)
	le, err := localTimes(dir, 0, empties, cfg.slots)
	if err != nil {
		return err
	}
	ce, err := clusterTimes(dir, 0, empties, cfg.slots)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  empty-batch overhead (median of %d): local %v, cluster %v (target <= 2ms local, <= 5ms cluster)\n",
		empties, le.Round(time.Microsecond), ce.Round(time.Microsecond))
	return nil
}

var procRE = regexp.MustCompile(`msg=batch .*processing_time=(\S+)`)

// medianProcessing reads batch log lines from r until n batches (after two
// warm-up ones) were seen and returns the median processing time.
func medianProcessing(r io.Reader, n int) (time.Duration, error) {
	var ds []time.Duration
	sc := bufio.NewScanner(r)
	seen := 0
	for sc.Scan() {
		m := procRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		if seen++; seen <= 2 {
			continue
		}
		d, err := time.ParseDuration(m[1])
		if err != nil {
			return 0, err
		}
		if ds = append(ds, d); len(ds) == n {
			slices.Sort(ds)
			return ds[n/2], nil
		}
	}
	return 0, fmt.Errorf("the job ended after %d batches", len(ds))
}

func localTimes(dir string, lines, n, slots int) (time.Duration, error) {
	return localJobTimes(dir, n, slots, fmt.Sprintf("--lines-per-second=%d", lines), "--top=0")
}

// localJobTimes runs the wordcount job with args in local mode and returns
// the median processing time of n batches after two warm-up ones.
func localJobTimes(dir string, n, slots int, args ...string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(dir, "wordcount"), append([]string{fmt.Sprintf("--master=local[%d]", slots)}, args...)...)
	cmd.Stdout = io.Discard
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	return medianProcessing(stderr, n)
}

func clusterTimes(dir string, lines, n, slots int) (time.Duration, error) {
	return clusterJobTimes(dir, n, slots, fmt.Sprintf("--lines-per-second=%d", lines), "--top=0")
}

// clusterJobTimes runs the wordcount job with args on a driver and two
// executors on loopback and returns the median processing time of n
// batches after two warm-up ones.
func clusterJobTimes(dir string, n, slots int, jobArgs ...string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	work, err := os.MkdirTemp(dir, "cluster-")
	if err != nil {
		return 0, err
	}
	secret := filepath.Join(work, "secret")
	if err := os.WriteFile(secret, []byte("bench-cluster-secret-0123456789"), 0o600); err != nil {
		return 0, err
	}
	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			p.Process.Kill()
			p.Wait()
		}
	}()
	startProc := func(args ...string) (*exec.Cmd, error) {
		c := exec.CommandContext(ctx, filepath.Join(dir, args[0]), args[1:]...)
		c.Stdout, c.Stderr = io.Discard, io.Discard
		if err := c.Start(); err != nil {
			return nil, err
		}
		procs = append(procs, c)
		return c, nil
	}
	addr := "127.0.0.1:17377"
	if _, err := startProc("driver", "serve", "--listen", addr, "--state-dir", filepath.Join(work, "state"), "--secret-file", secret); err != nil {
		return 0, err
	}
	per := max(1, slots/2)
	for i, port := range []string{"17378", "17379"} {
		if _, err := startProc("executor", "--driver", addr, "--listen", "127.0.0.1:"+port, "--work-dir", filepath.Join(work, fmt.Sprint("e", i)),
			"--slots", fmt.Sprint(per), "--secret-file", secret, "--drain-grace", "0s"); err != nil {
			return 0, err
		}
	}
	var id string
	for try := 0; ; try++ {
		args := append([]string{"submit", "--master", addr, "--secret-file", secret, "--min-executors", "2", filepath.Join(dir, "wordcount"), "--"}, jobArgs...)
		b, err := exec.CommandContext(ctx, filepath.Join(dir, "driver"), args...).Output()
		if err == nil {
			id = strings.TrimSpace(string(b))
			break
		}
		if try > 50 {
			return 0, fmt.Errorf("submit: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	logPath := filepath.Join(work, "state", "jobs", id, "stderr.log")
	r, w := io.Pipe()
	go func() { // follows the job's log until the bench has enough
		defer w.Close()
		var off int64
		for ctx.Err() == nil {
			if f, err := os.Open(logPath); err == nil {
				f.Seek(off, io.SeekStart)
				n, _ := io.Copy(w, f)
				off += n
				f.Close()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	d, err := medianProcessing(r, n)
	cancel()
	r.Close()
	return d, err
}
