// Command demojob is the job of the docker-compose demo (deploy/): a Kafka
// word count with a sliding window and state. Every batch it reads the new
// lines of a topic and
//
//   - writes the batch's word counts as committed files, one directory per
//     batch (<out>-<batch time in ms>/part-*, lines "word<TAB>count"), which
//     appear atomically once the whole batch is written;
//   - keeps a running total per word (MapWithState) and writes the totals
//     that changed to a topic (key word, value total as decimal text);
//   - counts the words of the last --window, every --slide, incrementally
//     (ReduceByKeyAndWindowInv: a count per word as state, batches added as
//     they enter the window and taken out as they leave), and writes them to
//     another topic (key word, value count as decimal text);
//   - prints one line: words and distinct words in the batch, the top words.
//
// It reads from the earliest offset when its consumer group has none, so
// nothing the producer wrote before the job started is missed. In the demo,
// `driver submit` runs it on the cluster; it also runs alone (local mode):
//
//	go run ./deploy/demojob --brokers=127.0.0.1:9092 --out=/tmp/demo/counts
package main

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/internal/wordgen"
	"github.com/sluicehq/sluice/kafka"
	"github.com/sluicehq/sluice/rdd"
)

func main() {
	ctx, err := dstream.New(dstream.Config{AppName: "sluice-demo", BatchInterval: time.Second})
	if err != nil {
		exit(err)
	}
	fl := ctx.Flags()
	brokers := fl.String("brokers", "", "Kafka brokers, host:port,... (required)")
	topic := fl.String("topic", "lines", "topic to read lines from")
	group := fl.String("group", "sluice-demo", "consumer group to commit offsets to")
	out := fl.String("out", "", "committed files: every batch's counts go to OUT-<batch time in ms>/ (absolute path on the driver's host; empty: no files)")
	totalsTopic := fl.String("totals-topic", "word-totals", "topic for the running totals that changed in a batch (empty: none)")
	windowTopic := fl.String("window-topic", "window-counts", "topic for the sliding window's counts (empty: none)")
	window := fl.Duration("window", 10*time.Second, "sliding window length, a multiple of the 1s batch")
	slide := fl.Duration("slide", 2*time.Second, "sliding window slide, a multiple of the 1s batch")
	top := fl.Int("top", 5, "how many of the most frequent words to print per batch")
	if err := ctx.ParseFlags(os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, dstream.ErrHelp) {
			return
		}
		exit(err)
	}
	addrs := splitList(*brokers)
	if len(addrs) == 0 {
		exit(errors.New("--brokers is required: the Kafka brokers to read --topic from, host:port,..."))
	}
	lines, err := kafka.NewValueStream(ctx, kafka.Config{Brokers: addrs, Topics: []string{*topic}, GroupID: *group, Start: kafka.StartEarliest}, kafka.String())
	if err != nil {
		exit(err)
	}
	pairs := dstream.FlatMapEmit(lines, func(line string, emit func(dstream.KV[string, int64])) {
		wordgen.Fields(line, func(w string) { emit(dstream.KV[string, int64]{Key: w, Value: 1}) })
	})
	sum := func(a, b int64) int64 { return a + b }
	counts := dstream.ReduceByKey(pairs, sum)

	if *out != "" {
		dstream.SaveAsTextFiles(dstream.Map(counts, func(kv dstream.KV[string, int64]) string {
			return kv.Key + "\t" + strconv.FormatInt(kv.Value, 10)
		}), *out, "")
	}
	decimal := func(v int64) ([]byte, error) { return strconv.AppendInt(nil, v, 10), nil }
	if *totalsTopic != "" {
		totals := dstream.MapWithState(counts, dstream.StateSpec[string, int64, int64, dstream.KV[string, int64]]{
			Name: "word-totals",
			Func: func(word string, n dstream.Option[int64], st *dstream.State[int64]) (dstream.KV[string, int64], bool) {
				v, ok := n.Get()
				if !ok {
					return dstream.KV[string, int64]{}, false
				}
				total := st.Get() + v
				st.Update(total)
				return dstream.KV[string, int64]{Key: word, Value: total}, true
			},
		})
		if err := kafka.WriteKV(totals.DStream, kafka.SinkConfig{Brokers: addrs, Topic: *totalsTopic}, kafka.StringEncoder(), decimal); err != nil {
			exit(err)
		}
	}
	if *windowTopic != "" {
		// The incremental window: its state is one count per key; each slide
		// adds the batches that entered and takes out those that left.
		windowed := dstream.ReduceByKeyAndWindowInv(counts, "window-counts", sum, func(a, b int64) int64 { return a - b },
			*window, *slide, func(kv dstream.KV[string, int64]) bool { return kv.Value != 0 })
		if err := kafka.WriteKV(windowed, kafka.SinkConfig{Brokers: addrs, Topic: *windowTopic}, kafka.StringEncoder(), decimal); err != nil {
			exit(err)
		}
	}
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
	os.Exit(dstream.MainArgs(ctx, os.Args[1:], os.Stderr))
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
	fmt.Fprintf(os.Stderr, "demojob: %v\n", err)
	os.Exit(2)
}
