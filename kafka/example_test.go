package kafka_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/internal/devkafka"
	"github.com/sluicehq/sluice/kafka"
	"github.com/sluicehq/sluice/rdd"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A direct stream of string values, one batch run by hand against a demo
// broker started in the process.
func ExampleNewDirectStream() {
	broker, err := devkafka.Start(0, 2, "greetings")
	if err != nil {
		panic(err)
	}
	defer broker.Close()
	producer, _ := kgo.NewClient(kgo.SeedBrokers(broker.Addrs...), kgo.DefaultProduceTopic("greetings"))
	defer producer.Close()
	for _, v := range []string{"hello", "hallo", "hola"} {
		producer.ProduceSync(context.Background(), &kgo.Record{Value: []byte(v)})
	}

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, _ := dstream.New(dstream.Config{BatchInterval: time.Second, Logger: quiet})
	recs, err := kafka.NewDirectStream(ctx, kafka.Config{
		Brokers: broker.Addrs,
		Topics:  []string{"greetings"},
		Start:   kafka.StartEarliest,
		GroupID: "example", // offsets are committed here after every batch
		Logger:  quiet,
	}, kafka.String())
	if err != nil {
		panic(err)
	}
	values := dstream.Map(recs, func(r kafka.Record[string]) string { return r.Value })
	dstream.ForeachRDD(values, func(b *dstream.Batch, r *rdd.RDD[string]) error {
		got, err := dstream.Collect(b, r)
		sort.Strings(got)
		fmt.Println(got)
		return err
	})
	zero := time.Now().Truncate(time.Second)
	ctx.StartManual(zero)
	defer ctx.Stop()
	info, err := ctx.RunBatch(context.Background(), zero.Add(time.Second))
	fmt.Println(info.InputRecords, "records,", err)
	// Output:
	// [hallo hello hola]
	// 3 records, <nil>
}
