package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/ipc"
	"github.com/apache/arrow/go/v15/arrow/memory"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	"github.com/sluicehq/sluice/rdd"
	"github.com/sluicehq/sluice/scheduler"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Fingerprint identifies the shape of a job's lineage; the driver sends it
// with every task and the executor refuses a task whose job it builds
// differently (another binary, other flags, a non-deterministic graph).
func Fingerprint(final *rdd.Node) string {
	sum := sha256.Sum256([]byte(scheduler.Shape(final)))
	return hex.EncodeToString(sum[:16])
}

// maxNonEmptyBytes bounds the non-empty block bitmaps one task carries per
// shuffle it reads (one bit per map output and reduce partition: 512
// partitions on each side). Past it the task fetches every block, empty
// ones included, as it would without them.
const maxNonEmptyBytes = 32 << 10

// checkNonEmpty checks a shuffle input's bitmaps of non-empty blocks: none,
// or one per map location, each empty (unknown) or of the shuffle's
// (reduce partitions + 7) / 8 bytes.
func checkNonEmpty(in *sluicev1.ShuffleInput, numReduce int) error {
	ne := in.GetMapNonempty()
	if len(ne) == 0 {
		return nil
	}
	if len(ne) != len(in.GetMapLocations()) {
		return invalidArgument("shuffle %d: %d non-empty block bitmaps for %d map locations: send one per map location, or none",
			in.GetShuffleId(), len(ne), len(in.GetMapLocations()))
	}
	for m, b := range ne {
		if len(b) != 0 && len(b) != (numReduce+7)/8 {
			return invalidArgument("shuffle %d: the non-empty block bitmap of map output %d has %d bytes, want %d (one bit per reduce partition of %d) or 0 (unknown)",
				in.GetShuffleId(), m, len(b), (numReduce+7)/8, numReduce)
		}
	}
	return nil
}

// Request builds the wire form of a task (without the executor epoch and
// incarnation, which the backend adds).
func Request(jobID, binarySHA string, args []string, zero time.Time, t *scheduler.Task) (*sluicev1.TaskRequest, error) {
	deps := scheduler.ShuffleDeps(t.Job.Final)
	req := &sluicev1.TaskRequest{
		JobId:             jobID,
		BinarySha256:      binarySHA,
		GraphFingerprint:  Fingerprint(t.Job.Final),
		TaskId:            t.ID,
		Attempt:           int32(t.Attempt),
		BatchTimeUnixNano: t.Job.BatchTime.UnixNano(),
		ZeroTimeUnixNano:  zero.UnixNano(),
		JobIndex:          int32(t.Job.Index),
		JobSub:            int32(t.Job.Sub),
		ShuffleMap:        t.Stage.IsShuffleMap(),
		Partition:         int32(t.Partition),
		Args:              args,
		Action:            t.Job.Action,
		ActionArg:         t.Job.ActionArg,
	}
	found := !t.Stage.IsShuffleMap()
	for i, d := range deps {
		if t.Stage.IsShuffleMap() && d == t.Stage.Shuffle {
			req.StageNode = int32(i)
			found = true
		}
		in := &sluicev1.ShuffleInput{Ordinal: int32(i), ShuffleId: d.ID, MapLocations: t.Inputs[d.ID]}
		if ne := t.InputNonEmpty[d.ID]; len(ne) == len(in.MapLocations) && len(ne)*((d.NumReduce+7)/8) <= maxNonEmptyBytes {
			in.MapNonempty = ne
		}
		req.Shuffles = append(req.Shuffles, in)
	}
	if !found {
		return nil, fmt.Errorf("cluster: %s: its shuffle is not in the job's lineage", t)
	}
	return req, nil
}

// Resolved is a task's job as an executor's copy of the graph has it.
type Resolved struct {
	Final *rdd.Node
	Func  scheduler.ResultFunc
}

// TaskSpec is what an executor needs to find a task's job in its copy of
// the job's graph, without running any output code.
type TaskSpec struct {
	Zero, BatchTime  time.Time
	JobIndex, JobSub int
	Action           string
	ActionArg        int64
	// Inputs lists the source input batches the batch's lineage reads.
	Inputs []*sluicev1.InputRef
	// DriverAddr is where the job's driver serves its sources' input.
	DriverAddr string
	// StateSnapshot, if not zero, is the checkpoint snapshot the job's
	// operator state restarts from (a restarted job driver's attempt): state
	// partitions are loaded from it before this process's first task on them.
	StateSnapshot time.Time
}

// ErrGraphMismatch marks a task the executor's copy of the job cannot run
// as sent: another binary, other flags or a non-deterministic graph. No
// retry can fix it: the job fails at once.
var ErrGraphMismatch = errors.New("graph mismatch")

// Resolver finds the job a task belongs to in the executor's copy of the
// job's graph.
type Resolver interface {
	// Resolve errors are fatal for the job: they mean the executor's graph
	// is not the driver's.
	Resolve(ctx context.Context, spec TaskSpec) (Resolved, error)
	// Commit commits the operator state the batch wrote in this process,
	// with the reports of all the batch's tasks. snapshot, if not empty,
	// names state partitions ("<operator>/<partition>") whose committed
	// state Commit sends to the job driver for its checkpoint before it
	// returns.
	Commit(ctx context.Context, batchTime time.Time, reports map[string][]byte, snapshot []string) error
}

// TaskServerConfig configures a TaskServer.
type TaskServerConfig struct {
	Resolver Resolver
	// Shuffle returns the shuffle service of one task: locations gives, by
	// cluster-wide shuffle id, the executor address of each map output.
	Shuffle func(in ShuffleInputs) rdd.ShuffleService
	Blocks  rdd.BlockStore
	Alloc   memory.Allocator
	// Wrote, if set, is told of every shuffle map output written, by the
	// batch it belongs to, so that old shuffle data can be deleted.
	Wrote func(batch time.Time, shuffle int64)
}

// TaskServer runs tasks in a job's executor process: the Executor service's
// RunTask, reached through the executor daemon.
type TaskServer struct {
	sluicev1.UnimplementedExecutorServer
	cfg TaskServerConfig
}

// NewTaskServer returns a task server.
func NewTaskServer(cfg TaskServerConfig) *TaskServer { return &TaskServer{cfg: cfg} }

// RunTask implements sluicev1.ExecutorServer. Task failures are reported in
// the response (they are the job's business); only malformed requests are
// RPC errors.
func (s *TaskServer) RunTask(ctx context.Context, req *sluicev1.TaskRequest) (*sluicev1.TaskResponse, error) {
	resp := &sluicev1.TaskResponse{TaskId: req.GetTaskId(), ExecutorEpoch: req.GetExecutorEpoch()}
	fail := func(err error) (*sluicev1.TaskResponse, error) {
		resp.Error = protoString(err.Error())
		if ff, ok := rdd.IsFetchFailed(err); ok {
			resp.FetchFailed, resp.FetchFailedShuffle, resp.FetchFailedMap = true, ff.ShuffleID, int32(ff.MapPart)
		}
		return resp, nil
	}
	bt := time.Unix(0, req.GetBatchTimeUnixNano())
	spec := TaskSpec{
		Zero: time.Unix(0, req.GetZeroTimeUnixNano()), BatchTime: bt, JobIndex: int(req.GetJobIndex()), JobSub: int(req.GetJobSub()),
		Action: req.GetAction(), ActionArg: req.GetActionArg(), Inputs: req.GetInputs(), DriverAddr: req.GetDriverBlocksAddress(),
	}
	if ns := req.GetStateSnapshotUnixNano(); ns != 0 {
		spec.StateSnapshot = time.Unix(0, ns)
	}
	job, err := s.cfg.Resolver.Resolve(ctx, spec)
	if err != nil {
		resp.Fatal = true
		return fail(err)
	}
	if fp := Fingerprint(job.Final); fp != req.GetGraphFingerprint() {
		resp.Fatal = true
		return fail(fmt.Errorf("%w: this executor's copy of the job builds a different lineage for job %d of batch %s (fingerprint %s, driver's %s): the executor runs a different binary or other flags, or the job's graph is not deterministic",
			ErrGraphMismatch, req.GetJobIndex(), bt.UTC().Format(time.RFC3339Nano), fp, req.GetGraphFingerprint()))
	}
	deps := scheduler.ShuffleDeps(job.Final)
	toGlobal := map[int64]int64{}
	inputs := ShuffleInputs{Locations: map[int64][]string{}, NonEmpty: map[int64][][]byte{}}
	for _, in := range req.GetShuffles() {
		o := int(in.GetOrdinal())
		if o < 0 || o >= len(deps) {
			return nil, invalidArgument("shuffle ordinal %d out of range [0,%d)", o, len(deps))
		}
		if err := checkNonEmpty(in, deps[o].NumReduce); err != nil {
			return nil, err
		}
		toGlobal[deps[o].ID] = in.GetShuffleId()
		inputs.Locations[in.GetShuffleId()] = in.GetMapLocations()
		if ne := in.GetMapNonempty(); len(ne) > 0 {
			inputs.NonEmpty[in.GetShuffleId()] = ne
		}
	}
	stage := &scheduler.Stage{Node: job.Final, NumTasks: job.Final.Parts}
	if req.GetShuffleMap() {
		o := int(req.GetStageNode())
		if o < 0 || o >= len(deps) {
			return nil, invalidArgument("stage ordinal %d out of range [0,%d)", o, len(deps))
		}
		stage = &scheduler.Stage{Node: deps[o].Parent, Shuffle: deps[o], NumTasks: deps[o].Parent.Parts}
	}
	if p := int(req.GetPartition()); p < 0 || p >= stage.NumTasks {
		return nil, invalidArgument("partition %d out of range [0,%d)", p, stage.NumTasks)
	}
	nodes := scheduler.Walk(job.Final)
	var required map[rdd.BlockRef]bool
	for _, cb := range req.GetCached() {
		o, p := int(cb.GetOrdinal()), int(cb.GetPartition())
		if o < 0 || o >= len(nodes) || p < 0 || p >= nodes[o].Parts {
			return nil, invalidArgument("cached partition %d of lineage node %d out of range", p, o)
		}
		if required == nil {
			required = map[rdd.BlockRef]bool{}
		}
		required[rdd.BlockRef{Node: nodes[o].ID, Part: p}] = true
	}
	shuffle := &translatedShuffle{inner: s.cfg.Shuffle(inputs), toGlobal: toGlobal, wrote: func(id int64) {
		if s.cfg.Wrote != nil {
			s.cfg.Wrote(bt, id)
		}
	}}
	tc := &rdd.TaskContext{
		Ctx:     ctx,
		Alloc:   s.cfg.Alloc,
		Shuffle: shuffle,
		Blocks:  s.cfg.Blocks,
	}
	if required != nil {
		tc.Required = func(node int64, part int) bool { return required[rdd.BlockRef{Node: node, Part: part}] }
	}
	task := &scheduler.Task{
		ID:        req.GetTaskId(),
		Job:       &scheduler.Job{Final: job.Final, BatchTime: bt, Func: job.Func, Index: int(req.GetJobIndex()), Sub: int(req.GetJobSub())},
		Stage:     stage,
		Partition: int(req.GetPartition()),
		Attempt:   int(req.GetAttempt()),
	}
	res := scheduler.RunTask(tc, task)
	resp.DurationNs, resp.RecordsRead = int64(res.Metrics.Duration), res.Metrics.RecordsRead
	resp.Reports = res.Reports
	if req.GetShuffleMap() && res.Err == nil {
		resp.BlockNonempty = shuffle.nonEmpty
	}
	if len(tc.CachedPuts) > 0 {
		ord := make(map[int64]int32, len(nodes))
		for i, n := range nodes {
			ord[n.ID] = int32(i)
		}
		for _, b := range tc.CachedPuts {
			if o, ok := ord[b.Node]; ok {
				resp.CachedPuts = append(resp.CachedPuts, &sluicev1.CachedBlock{Ordinal: o, Partition: int32(b.Part)})
			}
		}
	}
	if res.Err != nil {
		var miss *rdd.CacheMissError
		if errors.As(res.Err, &miss) {
			for i, n := range nodes {
				if n.ID == miss.NodeID {
					resp.CacheMissing = &sluicev1.CachedBlock{Ordinal: int32(i), Partition: int32(miss.Part)}
				}
			}
		}
		return fail(res.Err)
	}
	if res.Result != nil {
		defer res.Result.Release()
		b, err := EncodeIPC(res.Result, s.cfg.Alloc)
		if err != nil {
			return fail(fmt.Errorf("encode result: %w", err))
		}
		resp.ResultIpc = b
	}
	return resp, nil
}

// CommitState implements sluicev1.ExecutorServer.
func (s *TaskServer) CommitState(ctx context.Context, req *sluicev1.CommitStateRequest) (*sluicev1.CommitStateResponse, error) {
	if err := s.cfg.Resolver.Commit(ctx, time.Unix(0, req.GetBatchTimeUnixNano()), req.GetReports(), req.GetSnapshot()); err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "commit state: %v", err)
	}
	return &sluicev1.CommitStateResponse{}, nil
}

// translatedShuffle maps the executor's process-local shuffle ids to the
// cluster-wide ones the driver assigned.
type translatedShuffle struct {
	inner    rdd.ShuffleService
	toGlobal map[int64]int64
	wrote    func(global int64)
	nonEmpty []byte // of the map output written (nonEmptyBitmap)
}

func (t *translatedShuffle) global(id int64) (int64, error) {
	g, ok := t.toGlobal[id]
	if !ok {
		return 0, fmt.Errorf("cluster: shuffle %d of this executor's lineage has no cluster-wide id in the task", id)
	}
	return g, nil
}

func (t *translatedShuffle) PutMapOutput(id int64, mapPart int, blocks []arrow.Record) error {
	g, err := t.global(id)
	if err != nil {
		for _, b := range blocks {
			if b != nil {
				b.Release()
			}
		}
		return err
	}
	nonEmpty := nonEmptyBitmap(blocks) // before the store takes the blocks
	if err := t.inner.PutMapOutput(g, mapPart, blocks); err != nil {
		return err
	}
	t.wrote(g)
	t.nonEmpty = nonEmpty
	return nil
}

func (t *translatedShuffle) Fetch(ctx context.Context, id int64, numMaps, reducePart int, yield func(arrow.Record) error) error {
	g, err := t.global(id)
	if err != nil {
		return err
	}
	return t.inner.Fetch(ctx, g, numMaps, reducePart, yield)
}

// Arrow IPC payloads cross processes (task results, shuffle blocks) framed
// with a trailer: the payload's length (8 bytes, little endian), its CRC-32C
// (4 bytes) and a magic word. Arrow's IPC reader trusts the lengths it reads
// (a truncated stream can make it allocate gigabytes), so DecodeIPC checks
// the frame before the reader ever sees the bytes.
const ipcMagic = "SLC1"

const ipcTrailer = 8 + 4 + len(ipcMagic)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// EncodeIPC writes a record as a framed Arrow IPC stream.
func EncodeIPC(rec arrow.Record, mem memory.Allocator) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(ipcSize(rec)) // one allocation, not a doubling and copying buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(rec.Schema()), ipc.WithAllocator(mem))
	if err := w.Write(rec); err != nil {
		w.Close()
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	payload := buf.Len()
	var tr [ipcTrailer]byte
	binary.LittleEndian.PutUint64(tr[0:8], uint64(payload))
	binary.LittleEndian.PutUint32(tr[8:12], crc32.Checksum(buf.Bytes(), crcTable))
	copy(tr[12:], ipcMagic)
	buf.Write(tr[:])
	return buf.Bytes(), nil
}

// ipcSize is about the bytes of rec's IPC stream: the part of each
// column's buffers its rows use (a column may be a slice of a larger
// array), padded, plus room for the schema and record metadata and the
// trailer. Types it does not know add nothing: the buffer grows for them.
func ipcSize(rec arrow.Record) int {
	n := 1<<10 + 64*int(rec.NumCols())
	for _, c := range rec.Columns() {
		n += arrayBytes(c)
	}
	return n
}

func arrayBytes(a arrow.Array) int {
	rows := a.Len()
	n := (rows+7)/8 + 16 // validity bitmap, padding
	if rows == 0 {
		return n
	}
	switch a := a.(type) {
	case *array.String:
		o := a.ValueOffsets() // rows+1 offsets
		return n + 4*len(o) + int(o[len(o)-1]-o[0])
	case *array.Binary:
		o := a.ValueOffsets()
		return n + 4*len(o) + int(o[len(o)-1]-o[0])
	case *array.Struct:
		for i := 0; i < a.NumField(); i++ {
			n += arrayBytes(a.Field(i))
		}
		return n
	}
	if fw, ok := a.DataType().(arrow.FixedWidthDataType); ok {
		return n + rows*fw.BitWidth()/8
	}
	return 0
}

// CheckIPC checks the frame of an EncodeIPC payload (trailer, length and
// checksum) without decoding it: bytes that are not such a payload, or were
// cut or corrupted, are an error.
func CheckIPC(b []byte) error {
	if len(b) < ipcTrailer || string(b[len(b)-len(ipcMagic):]) != ipcMagic {
		return errors.New("cluster: malformed Arrow IPC payload: no frame trailer")
	}
	tr := b[len(b)-ipcTrailer:]
	payload := b[:len(b)-ipcTrailer]
	if n := binary.LittleEndian.Uint64(tr[0:8]); n != uint64(len(payload)) {
		return fmt.Errorf("cluster: malformed Arrow IPC payload: %d bytes, frame says %d (truncated?)", len(payload), n)
	}
	if crc32.Checksum(payload, crcTable) != binary.LittleEndian.Uint32(tr[8:12]) {
		return errors.New("cluster: corrupt Arrow IPC payload: checksum mismatch")
	}
	return nil
}

// DecodeIPC reads the single record of a framed Arrow IPC stream into
// buffers from mem; the caller releases it. Bytes cut or damaged on the
// way are an error, never a panic (the frame's length and CRC), and so is
// a stream whose buffers claim more bytes than the payload holds (Arrow's
// loader asks for a buffer's size before it checks it against the body).
// A well-framed stream is otherwise trusted to be what EncodeIPC writes:
// its peers are authenticated (Arrow's schema reader, for one, allocates
// whatever field count the metadata says). Each buffer is copied once,
// from b into mem (Arrow's reader copies it out of the message body; its
// stream reader would first copy every body out of b); the record does not
// refer to b.
func DecodeIPC(b []byte, mem memory.Allocator) (arrow.Record, error) {
	return decodeIPC(b, func(payload []byte) (*ipc.Reader, error) {
		bounded := &boundedAlloc{Allocator: mem, max: len(payload) + 64} // Arrow rounds sizes up to 64 bytes
		return ipc.NewReaderFromMessageReader(&sliceMessages{b: payload, refs: 1}, ipc.WithAllocator(bounded))
	})
}

// boundedAlloc refuses (panics, which decodeIPC recovers) a buffer larger
// than max, the payload it is decoded from.
type boundedAlloc struct {
	memory.Allocator
	max int
}

func (a *boundedAlloc) Allocate(n int) []byte {
	a.check(n)
	return a.Allocator.Allocate(n)
}

func (a *boundedAlloc) Reallocate(n int, b []byte) []byte {
	a.check(n)
	return a.Allocator.Reallocate(n, b)
}

func (a *boundedAlloc) check(n int) {
	if n > a.max {
		panic(fmt.Sprintf("a buffer of %d bytes in a payload of %d", n, a.max-64))
	}
}

func decodeIPC(b []byte, reader func(payload []byte) (*ipc.Reader, error)) (rec arrow.Record, err error) {
	if err := CheckIPC(b); err != nil {
		return nil, err
	}
	payload := b[:len(b)-ipcTrailer]
	defer func() {
		if v := recover(); v != nil {
			rec, err = nil, fmt.Errorf("cluster: malformed Arrow IPC payload: %v", v)
		}
	}()
	r, err := reader(payload)
	if err != nil {
		return nil, fmt.Errorf("cluster: malformed Arrow IPC payload: %w", err)
	}
	defer r.Release()
	if !r.Next() {
		if err := r.Err(); err != nil {
			return nil, fmt.Errorf("cluster: malformed Arrow IPC payload: %w", err)
		}
		return nil, errors.New("cluster: empty Arrow IPC payload")
	}
	rec = r.Record()
	rec.Retain()
	return rec, nil
}

// sliceMessages reads the messages of an Arrow IPC stream held in memory,
// each message's metadata and body a slice of b (ipc's own message reader
// copies every body into a new buffer). As that reader's, a message is
// valid until the next call.
type sliceMessages struct {
	b    []byte
	msg  *ipc.Message
	refs int64
}

func (m *sliceMessages) Message() (*ipc.Message, error) {
	if m.msg != nil {
		m.msg.Release()
		m.msg = nil
	}
	word := func() (uint32, error) {
		if len(m.b) < 4 {
			return 0, fmt.Errorf("arrow/ipc: stream cut after %d bytes of a message prefix", len(m.b))
		}
		v := binary.LittleEndian.Uint32(m.b)
		m.b = m.b[4:]
		return v, nil
	}
	if len(m.b) == 0 {
		return nil, io.EOF
	}
	n, err := word()
	if err != nil {
		return nil, err
	}
	if n == 0xFFFFFFFF { // continuation marker, then the length
		if n, err = word(); err != nil {
			return nil, err
		}
	}
	if n == 0 {
		return nil, io.EOF // end of stream
	}
	if uint64(n) > uint64(len(m.b)) {
		return nil, fmt.Errorf("arrow/ipc: message metadata of %d bytes, %d left", n, len(m.b))
	}
	meta := memory.NewBufferBytes(m.b[:n])
	m.b = m.b[n:]
	head := ipc.NewMessage(meta, memory.NewBufferBytes(nil))
	bodyLen := head.BodyLen()
	head.Release()
	if bodyLen < 0 || bodyLen > int64(len(m.b)) {
		return nil, fmt.Errorf("arrow/ipc: message body of %d bytes, %d left", bodyLen, len(m.b))
	}
	m.msg = ipc.NewMessage(meta, memory.NewBufferBytes(m.b[:bodyLen]))
	m.b = m.b[bodyLen:]
	return m.msg, nil
}

func (m *sliceMessages) Retain() { m.refs++ }

func (m *sliceMessages) Release() {
	if m.refs--; m.refs == 0 && m.msg != nil {
		m.msg.Release()
		m.msg = nil
	}
}
