// Package dstream is Sluice's user API: discretized streams in the Spark
// Streaming model, typed with generics.
//
// A job is an ordinary Go program. It makes a Context with a batch
// interval, defines sources, transformations and outputs, and calls Main:
//
//	func main() {
//		ctx, err := dstream.New(dstream.Config{AppName: "wordcount", BatchInterval: time.Second})
//		if err != nil {
//			log.Fatal(err)
//		}
//		lines := dstream.SocketTextStream(ctx, "localhost:9999")
//		words := dstream.FlatMap(lines, strings.Fields)
//		pairs := dstream.Map(words, func(w string) dstream.KV[string, int64] {
//			return dstream.KV[string, int64]{Key: w, Value: 1}
//		})
//		counts := dstream.ReduceByKey(pairs, func(a, b int64) int64 { return a + b })
//		dstream.Print(counts, 10)
//		dstream.Main(ctx) // --master local[N], --log-level, --log-format; runs until SIGTERM
//	}
//
// Every batch interval (at multiples of it) the context cuts each source's
// input, builds one RDD per stream for the batch (package rdd) and runs one
// job per output operation, in the order the outputs were defined, through
// the scheduler (package scheduler). Each batch logs one line with its input
// records, scheduling delay, processing time and total delay.
//
// Operators are functions, not methods, because Go methods cannot take type
// parameters: dstream.Map(s, f), not s.Map(f). Functions passed to operators
// run on executor slots, concurrently, possibly more than once for the same
// data (task retries): they must be safe for concurrent use and free of side
// effects other than through outputs. Reduce functions must be associative
// and commutative.
//
// # Sources
//
// Rate (a generated sequence, for demos and benchmarks), NewQueue (in-memory
// batches, for tests), SocketTextStream (lines from a TCP server) and
// TextFileStream (new files of a directory, each in exactly one batch).
//
// # Windows
//
// Window, CountByWindow, ReduceByWindow, ReduceByKeyAndWindow,
// ReduceByKeyAndWindowInv (incremental, with an inverse function),
// CountByValueAndWindow and GroupByKeyAndWindow group batches by arrival:
// window and slide lengths must be multiples of the batch interval, which
// Start checks.
//
// # State
//
// UpdateStateByKey and MapWithState keep state per key across batches;
// ReduceByKeyAndWindowInv and ReduceByKeyAndEventWindow keep state too.
// Stateful operators take a name that must be unique and stable: state is
// stored (and will be checkpointed) under it. State is split into the same
// partitions as the operator's input shuffle and committed only when every
// output of the batch succeeded, so retried tasks never apply a batch twice.
//
// # Event time
//
// ReduceByKeyAndEventWindow windows records by a timestamp taken from each
// record, with a watermark (the newest timestamp seen minus an allowed
// lateness): see EventTimeSpec for the exact output semantics.
//
// # Testing jobs
//
// Package dstreamtest runs a job in-process over given input batches and
// returns each output's elements per batch.
package dstream
