package main

import (
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"sort"
	"strings"
)

// children are the measured sides that run in their own process (so that
// their peak RSS is their own), by -child name.
var children = map[string]func(cfg config, args []string, out io.Writer) error{}

func runChild(cfg config, args []string, out io.Writer) error {
	f, ok := children[cfg.child]
	if !ok {
		var have []string
		for n := range children {
			have = append(have, n)
		}
		sort.Strings(have)
		return fmt.Errorf("-child %q: unknown (have %s)", cfg.child, strings.Join(have, ","))
	}
	if p := os.Getenv("BENCH_CHILD_CPUPROFILE"); p != "" { // for looking into a child's time
		w, err := os.Create(p + "." + cfg.child)
		if err != nil {
			return err
		}
		defer w.Close()
		if err := pprof.StartCPUProfile(w); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	return f(cfg, args, out)
}
