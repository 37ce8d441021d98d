package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/devkafka"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

type config struct {
	port       int
	host       string
	advertise  string
	check      string
	partitions int
	topics     []string
	generate   string
	rate       int
	lines      int64
}

func parse(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("devbroker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	var topics string
	fs.IntVar(&c.port, "port", 9092, "port to listen on (0: any free port)")
	fs.StringVar(&c.host, "host", "127.0.0.1", "address to listen on (0.0.0.0 in a container)")
	fs.StringVar(&c.advertise, "advertise", "", "host name clients are told to connect to (default: --host; in a container, its service name)")
	fs.StringVar(&c.check, "check", "", "health check: exit 0 if a broker at this HOST:PORT answers a metadata request within 5s, else 1 (for container health checks)")
	fs.IntVar(&c.partitions, "partitions", 4, "partitions of every topic")
	fs.StringVar(&topics, "topics", "lines,counts", "comma-separated topics to create")
	fs.StringVar(&c.generate, "generate", "", "produce the standard workload (lines of 10 words) to this topic")
	fs.IntVar(&c.rate, "lines-per-second", 20000, "--generate: lines per second (0: as fast as possible)")
	fs.Int64Var(&c.lines, "lines", 0, "--generate: stop after this many lines (0: never)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q: flags are written --name=value", fs.Arg(0))
	}
	if c.partitions <= 0 {
		return c, fmt.Errorf("--partitions %d: must be > 0", c.partitions)
	}
	for _, t := range strings.Split(topics, ",") {
		if t = strings.TrimSpace(t); t != "" {
			c.topics = append(c.topics, t)
		}
	}
	if c.generate != "" && !contains(c.topics, c.generate) {
		c.topics = append(c.topics, c.generate)
	}
	if c.rate < 0 {
		return c, fmt.Errorf("--lines-per-second %d: must be >= 0", c.rate)
	}
	return c, nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// run starts the broker, prints its address and serves until ctx ends.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parse(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if cfg.check != "" {
		return check(ctx, cfg.check)
	}
	b, err := devkafka.StartOn(cfg.host, cfg.advertise, cfg.port, int32(cfg.partitions), cfg.topics...)
	if err != nil {
		return err
	}
	defer b.Close()
	fmt.Fprintf(stdout, "devbroker: Kafka protocol on %s (kfake: in memory, for development only); topics %s, %d partitions each\n",
		strings.Join(b.Addrs, ","), strings.Join(cfg.topics, ","), cfg.partitions)
	if cfg.generate != "" {
		n, err := devkafka.Generate(ctx, b.Addrs, cfg.generate, cfg.rate, 0, cfg.lines)
		fmt.Fprintf(stdout, "devbroker: produced %d lines to %s\n", n, cfg.generate)
		if err != nil {
			return err
		}
	}
	<-ctx.Done()
	return nil
}

// check asks the broker at addr for its metadata.
func check(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return err
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).BrokerMetadata(ctx); err != nil {
		return fmt.Errorf("health check of %s: %w", addr, err)
	}
	return nil
}
