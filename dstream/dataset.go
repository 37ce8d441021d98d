package dstream

import (
	"fmt"
	"time"

	"github.com/sluicehq/sluice/rdd"
)

// Dataset is static data a job joins its streams with (a lookup table, a
// blocklist): Spark's sc.parallelize and sc.textFile. It lives in the
// memory of every process of the job, which builds it when main defines
// the graph (in a cluster, on the executors too: a file read by TextFile
// must be readable there).
//
// Use Stream to join or cogroup a stream with it, or RDD inside Transform:
//
//	users := dstream.Parallelize(ctx, []dstream.KV[string, string]{dstream.KVOf("u1", "Ann")})
//	named := dstream.Join(clicks, users.Stream())
type Dataset[T any] struct {
	ctx   *Context
	op    string
	site  string
	vals  []T
	parts int
}

// Parallelize makes a Dataset of vals, split into Config.Parallelism
// partitions (or Partitions(n)). vals must not change afterwards.
func Parallelize[T any](ctx *Context, vals []T, opts ...ShuffleOption) *Dataset[T] {
	return &Dataset[T]{ctx: ctx, op: "parallelize", site: callSite(), vals: vals, parts: numParts(ctx, opts)}
}

// TextFile makes a Dataset of the lines of a text file (without their line
// ends), read now. Lines are limited to DefaultMaxLineBytes; a longer line
// is an error.
func TextFile(ctx *Context, path string, opts ...ShuffleOption) (*Dataset[string], error) {
	var lines []string
	long, err := readLines(path, DefaultMaxLineBytes, func(s string) { lines = append(lines, s) })
	if err != nil {
		return nil, fmt.Errorf("dstream: TextFile: %w", err)
	}
	if long > 0 {
		return nil, fmt.Errorf("dstream: TextFile %s: %d lines longer than %d bytes", path, long, DefaultMaxLineBytes)
	}
	return &Dataset[string]{ctx: ctx, op: "textFile", site: callSite(), vals: lines, parts: numParts(ctx, opts)}, nil
}

// Len returns the number of elements.
func (d *Dataset[T]) Len() int { return len(d.vals) }

// RDD returns the dataset as an RDD, for Transform and TransformWith
// functions (each call makes a new lineage node over the same data):
//
//	dstream.Transform(pairs, func(_ time.Time, r *rdd.RDD[dstream.KV[string, int]]) *rdd.RDD[dstream.KV[string, dstream.Pair[int, string]]] {
//		return rdd.Join(r, users.RDD(), r.NumPartitions())
//	})
func (d *Dataset[T]) RDD() *rdd.RDD[T] {
	r := rdd.Parallelize(d.op, d.vals, d.parts)
	r.Node().Site = d.site
	return r
}

// Stream returns a stream that holds the whole dataset at every batch. It
// joins, cogroups and unites with a stream of any slide interval (a
// window's too). Define it before the context starts, like any stream.
func (d *Dataset[T]) Stream() *DStream[T] {
	s := newStream(d.ctx, d.op, d.ctx.cfg.BatchInterval, nil, func(time.Time) (*rdd.RDD[T], error) {
		return d.RDD(), nil
	})
	s.b.static = true
	return s
}
