package dstream

import (
	"fmt"
	"sync"

	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/sluicehq/sluice/internal/cluster"
	"github.com/sluicehq/sluice/rdd"
)

// Broadcast is a read-only value computed once, on the driver, and read by
// tasks with Value (Spark's broadcast variables): a lookup table loaded
// from a database, a model read from a file.
//
//	geo, err := dstream.NewBroadcast(ctx, "geo", func() (map[string]string, error) { return loadGeo(*geoFile) })
//	if err != nil {
//		return err
//	}
//	countries := dstream.Map(ips, func(ip string) string { return geo.Value()[ip] })
//
// The compute function runs in the driver process only. Executor
// processes (which run the job's main to build the same graph) do not run
// it: they get the value, encoded with its codec (rdd.CodecOf), from the
// driver the first time a task reads it (JobDriver.FetchBroadcast).
type Broadcast[T any] struct {
	name    string
	reg     *broadcastRegistry
	compute func() (T, error)

	mu     sync.Mutex
	loaded bool
	val    T
}

// broadcastRegistry holds a context's broadcast values: encoded, by name,
// in the driver; and, in an executor, the function that fetches them.
type broadcastRegistry struct {
	mu     sync.Mutex
	values map[string][]byte
	fetch  func(name string) ([]byte, error)
}

var broadcasts sync.Map // *Context -> *broadcastRegistry

func (c *Context) broadcasts() *broadcastRegistry {
	r, _ := broadcasts.LoadOrStore(c, &broadcastRegistry{values: map[string][]byte{}})
	return r.(*broadcastRegistry)
}

// processRole returns the cluster role of this process ("" in local mode).
var processRole = func() string { return cluster.EnvFromOS().Role }

// broadcastBytes returns a broadcast value as the driver encoded it: what
// the cluster runtime serves to executors.
func (c *Context) broadcastBytes(name string) ([]byte, error) {
	r := c.broadcasts()
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.values[name]
	if !ok {
		return nil, fmt.Errorf("dstream: no broadcast value named %s in this job", cluster.Quote(name))
	}
	return b, nil
}

// setBroadcastFetcher sets, in an executor process, how broadcast values
// are fetched from the driver (by name, returning broadcastBytes there).
// The cluster runtime calls it before tasks run.
func (c *Context) setBroadcastFetcher(f func(name string) ([]byte, error)) {
	r := c.broadcasts()
	r.mu.Lock()
	r.fetch = f
	r.mu.Unlock()
}

// NewBroadcast makes a broadcast value named name (unique in the job, and
// the same in every process). In the driver (and in local mode) compute
// runs now, and its error is returned; in an executor it does not run.
func NewBroadcast[T any](ctx *Context, name string, compute func() (T, error)) (*Broadcast[T], error) {
	if name == "" {
		return nil, fmt.Errorf("dstream: NewBroadcast: a name is needed: executors fetch the value by it")
	}
	if compute == nil {
		return nil, fmt.Errorf("dstream: NewBroadcast %q: the compute function is nil", name)
	}
	b := &Broadcast[T]{name: name, reg: ctx.broadcasts(), compute: compute}
	b.reg.mu.Lock()
	_, dup := b.reg.values[name]
	b.reg.mu.Unlock()
	if dup {
		return nil, fmt.Errorf("dstream: NewBroadcast: the name %q is used twice; names must be unique in a job", name)
	}
	if processRole() == roleExecutor {
		return b, nil
	}
	v, err := compute()
	if err != nil {
		return nil, fmt.Errorf("dstream: broadcast %q: %w", name, err)
	}
	enc, err := encodeValue(v)
	if err != nil {
		return nil, fmt.Errorf("dstream: broadcast %q: %w", name, err)
	}
	b.val, b.loaded = v, true
	b.reg.mu.Lock()
	b.reg.values[name] = enc
	b.reg.mu.Unlock()
	return b, nil
}

// Name returns the broadcast's name.
func (b *Broadcast[T]) Name() string { return b.name }

// Value returns the value. In an executor the first call fetches it; if
// that fails, Value panics, which fails the task with the reason.
func (b *Broadcast[T]) Value() T {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.loaded {
		return b.val
	}
	b.reg.mu.Lock()
	fetch := b.reg.fetch
	b.reg.mu.Unlock()
	var v T
	if fetch == nil {
		var err error
		if v, err = b.compute(); err != nil {
			panic(fmt.Sprintf("dstream: broadcast %q: %v", b.name, err))
		}
	} else {
		enc, err := fetch(b.name)
		if err == nil {
			v, err = decodeValue[T](enc)
		}
		if err != nil {
			panic(fmt.Sprintf("dstream: broadcast %q: fetch from the driver: %v", b.name, err))
		}
	}
	b.val, b.loaded = v, true
	return v
}

// encodeValue encodes one value with its codec as an Arrow IPC stream.
func encodeValue[T any](v T) ([]byte, error) {
	mem := memory.NewGoAllocator()
	rec := rdd.Encode(mem, rdd.CodecOf[T](), []T{v})
	defer rec.Release()
	return cluster.EncodeIPC(rec, mem)
}

func decodeValue[T any](b []byte) (T, error) {
	var zero T
	rec, err := cluster.DecodeIPC(b, memory.NewGoAllocator())
	if err != nil {
		return zero, err
	}
	defer rec.Release()
	vals := rdd.Decode(rdd.CodecOf[T](), rec)
	if len(vals) != 1 {
		return zero, fmt.Errorf("%d values encoded, want 1", len(vals))
	}
	return rdd.Clone(vals[0]), nil
}
