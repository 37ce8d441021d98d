// Command directkafkawordcount is Spark Streaming's DirectKafkaWordCount:
// word counts of a Kafka topic read with the direct stream, saved as text
// files.
package main

import (
	"flag"
	"strings"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/kafka"
)

var (
	brokers  = flag.String("brokers", "", "Kafka brokers, host:port,...")
	topics   = flag.String("topics", "", "topics to read, comma-separated")
	group    = flag.String("group", "", "consumer group")
	out      = flag.String("out", "", "prefix of the output directories")
	outTopic = flag.String("out-topic", "", "also write every batch's counts to this topic (key word, value count), as KafkaWordCountProducer's consumer would read them")
	from     = flag.String("start", "earliest", "where a new job starts: earliest, or committed (the group's offsets)")
)

func main() {
	dstream.Run(dstream.Config{AppName: "DirectKafkaWordCount", BatchInterval: 2 * time.Second}, func(ctx *dstream.Context) error {
		if *brokers == "" || *topics == "" || *out == "" {
			return dstream.Usagef("--brokers, --topics and --out are required")
		}
		cfg := kafka.Config{
			Brokers: strings.Split(*brokers, ","),
			Topics:  strings.Split(*topics, ","),
			GroupID: *group,
			Start:   kafka.StartEarliest,
		}
		switch *from {
		case "earliest":
		case "committed":
			cfg.Start = kafka.StartCommitted
		default:
			return dstream.Usagef("--start=%q: use earliest or committed", *from)
		}
		lines, err := kafka.NewValueStream(ctx, cfg, kafka.String())
		if err != nil {
			return err
		}
		words := dstream.FlatMap(lines, strings.Fields)
		wordCounts := dstream.ReduceByKey(dstream.Map(words, func(w string) dstream.KV[string, int64] { return dstream.KVOf(w, int64(1)) }), dstream.Sum[int64])
		dstream.Print(wordCounts, 10)
		dstream.SaveAsTextFiles(wordCounts, *out, "")
		if *outTopic != "" {
			return kafka.WriteKV(wordCounts, kafka.SinkConfig{Brokers: cfg.Brokers, Topic: *outTopic}, kafka.StringEncoder(), kafka.Int64Encoder())
		}
		return nil
	})
}
