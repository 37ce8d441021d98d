package dstream

import (
	"log/slog"
	"sync"
	"time"
)

// InputInfo describes what one input stream put into a batch, as Spark's
// StreamInputInfo does: its records and, for sources that plan their input
// (see NewPlannedStream), what they planned (a Kafka source's offset ranges).
type InputInfo struct {
	// Stream is the input stream's name (operator and call site).
	Stream string
	// Records is the number of records the source put into the batch.
	Records int64
	// Attrs are added to the batch log line.
	Attrs []slog.Attr
	// Metadata is the source's own description of the batch's input.
	Metadata any
}

// PartitionInput is what a batch read from one partition of a partitioned
// log (a Kafka topic-partition): offsets From (inclusive) to Until
// (exclusive), and the Lag it left, the records the partition held past
// Until when the batch was planned.
type PartitionInput struct {
	Topic       string
	Partition   int
	From, Until int64
	Lag         int64
}

// PartitionedInput is implemented by an InputInfo.Metadata that describes
// its batch per partition (a Kafka source's): the web UI and JSON API show
// the partitions, and /metrics exports each partition's lag
// (sluice_kafka_lag_records).
type PartitionedInput interface {
	PartitionInputs() []PartitionInput
}

// BatchListener is told about every batch whose outputs all succeeded, in
// batch order, on the job's driver (the process that runs the batch loop),
// after the batch's state was committed and before the next batch is
// processed. Sources use it to commit their progress (a Kafka source
// commits its consumer group's offsets) and to adapt their rate.
type BatchListener func(info BatchInfo)

// hooks holds the batch listeners and the inputs that describe their batches.
type hooks struct {
	mu        sync.Mutex
	listeners []BatchListener
	describe  []func(t time.Time) (InputInfo, bool)
}

// AddBatchListener registers l. Listeners run in the order they were
// added, in the goroutine that processes batches: a slow listener delays
// the next batch.
func (c *Context) AddBatchListener(l BatchListener) {
	c.hooks.mu.Lock()
	defer c.hooks.mu.Unlock()
	c.hooks.listeners = append(c.hooks.listeners, l)
}

func (h *hooks) addDescriber(f func(t time.Time) (InputInfo, bool)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.describe = append(h.describe, f)
}

// inputs returns the descriptions of batch t's planned inputs.
func (h *hooks) inputs(t time.Time) []InputInfo {
	h.mu.Lock()
	fs := append([]func(time.Time) (InputInfo, bool)(nil), h.describe...)
	h.mu.Unlock()
	var out []InputInfo
	for _, f := range fs {
		if info, ok := f(t); ok {
			out = append(out, info)
		}
	}
	return out
}

// attrs returns the inputs' attributes for the batch log line.
func (h *hooks) attrs(inputs []InputInfo) []any {
	var out []any
	for _, in := range inputs {
		for _, a := range in.Attrs {
			out = append(out, a)
		}
	}
	return out
}

// completed tells the listeners that a batch succeeded.
func (h *hooks) completed(info BatchInfo) {
	h.mu.Lock()
	ls := append([]BatchListener(nil), h.listeners...)
	h.mu.Unlock()
	for _, l := range ls {
		l(info)
	}
}
