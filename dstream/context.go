package dstream

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	"github.com/sluicehq/sluice/rdd"
	"github.com/sluicehq/sluice/scheduler"
)

// Config configures a streaming Context. Zero values mean defaults.
type Config struct {
	// AppName names the job in logs.
	AppName string
	// BatchInterval is the length of a micro-batch; required, > 0.
	BatchInterval time.Duration
	// Master is where tasks run: "local[N]" (N task slots in this process),
	// "local[*]" or "local" (one slot per core). The --master flag overrides it.
	// Default "local[*]".
	Master string
	// Parallelism is the default number of partitions of shuffles and of
	// sources that split their input. Default: the number of task slots.
	Parallelism int
	// StopTimeout bounds a graceful stop: the batches already generated
	// must finish within it. Default 30s.
	StopTimeout time.Duration
	// Logger receives the per-batch log line. Default: slog.Default(), or
	// what the --log-level and --log-format flags select under Main.
	Logger *slog.Logger
	// Stdout receives Print output. Default os.Stdout.
	Stdout io.Writer
	// Allocator allocates every Arrow buffer. Default memory.DefaultAllocator.
	Allocator memory.Allocator
	// Checkpoint, if set, is the job's checkpoint directory:
	// every batch's input is written ahead there, metadata after every
	// batch, state snapshots every CheckpointInterval, and a run with the
	// same directory resumes where the last one stopped (checkpoint.go).
	// The --checkpoint flag overrides it.
	Checkpoint string
	// CheckpointInterval is how often stateful operators' state is
	// snapshotted; a multiple of the batch interval. Default: the smallest
	// multiple of every slide of at least 10s.
	CheckpointInterval time.Duration
}

func (c *Config) validate() error {
	if c.BatchInterval <= 0 {
		return fmt.Errorf("dstream: BatchInterval %v: batch interval must be > 0 (e.g. time.Second)", c.BatchInterval)
	}
	if c.Master == "" {
		c.Master = "local[*]"
	}
	if _, err := parseMaster(c.Master); err != nil {
		return err
	}
	if c.Parallelism < 0 {
		return fmt.Errorf("dstream: Parallelism %d: must be >= 0 (0 means one partition per task slot)", c.Parallelism)
	}
	if c.CheckpointInterval < 0 || c.CheckpointInterval%c.BatchInterval != 0 {
		return fmt.Errorf("dstream: CheckpointInterval %v: must be a multiple of the batch interval %v (or 0 for the default)", c.CheckpointInterval, c.BatchInterval)
	}
	if c.StopTimeout <= 0 {
		c.StopTimeout = 30 * time.Second
	}
	if c.AppName == "" {
		c.AppName = "sluice"
	}
	if c.Stdout == nil {
		c.Stdout = os.Stdout
	}
	if c.Allocator == nil {
		c.Allocator = memory.DefaultAllocator
	}
	return nil
}

// parseMaster returns the number of local slots of a master URL.
func parseMaster(m string) (int, error) {
	switch {
	case m == "local" || m == "local[*]":
		return runtime.NumCPU(), nil
	case strings.HasPrefix(m, "local[") && strings.HasSuffix(m, "]"):
		n, err := strconv.Atoi(m[len("local[") : len(m)-1])
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("dstream: master %q: slot count must be a positive integer, as in local[4], or local[*] for one per core", m)
		}
		return n, nil
	}
	return 0, fmt.Errorf("dstream: master %q: not supported; use local, local[N] or local[*] (a cluster runs jobs submitted with `driver submit`)", m)
}

type state int

const (
	created state = iota
	started
	stopped
)

// Context owns a streaming job: its DStream graph, its batch clock and the
// scheduler that runs each batch's jobs.
type Context struct {
	cfg   Config
	flags *flag.FlagSet
	std   stdFlags

	mu      sync.Mutex // guards state and graph construction
	state   state
	streams []*streamBase
	inputs  []inputStream
	outputs []*outputOp

	stateful      []statefulOp
	statefulNames map[string]bool
	reporters     map[string]func(t time.Time, part int, b []byte) error // by "kind/name"
	graphErrs     []error                                                // found while the graph was built, reported by Start

	role        string // "", "driver" or "executor": see cluster.go
	clusterAddr string
	// partitionsChosen: the job set its partition count (Config.Parallelism,
	// --partitions), which a checkpoint's does not override.
	partitionsChosen bool              // the coordinator a cluster job's driver registered with
	backend          scheduler.Backend // the cluster backend in the driver role
	resolver         *resolver         // the executor role's task resolver
	// commitRemote commits a batch's state on the executors (driver role).
	// With snapshot, the holders also send their state to the checkpoint.
	commitRemote func(ctx context.Context, t time.Time, reports map[string][]byte, snapshot bool) error
	reportsMu    sync.Mutex
	batchReports map[string][]byte // reports of the batch in flight, for commitRemote
	args         []string          // the command-line arguments Main parsed
	schedRef     atomic.Pointer[scheduler.Scheduler]
	// inputNodes maps the lineage nodes of driver-held input to their input
	// batch (guarded by graphMu); batchInputs lists, per batch, the input
	// batches its lineage reads (driver role: sent with every task).
	inputNodes  map[int64]*sluicev1.InputRef
	inputsMu    sync.Mutex
	batchInputs map[time.Time][]*sluicev1.InputRef
	hooks       hooks // batch listeners and planned inputs (listener.go)
	ckpt        *ckpt // the checkpoint directory, under Run with Config.Checkpoint

	// Runtime, set by start.
	log         *slog.Logger
	sched       *scheduler.Scheduler
	shuffle     *rdd.MemShuffle
	blocks      *rdd.MemBlocks
	slots       int
	zeroTime    time.Time
	graphMu     sync.Mutex // guards memo tables and resources during generation and cleanup
	resources   map[time.Time]*batchResources
	owned       map[int64]bool // lineage nodes already attributed to a batch
	maxRemember time.Duration
	obs         *observer // batch history, web UI and metrics: history.go, ui.go

	// droppedCached collects the cached nodes cleanup forgot, for the
	// scheduler's registry of what executors hold (graphMu).
	droppedCached []int64
}

// New creates a streaming context.
func New(cfg Config) (*Context, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	chosen := cfg.Parallelism > 0 // by the job itself, not the cluster's default
	if cfg.Parallelism == 0 && os.Getenv("SLUICE_ROLE") != "" {
		// In a cluster the job's driver fixes the partition count from
		// the cluster's task slots, and every process of the job gets it,
		// so that all of them build the same graph whatever their cores.
		if n, err := strconv.Atoi(os.Getenv("SLUICE_PARALLELISM")); err == nil && n > 0 {
			cfg.Parallelism = n
		}
	}
	c := &Context{cfg: cfg, resources: map[time.Time]*batchResources{}, owned: map[int64]bool{}, inputNodes: map[int64]*sluicev1.InputRef{},
		partitionsChosen: chosen}
	c.flags, c.std = newFlagSet(cfg.AppName, cfg.Master)
	c.obs = newObserver(c)
	return c, nil
}

// Config returns the context's configuration with defaults filled in.
func (c *Context) Config() Config { return c.cfg }

// BatchInterval returns the batch interval.
func (c *Context) BatchInterval() time.Duration { return c.cfg.BatchInterval }

// Parallelism returns the default number of partitions.
func (c *Context) Parallelism() int {
	if c.cfg.Parallelism > 0 {
		return c.cfg.Parallelism
	}
	if c.slots > 0 {
		return c.slots
	}
	n, _ := parseMaster(c.cfg.Master)
	return max(1, n)
}

// ErrStarted is returned when a context is started twice.
var ErrStarted = errors.New("dstream: context already started (a Context runs once; build a new one)")

// addStream registers a stream; it panics after Start, because the graph is
// fixed once batches run.
func (c *Context) addStream(b *streamBase) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != created {
		panic(fmt.Sprintf("dstream: cannot add %s after the context started: define every stream and output before Start", b.name))
	}
	b.id = len(c.streams)
	c.streams = append(c.streams, b)
}

// validateGraph checks the graph before the first batch.
func (c *Context) validateGraph() error {
	if len(c.outputs) == 0 {
		return fmt.Errorf("dstream: the job has no output operation: add Print, SaveAsTextFiles, ForeachPartition or ForeachRDD to a stream")
	}
	errs := append([]error(nil), c.graphErrs...)
	for _, s := range c.streams {
		if s.validate != nil {
			if err := s.validate(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// start validates the graph and starts the scheduler; the caller decides
// whether batches come from the timer or by hand (RunBatch).
func (c *Context) start(zero time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != created {
		return ErrStarted
	}
	if err := c.validateGraph(); err != nil {
		return err
	}
	slots, err := parseMaster(c.cfg.Master)
	if err != nil {
		return err
	}
	c.slots = slots
	c.log = c.cfg.Logger
	if c.log == nil {
		c.log = slog.Default()
	}
	c.log = c.log.With("job", c.cfg.AppName)
	c.shuffle = rdd.NewMemShuffle()
	c.blocks = rdd.NewMemBlocks()
	backend := c.backend
	if backend == nil {
		backend = scheduler.NewLocalBackend(slots, c.cfg.Allocator, c.shuffle, c.blocks)
	}
	backend = c.obs.track(backend) // the web UI's task rows
	sched, err := scheduler.New(scheduler.Config{Backend: backend, Cached: c.cachedAll, OnReports: c.onReports})
	if err != nil {
		return err
	}
	c.sched = sched
	c.schedRef.Store(sched)
	c.zeroTime = zero
	c.computeRemember()
	for _, op := range c.stateful {
		op.begin()
	}
	for _, in := range c.inputs {
		if err := in.start(); err != nil {
			c.stopRuntime()
			return fmt.Errorf("dstream: start %s: %w", in.base().name, err)
		}
	}
	c.state = started
	return nil
}

// computeRemember sets how long each stream keeps its generated RDDs: at
// least one batch, and as long as any child's window reaches back.
func (c *Context) computeRemember() {
	for i := len(c.streams) - 1; i >= 0; i-- {
		s := c.streams[i]
		s.remember = max(s.remember, s.slide)
		for _, p := range s.parents {
			p.remember = max(p.remember, s.remember+s.lookback)
		}
	}
	for _, s := range c.streams {
		c.maxRemember = max(c.maxRemember, s.remember)
	}
}

func (c *Context) stopRuntime() {
	for _, in := range c.inputs {
		in.stop()
	}
	if c.sched != nil {
		c.sched.Close()
	}
	c.graphMu.Lock()
	for t, r := range c.resources {
		r.release(c)
		delete(c.resources, t)
	}
	for _, s := range c.streams {
		s.forget(time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC))
	}
	c.graphMu.Unlock()
	if c.shuffle != nil {
		c.shuffle.Close()
		c.blocks.Close()
	}
}

// StartManual starts the context without its batch timer: batches run only
// when RunBatch is called. Tests (see package dstreamtest) and backfills use
// it. zero is the time before the first batch; batch times are zero plus
// multiples of the batch interval.
func (c *Context) StartManual(zero time.Time) error { return c.start(zero) }

// Stop stops the context. A context running under Run or Main stops
// gracefully, as on SIGTERM: Stop returns at once and Run returns (Main
// exits 0) when the batches already generated are done. A context started
// with StartManual stops at once.
func (c *Context) Stop() {
	if c.requestStop() { // running under Run: see main.go
		return
	}
	c.mu.Lock()
	if c.state != started {
		c.state = stopped
		c.mu.Unlock()
		return
	}
	c.state = stopped
	c.mu.Unlock()
	c.stopRuntime()
}

// BatchInfo describes one finished batch: Spark's four health figures plus
// the scheduler's metrics.
type BatchInfo struct {
	Time            time.Time
	InputRecords    int64
	SchedulingDelay time.Duration // from batch time to the start of processing
	ProcessingTime  time.Duration // running the batch's jobs
	TotalDelay      time.Duration // from batch time to the end of processing
	Jobs            []scheduler.JobMetrics
	Inputs          []InputInfo // what each input stream put into the batch (as Spark's streamIdToInputInfo)
}

// Tasks returns how many tasks of the batch's jobs succeeded (a partition
// read from a cache, or a stage whose shuffle output was there, runs none).
func (b BatchInfo) Tasks() int {
	n := 0
	for _, j := range b.Jobs {
		for _, s := range j.Stages {
			n += s.Tasks
		}
	}
	return n
}

// batch is one generated batch: its jobs, in output definition order.
type batch struct {
	time   time.Time
	input  int64
	inputs []InputInfo // what each source that does not describe itself (a planned source does) put in
	jobs   []*outputJob
	genErr error
}

type outputJob struct {
	op      *outputOp
	final   *rdd.Node
	index   int // place in the batch's jobs
	run     func(b *Batch) error
	resolve func(a action, index, sub int) (*rdd.Node, scheduler.ResultFunc, error)
}

// RunBatch generates and runs the batch at time t (which must be zero time
// plus a multiple of the batch interval) and returns its figures.
func (c *Context) RunBatch(ctx context.Context, t time.Time) (BatchInfo, error) {
	if err := c.checkBatchTime(t); err != nil {
		return BatchInfo{Time: t}, err
	}
	b := c.generate(t)
	return c.process(ctx, b, t)
}

func (c *Context) checkBatchTime(t time.Time) error {
	c.mu.Lock()
	st := c.state
	c.mu.Unlock()
	if st != started {
		return fmt.Errorf("dstream: RunBatch before Start or after Stop")
	}
	d := t.Sub(c.zeroTime)
	if d <= 0 || d%c.cfg.BatchInterval != 0 {
		return fmt.Errorf("dstream: batch time %v is not after the start time %v by a multiple of the batch interval %v", t, c.zeroTime, c.cfg.BatchInterval)
	}
	return nil
}

// generate builds the RDDs and jobs of batch t. It runs at the batch time,
// so input streams cut their input there.
func (c *Context) generate(t time.Time) *batch {
	c.graphMu.Lock()
	defer c.graphMu.Unlock()
	b := &batch{time: t}
	if rec, ok := c.ckpt.recordedInput(t); ok {
		// A replay after a restart: the input recorded before the batch
		// was first scheduled.
		n, err := c.restoreInputs(t, rec)
		if err != nil {
			b.genErr = err
		}
		b.input = n
	} else {
		for _, in := range c.inputs {
			n, err := in.inputAt(t)
			if err != nil {
				b.genErr = errors.Join(b.genErr, fmt.Errorf("input %s at %s: %w", in.base().name, fmtTime(t), err))
			}
			b.input += n
			if p, ok := in.(interface{ describesItself() bool }); !ok || !p.describesItself() {
				b.inputs = append(b.inputs, InputInfo{Stream: in.base().name, Records: n})
			}
		}
		if c.ckpt != nil && b.genErr == nil {
			if err := c.logInput(t); err != nil {
				b.genErr = fmt.Errorf("batch %s: %w", fmtTime(t), err)
			}
		}
	}
	res := &batchResources{}
	for _, op := range c.outputs {
		job, err := op.generate(t)
		if err != nil {
			b.genErr = errors.Join(b.genErr, fmt.Errorf("%s at %s: %w", op.name, fmtTime(t), err))
			continue
		}
		if job != nil {
			c.own(res, job.final)
			job.index = len(b.jobs)
			b.jobs = append(b.jobs, job)
		}
	}
	// Stateful operators advance every batch, whether or not an output
	// read them; after the outputs, so that those computed them already.
	for _, op := range c.stateful {
		job, err := op.force(t)
		if err != nil {
			b.genErr = errors.Join(b.genErr, fmt.Errorf("state at %s: %w", fmtTime(t), err))
			continue
		}
		if job != nil {
			c.own(res, job.final)
			job.index = len(b.jobs)
			b.jobs = append(b.jobs, job)
		}
	}
	c.resources[t] = res
	finals := make([]*rdd.Node, len(b.jobs))
	for i, j := range b.jobs {
		finals[i] = j.final
	}
	c.noteBatchInputs(t, finals)
	return b
}

// process runs the jobs of a generated batch in order, logs the batch line
// and cleans up what no later batch needs.
func (c *Context) process(ctx context.Context, b *batch, scheduled time.Time) (BatchInfo, error) {
	start := time.Now()
	info := BatchInfo{Time: b.time, InputRecords: b.input, SchedulingDelay: max(0, start.Sub(scheduled))}
	err := b.genErr
	if err == nil {
		for _, j := range b.jobs {
			jb := &Batch{ctx: ctx, sc: c, time: b.time, op: j.op.name, index: j.index}
			jerr := j.run(jb)
			info.Jobs = append(info.Jobs, jb.metrics...)
			if jerr != nil {
				var tf *scheduler.TaskFailedError
				if errors.As(jerr, &tf) { // names the output and the batch already
					err = fmt.Errorf("dstream: %w", jerr)
				} else {
					err = fmt.Errorf("dstream: batch %s: output %s: %w", fmtTime(b.time), j.op.name, jerr)
				}
				break
			}
		}
	}
	if err == nil {
		for _, op := range c.stateful {
			op.commit(b.time)
		}
		c.reportsMu.Lock()
		reports := c.batchReports
		c.batchReports = nil
		c.reportsMu.Unlock()
		if c.commitRemote != nil && len(c.stateful) > 0 {
			snap := c.snapshotDue(b.time)
			if snap {
				if serr := c.beginRemoteSnapshot(b.time); serr != nil {
					c.log.Warn("checkpoint: cannot take a snapshot", slog.String("batch", fmtTime(b.time)), slog.Any("err", serr))
					snap = false
				}
			}
			if cerr := c.commitRemote(ctx, b.time, reports, snap); cerr != nil {
				err = &stateCommitError{fmt.Errorf("dstream: batch %s: %w", fmtTime(b.time), cerr)}
			}
		}
		if err == nil && c.ckpt != nil {
			if cerr := c.checkpointBatch(b.time); cerr != nil {
				err = fmt.Errorf("dstream: batch %s: %w", fmtTime(b.time), cerr)
			}
		}
	}
	// What each source put in: the skipped input of those that skip some
	// (the directory source), then the planned sources' own descriptions,
	// after the jobs (with their tasks' source counts).
	skipped := c.describeSkipped(b)
	planned := c.hooks.inputs(b.time)
	info.Inputs = append(b.inputs, planned...)
	end := time.Now()
	info.ProcessingTime = end.Sub(start)
	info.TotalDelay = info.SchedulingDelay + info.ProcessingTime
	attrs := []any{
		slog.String("batch", fmtTime(b.time)),
		slog.Int64("input_records", info.InputRecords),
		slog.Duration("scheduling_delay", info.SchedulingDelay),
		slog.Duration("processing_time", info.ProcessingTime),
		slog.Duration("total_delay", info.TotalDelay),
		slog.Int("jobs", len(info.Jobs)),
		slog.Int("tasks", info.Tasks()),
	}
	attrs = append(attrs, c.stateAttrs()...)
	if c.role == roleDriver && c.sched != nil {
		// What executors cache, as the scheduler's registry knows it.
		n := 0
		for _, k := range c.sched.CachedLocations() {
			n += k
		}
		attrs = append(attrs, slog.Int("cached_partitions", n))
	}
	attrs = append(attrs, skipped...) // skipped input: source_files.go
	attrs = append(attrs, c.hooks.attrs(planned)...)
	if err != nil {
		// The error itself is returned to the caller, which reports it.
		c.log.Error("batch failed", attrs...)
	} else {
		c.log.Info("batch", attrs...)
		c.hooks.completed(info)
	}
	c.obs.record(info, err)
	c.cleanup(b.time)
	if err == nil {
		for _, in := range c.inputs {
			if r, ok := in.(interface{ releaseDone(time.Time) }); ok {
				r.releaseDone(b.time)
			}
		}
	}
	return info, err
}

func fmtTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// batchResources are the shuffle outputs created by one batch's lineage and
// the lineage nodes first seen in it. Shuffle outputs are dropped after
// every batch (cleanup): a later read of the RDD (a window) recomputes them
// from lineage, or reads the partitions its stream persisted, which the
// stream drops when it forgets the RDD.
type batchResources struct {
	shuffles []int64
	nodes    []int64
}

func (r *batchResources) release(c *Context) {
	for _, id := range r.nodes {
		delete(c.owned, id)
		delete(c.inputNodes, id)
	}
}

// cachedAll reports whether every partition of a cached node is stored, so
// that the planner reads it instead of walking its lineage.
func (c *Context) cachedAll(n *rdd.Node) bool {
	for p := 0; p < n.Parts; p++ {
		rec, ok := c.blocks.Get(n.ID, p)
		if !ok {
			return false
		}
		rec.Release()
	}
	return true
}

// own attributes the lineage nodes first seen in this batch to it.
func (c *Context) own(res *batchResources, n *rdd.Node) {
	if c.owned[n.ID] {
		return
	}
	c.owned[n.ID] = true
	res.nodes = append(res.nodes, n.ID)
	for _, d := range n.Deps {
		if d.Shuffle != nil {
			res.shuffles = append(res.shuffles, d.Shuffle.ID)
		}
		c.own(res, d.Parent)
	}
}

// cleanup forgets generated RDDs older than each stream's remember duration
// and frees the resources of batches older than the longest one.
func (c *Context) cleanup(done time.Time) {
	c.graphMu.Lock()
	defer c.graphMu.Unlock()
	for _, s := range c.streams {
		s.forget(done.Add(-s.remember))
	}
	// Every shuffle of a done batch is dropped after each batch, also one
	// dropped before: a later batch (a window reading an older batch's RDD
	// its stream did not persist) may have computed it again, and executors
	// delete the shuffle outputs of earlier batches once a newer one runs,
	// so the scheduler must not count on them.
	var old []time.Time
	var ids []int64
	for t, r := range c.resources {
		if !t.After(done) {
			ids = append(ids, r.shuffles...)
		}
		if !t.After(done.Add(-c.maxRemember)) {
			old = append(old, t)
		}
	}
	if len(ids) > 0 {
		c.shuffle.Remove(ids...)
		c.sched.ForgetShuffles(ids...)
	}
	sort.Slice(old, func(i, j int) bool { return old[i].Before(old[j]) })
	for _, t := range old {
		c.resources[t].release(c)
		delete(c.resources, t)
	}
	c.forgetBatchInputs(done.Add(-c.maxRemember))
	if len(c.droppedCached) > 0 {
		if c.sched != nil {
			c.sched.ForgetCached(c.droppedCached...)
		}
		c.droppedCached = c.droppedCached[:0]
	}
}

// dropCached forgets the cached partitions of a node its stream forgot: in
// this process's block store and, in the scheduler's registry, on executors
// (each of which forgets its own copy with its stream). Called with graphMu.
func (c *Context) dropCached(id int64) {
	if c.blocks != nil {
		c.blocks.Remove(id)
	}
	c.droppedCached = append(c.droppedCached, id)
}

// stateAttrs reports the size of stateful operators for the batch log line.
func (c *Context) stateAttrs() []any {
	var keys, bytes, late, buffered int64
	var stateful, eventTime, receiver bool
	for _, s := range c.streams {
		if s.stateSize != nil {
			k, b := s.stateSize()
			keys += k
			bytes += b
			stateful = true
		}
		if s.lateDropped != nil {
			late += s.lateDropped()
			eventTime = true
		}
		if s.inputBuffered != nil {
			buffered += s.inputBuffered()
			receiver = true
		}
	}
	var attrs []any
	if stateful {
		attrs = append(attrs, slog.Int64("state_keys", keys), slog.Int64("state_bytes", bytes))
	}
	if eventTime {
		attrs = append(attrs, slog.Int64("late_dropped", late))
	}
	if receiver {
		attrs = append(attrs, slog.Int64("receiver_buffered_bytes", buffered))
	}
	return attrs
}

// StateSize returns the keys and approximate bytes held by the job's
// stateful operators (as logged per batch).
func (c *Context) StateSize() (keys, bytes int64) {
	for _, s := range c.streams {
		if s.stateSize != nil {
			k, b := s.stateSize()
			keys += k
			bytes += b
		}
	}
	return keys, bytes
}

// registerReporter routes task reports "<kind><batch ns>/<partition>/<name>"
// to f on the driver.
func (c *Context) registerReporter(kind, name string, f func(t time.Time, part int, b []byte) error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reporters == nil {
		c.reporters = map[string]func(time.Time, int, []byte) error{}
	}
	c.reporters[kind+name] = f
}

// onReports hands the reports of a successful task to the operators that
// sent them. It runs in the scheduler's goroutine.
func (c *Context) onReports(_ *scheduler.Task, reports map[string][]byte) {
	if c.role == roleDriver {
		c.reportsMu.Lock()
		if c.batchReports == nil {
			c.batchReports = map[string][]byte{}
		}
		for k, v := range reports {
			if !strings.HasPrefix(k, "stateSize/") { // for the driver alone
				c.batchReports[k] = v
			}
		}
		c.reportsMu.Unlock()
	}
	for key, b := range reports {
		// kind/batchNanos/partition/name, the name possibly holding "/".
		parts := strings.SplitN(key, "/", 4)
		if len(parts) != 4 {
			c.log.Error("dstream: malformed task report", slog.String("key", key))
			continue
		}
		ns, err1 := strconv.ParseInt(parts[1], 10, 64)
		part, err2 := strconv.Atoi(parts[2])
		f := c.reporters[parts[0]+"/"+parts[3]]
		if err1 != nil || err2 != nil || f == nil {
			c.log.Error("dstream: task report for no operator", slog.String("key", key))
			continue
		}
		if err := f(time.Unix(0, ns), part, b); err != nil {
			c.log.Error("dstream: bad task report", slog.String("key", key), slog.Any("err", err))
		}
	}
}
