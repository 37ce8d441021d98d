package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/dstream/dstreamtest"
	"github.com/sluicehq/sluice/kafka"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Values the decoder cannot decode: by default the batch fails with a
// *DecodeError naming topic, partition, offset and the decoder's error;
// SkipUndecodable skips exactly those records, warns, and counts them on
// the batch log line, over all partitions.
func TestUndecodableValues(t *testing.T) {
	for _, skip := range []bool{false, true} {
		t.Run(fmt.Sprintf("skip=%v", skip), func(t *testing.T) {
			const topic = "mixed"
			addrs := broker(t, 2, topic)
			cl := client(t, addrs)
			var want []int
			for p := range int32(2) {
				var vals []string
				for i := range 10 {
					id := 100*int(p) + i
					if i%4 == 1 { // offsets 1, 5 and 9: 3 per partition
						vals = append(vals, fmt.Sprintf(`{"id":%d,`, id))
						continue
					}
					vals = append(vals, fmt.Sprintf(`{"id":%d,"name":"n"}`, id))
					want = append(want, id)
				}
				produce(t, cl, topic, p, vals...)
			}
			logs := &syncBuffer{}
			h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second, Logger: slog.New(slog.NewTextHandler(logs, nil))})
			cfg := kafka.Config{Brokers: addrs, Topics: []string{topic}, Start: kafka.StartEarliest, Logger: slog.New(slog.NewTextHandler(logs, nil))}
			if skip {
				cfg.OnUndecodable = kafka.SkipUndecodable
			}
			s, err := kafka.NewDirectStream(h.Ctx, cfg, kafka.JSON[event]())
			if err != nil {
				t.Fatal(err)
			}
			out := dstreamtest.Output(h, dstream.Map(s, func(r kafka.Record[event]) int { return r.Value.ID }))
			_, err = h.Step()
			if !skip {
				var de *kafka.DecodeError
				if !errors.As(err, &de) || de.Topic != topic || de.Offset != 1 {
					t.Fatalf("batch error %v, want a *kafka.DecodeError at offset 1", err)
				}
				for _, s := range []string{fmt.Sprintf("mixed/%d offset 1", de.Partition), "unexpected end of JSON input", "kafka.SkipUndecodable"} {
					if !strings.Contains(err.Error(), s) {
						t.Fatalf("error %q does not contain %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := out.Batch(0)
			if fmt.Sprint(sortedInts(got)) != fmt.Sprint(want) {
				t.Fatalf("read ids %v, want %v", sortedInts(got), want)
			}
			if !strings.Contains(logs.String(), "undecodable_records=6") {
				t.Fatalf("the batch log line does not count the 6 undecodable records:\n%s", logs.String())
			}
			if n := strings.Count(logs.String(), "level=WARN msg=\"kafka: values that cannot be decoded"); n != 2 {
				t.Fatalf("%d warnings, want one per partition read:\n%s", n, logs.String())
			}
			if !strings.Contains(logs.String(), "first_offset=1") {
				t.Fatalf("the warning does not name the first undecodable offset:\n%s", logs.String())
			}
			// A batch without bad values counts 0.
			produce(t, cl, topic, 0, `{"id":7}`)
			h.Run(1)
			if !strings.Contains(logs.String(), "undecodable_records=0") {
				t.Fatalf("a clean batch does not show undecodable_records=0:\n%s", logs.String())
			}
		})
	}
}

func sortedInts(v []int) []int {
	out := append([]int(nil), v...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// Records deleted between planning and the task's read (up to offset 150,
// while the broker holds the task's first fetch): the default fails naming
// what the read lost; SkipLost, with offsets 100-119 also deleted before
// planning, reads the rest and the batch log line counts all 50 lost.
func TestLostOffsetsWhileReading(t *testing.T) {
	for _, skip := range []bool{false, true} {
		t.Run(fmt.Sprintf("skip=%v", skip), func(t *testing.T) {
			const topic = "retained"
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			addrs := c.ListenAddrs()
			cl := client(t, addrs)
			logs := &syncBuffer{}
			h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second, Logger: slog.New(slog.NewTextHandler(logs, nil))})
			cfg := kafka.Config{Brokers: addrs, Topics: []string{topic}, Start: kafka.StartEarliest, Logger: slog.New(slog.NewTextHandler(logs, nil))}
			if skip {
				cfg.OnLostOffsets = kafka.SkipLost
			}
			recs, err := kafka.NewValueStream(h.Ctx, cfg, kafka.String())
			if err != nil {
				t.Fatal(err)
			}
			out := dstreamtest.Output(h, recs)
			values := make([]string, 200)
			for i := range values {
				values[i] = strconv.Itoa(i)
			}
			produce(t, cl, topic, 0, values[:100]...)
			h.Run(1) // offsets 0-99
			produce(t, cl, topic, 0, values[100:]...)
			readFrom := int64(100)
			if skip { // the default fails at planning then (TestLostOffsets)
				readFrom = 120
				var del kadm.Offsets
				del.AddOffset(topic, 0, 120, -1)
				if resp, err := kadm.NewClient(cl).DeleteRecords(context.Background(), del); err != nil || resp.Error() != nil {
					t.Fatalf("delete records: %v %v", err, resp.Error())
				}
			}
			// The first fetch after planning waits until 120-149 are gone.
			var armed, fired atomic.Bool
			armed.Store(true)
			c.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
				if armed.CompareAndSwap(true, false) {
					c.SleepControl(func() {
						if err := c.DeleteRecords(topic, 0, 150); err == nil {
							fired.Store(true)
						}
					})
				}
				c.KeepControl()
				return nil, nil, false
			})
			_, err = h.Step()
			if !fired.Load() {
				t.Fatalf("the records were not deleted during the read: %v\n%s", err, logs.String())
			}
			if !skip {
				var lost *kafka.LostOffsetsError
				if !errors.As(err, &lost) || lost.Range != (kafka.OffsetRange{Topic: topic, Partition: 0, From: readFrom, Until: 150}) {
					t.Fatalf("batch error %v, want the lost range retained/0:[100,150)", err)
				}
				if !strings.Contains(logs.String(), `msg="batch failed" job=sluice batch=2026-01-01T00:00:02.000Z`) {
					t.Fatalf("no failed batch log line:\n%s", logs.String())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := out.Batch(1)
			if len(got) != 50 || got[0] != "150" || got[49] != "199" {
				t.Fatalf("after skipping, the batch read %d records %v, want 150..199", len(got), got)
			}
			line := ""
			for l := range strings.Lines(logs.String()) {
				if strings.Contains(l, "msg=batch ") {
					line = l
				}
			}
			if !strings.Contains(line, "offsets=retained/0:120-200 ") || !strings.Contains(line, "lost_records=50") {
				t.Fatalf("the batch log line does not count the 20 + 30 lost records:\n%s", line)
			}
			if n := strings.Count(logs.String(), "level=WARN msg=\"kafka: offsets deleted"); n != 2 {
				t.Fatalf("%d warnings, want 2 (planning, reading):\n%s", n, logs.String())
			}
		})
	}
}
