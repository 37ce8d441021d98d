// Command kafkawordcount counts the words of every batch read from a Kafka
// topic and prints the most frequent ones. With no --brokers it starts a
// Kafka-protocol broker inside the process (kfake: in memory, for demos and
// tests only) and a generator of the standard workload, so it runs with
// nothing installed:
//
//	go run ./examples/kafkawordcount
//	go run ./examples/kafkawordcount --brokers=localhost:9092 --topic=lines --group=wc --out-topic=counts
//
// Offsets are committed to the consumer group after each batch, so
// `kafka-consumer-groups --describe --group wc` shows the job's lag.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/internal/devkafka"
	"github.com/sluicehq/sluice/internal/wordgen"
	"github.com/sluicehq/sluice/kafka"
	"github.com/sluicehq/sluice/rdd"
)

func main() {
	ctx, err := dstream.New(dstream.Config{AppName: "kafkawordcount", BatchInterval: time.Second})
	if err != nil {
		exit(err)
	}
	fl := ctx.Flags()
	brokers := fl.String("brokers", "", "Kafka brokers, host:port,...; empty: an embedded demo broker (kfake) fed by a generator")
	topic := fl.String("topic", "lines", "topic to read lines from")
	group := fl.String("group", "kafkawordcount", "consumer group to commit offsets to")
	start := fl.String("start", "", "where a new group starts: earliest, latest or committed (default: committed, else latest)")
	rate := fl.Int("lines-per-second", 20000, "embedded broker: lines per second the generator produces")
	outTopic := fl.String("out-topic", "", "also write every batch's counts to this topic (key word, value count)")
	backpressure := fl.Bool("backpressure", false, "adapt the batch size to the processing rate (PID)")
	maxRate := fl.Float64("max-rate-per-partition", 0, "records per second and partition at most (0: no bound)")
	top := fl.Int("top", 10, "how many of the most frequent words to print per batch")
	if err := ctx.ParseFlags(os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, dstream.ErrHelp) {
			return
		}
		exit(err)
	}

	addrs := splitList(*brokers)
	var demo func() // stops the embedded broker and generator
	if len(addrs) == 0 {
		if os.Getenv("SLUICE_ROLE") != "" {
			exit(errors.New("--brokers is required in a cluster: every process of the job must read the same brokers"))
		}
		b, err := devkafka.Start(0, 4, *topic, "counts")
		if err != nil {
			exit(err)
		}
		addrs = b.Addrs
		fmt.Fprintf(os.Stderr, "kafkawordcount: embedded demo broker (kfake, in memory) on %s, generating %d lines/s into %q\n",
			strings.Join(addrs, ","), *rate, *topic)
		genCtx, stopGen := context.WithCancel(context.Background())
		genDone := make(chan struct{})
		go func() { // owned by main: demo stops it and waits
			defer close(genDone)
			devkafka.Generate(genCtx, addrs, *topic, *rate, 0, 0)
		}()
		demo = func() { stopGen(); <-genDone; b.Close() }
	}
	cfg := kafka.Config{Brokers: addrs, Topics: []string{*topic}, GroupID: *group, Backpressure: *backpressure, MaxRatePerPartition: *maxRate}
	switch *start {
	case "":
	case "earliest":
		cfg.Start = kafka.StartEarliest
	case "latest":
		cfg.Start = kafka.StartLatest
	case "committed":
		cfg.Start = kafka.StartCommitted
	default:
		exit(fmt.Errorf("--start=%q: use earliest, latest or committed", *start))
	}
	lines, err := kafka.NewValueStream(ctx, cfg, kafka.String()) // values only: NewDirectStream gives keys, headers, offsets too
	if err != nil {
		exit(err)
	}
	pairs := dstream.FlatMapEmit(lines, func(line string, emit func(dstream.KV[string, int64])) {
		wordgen.Fields(line, func(w string) { emit(dstream.KV[string, int64]{Key: w, Value: 1}) })
	})
	counts := dstream.ReduceByKey(pairs, func(a, b int64) int64 { return a + b })

	n := *top
	dstream.ForeachRDD(counts, func(b *dstream.Batch, r *rdd.RDD[dstream.KV[string, int64]]) error {
		all, err := dstream.Collect(b, r)
		if err != nil {
			return err
		}
		sort.Slice(all, func(i, j int) bool {
			if all[i].Value != all[j].Value {
				return all[i].Value > all[j].Value
			}
			return all[i].Key < all[j].Key
		})
		var total int64
		for _, kv := range all {
			total += kv.Value
		}
		var sb strings.Builder
		fmt.Fprintf(&sb, "batch %s: %d words, %d distinct; top %d:", b.Time().UTC().Format(time.TimeOnly), total, len(all), min(n, len(all)))
		for _, kv := range all[:min(n, len(all))] {
			fmt.Fprintf(&sb, " %s=%d", kv.Key, kv.Value)
		}
		fmt.Println(sb.String())
		return nil
	})
	if *outTopic != "" {
		if err := kafka.WriteKV(counts, kafka.SinkConfig{Brokers: addrs, Topic: *outTopic}, kafka.StringEncoder(), kafka.Int64Encoder()); err != nil {
			exit(err)
		}
	}
	code := dstream.MainArgs(ctx, os.Args[1:], os.Stderr)
	if demo != nil {
		demo()
	}
	os.Exit(code)
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func exit(err error) {
	fmt.Fprintf(os.Stderr, "kafkawordcount: %v\n", err)
	os.Exit(2)
}
