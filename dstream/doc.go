// Package dstream is Sluice's user API: discretized streams in the Spark
// Streaming model, typed with generics.
//
// A job is an ordinary Go program. It declares its flags with the standard
// flag package and hands a Config and a build function to Run, which
// parses the command line (those flags plus --master, --log-level and
// --log-format), calls build to define sources, transformations and
// outputs, and runs the job until SIGINT or SIGTERM:
//
//	var addr = flag.String("addr", "localhost:9999", "text server to read")
//
//	func main() {
//		dstream.Run(dstream.Config{AppName: "wordcount", BatchInterval: time.Second}, func(ctx *dstream.Context) error {
//			lines := dstream.SocketTextStream(ctx, *addr)
//			words := dstream.FlatMap(lines, strings.Fields)
//			pairs := dstream.Map(words, func(w string) dstream.KV[string, int64] { return dstream.KVOf(w, int64(1)) })
//			dstream.Print(dstream.ReduceByKey(pairs, dstream.Sum[int64]), 10)
//			return nil
//		})
//	}
//
// --help prints the flags and exits 0; a malformed flag, or an error made
// with Usagef returned by build, exits 2. A job whose graph does not depend
// on flags can also build it in main and end with Main(ctx). Context.Stop
// stops a running job gracefully, like a signal.
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
// TextFileStream (new files of a directory, each read once by name).
//
// Static data (Spark's parallelize and textFile) is a Dataset: Parallelize
// or TextFile. Its Stream joins with a stream of any slide in one call,
// dstream.Join(pairs, table.Stream()); its RDD serves Transform functions,
// with rdd.Join and the outer joins.
//
// # Options
//
// Optional arguments come last. Every grouping and join (ReduceByKey,
// GroupByKey, CombineByKey, CountByValue, Join and the outer joins, CoGroup,
// the keyed windows) takes Partitions(n) for its shuffle's partition
// count; Window, CountByWindow and ReduceByWindow take an optional slide
// (default: the parent's, the batch interval for a source), and the keyed
// windows read a slide of 0 the same way; UpdateStateByKey takes
// WithInitialState; TextFileStream takes IncludeExisting and MaxLineBytes.
//
// # Accumulators and broadcast values
//
// NewAccumulator makes a typed value that tasks add to through their Task
// (MapWithTask, FlatMapWithTask, PartitionInfo.Task) and the driver reads
// with Value; a successful task's updates are merged once per operator
// partition and batch, however often it is retried or recomputed.
// NewBroadcast computes a value once on the driver for tasks to read.
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
