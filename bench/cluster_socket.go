package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/sluicehq/sluice/internal/wordgen"
)

var _ = register("cluster-socket", false, clusterSocketBench)

// clusterSocketBench is the realistic cluster comparison: the wordcount job
// reads socket input in its driver (a paced feeder on 127.0.0.1 sending
// lines drawn from a 100,000-word vocabulary, so the shuffle carries real
// volume), in local mode and on a driver and two executors on loopback
// (executors fetch the input from the job driver), interleaved; it compares
// median batch processing times from the jobs' batch log lines.
func clusterSocketBench(cfg config, out io.Writer) error {
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
	const vocabSize = 100_000
	rate := cfg.clusterRate
	fmt.Fprintf(out, "cluster vs local: wordcount --source=socket, %d lines/s (vocabulary %d) into the job driver, 1 s batches, median of %d batches per run\n",
		rate, vocabSize, cfg.clusterBatches)
	vocab := wordgen.Vocabulary(vocabSize)
	r := rand.New(rand.NewPCG(3, 4))
	var block []byte
	const blockLines = 100_000
	for i := 0; i < blockLines; i++ {
		for j := 0; j < wordgen.WordsPerLine; j++ {
			if j > 0 {
				block = append(block, ' ')
			}
			block = append(block, vocab[r.IntN(vocabSize)]...)
		}
		block = append(block, '\n')
	}
	run := func(local bool) func() (time.Duration, error) {
		return func() (time.Duration, error) {
			f, err := pacedFeeder(block, blockLines, rate)
			if err != nil {
				return 0, err
			}
			defer f.stop()
			args := []string{"--source=socket", "--addr=" + f.ln.Addr().String(), "--top=0"}
			if local {
				return localJobTimes(dir, cfg.clusterBatches, cfg.slots, args...)
			}
			return clusterJobTimes(dir, cfg.clusterBatches, cfg.slots, args...)
		}
	}
	loc := &side{name: fmt.Sprintf("local[%d] (median batch processing time per run)", cfg.slots), round: run(true)}
	clu := &side{name: fmt.Sprintf("driver + 2 executors, %d slots in all", cfg.slots), round: run(false)}
	// No warm-up round: each run already skips two warm-up batches.
	for i := 0; i < cfg.rounds; i++ {
		for _, s := range []*side{clu, loc} {
			d, err := s.round()
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			s.times = append(s.times, d)
		}
	}
	fmt.Fprintf(out, "  %-58s %s\n", loc.name, fmtDurations(loc.times))
	fmt.Fprintf(out, "  %-58s %s\n", clu.name, fmtDurations(clu.times))
	printRatio(out, "ratio cluster/local (processing time)", clu, loc, " (target >= 0.6x)")
	return nil
}

// pacedFeeder serves every connection rate lines per second (paced every
// 10 ms) from block, whole lines, until stop.
func pacedFeeder(block []byte, blockLines, rate int) (*feeder, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	var starts []int
	for i := 0; i < len(block); i++ {
		if i == 0 || block[i-1] == '\n' {
			starts = append(starts, i)
		}
	}
	starts = append(starts, len(block))
	f := &feeder{ln: ln, accepted: make(chan time.Time, 1)}
	var once sync.Once
	f.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			once.Do(func() { f.accepted <- time.Now() })
			f.mu.Lock()
			f.conns = append(f.conns, c)
			f.mu.Unlock()
			f.wg.Go(func() {
				start := time.Now()
				sent, line := 0, 0
				for {
					due := int(time.Since(start).Seconds() * float64(rate))
					for sent < due {
						k := min(due-sent, blockLines-line)
						if _, err := c.Write(block[starts[line]:starts[line+k]]); err != nil {
							return
						}
						sent += k
						if line += k; line == blockLines {
							line = 0
						}
					}
					time.Sleep(10 * time.Millisecond)
				}
			})
		}
	})
	return f, nil
}
