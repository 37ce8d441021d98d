package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/dstream/ratecontrol"
)

// Header is a Kafka record header.
type Header = kafkago.Header

// Record is one Kafka record as a job sees it, its value decoded to V.
type Record[V any] struct {
	Topic     string
	Partition int
	Offset    int64
	Key       []byte
	Value     V
	Headers   []Header
	Time      time.Time
}

// Decoder turns a record value into V. The bytes belong to the record, so
// a decoder may keep them.
type Decoder[V any] func(b []byte) (V, error)

// Bytes passes values through as bytes.
func Bytes() Decoder[[]byte] { return func(b []byte) ([]byte, error) { return b, nil } }

// String reads values as strings, without copying.
func String() Decoder[string] {
	return func(b []byte) (string, error) {
		if len(b) == 0 {
			return "", nil
		}
		return unsafe.String(&b[0], len(b)), nil // b is this record's own buffer
	}
}

// JSON decodes values as JSON into V.
func JSON[V any]() Decoder[V] {
	return func(b []byte) (V, error) {
		var v V
		err := json.Unmarshal(b, &v)
		return v, err
	}
}

// TopicPartition names one partition of a topic.
type TopicPartition struct {
	Topic     string
	Partition int
}

func (tp TopicPartition) String() string { return tp.Topic + "/" + strconv.Itoa(tp.Partition) }

// OffsetRange is the part of one topic-partition a batch reads: offsets
// From (inclusive) to Until (exclusive).
type OffsetRange struct {
	Topic     string
	Partition int
	From      int64
	Until     int64
}

// Count returns the number of offsets in the range.
func (r OffsetRange) Count() int64 { return r.Until - r.From }

func (r OffsetRange) String() string {
	return fmt.Sprintf("%s/%d:[%d,%d)", r.Topic, r.Partition, r.From, r.Until)
}

// PartitionInput is what a batch read from one partition: its offset
// range, and the records the partition held past the range's end when the
// batch was planned (Lag), which later batches read.
type PartitionInput struct {
	OffsetRange
	Lag int64
}

// BatchInput is a Kafka stream's input to one batch, one entry per
// partition: the Metadata of its dstream.BatchInfo.Inputs entry. As JSON
// (the web UI's input metadata) it is
// [{"Topic","Partition","From","Until","Lag"}].
type BatchInput []PartitionInput

// PartitionInputs describes the batch per partition for the web UI, JSON
// API and /metrics (dstream.PartitionedInput).
func (b BatchInput) PartitionInputs() []dstream.PartitionInput {
	out := make([]dstream.PartitionInput, len(b))
	for i, p := range b {
		out[i] = dstream.PartitionInput{Topic: p.Topic, Partition: p.Partition, From: p.From, Until: p.Until, Lag: p.Lag}
	}
	return out
}

// StartPosition says where a new job starts reading.
type StartPosition int

const (
	// StartDefault starts from the consumer group's committed offsets when
	// Config.GroupID is set (partitions without a commit from the earliest
	// offset), else from the latest.
	StartDefault StartPosition = iota
	// StartEarliest starts from the earliest offset still in the log.
	StartEarliest
	// StartLatest starts from the end: only records produced after the
	// start are read.
	StartLatest
	// StartCommitted starts from the consumer group's committed offsets,
	// partitions without a commit from the earliest offset. It needs
	// Config.GroupID.
	StartCommitted
)

// LostPolicy says what happens when offsets a batch should read were
// deleted (by retention) before it read them.
type LostPolicy int

const (
	// FailOnLost fails the batch with a *LostOffsetsError naming the topic,
	// partition and lost range. The default.
	FailOnLost LostPolicy = iota
	// SkipLost skips to the earliest offset still in the log, logs a
	// warning and counts the lost records on the batch log line.
	SkipLost
)

// LostOffsetsError reports offsets deleted before the job read them.
type LostOffsetsError struct {
	Range OffsetRange // the lost offsets
}

func (e *LostOffsetsError) Error() string {
	return fmt.Sprintf("kafka: offsets %s were deleted (retention) before they were read: %d records lost; "+
		"to skip lost offsets and go on, set Config.OnLostOffsets = kafka.SkipLost", e.Range, e.Range.Count())
}

// UndecodablePolicy says what happens to a record whose value the stream's
// Decoder cannot decode.
type UndecodablePolicy int

const (
	// FailOnUndecodable fails the task (and so, after its retries, the
	// batch) with a *DecodeError naming the topic, partition, offset and
	// the decoder's error. The default.
	FailOnUndecodable UndecodablePolicy = iota
	// SkipUndecodable skips such records, logs a warning (one per range
	// read, with the first offset and error) and counts them on the batch
	// log line as undecodable_records.
	SkipUndecodable
)

// DecodeError reports a record value the stream's Decoder could not decode.
type DecodeError struct {
	Topic     string
	Partition int
	Offset    int64
	Err       error // the decoder's error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("kafka: the value of %s/%d offset %d cannot be decoded: %v; "+
		"fix the producer or the decoder, or set Config.OnUndecodable = kafka.SkipUndecodable to skip such records",
		e.Topic, e.Partition, e.Offset, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// Config configures a direct stream. Zero values mean defaults.
type Config struct {
	// Brokers are the bootstrap brokers, host:port; required.
	Brokers []string
	// Topics are the topics to read; required. Partitions added to them
	// later are picked up at the next batch, from their earliest offset.
	Topics []string
	// GroupID is the consumer group whose offsets are committed after each
	// batch's outputs succeed. Empty: nothing is committed.
	GroupID string
	// Start is where a new job starts reading; see StartPosition.
	Start StartPosition
	// StartOffsets are explicit start offsets; they override Start for the
	// partitions they name.
	StartOffsets map[TopicPartition]int64
	// OnLostOffsets is the policy for offsets deleted before they were read.
	OnLostOffsets LostPolicy
	// OnUndecodable is the policy for values the decoder cannot decode.
	OnUndecodable UndecodablePolicy
	// Backpressure adapts the batch size to what the job processes in one
	// batch interval (Spark's PID estimator: proportional 1.0, integral 0.2,
	// derivative 0, at least 100 records/s).
	Backpressure bool
	// InitialRate (records/s over all partitions) bounds the batches before
	// the estimator has a rate, so that a job starting with a backlog (after
	// downtime) catches up in bounded batches. Default with Backpressure:
	// 1,000,000 records/s.
	InitialRate float64
	// MaxRatePerPartition (records/s) bounds every partition's share of a
	// batch, with or without Backpressure. Default 0: no bound.
	MaxRatePerPartition float64
	// MaxRecordsPerTask splits ranges larger than this into several tasks.
	// Default 0: one task per partition.
	MaxRecordsPerTask int64
	// FetchMaxBytes bounds one fetch response. Default 8 MiB.
	FetchMaxBytes int
	// RequestTimeout bounds each request to a broker. Default 30s.
	RequestTimeout time.Duration
	// Logger receives warnings (lost offsets, failed commits). Default
	// slog.Default().
	Logger *slog.Logger
}

func (c *Config) validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("kafka: Config.Brokers is empty: give at least one broker as host:port")
	}
	if len(c.Topics) == 0 {
		return errors.New("kafka: Config.Topics is empty: name the topics to read")
	}
	if c.Start == StartCommitted && c.GroupID == "" {
		return errors.New("kafka: Start = StartCommitted needs Config.GroupID")
	}
	if c.Start < StartDefault || c.Start > StartCommitted {
		return fmt.Errorf("kafka: Start %d: unknown start position", c.Start)
	}
	if c.OnLostOffsets != FailOnLost && c.OnLostOffsets != SkipLost {
		return fmt.Errorf("kafka: OnLostOffsets %d: use kafka.FailOnLost or kafka.SkipLost", c.OnLostOffsets)
	}
	if c.OnUndecodable != FailOnUndecodable && c.OnUndecodable != SkipUndecodable {
		return fmt.Errorf("kafka: OnUndecodable %d: use kafka.FailOnUndecodable or kafka.SkipUndecodable", c.OnUndecodable)
	}
	if c.InitialRate < 0 || c.MaxRatePerPartition < 0 || c.MaxRecordsPerTask < 0 || c.FetchMaxBytes < 0 {
		return errors.New("kafka: InitialRate, MaxRatePerPartition, MaxRecordsPerTask and FetchMaxBytes must be >= 0 (0 means the default)")
	}
	if c.Backpressure && c.InitialRate == 0 {
		c.InitialRate = 1_000_000
	}
	if c.FetchMaxBytes == 0 {
		c.FetchMaxBytes = 8 << 20
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// NewDirectStream makes an input stream reading cfg.Topics, each value
// decoded by value. See the package documentation for the model.
func NewDirectStream[V any](ctx *dstream.Context, cfg Config, value Decoder[V]) (*dstream.DStream[Record[V]], error) {
	p, rd, err := newSource(ctx, &cfg, value)
	if err != nil {
		return nil, err
	}
	return plannedStream(ctx, p, rd.closeIdle, rd.read), nil
}

// NewValueStream is NewDirectStream for jobs that need only the values:
// it reads them without keys, headers and timestamps, into shared buffers
// instead of one allocation per record, which is cheaper.
func NewValueStream[V any](ctx *dstream.Context, cfg Config, value Decoder[V]) (*dstream.DStream[V], error) {
	p, rd, err := newSource(ctx, &cfg, value)
	if err != nil {
		return nil, err
	}
	rd.valuesOnly = true
	return plannedStream(ctx, p, rd.closeIdle, func(ctx context.Context, t time.Time, rg OffsetRange, yield func(V) bool) error {
		return rd.readValues(ctx, t, rg, yield)
	}), nil
}

func newSource[V any](ctx *dstream.Context, cfg *Config, value Decoder[V]) (*planner, *reader[V], error) {
	if err := cfg.validate(); err != nil {
		return nil, nil, err
	}
	if value == nil {
		return nil, nil, errors.New("kafka: value decoder is nil; use kafka.Bytes(), kafka.String() or kafka.JSON[T]()")
	}
	ctl, err := ratecontrol.New(ratecontrol.Config{
		BatchInterval:       ctx.BatchInterval(),
		InitialRate:         cfg.InitialRate,
		MaxRatePerPartition: cfg.MaxRatePerPartition,
		Backpressure:        cfg.Backpressure,
	})
	if err != nil {
		return nil, nil, err
	}
	p := &planner{
		cfg:     *cfg,
		ctl:     ctl,
		next:    map[TopicPartition]int64{},
		batches: map[time.Time]map[TopicPartition]int64{},
	}
	p.newClient()
	return p, newReader(*cfg, value), nil
}

// plannedStream makes the planned stream and registers the planner's
// batch listener.
func plannedStream[T any](ctx *dstream.Context, p *planner, closeReader func(), read func(context.Context, time.Time, OffsetRange, func(T) bool) error) *dstream.DStream[T] {
	s := dstream.NewPlannedStream(ctx, dstream.PlannedSource[OffsetRange, T]{
		Name:   "kafka",
		Start:  p.start,
		Stop:   func() { p.stop(); closeReader() },
		Plan:   p.plan,
		Read:   read,
		Resume: p.resume,
	})
	p.stream = s.Name()
	ctx.AddBatchListener(p.completed)
	return s
}

// The figures on the batch log line of skipped records.
const (
	countLost        = "lost_records"
	countUndecodable = "undecodable_records"
)

// planner decides each batch's offset ranges in the job's driver.
type planner struct {
	cfg    Config
	client atomic.Pointer[kafkago.Client]
	ctl    *ratecontrol.Controller
	stream string

	// Owned by the goroutine that plans batches (start, then plan).
	ctrl  *kafkago.Conn // metadata connection: the client's transport caches metadata for seconds
	known int           // partitions the client's transport was made for

	mu      sync.Mutex
	next    map[TopicPartition]int64               // where the next batch starts
	batches map[time.Time]map[TopicPartition]int64 // end offsets of planned, uncommitted batches
}

func (p *planner) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 2*p.cfg.RequestTimeout)
}

// newClient replaces the client (and its transport, which caches the
// cluster's metadata) so that it knows the current partitions.
func (p *planner) newClient() {
	old := p.client.Swap(&kafkago.Client{
		Addr:      kafkago.TCP(p.cfg.Brokers...),
		Timeout:   p.cfg.RequestTimeout,
		Transport: &kafkago.Transport{DialTimeout: p.cfg.RequestTimeout},
	})
	if old != nil {
		old.Transport.(*kafkago.Transport).CloseIdleConnections()
	}
}

func (p *planner) stop() {
	if p.ctrl != nil {
		p.ctrl.Close()
	}
	p.client.Load().Transport.(*kafkago.Transport).CloseIdleConnections()
}

// partitions lists the partitions of the configured topics, asking a
// broker every time, so that partitions added to a topic are picked up at
// the next batch.
func (p *planner) partitions(ctx context.Context) ([]TopicPartition, error) {
	if p.ctrl == nil {
		var errs []error
		for _, b := range p.cfg.Brokers {
			c, err := kafkago.DialContext(ctx, "tcp", b)
			if err == nil {
				p.ctrl = c
				break
			}
			errs = append(errs, err)
		}
		if p.ctrl == nil {
			return nil, fmt.Errorf("kafka: connect to %v: %w", p.cfg.Brokers, errors.Join(errs...))
		}
	}
	p.ctrl.SetDeadline(time.Now().Add(p.cfg.RequestTimeout))
	parts, err := p.ctrl.ReadPartitions(p.cfg.Topics...)
	if err != nil {
		p.ctrl.Close()
		p.ctrl = nil
		return nil, fmt.Errorf("kafka: list partitions of %v at %v: %w (create the topics, or check their names)", p.cfg.Topics, p.cfg.Brokers, err)
	}
	var tps []TopicPartition
	for _, part := range parts {
		tps = append(tps, TopicPartition{part.Topic, part.ID})
	}
	if len(tps) != p.known {
		p.known = len(tps)
		p.newClient()
	}
	slices.SortFunc(tps, func(a, b TopicPartition) int {
		if c := strings.Compare(a.Topic, b.Topic); c != 0 {
			return c
		}
		return a.Partition - b.Partition
	})
	return tps, nil
}

// offsets returns the earliest and latest offset of each partition.
func (p *planner) offsets(ctx context.Context, tps []TopicPartition) (first, last map[TopicPartition]int64, err error) {
	req := &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{}}
	for _, tp := range tps {
		req.Topics[tp.Topic] = append(req.Topics[tp.Topic], kafkago.FirstOffsetOf(tp.Partition), kafkago.LastOffsetOf(tp.Partition))
	}
	resp, err := p.client.Load().ListOffsets(ctx, req)
	if err != nil {
		return nil, nil, fmt.Errorf("kafka: list offsets: %w", err)
	}
	first, last = map[TopicPartition]int64{}, map[TopicPartition]int64{}
	for topic, parts := range resp.Topics {
		for _, po := range parts {
			tp := TopicPartition{topic, po.Partition}
			if po.Error != nil {
				return nil, nil, fmt.Errorf("kafka: list offsets of %s: %w", tp, po.Error)
			}
			first[tp], last[tp] = po.FirstOffset, po.LastOffset
		}
	}
	for _, tp := range tps {
		if _, ok := last[tp]; !ok {
			return nil, nil, fmt.Errorf("kafka: list offsets: no answer for %s", tp)
		}
	}
	return first, last, nil
}

// committed returns the group's committed offsets (partitions without a
// commit are absent).
func (p *planner) committed(ctx context.Context, tps []TopicPartition) (map[TopicPartition]int64, error) {
	req := &kafkago.OffsetFetchRequest{GroupID: p.cfg.GroupID, Topics: map[string][]int{}}
	for _, tp := range tps {
		req.Topics[tp.Topic] = append(req.Topics[tp.Topic], tp.Partition)
	}
	resp, err := p.client.Load().OffsetFetch(ctx, req)
	if err == nil {
		err = resp.Error
	}
	if errors.Is(err, kafkago.GroupIdNotFound) {
		return map[TopicPartition]int64{}, nil // a new group: nothing committed
	}
	if err != nil {
		return nil, fmt.Errorf("kafka: committed offsets of group %q: %w", p.cfg.GroupID, err)
	}
	out := map[TopicPartition]int64{}
	for topic, parts := range resp.Topics {
		for _, po := range parts {
			if po.Error != nil {
				return nil, fmt.Errorf("kafka: committed offset of group %q on %s/%d: %w", p.cfg.GroupID, topic, po.Partition, po.Error)
			}
			if po.CommittedOffset >= 0 {
				out[TopicPartition{topic, po.Partition}] = po.CommittedOffset
			}
		}
	}
	return out, nil
}

// start fixes the start offset of every partition.
func (p *planner) start() error {
	ctx, cancel := p.ctx()
	defer cancel()
	tps, err := p.partitions(ctx)
	if err != nil {
		return err
	}
	first, last, err := p.offsets(ctx, tps)
	if err != nil {
		return err
	}
	var committed map[TopicPartition]int64
	mode := p.cfg.Start
	if mode == StartDefault {
		mode = StartLatest
		if p.cfg.GroupID != "" {
			mode = StartCommitted
		}
	}
	if mode == StartCommitted {
		if committed, err = p.committed(ctx, tps); err != nil {
			return err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, tp := range tps {
		switch mode {
		case StartEarliest:
			p.next[tp] = first[tp]
		case StartLatest:
			p.next[tp] = last[tp]
		case StartCommitted:
			off, ok := committed[tp]
			if !ok {
				off = first[tp]
			}
			p.next[tp] = off
		}
		if off, ok := p.cfg.StartOffsets[tp]; ok {
			if off < 0 || off > last[tp] {
				return fmt.Errorf("kafka: StartOffsets[%s] = %d: outside the partition's offsets [%d,%d]", tp, off, first[tp], last[tp])
			}
			p.next[tp] = off
		}
	}
	for tp := range p.cfg.StartOffsets {
		if _, ok := p.next[tp]; !ok {
			return fmt.Errorf("kafka: StartOffsets names %s, which does not exist (partitions of %v: %d)", tp, p.cfg.Topics, len(tps))
		}
	}
	return nil
}

// list lists the partitions and their first and last offsets, trying
// three times (a broker may be restarting) before failing the batch.
func (p *planner) list() (tps []TopicPartition, first, last map[TopicPartition]int64, err error) {
	for attempt := range 3 {
		if attempt > 0 {
			p.cfg.Logger.Warn("kafka: listing offsets failed; retrying", slog.Any("err", err))
			time.Sleep(time.Duration(attempt) * 500 * time.Millisecond)
		}
		ctx, cancel := p.ctx()
		tps, err = p.partitions(ctx)
		if err == nil {
			first, last, err = p.offsets(ctx, tps)
		}
		cancel()
		if err == nil {
			return tps, first, last, nil
		}
	}
	return nil, nil, nil, err
}

// plan decides batch t: one range per partition, from where the previous
// batch ended to the latest offset, bounded by the rate.
func (p *planner) plan(t time.Time) (dstream.SourcePlan[OffsetRange], error) {
	var plan dstream.SourcePlan[OffsetRange]
	tps, first, last, err := p.list()
	if err != nil {
		return plan, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	froms := make([]int64, len(tps))
	lags := make([]int64, len(tps))
	var lost int64
	for i, tp := range tps {
		from, ok := p.next[tp]
		if !ok { // a partition added since the last batch
			from = first[tp]
			p.cfg.Logger.Info("kafka: new partition", slog.String("partition", tp.String()), slog.Int64("from", from))
		}
		if from < first[tp] {
			gone := OffsetRange{tp.Topic, tp.Partition, from, first[tp]}
			if p.cfg.OnLostOffsets != SkipLost {
				return plan, &LostOffsetsError{Range: gone}
			}
			p.cfg.Logger.Warn("kafka: offsets deleted before they were read; skipping them",
				slog.String("lost", gone.String()), slog.Int64("records", gone.Count()))
			lost += gone.Count()
			from = first[tp]
		}
		if from > last[tp] {
			return plan, fmt.Errorf("kafka: %s: next offset %d is past the end of the log %d: the topic was deleted and recreated, "+
				"or truncated; reset the consumer group's offsets or set Config.StartOffsets", tp, from, last[tp])
		}
		froms[i], lags[i] = from, last[tp]-from
	}
	allow := p.ctl.Allow(lags)
	ends := make(map[TopicPartition]int64, len(tps))
	ranges := make(BatchInput, 0, len(tps))
	var lag int64 // records left behind by this plan
	var desc strings.Builder
	for i, tp := range tps {
		n := lags[i]
		if allow[i] >= 0 {
			n = min(n, allow[i])
		}
		r := OffsetRange{tp.Topic, tp.Partition, froms[i], froms[i] + n}
		ranges = append(ranges, PartitionInput{OffsetRange: r, Lag: lags[i] - n})
		p.next[tp], ends[tp] = r.Until, r.Until
		plan.Records += n
		lag += lags[i] - n
		if i > 0 {
			desc.WriteByte(' ')
		}
		fmt.Fprintf(&desc, "%s/%d:%d-%d", r.Topic, r.Partition, r.From, r.Until)
		for from := r.From; from < r.Until; {
			until := r.Until
			if m := p.cfg.MaxRecordsPerTask; m > 0 {
				until = min(until, from+m)
			}
			plan.Parts = append(plan.Parts, OffsetRange{r.Topic, r.Partition, from, until})
			from = until
		}
	}
	p.batches[t] = ends
	plan.Metadata = ranges
	for _, r := range ranges { // where a restart from a checkpoint resumes
		plan.Next = append(plan.Next, OffsetRange{r.Topic, r.Partition, r.Until, r.Until})
	}
	plan.Attrs = []slog.Attr{slog.String("offsets", desc.String()), slog.Int64("lag", lag)}
	// Tasks add the records they find lost or cannot decode (dstream.AddSourceCount).
	if p.cfg.OnLostOffsets == SkipLost {
		plan.Counts = map[string]int64{countLost: lost}
	}
	if p.cfg.OnUndecodable == SkipUndecodable {
		if plan.Counts == nil {
			plan.Counts = map[string]int64{}
		}
		plan.Counts[countUndecodable] = 0
	}
	if p.cfg.Backpressure {
		plan.Attrs = append(plan.Attrs, slog.Int64("rate", int64(p.ctl.Rate())))
	}
	return plan, nil
}

// resume, in a job restarted from a checkpoint, replaces the start
// positions with where the newest recorded batch ended (its plan's Next):
// the batches up to it are replayed from their recorded ranges, the next
// plan starts right after them. A partition the record does not name is
// new since then and starts at its earliest offset, as in a running job.
// The consumer group's offsets are not read: they may lag the checkpoint.
func (p *planner) resume(next []OffsetRange) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.next)
	var desc strings.Builder
	for _, r := range next {
		p.next[TopicPartition{r.Topic, r.Partition}] = r.Until
		fmt.Fprintf(&desc, " %s/%d:%d", r.Topic, r.Partition, r.Until)
	}
	p.cfg.Logger.Info("kafka: resuming from the checkpoint", slog.String("next", strings.TrimSpace(desc.String())))
	return nil
}

// completed runs after all outputs of a batch succeeded: it feeds the rate
// estimator and commits the batch's end offsets to the consumer group.
func (p *planner) completed(info dstream.BatchInfo) {
	for _, in := range info.Inputs {
		if in.Stream == p.stream {
			p.ctl.Update(info.Time, in.Records, info.ProcessingTime, info.SchedulingDelay)
		}
	}
	p.mu.Lock()
	ends, ok := p.batches[info.Time]
	for t := range p.batches {
		if !t.After(info.Time) {
			delete(p.batches, t)
		}
	}
	p.mu.Unlock()
	if !ok || p.cfg.GroupID == "" {
		return
	}
	if err := p.commit(ends); err != nil {
		// The next batch commits again; a failed commit loses nothing, a
		// restart re-reads from the previous commit.
		p.cfg.Logger.Warn("kafka: commit offsets", slog.String("batch", info.Time.UTC().Format(time.RFC3339Nano)), slog.Any("err", err))
	}
}

func (p *planner) commit(ends map[TopicPartition]int64) error {
	ctx, cancel := p.ctx()
	defer cancel()
	req := &kafkago.OffsetCommitRequest{GroupID: p.cfg.GroupID, GenerationID: -1, Topics: map[string][]kafkago.OffsetCommit{}}
	for tp, off := range ends {
		req.Topics[tp.Topic] = append(req.Topics[tp.Topic], kafkago.OffsetCommit{Partition: tp.Partition, Offset: off})
	}
	resp, err := p.client.Load().OffsetCommit(ctx, req)
	if err != nil {
		return fmt.Errorf("group %q: %w", p.cfg.GroupID, err)
	}
	var errs []error
	for topic, parts := range resp.Topics {
		for _, part := range parts {
			if part.Error != nil {
				errs = append(errs, fmt.Errorf("group %q, %s/%d: %w", p.cfg.GroupID, topic, part.Partition, part.Error))
			}
		}
	}
	return errors.Join(errs...)
}
