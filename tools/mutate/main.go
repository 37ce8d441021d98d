// Command mutate measures how well the tests guard the engine: it applies
// small semantic changes (mutants) to the source one at a time, runs the
// tests named for each, and reports which changes the tests noticed
// (killed) and which they did not (survived), with a score per file.
//
// It works on a copy of the repository's files (tracked and untracked, not
// ignored) so the working tree is never modified. It is not part of .ci/run:
// a full run rebuilds and tests a package per mutant and takes minutes.
//
//	go -C tools/mutate run .                       # every mutant in mutants.txt
//	go -C tools/mutate run . -only 'shuffle'       # mutants whose file or name matches
//	go -C tools/mutate run . -check                # only check that every snippet still applies
//
// The mutant list format is described in spec.go (parseSpec).
package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mutate:", err)
		os.Exit(1)
	}
}

type outcome string

const (
	killed   outcome = "KILLED"
	survived outcome = "SURVIVED"
	timedOut outcome = "TIMEOUT" // counted as killed: the tests noticed a hang
	invalid  outcome = "INVALID" // does not compile: not counted
	equiv    outcome = "EQUIV"   // survived, and the spec explains why no test can see it: not counted
)

type result struct {
	m      *Mutant
	out    outcome
	took   time.Duration
	detail string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mutate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	repo := fs.String("repo", "", "repository root (default: the git top level of the current directory)")
	specPath := fs.String("spec", "", "mutant list (default: tools/mutate/mutants.txt in the repository)")
	only := fs.String("only", "", "run only mutants whose file or name matches this regular expression")
	timeout := fs.Duration("timeout", 5*time.Minute, "time limit of one mutant's test command")
	check := fs.Bool("check", false, "only check that every mutant applies and compiles")
	verbose := fs.Bool("v", false, "print the failing test lines of killed mutants")
	work := fs.String("work", "", "directory for the copy of the repository, kept after the run (default: a fixed directory under the system temp dir, removed after the run)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *repo == "" {
		top, err := exec.CommandContext(ctx, "git", "rev-parse", "--show-toplevel").Output()
		if err != nil {
			return fmt.Errorf("find the repository root (run inside the repository or pass -repo): %w", err)
		}
		*repo = strings.TrimSpace(string(top))
	}
	if *specPath == "" {
		*specPath = filepath.Join(*repo, "tools", "mutate", "mutants.txt")
	}
	f, err := os.Open(*specPath)
	if err != nil {
		return err
	}
	mutants, err := parseSpec(f, *specPath)
	f.Close()
	if err != nil {
		return err
	}
	if *only != "" {
		re, err := regexp.Compile(*only)
		if err != nil {
			return fmt.Errorf("-only: %w", err)
		}
		mutants = slices.DeleteFunc(mutants, func(m *Mutant) bool { return !re.MatchString(m.File) && !re.MatchString(m.Name) })
	}
	if len(mutants) == 0 {
		return errors.New("no mutants to run")
	}

	// Every snippet must apply before anything runs: a stale list is
	// reported at once, not after an hour.
	originals := map[string]string{}
	var stale []error
	for _, m := range mutants {
		src, ok := originals[m.File]
		if !ok {
			b, err := os.ReadFile(filepath.Join(*repo, m.File))
			if err != nil {
				return fmt.Errorf("mutant %s: %w", m.Name, err)
			}
			src = string(b)
			originals[m.File] = src
		}
		if _, err := m.apply(src); err != nil {
			stale = append(stale, err)
		}
	}
	if len(stale) > 0 {
		return errors.Join(stale...)
	}

	dir := *work
	if dir == "" {
		// The same path every run: the Go build cache keys on it, so a
		// second run recompiles only what the mutants change.
		sum := sha256.Sum256([]byte(*repo))
		dir = filepath.Join(os.TempDir(), fmt.Sprintf("sluice-mutate-%x", sum[:6]))
		defer os.RemoveAll(dir)
	}
	if err := copyRepo(ctx, *repo, dir); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "mutate: %d mutants, copy of %s in %s\n", len(mutants), *repo, dir)

	// Baseline: every test command must pass on the unmutated copy.
	if !*check {
		var cmds []string
		for _, m := range mutants {
			if !slices.Contains(cmds, m.Test) {
				cmds = append(cmds, m.Test)
			}
		}
		for _, c := range cmds {
			start := time.Now()
			out, err := shell(ctx, dir, c, *timeout)
			if err != nil {
				return fmt.Errorf("baseline: %q fails without any mutant (fix the tests first):\n%s", c, tail(out, 40))
			}
			fmt.Fprintf(stdout, "baseline ok (%s): %s\n", time.Since(start).Round(time.Second), c)
		}
	}

	var results []result
	for _, m := range mutants {
		r := runMutant(ctx, dir, m, originals[m.File], *timeout, *check)
		results = append(results, r)
		fmt.Fprintf(stdout, "%-8s %-26s %-34s %6s  %s\n", r.out, m.File, m.Name, r.took.Round(100*time.Millisecond), m.Why)
		if r.detail != "" && (*verbose || r.out == invalid || r.out == equiv) {
			fmt.Fprintln(stdout, indent(r.detail))
		}
	}
	if *check {
		return nil
	}
	report(stdout, results)
	return nil
}

func runMutant(ctx context.Context, dir string, m *Mutant, orig string, timeout time.Duration, checkOnly bool) result {
	start := time.Now()
	path := filepath.Join(dir, m.File)
	src, err := m.apply(orig)
	if err != nil {
		return result{m: m, out: invalid, detail: err.Error()}
	}
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		return result{m: m, out: invalid, detail: err.Error()}
	}
	defer os.WriteFile(path, []byte(orig), 0o644)
	pkg := "./" + filepath.ToSlash(filepath.Dir(m.File))
	if out, err := shell(ctx, dir, "go build "+pkg, timeout); err != nil {
		return result{m: m, out: invalid, took: time.Since(start), detail: tail(out, 10)}
	}
	if checkOnly {
		return result{m: m, out: "OK", took: time.Since(start)}
	}
	out, err := shell(ctx, dir, m.Test, timeout)
	r := result{m: m, took: time.Since(start)}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		r.out, r.detail = timedOut, tail(out, 10)
	case err != nil:
		r.out, r.detail = killed, failures(out)
	case m.Equivalent != "":
		r.out, r.detail = equiv, m.Equivalent
	default:
		r.out = survived
	}
	return r
}

// report prints the score per file: killed (and timed out) over the
// mutants that compiled.
func report(w io.Writer, results []result) {
	type score struct {
		killed, total, equiv int
		survivors            []string
	}
	scores := map[string]*score{}
	var files []string
	for _, r := range results {
		s := scores[r.m.File]
		if s == nil {
			s = &score{}
			scores[r.m.File] = s
			files = append(files, r.m.File)
		}
		switch r.out {
		case killed, timedOut:
			s.killed++
			s.total++
		case survived:
			s.total++
			s.survivors = append(s.survivors, r.m.Name)
		case equiv:
			s.equiv++
		}
	}
	fmt.Fprintln(w, "\nscore per file (killed / mutants that compile and are not marked equivalent):")
	for _, f := range files {
		s := scores[f]
		pct := 0.0
		if s.total > 0 {
			pct = 100 * float64(s.killed) / float64(s.total)
		}
		line := fmt.Sprintf("  %-30s %3d/%-3d %5.1f%%", f, s.killed, s.total, pct)
		if s.equiv > 0 {
			line += fmt.Sprintf("  (+%d equivalent)", s.equiv)
		}
		if len(s.survivors) > 0 {
			line += "  survived: " + strings.Join(s.survivors, ", ")
		}
		fmt.Fprintln(w, line)
	}
}

// copyRepo replaces dst with a copy of the repository's files: tracked and
// untracked, without ignored ones.
func copyRepo(ctx context.Context, repo, dst string) error {
	out, err := exec.CommandContext(ctx, "git", "-C", repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		return fmt.Errorf("list the repository's files: %w", err)
	}
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		src := filepath.Join(repo, name)
		fi, err := os.Lstat(src)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // deleted in the working tree
			}
			return err
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, name)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(to, b, fi.Mode().Perm()); err != nil {
			return err
		}
	}
	return nil
}

// shell runs command with sh in dir, killing its whole process group on
// timeout, and returns its combined output.
func shell(ctx context.Context, dir, command string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", command)
	cmd.Dir = dir
	var buf strings.Builder
	cmd.Stdout, cmd.Stderr = &buf, &buf
	ownGroup(cmd)
	err := cmd.Run()
	if ctx.Err() != nil {
		return buf.String(), ctx.Err()
	}
	return buf.String(), err
}

// failures returns the lines that say which tests failed.
func failures(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "--- FAIL") || strings.HasPrefix(t, "panic:") || strings.Contains(t, "_test.go:") {
			keep = append(keep, l)
		}
		if len(keep) >= 12 {
			break
		}
	}
	if len(keep) == 0 {
		return tail(out, 10)
	}
	return strings.Join(keep, "\n")
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func indent(s string) string { return "    " + strings.ReplaceAll(s, "\n", "\n    ") }
