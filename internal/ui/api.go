// Package ui serves a streaming job's web UI, its JSON API under /api/v1/
// and its Prometheus metrics at /metrics. The pages are embedded in the
// binary and work offline; they draw everything from the JSON API.
//
// The handlers read a Source (implemented by package dstream); no request
// reads a file or runs anything, and only GET and HEAD are served.
package ui

import "time"

// Source is what the UI shows: one streaming job and its bounded history
// of finished batches.
type Source interface {
	// Job returns the job's summary.
	Job() Job
	// Batches returns up to limit finished batches, newest first, after
	// skipping the offset newest, and how many batches the history holds.
	Batches(offset, limit int) ([]Batch, int)
	// Batch returns the batch of the given time (Unix milliseconds).
	Batch(timeMs int64) (BatchDetail, bool)
}

// Job is a job's summary: /api/v1/jobs and /api/v1/jobs/{id}.
type Job struct {
	ID              string    `json:"id"`
	Name            string    `json:"name"`
	State           string    `json:"state"` // "running" or "stopped"
	Master          string    `json:"master"`
	StartTime       time.Time `json:"startTime"`
	UptimeMs        int64     `json:"uptimeMs"`
	BatchIntervalMs int64     `json:"batchIntervalMs"`
	BatchesDone     int64     `json:"batchesDone"`
	BatchesFailed   int64     `json:"batchesFailed"`
	InputRecords    int64     `json:"inputRecords"`
	TaskFailures    int64     `json:"taskFailures"`
	StateKeys       int64     `json:"stateKeys"`
	StateBytes      int64     `json:"stateBytes"`
	// HistoryBatches is how many batches the history holds, out of
	// HistoryCapacity.
	HistoryBatches  int `json:"historyBatches"`
	HistoryCapacity int `json:"historyCapacity"`
	// PendingBatches counts the batch times that have passed whose batch
	// has not finished, the one running included: more than one means the
	// job falls behind. Only while the job runs on its batch clock.
	PendingBatches int64 `json:"pendingBatches"`
	// LastBatch holds the current delays; nil before the first batch.
	LastBatch *Batch `json:"lastBatch,omitempty"`
}

// Batch is one finished batch: /api/v1/jobs/{id}/batches.
type Batch struct {
	// ID is the batch time in Unix milliseconds, the key of its page.
	ID                int64     `json:"id"`
	Time              time.Time `json:"time"`
	Status            string    `json:"status"` // "succeeded" or "failed"
	InputRecords      int64     `json:"inputRecords"`
	SchedulingDelayMs float64   `json:"schedulingDelayMs"`
	ProcessingTimeMs  float64   `json:"processingTimeMs"`
	TotalDelayMs      float64   `json:"totalDelayMs"`
	Jobs              int       `json:"jobs"`
	TaskFailures      int64     `json:"taskFailures"`
	Error             string    `json:"error,omitempty"`
}

// BatchDetail is one batch with its jobs and stages:
// /api/v1/jobs/{id}/batches/{time}.
type BatchDetail struct {
	Batch
	OutputJobs []OutputJob `json:"outputJobs"`
}

// OutputJob is one scheduler job of a batch, in the order it ran.
type OutputJob struct {
	Index  int     `json:"index"`
	Stages []Stage `json:"stages"`
}

// Stage aggregates a stage's task attempts.
type Stage struct {
	ID            int     `json:"id"`
	Name          string  `json:"name"`
	Tasks         int     `json:"tasks"`  // successful tasks
	Failed        int     `json:"failed"` // failed attempts
	Resubmits     int     `json:"resubmits"`
	TaskTimeMs    float64 `json:"taskTimeMs"` // sum of successful task durations
	MaxTaskTimeMs float64 `json:"maxTaskTimeMs"`
	RecordsRead   int64   `json:"recordsRead"`
}

// Ms converts a duration to fractional milliseconds.
func Ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
