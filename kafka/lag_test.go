package kafka_test

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/kafka"
)

// Each batch's metadata holds, per partition, the range read and the lag
// left: the records produced past the range. With 100 records a partition
// a batch, partitions holding 350, 120 and 0 records are read down in
// steps of 100, and each lag is exactly what remains; the lags add up to
// the batch log line's total lag.
func TestLagPerPartition(t *testing.T) {
	const topic = "lagged"
	const interval = 100 * time.Millisecond
	addrs := broker(t, 3, topic)
	cl := client(t, addrs)
	held := []int{350, 120, 0}
	for p, n := range held {
		vs := make([]string, n)
		for i := range vs {
			vs[i] = strconv.Itoa(i)
		}
		if n > 0 {
			produce(t, cl, topic, int32(p), vs...)
		}
	}
	logs := &syncBuffer{}
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	ctx, err := dstream.New(dstream.Config{BatchInterval: interval, Master: "local[2]", Allocator: mem, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := kafka.NewValueStream(ctx, kafka.Config{
		Brokers: addrs, Topics: []string{topic}, Start: kafka.StartEarliest,
		MaxRatePerPartition: 1000, // 100 records a partition a batch
		Logger:              quietLogger(),
	}, kafka.String())
	if err != nil {
		t.Fatal(err)
	}
	dstream.ForeachPartition(recs, dstream.Sink[string, struct{}]{Write: func(struct{}, string) error { return nil }})
	zero := time.Now().Truncate(interval)
	if err := ctx.StartManual(zero); err != nil {
		t.Fatal(err)
	}
	defer ctx.Stop()
	for i := 1; i <= 5; i++ {
		info, err := ctx.RunBatch(context.Background(), zero.Add(time.Duration(i)*interval))
		if err != nil {
			t.Fatal(err)
		}
		if len(info.Inputs) != 1 {
			t.Fatalf("batch %d: inputs %+v, want the Kafka stream", i, info.Inputs)
		}
		in, ok := info.Inputs[0].Metadata.(kafka.BatchInput)
		if !ok || len(in) != 3 {
			t.Fatalf("batch %d: metadata %#v, want a BatchInput of 3 partitions", i, info.Inputs[0].Metadata)
		}
		var total int64
		for p, pi := range in {
			read := int64(min(held[p], 100*(i-1)))
			until := int64(min(held[p], 100*i))
			want := kafka.PartitionInput{OffsetRange: kafka.OffsetRange{Topic: topic, Partition: p, From: read, Until: until}, Lag: int64(held[p]) - until}
			if pi != want {
				t.Errorf("batch %d partition %d: %+v, want %+v", i, p, pi, want)
			}
			total += pi.Lag
		}
		// The figures the web UI and /metrics use are the same.
		for p, d := range in.PartitionInputs() {
			if d != (dstream.PartitionInput{Topic: topic, Partition: p, From: in[p].From, Until: in[p].Until, Lag: in[p].Lag}) {
				t.Errorf("batch %d: PartitionInputs()[%d] = %+v, metadata %+v", i, p, d, in[p])
			}
		}
		if !strings.Contains(logs.String(), fmt.Sprintf("batch=%s", info.Time.UTC().Format("2006-01-02T15:04:05.000Z"))) {
			t.Fatalf("batch %d not logged", i)
		}
		line := ""
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "batch="+info.Time.UTC().Format("2006-01-02T15:04:05.000Z")) {
				line = l
			}
		}
		if !strings.Contains(line, fmt.Sprintf(" lag=%d", total)) {
			t.Errorf("batch %d: partition lags add up to %d; log line %s", i, total, line)
		}
	}
}
