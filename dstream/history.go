package dstream

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/internal/checkpoint"
	"github.com/sluicehq/sluice/internal/cluster"
	"github.com/sluicehq/sluice/internal/ui"
	"github.com/sluicehq/sluice/scheduler"
)

// DefaultHistorySize is how many finished batches a job keeps for its web
// UI and JSON API unless --ui-history says otherwise.
const DefaultHistorySize = 1000

// maxBatchError bounds the error text a batch record keeps.
const maxBatchError = 4096

// BatchRecord is one finished batch as the history keeps it: its figures,
// whether it failed, and when processing ended.
type BatchRecord struct {
	BatchInfo
	Failed bool
	Error  string // the batch's error, cut to 4 KiB; "" when it succeeded
	Done   time.Time
	// Tasks are the batch's task attempts in the order they ended (at
	// most ui.MaxTaskRows; TasksDropped counts the rest).
	Tasks        []ui.Task
	TasksDropped int
	// TasksForgotten is set once the batch is older than the last
	// TaskRowBatches batches: its task rows are dropped to bound memory.
	TasksForgotten bool
}

// TaskRowBatches is how many of the newest batches keep their task rows:
// at most ui.MaxTaskRows each, so the rows stay bounded whatever
// --ui-history is.
const TaskRowBatches = 100

// TaskFailures sums the failed task attempts of every stage of the batch.
func (r BatchRecord) TaskFailures() int64 {
	var n int64
	for _, j := range r.Jobs {
		for _, s := range j.Stages {
			n += int64(s.Failed)
		}
	}
	return n
}

// HistoryCounters are the job's totals since it started, including batches
// the bounded history no longer holds.
type HistoryCounters struct {
	BatchesDone   int64 // batches that succeeded
	BatchesFailed int64
	InputRecords  int64
	TaskFailures  int64 // failed task attempts
}

// History is a bounded ring of the last finished batches of a job, in
// batch time order, plus counters over all of them. It is safe for
// concurrent use.
type History struct {
	mu       sync.Mutex
	ring     []BatchRecord
	start    int // index of the oldest record
	n        int // records held
	counters HistoryCounters
}

// NewHistory returns a history that keeps the last size batches (size >= 1).
func NewHistory(size int) *History {
	return &History{ring: make([]BatchRecord, max(1, size))}
}

// Cap returns how many batches the history keeps.
func (h *History) Cap() int { return len(h.ring) }

// Add records a finished batch. Batches are added in batch time order (the
// batch loop processes them in order).
func (h *History) Add(r BatchRecord) {
	if len(r.Error) > maxBatchError {
		r.Error = r.Error[:maxBatchError] + "…"
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if r.Failed {
		h.counters.BatchesFailed++
	} else {
		h.counters.BatchesDone++
	}
	h.counters.InputRecords += r.InputRecords
	h.counters.TaskFailures += r.TaskFailures()
	if h.n < len(h.ring) {
		h.ring[(h.start+h.n)%len(h.ring)] = r
		h.n++
	} else {
		h.ring[h.start] = r
		h.start = (h.start + 1) % len(h.ring)
	}
	if old := h.n - 1 - TaskRowBatches; old >= 0 {
		o := &h.ring[(h.start+old)%len(h.ring)]
		if !o.TasksForgotten {
			o.Tasks, o.TasksForgotten = nil, true
		}
	}
}

// at returns the i-th oldest record held; h.mu is held.
func (h *History) at(i int) BatchRecord { return h.ring[(h.start+i)%len(h.ring)] }

// Len returns the number of batches held.
func (h *History) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

// Counters returns the totals since the job started.
func (h *History) Counters() HistoryCounters {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.counters
}

// Last returns the newest batch, if any.
func (h *History) Last() (BatchRecord, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == 0 {
		return BatchRecord{}, false
	}
	return h.at(h.n - 1), true
}

// Page returns up to limit batches, newest first, skipping the offset
// newest, and the number of batches held.
func (h *History) Page(offset, limit int) ([]BatchRecord, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if offset < 0 || limit <= 0 || offset >= h.n {
		return nil, h.n
	}
	end := min(h.n, offset+limit)
	out := make([]BatchRecord, 0, end-offset)
	for i := offset; i < end; i++ {
		out = append(out, h.at(h.n-1-i))
	}
	return out, h.n
}

// all returns every record held, oldest first.
func (h *History) all() []BatchRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]BatchRecord, h.n)
	for i := range out {
		out[i] = h.at(i)
	}
	return out
}

// Find returns the batch of time t, if the history still holds it.
func (h *History) Find(t time.Time) (BatchRecord, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	i := sort.Search(h.n, func(i int) bool { return !h.at(i).Time.Before(t) })
	if i < h.n && h.at(i).Time.Equal(t) {
		return h.at(i), true
	}
	return BatchRecord{}, false
}

// observer is a Context's batch history and web UI; see ui.go.
type observer struct {
	mu        sync.Mutex
	hist      *History
	stateSize func() (keys, bytes int64)
	histSize  *int    // --ui-history
	uiAddr    *string // --ui
	uiSecret  *string // --ui-secret-file
	started   time.Time
	stopped   bool
	serving   bool        // the web UI is served (ui.go)
	metrics   *ui.Metrics // made with the history, so they count every batch
	// tracker sees the scheduler's tasks (set when the scheduler starts);
	// remote is the cluster backend of a job driver; clusterJob is the
	// cluster's id of the job, the id of its API paths.
	tracker    atomic.Pointer[taskTracker]
	remote     atomic.Pointer[cluster.RemoteBackend]
	clusterJob string
	// ckptStore is the run's checkpoint directory (--checkpoint), set when
	// Run opened it; its Stats describe the newest checkpoint.
	ckptStore atomic.Pointer[checkpoint.Store]
}

// track wraps the scheduler's backend in the task tracker: the hook in
// Context.start.
func (o *observer) track(b scheduler.Backend) scheduler.Backend {
	t := newTaskTracker(b)
	o.tracker.Store(t)
	return t
}

// newObserver registers the UI flags on the context's flag set.
func newObserver(c *Context) *observer {
	return &observer{
		stateSize: c.StateSize,
		histSize:  c.flags.Int("ui-history", DefaultHistorySize, "finished batches kept for the web UI and JSON API"),
		uiAddr:    c.flags.String("ui", "", "serve the web UI, JSON API and /metrics at this address (\":4040\" means 127.0.0.1:4040); off when empty"),
		uiSecret:  c.flags.String("ui-secret-file", "", "file holding the secret the web UI and API ask for (as the password, any user name); required to bind --ui beyond loopback"),
	}
}

// history returns the job's history, made at the first use with the size
// --ui-history gives.
func (o *observer) history() *History {
	h, _ := o.get()
	return h
}

// get returns the history and the metrics, made at the first use.
func (o *observer) get() (*History, *ui.Metrics) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.hist == nil {
		size := DefaultHistorySize
		if o.histSize != nil && *o.histSize > 0 {
			size = *o.histSize
		}
		o.hist = NewHistory(size)
		o.metrics = ui.NewMetrics(o.stateSize)
		o.metrics.WatchCheckpoint(o.checkpoint)
	}
	return o.hist, o.metrics
}

// record adds a processed batch to the history: the hook in process.
func (o *observer) record(info BatchInfo, err error) {
	r := BatchRecord{BatchInfo: info, Done: time.Now()}
	r.Jobs = append([]scheduler.JobMetrics(nil), info.Jobs...)
	if err != nil {
		r.Failed = true
		r.Error = err.Error()
	}
	if t := o.tracker.Load(); t != nil {
		r.Tasks, r.TasksDropped = t.take(info.Time)
	}
	h, m := o.get()
	h.Add(r)
	m.Observe(toUIBatch(r))
	for _, in := range info.Inputs {
		if ps := uiPartitions(in); ps != nil {
			m.ObserveInputs([]ui.Input{{Stream: in.Stream, Partitions: ps}})
		}
	}
}

// checkpoint describes the job's newest checkpoint for the UI, API and
// metrics; nil without a checkpoint directory.
func (o *observer) checkpoint() *ui.Checkpoint {
	s := o.ckptStore.Load()
	if s == nil {
		return nil
	}
	st := s.Stats()
	if st.Written.IsZero() {
		return nil
	}
	now := time.Now()
	c := &ui.Checkpoint{Generation: st.Generation, WrittenAt: st.Written.UTC(), AgeMs: max(0, now.Sub(st.Written).Milliseconds()), MetadataBytes: st.MetaBytes}
	if !st.Completed.IsZero() {
		t := st.Completed.UTC()
		c.LastBatchTime = &t
	}
	if !st.SnapshotWritten.IsZero() {
		c.Snapshot = &ui.CheckpointSnapshot{BatchTime: st.Snapshot.UTC(), WrittenAt: st.SnapshotWritten.UTC(),
			AgeMs: max(0, now.Sub(st.SnapshotWritten).Milliseconds()), Bytes: st.SnapshotBytes}
	}
	return c
}

// History returns the job's bounded history of finished batches (the last
// --ui-history of them, 1,000 by default).
func (c *Context) History() *History { return c.obs.history() }
