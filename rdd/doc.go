// Package rdd holds one batch's dataset: a resilient distributed dataset
// (RDD) in the sense of Spark, with its data in Apache Arrow columns.
//
// An RDD[T] is a typed handle over a Node of the lineage DAG. Its partitions
// are computed by pushing values through nested functions: a narrow operator
// (Map, Filter, FlatMap, FlatMapEmit, MapPartitions, Union, MapValues) wraps
// its parent, so a chain of them runs inside one task without materialising
// anything in between. A shuffle operator (CombineByKey and the operators
// built on it: ReduceByKey, GroupByKey, CoGroup; and Repartition) cuts the
// lineage: its map side combines values per key (map-side combine), routes
// each key by a hash that is the same in every process, and writes one Arrow
// block per reduce partition through a ShuffleService; its reduce side
// fetches and merges them.
//
// Values cross stage boundaries as one-column Arrow records, encoded by a
// Codec[T]: native codecs exist for Go's basic types, KV, Pair, Option and
// slices of those; other types use a JSON fallback unless a codec is
// registered with RegisterCodec. Decoding is a per-batch closure, so the
// per-record path has no reflection.
//
// Every RDD is deterministic given its inputs: a partition computed twice
// holds the same values in the same order, so the scheduler can recompute
// any lost partition from its lineage.
package rdd
