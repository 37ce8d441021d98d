package rdd

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/memory"
)

// Node is the untyped vertex of a lineage DAG: what the scheduler sees of an
// RDD. Typed operators build it; the scheduler cuts stages at its shuffle
// dependencies.
type Node struct {
	ID    int64
	Op    string // operator kind and, for stateful operators, the user's name
	Site  string // file:line of the user code that created it
	Parts int    // number of partitions
	Deps  []Dep

	// Cached nodes keep their computed partitions in the task context's
	// BlockStore; a later job reads them instead of recomputing the lineage.
	Cached bool
	// State names the operator state the node's tasks read and write, kept
	// by partition in the process that runs them: in a cluster, partition p
	// of such a node always runs on the same executor.
	State string
}

// Dep is a dependency of a node on a parent. Narrow dependencies (Shuffle ==
// nil) are pipelined into the child's task; shuffle dependencies cut a stage.
type Dep struct {
	Parent  *Node
	Shuffle *ShuffleDep
}

// ShuffleDep is the map side of a shuffle: the parent's partitions are
// written as one block per reduce partition by WriteMap.
type ShuffleDep struct {
	ID        int64
	Parent    *Node
	Child     *Node // the node that reads the shuffle (its map side runs in Parent's stage)
	NumReduce int
	// WriteMap computes map partition mapPart of Parent and stores its blocks
	// with tc.Shuffle.
	WriteMap func(tc *TaskContext, mapPart int) error
}

// String names the node for errors and logs: "map@job.go:12".
func (n *Node) String() string {
	if n.Site == "" {
		return n.Op
	}
	return n.Op + "@" + n.Site
}

var nextID atomic.Int64

func newID() int64 { return nextID.Add(1) }

// RDD is one batch's partitioned dataset of T plus its lineage. It is
// immutable and deterministic given its inputs: computing a partition twice
// yields the same multiset of values, so a lost partition is recomputed.
type RDD[T any] struct {
	node  *Node
	codec Codec[T]
	iter  func(tc *TaskContext, part int, yield func(T) bool) error
	// emit, if set, computes partition part like iter, but calls emit
	// with every value and stops soon after *stop becomes true (emit must
	// ignore the values it gets after it set *stop). FlatMapEmit and Map
	// over such an RDD set it, composing their function with the consumer's
	// instead of wrapping it in a yield: a FlatMapEmit, a Map and the
	// consumer cost two calls per value instead of three. See push.
	emit func(tc *TaskContext, part int, stop *bool, emit func(T)) error
}

// Node returns the RDD's lineage vertex.
func (r *RDD[T]) Node() *Node { return r.node }

// NumPartitions returns the number of partitions.
func (r *RDD[T]) NumPartitions() int { return r.node.Parts }

// Codec returns the codec of the RDD's element type.
func (r *RDD[T]) Codec() Codec[T] { return r.codec }

// Iterate pushes the values of one partition to yield, computing it from its
// lineage (or reading it from the cache). It is what tasks call.
func (r *RDD[T]) Iterate(tc *TaskContext, part int, yield func(T) bool) error {
	if part < 0 || part >= r.node.Parts {
		return fmt.Errorf("rdd: %s: partition %d out of range [0,%d)", r.node, part, r.node.Parts)
	}
	if r.node.Cached && tc.Blocks != nil {
		return r.iterateCached(tc, part, yield)
	}
	return r.iter(tc, part, yield)
}

// Persist marks the RDD to be kept once computed: later jobs over it, in this
// batch or later ones (windows, state), read the stored partitions.
func (r *RDD[T]) Persist() *RDD[T] {
	r.node.Cached = true
	return r
}

// push is Iterate for consumers that never stop early or keep their own
// stop flag: it computes partition part calling f with every value, until
// *stop becomes true (f ignores the values it gets after it set *stop).
// It uses r.emit when r has one and is not read from or written to the
// cache.
func (r *RDD[T]) push(tc *TaskContext, part int, stop *bool, f func(T)) error {
	if r.emit == nil || part < 0 || part >= r.node.Parts || (r.node.Cached && tc.Blocks != nil) {
		return r.Iterate(tc, part, func(v T) bool { f(v); return !*stop })
	}
	return r.emit(tc, part, stop, f)
}

func (r *RDD[T]) iterateCached(tc *TaskContext, part int, yield func(T) bool) error {
	rec, ok := tc.Blocks.Get(r.node.ID, part)
	if !ok && tc.Required != nil && tc.Required(r.node.ID, part) {
		return &CacheMissError{NodeID: r.node.ID, Part: part, Op: r.node.String()}
	}
	if !ok {
		b := NewBuilder(tc.Alloc, r.codec)
		defer b.Release()
		err := r.iter(tc, part, func(v T) bool { b.Append(v); return true })
		if err != nil {
			return err
		}
		rec = b.NewRecord()
		tc.Blocks.Put(r.node.ID, part, rec) // the store keeps its own reference
		tc.CachedPuts = append(tc.CachedPuts, BlockRef{Node: r.node.ID, Part: part})
	}
	defer rec.Release()
	ForEach(r.codec, rec, yield)
	return nil
}

// TaskContext is what a running task sees: where to allocate, where shuffle
// blocks and cached partitions live, and which operator is running (so a
// panic can be attributed to it).
type TaskContext struct {
	Ctx       context.Context
	Alloc     memory.Allocator
	Shuffle   ShuffleService
	Blocks    BlockStore
	BatchTime time.Time
	StageID   int
	Partition int
	Attempt   int

	RecordsRead int64 // records read from sources, caches and shuffles

	// Reports are small figures an operator sends to the driver with the
	// task's result (an event-time operator's newest timestamp), by key.
	Reports map[string][]byte

	// CachedPuts lists the cached partitions this task computed and stored
	// in Blocks: in a cluster the driver registers them where the task ran.
	CachedPuts []BlockRef
	// Required, if set, names the cached partitions the scheduler planned
	// this task to read from Blocks instead of computing their lineage
	// (whose shuffle inputs may be gone): a miss of one of them fails the
	// task with a *CacheMissError instead of computing it.
	Required func(node int64, part int) bool

	// cur is the ID of the operator whose user function ran last (0:
	// none). Operators set it for every record, so it is an ID, not a
	// *Node: a plain store, with no GC write barrier on the per-record
	// path (measured: about 5% of WordCount's map side).
	cur int64
}

// CurrentID returns the ID of the operator whose user function ran last,
// the one to blame for a panic (0: none yet). The task's runner finds the
// node in its stage's lineage (scheduler.RunTask).
func (tc *TaskContext) CurrentID() int64 { return tc.cur }

// Report sends value to the driver under key with the task's result; a
// later Report of the same key replaces it. Reports of failed attempts are
// dropped.
func (tc *TaskContext) Report(key string, value []byte) {
	if tc.Reports == nil {
		tc.Reports = map[string][]byte{}
	}
	tc.Reports[key] = value
}

// SetCurrent records that n's user function is about to run.
func (tc *TaskContext) SetCurrent(n *Node) { tc.cur = n.ID }

// ShuffleService stores and serves shuffle blocks. Locally it is memory; in
// a cluster, each executor's disk plus a fetch service.
type ShuffleService interface {
	// PutMapOutput stores the blocks of one map task, one per reduce
	// partition (nil for an empty one), replacing any earlier attempt's. It
	// takes ownership of the records.
	PutMapOutput(shuffleID int64, mapPart int, blocks []arrow.Record) error
	// Fetch passes reduce partition reducePart of every map output to yield,
	// which must not keep the record past its return. A missing map output
	// is reported as a *FetchFailedError.
	Fetch(ctx context.Context, shuffleID int64, numMaps, reducePart int, yield func(arrow.Record) error) error
}

// BlockStore keeps the partitions of cached RDDs.
type BlockStore interface {
	// Get returns a retained record, which the caller releases.
	Get(nodeID int64, part int) (arrow.Record, bool)
	// Put stores rec, retaining it; a later Put of the same block wins.
	Put(nodeID int64, part int, rec arrow.Record)
}

// BlockRef names one partition of a cached node.
type BlockRef struct {
	Node int64
	Part int
}

// CacheMissError reports that a cached partition the scheduler planned a
// task to read is not in its executor's block store. The scheduler forgets
// that the executor holds it and plans its lineage instead.
type CacheMissError struct {
	NodeID int64
	Part   int
	Op     string
}

func (e *CacheMissError) Error() string {
	return fmt.Sprintf("rdd: cached partition %d of %s is not in this executor's block store", e.Part, e.Op)
}

// FetchFailedError reports that a shuffle map output is gone (its executor
// was lost). The scheduler resubmits the stage that produced it.
type FetchFailedError struct {
	ShuffleID int64
	MapPart   int
	Reason    string
}

func (e *FetchFailedError) Error() string {
	return fmt.Sprintf("rdd: fetch shuffle %d map output %d: %s", e.ShuffleID, e.MapPart, e.Reason)
}

// IsFetchFailed reports whether err is (or wraps) a FetchFailedError.
func IsFetchFailed(err error) (*FetchFailedError, bool) {
	var ff *FetchFailedError
	ok := errors.As(err, &ff)
	return ff, ok
}

// CallSite returns the file:line of the first caller outside Sluice's API
// packages (rdd and dstream; their tests count as user code), so that an
// operator can be found in the user's code. It returns "" when there is none.
func CallSite() string {
	var pcs [24]uintptr
	n := runtime.Callers(2, pcs[:])
	for _, pc := range pcs[:n] {
		if site, ok := siteCache.Load(pc); ok {
			if site != "" {
				return site.(string)
			}
			continue
		}
		site := userSiteAt(pc)
		siteCache.Store(pc, site)
		if site != "" {
			return site
		}
	}
	return ""
}

// siteCache maps a return PC to userSiteAt's answer for it. Every RDD node
// and every DStream operator names its site, and nodes are made anew for
// each batch (in the driver and in every executor process): symbolizing
// the stack each time cost more than the rest of an empty batch in local
// mode. The PCs are those of code that builds graphs, so the map stays
// small.
var siteCache sync.Map

// userSiteAt returns "file:line" of the first frame at return PC pc (with
// the calls inlined there) that is outside Sluice's API packages, or "" if
// every one is inside.
func userSiteAt(pc uintptr) string {
	frames := runtime.CallersFrames([]uintptr{pc})
	for {
		f, more := frames.Next()
		inAPI := strings.HasPrefix(f.Function, "github.com/sluicehq/sluice/rdd.") ||
			strings.HasPrefix(f.Function, "github.com/sluicehq/sluice/dstream.") ||
			strings.HasPrefix(f.Function, "github.com/sluicehq/sluice/kafka.")
		if !inAPI || strings.HasSuffix(f.File, "_test.go") {
			file := f.File
			if i := strings.LastIndexByte(file, '/'); i >= 0 {
				file = file[i+1:]
			}
			return fmt.Sprintf("%s:%d", file, f.Line)
		}
		if !more {
			return ""
		}
	}
}

func newNode(op string, parts int, deps ...Dep) *Node {
	return &Node{ID: newID(), Op: op, Site: CallSite(), Parts: parts, Deps: deps}
}

// Seq returns the values of one partition as an iterator, for use inside
// mapPartitions-style functions. Errors end the sequence and are stored in *errp.
func (r *RDD[T]) Seq(tc *TaskContext, part int, errp *error) iter.Seq[T] {
	return func(yield func(T) bool) {
		if err := r.Iterate(tc, part, yield); err != nil && *errp == nil {
			*errp = err
		}
	}
}
