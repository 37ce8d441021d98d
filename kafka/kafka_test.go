package kafka_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/dstream/dstreamtest"
	"github.com/sluicehq/sluice/internal/wordgen"
	"github.com/sluicehq/sluice/kafka"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// broker starts a Kafka wire-protocol broker (kfake) on 127.0.0.1 with the
// given topics; it stops at the end of the test.
func broker(t *testing.T, partitions int32, topics ...string) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topics...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// client is the independent client (franz-go) that produces and reads back.
func client(t *testing.T, addrs []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	opts = append([]kgo.Opt{kgo.SeedBrokers(addrs...), kgo.RecordPartitioner(kgo.ManualPartitioner())}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func produce(t *testing.T, cl *kgo.Client, topic string, partition int32, values ...string) {
	t.Helper()
	recs := make([]*kgo.Record, len(values))
	for i, v := range values {
		recs[i] = &kgo.Record{Topic: topic, Partition: partition, Value: []byte(v)}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatalf("produce to %s/%d: %v", topic, partition, err)
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(ioDiscard{}, nil)) }

type ioDiscard struct{}

func (ioDiscard) Write(b []byte) (int, error) { return len(b), nil }

// syncBuffer is a log sink safe for the scheduler's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Over 50+ batches with concurrent production, every record is processed
// in exactly one batch, word counts equal a reference computed from what
// was produced, and the group's committed offsets end at the produced end.
func TestDirectStreamEveryRecordOnce(t *testing.T) {
	const topic, parts, rounds, perRound = "lines", 4, 60, 200
	addrs := broker(t, parts, topic)
	cl := client(t, addrs)
	logs := &syncBuffer{}
	h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	recs, err := kafka.NewDirectStream(h.Ctx, kafka.Config{
		Brokers: addrs, Topics: []string{topic}, GroupID: "wc", Start: kafka.StartEarliest,
		MaxRatePerPartition: 60, // at most 240 records a batch: many batches
		Logger:              quietLogger(),
	}, kafka.String())
	if err != nil {
		t.Fatal(err)
	}
	ids := dstreamtest.Output(h, dstream.Map(recs, func(r kafka.Record[string]) string {
		return fmt.Sprintf("%d/%d/%s", r.Partition, r.Offset, r.Value)
	}))
	words := dstream.FlatMapEmit(recs, func(r kafka.Record[string], emit func(dstream.KV[string, int64])) {
		wordgen.Fields(r.Value, func(w string) { emit(dstream.KV[string, int64]{Key: w, Value: 1}) })
	})
	counts := dstreamtest.Output(h, dstream.ReduceByKey(words, func(a, b int64) int64 { return a + b }))

	// The independent client produces concurrently with the batches.
	gen := wordgen.New(7)
	var produced []string
	for i := range rounds * perRound {
		produced = append(produced, fmt.Sprintf("seq%d %s", i, gen.Line()))
	}
	done := make(chan struct{})
	step := make(chan struct{}, rounds)
	go func() {
		defer close(done)
		for r := range rounds {
			<-step
			for p := range int32(parts) {
				lo := r*perRound + int(p)*perRound/parts
				hi := r*perRound + int(p+1)*perRound/parts
				produce(t, cl, topic, p, produced[lo:hi]...)
			}
		}
	}()
	var batches int
	for ; batches < 400; batches++ {
		if batches < rounds {
			step <- struct{}{}
		}
		if _, err := h.Step(); err != nil {
			t.Fatalf("batch %d: %v", batches, err)
		}
		select {
		case <-done:
			if n := total(h.Infos); n == int64(len(produced)) {
				batches++
				goto consumed
			}
		default:
		}
	}
	t.Fatalf("after %d batches, %d of %d records were read", batches, total(h.Infos), len(produced))
consumed:
	if batches < 50 {
		t.Fatalf("only %d batches: the test must span 50+", batches)
	}
	seen := map[string]int{}
	byValue := map[string]int{}
	for i := range batches {
		got := ids.Batch(i)
		if int64(len(got)) != h.Infos[i].InputRecords {
			t.Errorf("batch %d: %d records processed, %d planned", i, len(got), h.Infos[i].InputRecords)
		}
		for _, id := range got {
			seen[id]++
			byValue[strings.SplitN(id, "/", 3)[2]]++
		}
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("record %s processed %d times", id, n)
		}
	}
	for _, v := range produced {
		if byValue[v] != 1 {
			t.Errorf("produced %q processed %d times", v, byValue[v])
		}
	}
	ref := map[string]int64{}
	for _, v := range produced {
		wordgen.Fields(v, func(w string) { ref[w]++ })
	}
	got := map[string]int64{}
	for i := range batches {
		for _, kv := range counts.Batch(i) {
			got[kv.Key] += kv.Value
		}
	}
	if len(got) != len(ref) {
		t.Errorf("%d distinct words counted, reference %d", len(got), len(ref))
	}
	for w, n := range ref {
		if got[w] != n {
			t.Errorf("count of %q = %d, reference %d", w, got[w], n)
			break
		}
	}
	// Offsets are in the batch metadata and on the log line.
	last := h.Infos[batches-1]
	if len(last.Inputs) != 1 {
		t.Fatalf("batch inputs %+v: want the kafka stream", last.Inputs)
	}
	if rs, ok := last.Inputs[0].Metadata.(kafka.BatchInput); !ok || len(rs) != parts {
		t.Fatalf("batch metadata %#v: want %d offset ranges", last.Inputs[0].Metadata, parts)
	}
	if !strings.Contains(logs.String(), "offsets=\"lines/0:") {
		t.Errorf("batch log lines carry no offsets:\n%s", firstLines(logs.String(), 3))
	}
	// The group's committed offsets end where production ended.
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := adm.FetchOffsets(context.Background(), "wc")
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		c, ok := committed.Lookup(o.Topic, o.Partition)
		if !ok || c.At != o.Offset {
			t.Errorf("%s/%d: committed %v (%v), end offset %d", o.Topic, o.Partition, c.At, ok, o.Offset)
		}
	})
}

func total(infos []dstream.BatchInfo) int64 {
	var n int64
	for _, in := range infos {
		n += in.InputRecords
	}
	return n
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

// Start positions: latest, explicit offsets, the group's committed offsets;
// partitions added later are read from their start.
func TestStartPositionsAndNewPartitions(t *testing.T) {
	const topic = "events"
	addrs := broker(t, 1, topic)
	cl := client(t, addrs)
	produce(t, cl, topic, 0, "a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9")
	adm := kadm.NewClient(cl)
	var commit kadm.Offsets
	commit.AddOffset(topic, 0, 7, -1)
	if _, err := adm.CommitOffsets(context.Background(), "g", commit); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		cfg   kafka.Config
		first []string // the first batch's values
	}{
		{"latest", kafka.Config{Start: kafka.StartLatest}, nil},
		{"earliest", kafka.Config{Start: kafka.StartEarliest}, []string{"a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9"}},
		{"explicit", kafka.Config{StartOffsets: map[kafka.TopicPartition]int64{{Topic: topic, Partition: 0}: 8}}, []string{"a8", "a9"}},
		{"committed", kafka.Config{GroupID: "g"}, []string{"a7", "a8", "a9"}},
		{"new group", kafka.Config{GroupID: "fresh"}, []string{"a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9"}},
		{"missing topic", kafka.Config{Topics: []string{"nope"}}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second})
			cfg := c.cfg
			cfg.Brokers, cfg.Logger = addrs, quietLogger()
			if cfg.Topics == nil {
				cfg.Topics = []string{topic}
			}
			recs, err := kafka.NewDirectStream(h.Ctx, cfg, kafka.String())
			if err != nil {
				t.Fatal(err)
			}
			out := dstreamtest.Output(h, dstream.Map(recs, func(r kafka.Record[string]) string { return r.Value }))
			if cfg.Topics[0] == "nope" {
				if _, err := h.Step(); err == nil || !strings.Contains(err.Error(), "nope") {
					t.Fatalf("start with a missing topic: %v, want an error naming it", err)
				}
				return
			}
			h.Run(1)
			if got := out.Batch(0); fmt.Sprint(got) != fmt.Sprint(c.first) {
				t.Fatalf("first batch %v, want %v", got, c.first)
			}
		})
	}

	t.Run("new partitions", func(t *testing.T) {
		h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second})
		recs, err := kafka.NewDirectStream(h.Ctx, kafka.Config{Brokers: addrs, Topics: []string{topic}, Logger: quietLogger()}, kafka.String())
		if err != nil {
			t.Fatal(err)
		}
		out := dstreamtest.Output(h, dstream.Map(recs, func(r kafka.Record[string]) string { return fmt.Sprintf("%d:%s", r.Partition, r.Value) }))
		h.Run(1)
		if _, err := adm.CreatePartitions(context.Background(), 1, topic); err != nil {
			t.Fatal(err)
		}
		fresh := client(t, addrs) // knows the new partition
		produce(t, fresh, topic, 1, "b0", "b1")
		produce(t, fresh, topic, 0, "a10")
		h.Run(1)
		got := out.Batch(1)
		want := []string{"0:a10", "1:b0", "1:b1"}
		if fmt.Sprint(sortedCopy(got)) != fmt.Sprint(want) {
			t.Fatalf("batch after adding a partition read %v, want %v", got, want)
		}
	})
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// Records deleted (retention) below the next planned offset: the default
// fails the batch naming the lost range; SkipLost goes on and counts them.
func TestLostOffsets(t *testing.T) {
	for _, skip := range []bool{false, true} {
		t.Run(fmt.Sprintf("skip=%v", skip), func(t *testing.T) {
			const topic = "retained"
			addrs := broker(t, 1, topic)
			cl := client(t, addrs)
			logs := &syncBuffer{}
			h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second, Logger: slog.New(slog.NewTextHandler(logs, nil))})
			cfg := kafka.Config{Brokers: addrs, Topics: []string{topic}, Start: kafka.StartEarliest, Logger: slog.New(slog.NewTextHandler(logs, nil))}
			if skip {
				cfg.OnLostOffsets = kafka.SkipLost
			}
			recs, err := kafka.NewDirectStream(h.Ctx, cfg, kafka.String())
			if err != nil {
				t.Fatal(err)
			}
			out := dstreamtest.Output(h, dstream.Map(recs, func(r kafka.Record[string]) int64 { return r.Offset }))
			values := make([]string, 100)
			for i := range values {
				values[i] = strconv.Itoa(i)
			}
			produce(t, cl, topic, 0, values...)
			h.Run(1) // offsets 0-99
			produce(t, cl, topic, 0, values...)
			var del kadm.Offsets
			del.AddOffset(topic, 0, 150, -1)
			resp, err := kadm.NewClient(cl).DeleteRecords(context.Background(), del)
			if err == nil {
				err = resp.Error()
			}
			if err != nil {
				t.Fatalf("delete records: %v", err)
			}
			info, err := h.Step()
			if !skip {
				var lost *kafka.LostOffsetsError
				if !errors.As(err, &lost) || lost.Range != (kafka.OffsetRange{Topic: topic, Partition: 0, From: 100, Until: 150}) {
					t.Fatalf("batch error %v, want the lost range retained/0:[100,150)", err)
				}
				if !strings.Contains(err.Error(), "retained/0:[100,150)") {
					t.Fatalf("error %q does not name the range", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := out.Batch(1)
			if info.InputRecords != 50 || len(got) != 50 || got[0] != 150 {
				t.Fatalf("after skipping, batch read %d records from %v, want 50 from 150", len(got), got[:min(1, len(got))])
			}
			if !strings.Contains(logs.String(), "lost_records=50") {
				t.Fatalf("batch log line does not count the lost records:\n%s", logs.String())
			}
			if !strings.Contains(logs.String(), "level=WARN") {
				t.Fatalf("no warning logged for lost records")
			}
		})
	}
}

// Records written by the sink equal the expected ones when read back by
// the independent client, headers included.
func TestSinkWritesWithHeaders(t *testing.T) {
	const topic = "counts"
	addrs := broker(t, 3, topic)
	h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second, Master: "local[2]"})
	batches := [][]dstream.KV[string, int64]{
		{{Key: "a", Value: 1}, {Key: "b", Value: 2}, {Key: "c", Value: 3}, {Key: "d", Value: 4}},
		{{Key: "a", Value: 5}},
		{},
		{{Key: "e", Value: 6}, {Key: "f", Value: 7}},
	}
	in := dstreamtest.Input(h, batches...)
	if err := kafka.WriteKV(in, kafka.SinkConfig{Brokers: addrs, Topic: topic}, kafka.StringEncoder(), kafka.Int64Encoder()); err != nil {
		t.Fatal(err)
	}
	h.Run(len(batches))

	want := map[string]bool{}
	for i, b := range batches {
		parts := min(2, len(b))
		for j, kv := range b {
			p := 0
			for p+1 < parts && j >= (p+1)*len(b)/parts {
				p++
			}
			want[fmt.Sprintf("%s=%d t=%d p=%d", kv.Key, kv.Value, h.BatchTime(i).UnixMilli(), p)] = true
		}
	}
	cl := client(t, addrs, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := map[string]bool{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for len(got) < len(want) && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) {
			hd := map[string]string{}
			for _, x := range r.Headers {
				hd[x.Key] = string(x.Value)
			}
			got[fmt.Sprintf("%s=%s t=%s p=%s", r.Key, r.Value, hd[kafka.HeaderBatchTime], hd[kafka.HeaderPartition])] = true
		})
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("read back\n%v\nwant\n%v", got, want)
	}
}

// A write error fails the task and the batch: nothing is dropped silently.
func TestSinkWriteErrorFailsBatch(t *testing.T) {
	addrs := broker(t, 1, "exists")
	h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second})
	in := dstreamtest.Input(h, []string{"x"})
	if err := kafka.Write(in, kafka.SinkConfig{Brokers: addrs, Topic: "missing", WriteTimeout: 2 * time.Second}, kafka.StringEncoder()); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Step(); err == nil || !strings.Contains(err.Error(), "kafka sink missing") {
		t.Fatalf("batch error %v, want the sink's write error", err)
	}
}

func TestConfigErrors(t *testing.T) {
	h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second})
	for _, cfg := range []kafka.Config{
		{Topics: []string{"t"}},
		{Brokers: []string{"127.0.0.1:1"}},
		{Brokers: []string{"127.0.0.1:1"}, Topics: []string{"t"}, Start: kafka.StartCommitted},
	} {
		if _, err := kafka.NewDirectStream(h.Ctx, cfg, kafka.Bytes()); err == nil {
			t.Errorf("config %+v: no error", cfg)
		}
	}
}

// With backpressure a backlog is read in bounded batches: the first at the
// initial rate, the next ones at the rate the (deliberately slowed) job
// processes, never all at once; the rate is on the batch log line.
func TestBackpressureBoundsCatchUp(t *testing.T) {
	const topic, backlog = "backlog", 10_000
	const interval = 100 * time.Millisecond
	addrs := broker(t, 2, topic)
	cl := client(t, addrs)
	values := make([]string, backlog/2)
	for i := range values {
		values[i] = strconv.Itoa(i)
	}
	produce(t, cl, topic, 0, values...)
	produce(t, cl, topic, 1, values...)
	logs := &syncBuffer{}
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	ctx, err := dstream.New(dstream.Config{BatchInterval: interval, Master: "local[2]", Allocator: mem, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := kafka.NewDirectStream(ctx, kafka.Config{
		Brokers: addrs, Topics: []string{topic}, Start: kafka.StartEarliest,
		Backpressure: true, InitialRate: 2000, Logger: quietLogger(),
	}, kafka.String())
	if err != nil {
		t.Fatal(err)
	}
	// At least 100 µs per record: with two task slots this job processes
	// at most 20,000 records/s, 2,000 per interval, whatever the machine.
	slow := dstream.Map(recs, func(r kafka.Record[string]) int64 { time.Sleep(100 * time.Microsecond); return r.Offset })
	dstream.ForeachPartition(slow, dstream.Sink[int64, struct{}]{Write: func(struct{}, int64) error { return nil }})
	zero := time.Now().Truncate(interval)
	if err := ctx.StartManual(zero); err != nil {
		t.Fatal(err)
	}
	defer ctx.Stop()
	var read int64
	var batches int
	for i := 1; read < backlog; i++ {
		if i == 200 {
			t.Fatalf("backlog not read after 200 batches: %d of %d", read, backlog)
		}
		info, err := ctx.RunBatch(context.Background(), zero.Add(time.Duration(i)*interval))
		if err != nil {
			t.Fatal(err)
		}
		if i == 1 && info.InputRecords != 200 {
			t.Fatalf("first batch read %d records, want 200 (the initial rate x 100 ms)", info.InputRecords)
		}
		if info.InputRecords > 2002 {
			t.Fatalf("batch %d read %d records, more than the job processes in an interval (2,000): catch-up not bounded", i, info.InputRecords)
		}
		read += info.InputRecords
		batches++
	}
	if read != backlog || batches < 5 {
		t.Fatalf("read %d records in %d batches, want %d in 5 or more", read, batches, backlog)
	}
	if !strings.Contains(logs.String(), "rate=2000") || !strings.Contains(logs.String(), "lag=9800") {
		t.Fatalf("no rate on the batch log line:\n%s", firstLines(logs.String(), 2))
	}
}

type event struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

// The job sees key, headers, timestamp, topic, partition and offset; JSON
// values decode into a struct; a large range is split into several tasks;
// a value that does not decode fails the batch naming its offset.
func TestRecordFieldsJSONAndSplit(t *testing.T) {
	const topic = "events"
	addrs := broker(t, 1, topic)
	cl := client(t, addrs)
	ts := time.UnixMilli(1_700_000_000_123)
	var recs []*kgo.Record
	for i := range 100 {
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte("k" + strconv.Itoa(i)), Value: fmt.Appendf(nil, `{"id":%d,"name":"n%d"}`, i, i),
			Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("v" + strconv.Itoa(i))}}, Timestamp: ts})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second})
	s, err := kafka.NewDirectStream(h.Ctx, kafka.Config{Brokers: addrs, Topics: []string{topic}, Start: kafka.StartEarliest,
		MaxRecordsPerTask: 30, Logger: quietLogger()}, kafka.JSON[event]())
	if err != nil {
		t.Fatal(err)
	}
	out := dstreamtest.Output(h, dstream.Map(s, func(r kafka.Record[event]) string {
		return fmt.Sprintf("%s/%d/%d %s %s=%s %d %d %s", r.Topic, r.Partition, r.Offset, r.Key, r.Headers[0].Key, r.Headers[0].Value,
			r.Time.UnixMilli(), r.Value.ID, r.Value.Name)
	}))
	info, err := h.Step()
	if err != nil {
		t.Fatal(err)
	}
	got := out.Batch(0)
	if len(got) != 100 {
		t.Fatalf("read %d records, want 100", len(got))
	}
	for i, g := range got {
		want := fmt.Sprintf("events/0/%d k%d h=v%d %d %d n%d", i, i, i, ts.UnixMilli(), i, i)
		if g != want {
			t.Fatalf("record %d = %q, want %q", i, g, want)
		}
	}
	if st := info.Jobs[0].Stages[0]; st.Tasks != 4 {
		t.Fatalf("the 100-record range ran as %d tasks, want 4 (at most 30 records each)", st.Tasks)
	}

	produce(t, cl, topic, 0, "not json")
	if _, err := h.Step(); err == nil || !strings.Contains(err.Error(), "events/0 offset 100") {
		t.Fatalf("batch with a malformed value: %v, want an error naming events/0 offset 100", err)
	}
}

// The values-only stream reads the same values in the same order, small
// and large ones (larger than what is left of a read buffer), and values
// handed to the job cannot overwrite each other.
func TestValueStream(t *testing.T) {
	const topic = "values"
	addrs := broker(t, 1, topic)
	cl := client(t, addrs, kgo.ProducerBatchMaxBytes(4<<20))
	var want []string
	for i := range 1000 {
		want = append(want, "s"+strconv.Itoa(i))
	}
	for i := range 6 {
		want = append(want, strings.Repeat(strconv.Itoa(i), 300<<10))
	}
	for i := range 1000 {
		want = append(want, "t"+strconv.Itoa(i))
	}
	for _, v := range want {
		produce(t, cl, topic, 0, v)
	}
	h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second})
	vals, err := kafka.NewValueStream(h.Ctx, kafka.Config{Brokers: addrs, Topics: []string{topic}, Start: kafka.StartEarliest,
		MaxRatePerPartition: 700, Logger: quietLogger()}, kafka.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	// Appending to a value must not write into the next one.
	out := dstreamtest.Output(h, dstream.Map(vals, func(v []byte) string { return string(append(v, '!')) }))
	var got []string
	for i := 0; len(got) < len(want); i++ {
		if i == 10 {
			t.Fatalf("read %d of %d values in 10 batches", len(got), len(want))
		}
		h.Run(1)
		got = append(got, out.Batch(i)...)
	}
	if len(got) != len(want) {
		t.Fatalf("read %d values, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i]+"!" {
			t.Fatalf("value %d = %.20q (%d bytes), want %.20q (%d bytes)", i, got[i], len(got[i]), want[i]+"!", len(want[i])+1)
		}
	}
}

// A broker restart between batches (same port, same data) is ridden out:
// the next batch's listing is retried, pooled connections to the old
// process are replaced, and every record is read once.
func TestBrokerRestart(t *testing.T) {
	dir := t.TempDir()
	const topic = "restart"
	c1, err := kfake.NewCluster(kfake.Ports(0), kfake.SeedTopics(2, topic), kfake.DataDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	addrs := c1.ListenAddrs()
	port, _ := strconv.Atoi(addrs[0][strings.LastIndexByte(addrs[0], ':')+1:])
	cl := client(t, addrs)
	produce(t, cl, topic, 0, "a", "b")
	produce(t, cl, topic, 1, "c")
	cl.Close()
	h := dstreamtest.New(t, dstream.Config{BatchInterval: time.Second})
	recs, err := kafka.NewValueStream(h.Ctx, kafka.Config{Brokers: addrs, Topics: []string{topic}, Start: kafka.StartEarliest, GroupID: "g", Logger: quietLogger()}, kafka.String())
	if err != nil {
		t.Fatal(err)
	}
	out := dstreamtest.Output(h, recs)
	h.Run(1)
	c1.Close()
	restarted := make(chan *kfake.Cluster, 1)
	go func() { // the broker comes back 300 ms later
		time.Sleep(300 * time.Millisecond)
		c2, err := kfake.NewCluster(kfake.Ports(port), kfake.SeedTopics(2, topic), kfake.DataDir(dir))
		if err != nil {
			t.Errorf("restart broker: %v", err)
		}
		restarted <- c2
	}()
	info, err := h.Step()
	c2 := <-restarted
	if c2 == nil {
		t.FailNow()
	}
	defer c2.Close()
	if err != nil || info.InputRecords != 0 {
		t.Fatalf("batch across the restart: %d records, %v", info.InputRecords, err)
	}
	cl2 := client(t, addrs)
	produce(t, cl2, topic, 0, "d")
	produce(t, cl2, topic, 1, "e")
	h.Run(1)
	got := append(sortedCopy(out.Batch(0)), sortedCopy(out.Batch(2))...)
	if fmt.Sprint(got) != "[a b c d e]" {
		t.Fatalf("read %v across a broker restart, want [a b c d e]", got)
	}
}
