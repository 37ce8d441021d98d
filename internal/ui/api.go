// Package ui serves a streaming job's web UI, its JSON API under /api/v1/
// and its Prometheus metrics at /metrics. The pages are embedded in the
// binary and work offline; they draw everything from the JSON API.
//
// The handlers read a Source (implemented by package dstream); no request
// reads a file or runs anything, and only GET and HEAD are served.
package ui

import (
	"encoding/json"
	"time"
)

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
	// Executors returns the executors the job's tasks run on, by id.
	Executors() []Executor
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
	// LastInputs describes what each input stream put into the last
	// batch: a Kafka source's offset ranges, lag and backpressure rate.
	LastInputs []Input `json:"lastInputs,omitempty"`
	// Error is why a job of a cluster failed (the coordinator's view).
	Error string `json:"error,omitempty"`
	// Checkpoint describes the job's newest checkpoint; absent when the
	// job has no checkpoint directory (--checkpoint).
	Checkpoint *Checkpoint `json:"checkpoint,omitempty"`
}

// Checkpoint is a job's newest checkpoint: the metadata generation written
// after its last completed batch and its newest state snapshot.
type Checkpoint struct {
	// Generation numbers the newest metadata generation.
	Generation uint64 `json:"generation"`
	// LastBatchTime is the last completed batch that generation records
	// (a restart resumes after it); absent before the first batch.
	LastBatchTime *time.Time `json:"lastBatchTime,omitempty"`
	// WrittenAt is when the generation was written (for one found at a
	// restart, its file's modification time); AgeMs is the time since.
	WrittenAt time.Time `json:"writtenAt"`
	AgeMs     int64     `json:"ageMs"`
	// MetadataBytes is the size of the generation's record.
	MetadataBytes int64 `json:"metadataBytes"`
	// Snapshot is the newest complete snapshot of the job's operator
	// state; absent for a job without state or before its first snapshot.
	Snapshot *CheckpointSnapshot `json:"snapshot,omitempty"`
}

// CheckpointSnapshot is a job's newest state snapshot.
type CheckpointSnapshot struct {
	// BatchTime is the batch the state is as of.
	BatchTime time.Time `json:"batchTime"`
	WrittenAt time.Time `json:"writtenAt"`
	AgeMs     int64     `json:"ageMs"`
	// Bytes is the size of the snapshot's file.
	Bytes int64 `json:"bytes"`
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
	// Inputs describe what each input stream put into the batch.
	Inputs []Input `json:"inputs"`
	// Tasks are the batch's task attempts in the order they ended, at most
	// MaxTaskRows of them; TasksDropped counts the attempts left out.
	Tasks        []Task `json:"tasks"`
	TasksDropped int    `json:"tasksDropped,omitempty"`
	// TasksForgotten is true for a batch older than the newest 100: its
	// task rows are no longer kept (tasks is empty).
	TasksForgotten bool `json:"tasksForgotten,omitempty"`
}

// MaxTaskRows bounds the task rows kept per batch.
const MaxTaskRows = 1000

// Input is what one input stream put into a batch.
type Input struct {
	Stream  string `json:"stream"`
	Records int64  `json:"records"`
	// Attrs are the figures of the batch's log line: a Kafka source's
	// "offsets", total "lag" (records left behind) and backpressure "rate".
	Attrs map[string]string `json:"attrs,omitempty"`
	// Metadata is the source's own description of the input, as JSON: a
	// Kafka source's offset ranges and lag per partition,
	// [{"Topic","Partition","From","Until","Lag"}].
	Metadata json.RawMessage `json:"metadata,omitempty"`
	// Partitions describe, for a source reading partitioned logs (Kafka),
	// what the batch read from each partition and the lag it left.
	Partitions []PartitionInput `json:"partitions,omitempty"`
}

// PartitionInput is what a batch read from one partition of a partitioned
// log (a Kafka topic-partition).
type PartitionInput struct {
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	// FromOffset (inclusive) and UntilOffset (exclusive) are the offsets
	// the batch read.
	FromOffset  int64 `json:"fromOffset"`
	UntilOffset int64 `json:"untilOffset"`
	// Lag is how many records the partition held past UntilOffset when
	// the batch was planned: what later batches read.
	Lag int64 `json:"lag"`
}

// Task is one task attempt of a batch.
type Task struct {
	ID int64 `json:"id"`
	// Job is the task's job: its index in outputJobs, in run order.
	Job int64 `json:"job"`
	// Output is the index of the output operation the job runs.
	Output      int     `json:"output"`
	Stage       int     `json:"stage"`
	Partition   int     `json:"partition"`
	Attempt     int     `json:"attempt"`
	Executor    string  `json:"executor"`
	Status      string  `json:"status"` // "succeeded" or "failed"
	DurationMs  float64 `json:"durationMs"`
	RecordsRead int64   `json:"recordsRead"`
	Error       string  `json:"error,omitempty"`
}

// Executor is one executor as a job sees it:
// /api/v1/jobs/{id}/executors.
type Executor struct {
	ID string `json:"id"`
	// Epoch is the executor's registration with the coordinator: it
	// changes whenever the executor restarts or re-registers.
	Epoch int64 `json:"epoch"`
	// Incarnation names the job's process on the executor as the
	// scheduler's registry does (it changes with the epoch and whenever
	// that process restarts): what an earlier incarnation held is gone.
	// 0 until a task of the job ran there.
	Incarnation int64  `json:"incarnation"`
	Address     string `json:"address"`
	Slots       int    `json:"slots"`
	// RunningTasks are the job's tasks running there now.
	RunningTasks int `json:"runningTasks"`
	// TasksSucceeded and TasksFailed count the job's task attempts that
	// ended there.
	TasksSucceeded int64 `json:"tasksSucceeded"`
	TasksFailed    int64 `json:"tasksFailed"`
	// State is "active", "draining" or "lost".
	State string `json:"state"`
	// StatePartitions are the operator state partitions the scheduler's
	// registry places there, as "operator/partition".
	StatePartitions []string `json:"statePartitions"`
	// CachedBlocks counts the cached RDD blocks held there; nil while the
	// scheduler keeps no registry of cached blocks.
	CachedBlocks *int `json:"cachedBlocks,omitempty"`
	// ShuffleBytesServed is the shuffle block bytes the executor has sent
	// to other executors since it started, for every job (cluster only; the
	// coordinator fills it in from the executor's heartbeats).
	ShuffleBytesServed *int64 `json:"shuffleBytesServed,omitempty"`
	// LastHeartbeat is when the coordinator last heard from the executor
	// (cluster only; the coordinator fills it in).
	LastHeartbeat *time.Time `json:"lastHeartbeat,omitempty"`
}

// Executor states.
const (
	ExecutorActive   = "active"
	ExecutorDraining = "draining"
	ExecutorLost     = "lost"
)

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
