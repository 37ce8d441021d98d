package ui

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are a job's Prometheus metrics, served at /metrics. Batch
// figures are histograms and counters over all batches; no label names a
// batch.
type Metrics struct {
	reg           *prometheus.Registry
	schedDelay    prometheus.Histogram
	procTime      prometheus.Histogram
	totalDelay    prometheus.Histogram
	inputRecords  prometheus.Counter
	batchesDone   prometheus.Counter
	batchesFailed prometheus.Counter
	taskFailures  prometheus.Counter
	lastBatch     prometheus.Gauge
	lag           *prometheus.GaugeVec
}

// delayBuckets span 1ms to about 65s.
var delayBuckets = prometheus.ExponentialBuckets(0.001, 2, 17)

// NewMetrics registers the job's metrics, the Go runtime's and the
// process's in a registry of their own. stateSize (may be nil) reports the
// keys and bytes held by the job's stateful operators at scrape time.
func NewMetrics(stateSize func() (keys, bytes int64)) *Metrics {
	hist := func(name, help string) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: delayBuckets})
	}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	m := &Metrics{
		reg:           prometheus.NewRegistry(),
		schedDelay:    hist("sluice_batch_scheduling_delay_seconds", "Time from a batch's time to the start of its processing."),
		procTime:      hist("sluice_batch_processing_seconds", "Time spent running a batch's jobs."),
		totalDelay:    hist("sluice_batch_total_delay_seconds", "Time from a batch's time to the end of its processing."),
		inputRecords:  counter("sluice_input_records_total", "Records read by the job's input streams."),
		batchesDone:   counter("sluice_batches_completed_total", "Batches that succeeded."),
		batchesFailed: counter("sluice_batches_failed_total", "Batches that failed."),
		taskFailures:  counter("sluice_task_failures_total", "Failed task attempts (each retried or failing its batch)."),
		lastBatch:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_last_batch_time_seconds", Help: "Batch time of the last finished batch, in seconds since the Unix epoch."}),
	}
	m.lag = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sluice_kafka_lag_records",
		Help: "Records a Kafka topic-partition held past the offsets the last batch read, when it was planned (by input stream)."},
		[]string{"stream", "topic", "partition"})
	m.reg.MustRegister(m.schedDelay, m.procTime, m.totalDelay, m.inputRecords, m.batchesDone, m.batchesFailed, m.taskFailures, m.lastBatch, m.lag)
	if stateSize != nil {
		m.reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_state_keys", Help: "Keys held by the job's stateful operators."},
				func() float64 { k, _ := stateSize(); return float64(k) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_state_bytes", Help: "Approximate bytes held by the job's stateful operators."},
				func() float64 { _, b := stateSize(); return float64(b) }),
		)
	}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Observe adds a finished batch.
func (m *Metrics) Observe(b Batch) {
	m.schedDelay.Observe(b.SchedulingDelayMs / 1000)
	m.procTime.Observe(b.ProcessingTimeMs / 1000)
	m.totalDelay.Observe(b.TotalDelayMs / 1000)
	m.inputRecords.Add(float64(b.InputRecords))
	if b.Status == StatusFailed {
		m.batchesFailed.Inc()
	} else {
		m.batchesDone.Inc()
	}
	m.taskFailures.Add(float64(b.TaskFailures))
	m.lastBatch.Set(float64(b.Time.UnixNano()) / 1e9)
}

// ObserveInputs sets the lag gauges from a finished batch's inputs.
func (m *Metrics) ObserveInputs(ins []Input) {
	for _, in := range ins {
		for _, p := range in.Partitions {
			m.lag.WithLabelValues(in.Stream, p.Topic, strconv.Itoa(p.Partition)).Set(float64(p.Lag))
		}
	}
}

// WatchCheckpoint adds the checkpoint metrics, read from checkpoint at
// every scrape; they are absent while it returns nil (a job without a
// checkpoint directory).
func (m *Metrics) WatchCheckpoint(checkpoint func() *Checkpoint) {
	m.reg.MustRegister(&checkpointCollector{get: checkpoint,
		age:      prometheus.NewDesc("sluice_checkpoint_age_seconds", "Time since the job's newest checkpoint (the metadata generation written after a completed batch).", nil, nil),
		batch:    prometheus.NewDesc("sluice_checkpoint_last_batch_time_seconds", "Batch time of the last completed batch the newest checkpoint records, in seconds since the Unix epoch.", nil, nil),
		gen:      prometheus.NewDesc("sluice_checkpoint_generation", "Number of the newest checkpoint metadata generation.", nil, nil),
		metaSize: prometheus.NewDesc("sluice_checkpoint_metadata_bytes", "Size of the newest checkpoint metadata generation.", nil, nil),
		snapAge:  prometheus.NewDesc("sluice_checkpoint_snapshot_age_seconds", "Time since the newest state snapshot was written.", nil, nil),
		snapSize: prometheus.NewDesc("sluice_checkpoint_snapshot_bytes", "Size of the newest state snapshot's file.", nil, nil),
	})
}

type checkpointCollector struct {
	get                                          func() *Checkpoint
	age, batch, gen, metaSize, snapAge, snapSize *prometheus.Desc
}

func (k *checkpointCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{k.age, k.batch, k.gen, k.metaSize, k.snapAge, k.snapSize} {
		ch <- d
	}
}

func (k *checkpointCollector) Collect(ch chan<- prometheus.Metric) {
	c := k.get()
	if c == nil {
		return
	}
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	gauge(k.age, float64(c.AgeMs)/1000)
	gauge(k.gen, float64(c.Generation))
	gauge(k.metaSize, float64(c.MetadataBytes))
	if c.LastBatchTime != nil {
		gauge(k.batch, float64(c.LastBatchTime.UnixNano())/1e9)
	}
	if s := c.Snapshot; s != nil {
		gauge(k.snapAge, float64(s.AgeMs)/1000)
		gauge(k.snapSize, float64(s.Bytes))
	}
}

// Handler serves the metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Batch statuses.
const (
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
)
