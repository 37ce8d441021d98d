package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/memory"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	"github.com/sluicehq/sluice/rdd"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxBlockBytes bounds one fetched shuffle block.
const maxBlockBytes = 1 << 30

// ChunkBytes is the size of streamed chunks (binaries, shuffle blocks).
const ChunkBytes = 1 << 20

// fetchIdle bounds how long a shuffle fetch waits for the next chunk. A
// frozen executor (stopped, or its host unreachable without a reset) keeps
// its connections open, and gRPC's keepalive needs at least 12 s to notice
// (its client ping interval cannot go below 10 s); the driver declares the
// executor lost after three missed 1 s heartbeats, but a reduce task on
// another executor that is mid-fetch from it would wait for the keepalive.
// Past fetchIdle without data the fetch fails as a fetch failure, and the
// scheduler recomputes the map outputs the executor held. A live shuffle
// server sends a 1 MiB chunk far more often.
var fetchIdle = 4 * time.Second

var errFetchIdle = errors.New("shuffle fetch: no data")

// ShuffleStore keeps shuffle map outputs on an executor's disk: one
// directory per map output, <dir>/<job>/<shuffle>/<map>/, holding one Arrow
// IPC stream file per non-empty reduce partition, r<reduce>.arrow. A map
// output is written into a temporary directory and renamed into place, so it
// appears whole, and a retry replaces it.
type ShuffleStore struct {
	dir string
	mem memory.Allocator
	rm  removals
}

// NewShuffleStore returns a store rooted at dir (created if needed).
func NewShuffleStore(dir string, mem memory.Allocator) (*ShuffleStore, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("shuffle directory: %w", err)
	}
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	return &ShuffleStore{dir: dir, mem: mem}, nil
}

func (s *ShuffleStore) mapDir(job string, shuffle int64, mapPart int) string {
	return filepath.Join(s.dir, job, strconv.FormatInt(shuffle, 10), strconv.Itoa(mapPart))
}

// Write stores the blocks of one map task (taking ownership of them).
func (s *ShuffleStore) Write(job string, shuffle int64, mapPart int, blocks []arrow.Record) error {
	defer func() {
		for _, b := range blocks {
			if b != nil {
				b.Release()
			}
		}
	}()
	if err := checkID("job id", job); err != nil {
		return err
	}
	s.awaitRemoval(job, shuffle)
	final := s.mapDir(job, shuffle, mapPart)
	tmp, err := os.MkdirTemp(filepath.Dir(final), ".tmp-"+strconv.Itoa(mapPart)+"-")
	if err != nil {
		if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
			return err
		}
		if tmp, err = os.MkdirTemp(filepath.Dir(final), ".tmp-"+strconv.Itoa(mapPart)+"-"); err != nil {
			return err
		}
	}
	for r, b := range blocks {
		if b == nil || b.NumRows() == 0 {
			continue
		}
		data, err := EncodeIPC(b, s.mem)
		if err != nil {
			os.RemoveAll(tmp)
			return err
		}
		if err := os.WriteFile(filepath.Join(tmp, "r"+strconv.Itoa(r)+".arrow"), data, 0o644); err != nil {
			os.RemoveAll(tmp)
			return err
		}
	}
	if err := s.removeDir(final); err != nil { // a retry replaces the output
		os.RemoveAll(tmp)
		return err
	}
	return os.Rename(tmp, final)
}

// removeDir deletes dir so that no reader sees it partly deleted: it is
// first moved into a new directory of the store's own (a rename, atomic),
// so a reader finds either all of it or nothing (NotFound: a fetch
// failure, and the output is computed again), then deleted. Deleted in
// place, a map output's block files went before its directory, and a
// fetch in between was served an empty block: rows lost, silently (found
// by a review). Processes sharing the store's directory get distinct
// names (MkdirTemp).
func (s *ShuffleStore) removeDir(dir string) error {
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	trash, err := os.MkdirTemp(s.dir, ".trash-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(trash)
	if err := os.Rename(dir, filepath.Join(trash, "x")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// errNoMapOutput reports a map output this store does not have.
var errNoMapOutput = errors.New("map output not on this executor")

// Read returns the IPC bytes of one block (nil for an empty block), or
// errNoMapOutput.
func (s *ShuffleStore) Read(job string, shuffle int64, mapPart, reducePart int) ([]byte, error) {
	f, err := s.Open(job, shuffle, mapPart, reducePart)
	if f == nil || err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	b := make([]byte, st.Size())
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, err
	}
	return b, nil
}

// Open returns a reader of one block's IPC bytes (nil for an empty block),
// or errNoMapOutput; the caller closes it.
func (s *ShuffleStore) Open(job string, shuffle int64, mapPart, reducePart int) (*os.File, error) {
	if err := checkID("job id", job); err != nil {
		return nil, err
	}
	dir := s.mapDir(job, shuffle, mapPart)
	f, err := os.Open(filepath.Join(dir, "r"+strconv.Itoa(reducePart)+".arrow"))
	if errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(dir); err != nil {
			return nil, errNoMapOutput
		}
		return nil, nil
	}
	return f, err
}

// RemoveJob deletes a job's shuffle data.
func (s *ShuffleStore) RemoveJob(job string) error {
	if err := checkID("job id", job); err != nil {
		return err
	}
	return s.removeDir(filepath.Join(s.dir, job))
}

// RemoveShuffles deletes the given shuffles of a job.
func (s *ShuffleStore) RemoveShuffles(job string, ids ...int64) {
	if checkID("job id", job) != nil {
		return
	}
	for _, id := range ids {
		s.removeDir(filepath.Join(s.dir, job, strconv.FormatInt(id, 10)))
	}
}

// removals are the shuffles a store deletes in the background
// (RemoveShufflesLater): at most one goroutine deletes them, in the order
// asked, and a write of a shuffle waits until its pending removal is done.
type removals struct {
	mu      sync.Mutex
	done    sync.Cond // broadcast after each removal
	pending map[shuffleKey]int
	queue   []removal
	running bool
	wg      sync.WaitGroup
}

type shuffleKey struct {
	job string
	id  int64
}

type removal struct {
	job string
	ids []int64
}

// RemoveShufflesLater deletes the given shuffles of a job soon, without
// waiting: a task that notices a batch is done (the first task of the next
// one) need not wait for its files to go (on loopback, removing the
// directories of one empty batch took a millisecond or two of every
// batch). A Write of one of these shuffles first waits for its removal: a
// window recomputing an older batch writes that batch's shuffle id again
// (the driver forgot its outputs), and a late removal would delete it.
func (s *ShuffleStore) RemoveShufflesLater(job string, ids ...int64) {
	if len(ids) == 0 || checkID("job id", job) != nil {
		return
	}
	r := &s.rm
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending == nil {
		r.pending = map[shuffleKey]int{}
		r.done.L = &r.mu
	}
	for _, id := range ids {
		r.pending[shuffleKey{job, id}]++
	}
	r.queue = append(r.queue, removal{job, ids})
	if !r.running {
		r.running = true
		r.wg.Go(func() { s.removeLoop() })
	}
}

func (s *ShuffleStore) removeLoop() {
	r := &s.rm
	for {
		r.mu.Lock()
		if len(r.queue) == 0 {
			r.running = false
			r.mu.Unlock()
			return
		}
		next := r.queue[0]
		r.queue[0] = removal{}
		r.queue = r.queue[1:]
		r.mu.Unlock()
		s.RemoveShuffles(next.job, next.ids...)
		r.mu.Lock()
		for _, id := range next.ids {
			k := shuffleKey{next.job, id}
			if r.pending[k]--; r.pending[k] <= 0 {
				delete(r.pending, k)
			}
		}
		r.done.Broadcast()
		r.mu.Unlock()
	}
}

// awaitRemoval returns once no removal of the shuffle is pending.
func (s *ShuffleStore) awaitRemoval(job string, id int64) {
	r := &s.rm
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.pending[shuffleKey{job, id}] > 0 {
		r.done.Wait()
	}
}

// WaitRemovals returns once every removal asked so far is done.
func (s *ShuffleStore) WaitRemovals() { s.rm.wg.Wait() }

// ShuffleInputs is what a task needs to read the shuffles of its stage:
// per shuffle, the executor address holding each map output and each map
// output's bitmap of non-empty blocks (TaskRequest's ShuffleInput).
type ShuffleInputs struct {
	Locations map[int64][]string
	NonEmpty  map[int64][][]byte
}

// hasBit reports whether bitmap b (bit i of byte i/8) has bit i set. A nil
// bitmap is unknown, and so is a bit past its end: both count as set (the
// block is fetched).
func hasBit(b []byte, i int) bool {
	if i < 0 || i/8 >= len(b) {
		return true
	}
	return b[i/8]&(1<<(i%8)) != 0
}

// nonEmptyBitmap returns the bitmap of blocks with rows, for
// TaskResponse.block_nonempty.
func nonEmptyBitmap(blocks []arrow.Record) []byte {
	b := make([]byte, (len(blocks)+7)/8)
	for r, rec := range blocks {
		if rec != nil && rec.NumRows() > 0 {
			b[r/8] |= 1 << (r % 8)
		}
	}
	return b
}

// ShuffleServer serves a store's blocks to other executors.
type ShuffleServer struct {
	sluicev1.UnimplementedShuffleServer
	Store *ShuffleStore
	// Served counts the block bytes sent (the executor's heartbeat reports
	// it, and the cluster UI shows it).
	Served atomic.Int64
}

// FetchBlock implements sluicev1.ShuffleServer: the block's IPC bytes in
// chunks of at most ChunkBytes; NotFound if the map output is not here.
func (s *ShuffleServer) FetchBlock(req *sluicev1.FetchBlockRequest, stream sluicev1.Shuffle_FetchBlockServer) error {
	if err := checkID("job id", req.GetJobId()); err != nil {
		return err
	}
	if req.GetShuffleId() < 0 || req.GetMapPartition() < 0 || req.GetReducePartition() < 0 {
		return status.Errorf(codes.InvalidArgument, "shuffle: bad block request: shuffle %d, map partition %d, reduce partition %d: none may be negative",
			req.GetShuffleId(), req.GetMapPartition(), req.GetReducePartition())
	}
	f, err := s.Store.Open(req.GetJobId(), req.GetShuffleId(), int(req.GetMapPartition()), int(req.GetReducePartition()))
	if errors.Is(err, errNoMapOutput) {
		return status.Errorf(codes.NotFound, "shuffle %d map output %d is not on this executor", req.GetShuffleId(), req.GetMapPartition())
	}
	if err != nil {
		return status.Errorf(codes.Internal, "shuffle: read block: %v", err)
	}
	if f == nil { // an empty block
		return nil
	}
	defer f.Close()
	// Chunk by chunk as read, so that the fetcher sees data within a
	// chunk's read however large the block (its idle bound, fetchIdle);
	// a small block gets a buffer of its size.
	size := int64(ChunkBytes)
	if st, err := f.Stat(); err == nil {
		size = min(size, max(st.Size(), 1))
	}
	buf := make([]byte, size)
	for {
		n, err := io.ReadFull(f, buf)
		if n > 0 {
			if err := stream.Send(&sluicev1.Chunk{Data: buf[:n]}); err != nil {
				return err
			}
			s.Served.Add(int64(n))
		}
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			return nil
		case err != nil:
			return status.Errorf(codes.Internal, "shuffle: read block: %v", err)
		}
	}
}

// NewExecutorShuffle returns, for a job's executor process, its shuffle
// store and the function that makes each task's shuffle service.
func NewExecutorShuffle(env Env, pool *Pool) (*ShuffleStore, func(in ShuffleInputs) rdd.ShuffleService, error) {
	store, err := NewShuffleStore(env.ShuffleDir, nil)
	if err != nil {
		return nil, nil, err
	}
	return store, func(in ShuffleInputs) rdd.ShuffleService {
		return &taskShuffle{store: store, job: env.JobID, self: env.ExecutorAddr, locations: in.Locations, nonEmpty: in.NonEmpty, pool: pool}
	}, nil
}

// taskShuffle is one task's view of the cluster's shuffle data: it writes to
// the local store and reads each map output from the executor holding it.
type taskShuffle struct {
	store     *ShuffleStore
	job       string
	self      string
	locations map[int64][]string
	nonEmpty  map[int64][][]byte // per shuffle, per map output: reduce partitions with rows (nil: unknown)
	pool      *Pool
}

func (t *taskShuffle) PutMapOutput(shuffle int64, mapPart int, blocks []arrow.Record) error {
	return t.store.Write(t.job, shuffle, mapPart, blocks)
}

func (t *taskShuffle) Fetch(ctx context.Context, shuffle int64, numMaps, reducePart int, yield func(arrow.Record) error) error {
	locs, nonEmpty := t.locations[shuffle], t.nonEmpty[shuffle]
	for m := 0; m < numMaps; m++ {
		failed := func(reason string) error {
			return &rdd.FetchFailedError{ShuffleID: shuffle, MapPart: m, Reason: reason}
		}
		if m < len(nonEmpty) && !hasBit(nonEmpty[m], reducePart) {
			continue // the map task reported no rows for this block
		}
		if m >= len(locs) || locs[m] == "" {
			return failed("no executor holds it")
		}
		var b []byte
		var err error
		if locs[m] == t.self {
			b, err = t.store.Read(t.job, shuffle, m, reducePart)
		} else {
			b, err = t.fetchRemote(ctx, locs[m], shuffle, m, reducePart)
		}
		if err != nil {
			return failed(fmt.Sprintf("from %s: %v", locs[m], err))
		}
		if len(b) == 0 {
			if m < len(nonEmpty) && reducePart >= 0 && reducePart/8 < len(nonEmpty[m]) {
				// Its map task reported rows for this block (the bit is
				// known and set, or the block was skipped above): no data
				// is a lost output, not an empty one.
				return failed(fmt.Sprintf("from %s: no data for a block its map task reported rows in", locs[m]))
			}
			continue
		}
		rec, err := DecodeIPC(b, t.store.mem)
		if err != nil {
			return failed(err.Error())
		}
		if err := yieldRelease(rec, yield); err != nil {
			return err
		}
	}
	return nil
}

// idleErr names the idle bound when it is what ended a fetch.
func idleErr(ctx context.Context, err error) error {
	if errors.Is(context.Cause(ctx), errFetchIdle) {
		return fmt.Errorf("%w for %v (executor frozen or unreachable?)", errFetchIdle, fetchIdle)
	}
	return err
}

// yieldRelease passes rec to yield and releases it, even if yield panics.
func yieldRelease(rec arrow.Record, yield func(arrow.Record) error) error {
	defer rec.Release()
	return yield(rec)
}

func (t *taskShuffle) fetchRemote(ctx context.Context, addr string, shuffle int64, m, r int) ([]byte, error) {
	conn, err := t.pool.Conn(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	idle := time.AfterFunc(fetchIdle, func() { cancel(errFetchIdle) })
	defer idle.Stop()
	stream, err := sluicev1.NewShuffleClient(conn).FetchBlock(ctx, &sluicev1.FetchBlockRequest{
		JobId: t.job, ShuffleId: shuffle, MapPartition: int32(m), ReducePartition: int32(r),
	})
	if err != nil {
		return nil, idleErr(ctx, err)
	}
	var buf bytes.Buffer
	for {
		c, err := stream.Recv()
		idle.Reset(fetchIdle)
		if err == io.EOF {
			return buf.Bytes(), nil
		}
		if err != nil {
			return nil, idleErr(ctx, err)
		}
		if buf.Len()+len(c.GetData()) > maxBlockBytes {
			return nil, fmt.Errorf("shuffle block larger than %d bytes", maxBlockBytes)
		}
		buf.Write(c.GetData())
	}
}
