package ui

import (
	"net/http"

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
	m.reg.MustRegister(m.schedDelay, m.procTime, m.totalDelay, m.inputRecords, m.batchesDone, m.batchesFailed, m.taskFailures, m.lastBatch)
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

// Handler serves the metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Batch statuses.
const (
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
)
