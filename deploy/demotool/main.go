// Command demotool is the demo's Kafka companion (deploy/): it produces the
// demo's known input and reads topics back, so the demo needs no Kafka
// tools installed.
//
//	demotool produce --brokers broker:9092 --topic lines --lines-per-second 2000
//	demotool tail    --brokers broker:9092 --topic word-totals [--follow]
//	demotool check   --brokers broker:9092   # exit 0 if Kafka answers
//	demotool watch   --brokers broker:9092   # stay up, checking Kafka (a health gate for real clusters)
//
// The input is known: line i (from 0) is wordgen.LineAt(vocabulary, i), the
// standard workload's ten words drawn from a 10,000-word vocabulary by a
// fixed function of i. produce continues from the number of records already
// in the topic, so after it ran (and was restarted) the topic holds lines
// 0..N-1 once each, N being the sum of its partitions' end offsets, and the
// word counts over the whole input are a function of N alone.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/internal/devkafka"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

const usage = `usage:
  demotool produce --brokers HOST:PORT,... [--topic lines] [--lines-per-second 2000] [--lines N] [--partitions 4] [--create T,...]
  demotool tail    --brokers HOST:PORT,... --topic TOPIC [--follow]
  demotool check   --brokers HOST:PORT,...
  demotool watch   --brokers HOST:PORT,...`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demotool:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("no command\n" + usage)
	}
	fs := flag.NewFlagSet("demotool "+args[0], flag.ContinueOnError)
	fs.SetOutput(stdout)
	brokers := fs.String("brokers", "", "Kafka brokers, host:port,... (required)")
	topic := fs.String("topic", "lines", "the topic")
	rate := fs.Int("lines-per-second", 2000, "produce: lines per second (0: as fast as possible)")
	lines := fs.Int64("lines", 0, "produce: stop once the topic holds this many lines (0: never stop)")
	partitions := fs.Int("partitions", 4, "produce: partitions of the topic if it must be created")
	create := fs.String("create", "", "produce: also create these topics (comma-separated) if they are missing")
	follow := fs.Bool("follow", false, "tail: keep reading new records (else stop at the end)")
	switch args[0] {
	case "produce", "tail", "check", "watch":
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, usage)
		fs.PrintDefaults()
		return nil
	default:
		return fmt.Errorf("unknown command %q\n%s", args[0], usage)
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	var addrs []string
	for _, a := range strings.Split(*brokers, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return fmt.Errorf("%s: --brokers HOST:PORT,... is required", args[0])
	}
	switch args[0] {
	case "produce":
		for _, t := range strings.Split(*create, ",") {
			if t = strings.TrimSpace(t); t != "" {
				if _, err := topicSize(ctx, addrs, t, int32(*partitions)); err != nil {
					return err
				}
			}
		}
		return produce(ctx, addrs, *topic, *rate, *lines, int32(*partitions), stdout)
	case "tail":
		return tail(ctx, addrs, *topic, *follow, stdout)
	case "check":
		return check(ctx, addrs)
	default: // watch
		for {
			if err := check(ctx, addrs); err != nil {
				fmt.Fprintln(stdout, "demotool:", err)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(30 * time.Second):
			}
		}
	}
}

// check asks the brokers for their metadata, within 5s.
func check(ctx context.Context, addrs []string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		return err
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).BrokerMetadata(ctx); err != nil {
		return fmt.Errorf("Kafka at %s does not answer: %w", strings.Join(addrs, ","), err)
	}
	return nil
}

// produce writes the known input, continuing after the lines already in the
// topic, until ctx ends or the topic holds total lines.
func produce(ctx context.Context, addrs []string, topic string, rate int, total int64, partitions int32, stdout io.Writer) error {
	first, err := topicSize(ctx, addrs, topic, partitions)
	if err != nil {
		return err
	}
	want := int64(0)
	if total > 0 {
		if want = total - first; want <= 0 {
			fmt.Fprintf(stdout, "demotool: %s holds %d lines already (--lines %d): nothing to produce\n", topic, first, total)
			<-ctx.Done()
			return nil
		}
	}
	fmt.Fprintf(stdout, "demotool: producing the known input to %s from line %d on, %d lines/s\n", topic, first, rate)
	n, err := devkafka.Generate(ctx, addrs, topic, rate, first, want)
	fmt.Fprintf(stdout, "demotool: produced lines %d to %d (%d lines)\n", first, first+n-1, n)
	if err != nil {
		return err
	}
	<-ctx.Done() // done: stay up, so that an orchestrator does not restart it
	return nil
}

// topicSize creates the topic if it is missing and returns the sum of its
// partitions' end offsets.
func topicSize(ctx context.Context, addrs []string, topic string, partitions int32) (int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var last error
	for attempt := 0; attempt < 30; attempt++ { // the broker may be starting
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(time.Second):
			}
		}
		r, err := adm.CreateTopic(ctx, partitions, -1, nil, topic)
		if err == nil {
			err = r.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			last = fmt.Errorf("create topic %s: %w", topic, err)
			continue
		}
		ends, err := adm.ListEndOffsets(ctx, topic)
		if err == nil {
			err = ends.Error()
		}
		if err != nil {
			last = fmt.Errorf("end offsets of %s: %w", topic, err)
			continue
		}
		var n int64
		ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
		return n, nil
	}
	return 0, last
}

// tail prints the records of topic as "key<TAB>value" lines.
func tail(ctx context.Context, addrs []string, topic string, follow bool, stdout io.Writer) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return err
	}
	defer cl.Close()
	var ends map[int32]int64
	if !follow {
		lo, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
		if err != nil {
			return err
		}
		if err := lo.Error(); err != nil {
			return err
		}
		ends = map[int32]int64{}
		lo.Each(func(o kadm.ListedOffset) {
			if o.Offset > 0 {
				ends[o.Partition] = o.Offset
			}
		})
	}
	for follow || len(ends) > 0 {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err := fetches.Err(); err != nil {
			return err
		}
		fetches.EachRecord(func(r *kgo.Record) {
			fmt.Fprintf(stdout, "%s\t%s\n", r.Key, r.Value)
			if ends != nil && r.Offset+1 >= ends[r.Partition] {
				delete(ends, r.Partition)
			}
		})
	}
	return nil
}
