// Command truthjob is the e2e job of cluster-mode truth tests (issue 4/11):
// outputs that run only in the driver, windows over input received by the
// driver, and a task that kills its executor process.
//
//	--mode=outputs  rate source: counts per key saved with SaveAsTextFiles
//	                under --out, and a ForeachRDD running two jobs per batch
//	                (CountRDD, then Collect), which also appends its pid to
//	                --marker (the body must run only in the driver).
//	--mode=window   dir source (--dir) or socket (--socket): per batch
//	                "batch T: input N", and a
//	                4 s window sliding every 2 s, "window T: total N".
//	--mode=crash    a map function that exits the executor's job process.
//	--mode=cachewindow  rate source, counts per key over a 2-batch window
//	                (ReduceByKeyAndWindow: per-batch results persisted and
//	                re-read), "batch T: total N" per slide. --interval=D sets
//	                the batch interval (read before the flags are parsed).
//	--mode=kafkawindow  Kafka lines from --brokers (topic lines, earliest):
//	                per batch "batch T: input N" (words), and the words of a
//	                4-batch window sliding every 2 batches, per key, as
//	                "window T: total N" (ReduceByKeyAndWindow).
//	--mode=seq      lines "KEY SEQ" from --dir (files there at start
//	                included) or from Kafka --brokers (topic seq, earliest,
//	                --rate records per second per partition at most): the
//	                checkpoint fault job of internal/seqjob (committing
//	                sinks of the lines and of UpdateStateByKey state under
//	                --out). Run it with --checkpoint.
package main

import (
	"errors"
	"fmt"
	"log"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/internal/seqjob"
	"github.com/sluicehq/sluice/internal/wordgen"
	"github.com/sluicehq/sluice/kafka"
	"github.com/sluicehq/sluice/rdd"
)

type kv = dstream.KV[string, int64]

func main() {
	interval := time.Second
	for _, a := range os.Args[1:] {
		if v, ok := strings.CutPrefix(a, "--interval="); ok {
			if d, err := time.ParseDuration(v); err == nil {
				interval = d
			}
		}
	}
	ctx, err := dstream.New(dstream.Config{AppName: "truthjob", BatchInterval: interval, StopTimeout: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	fl := ctx.Flags()
	mode := fl.String("mode", "outputs", "outputs, window or crash")
	rate := fl.Int64("rate", 1000, "records per second (outputs, crash)")
	out := fl.String("out", "", "SaveAsTextFiles prefix (outputs)")
	marker := fl.String("marker", "", "file the ForeachRDD body appends its pid to (outputs)")
	dir := fl.String("dir", "", "input directory (window)")
	fl.Duration("interval", time.Second, "batch interval")
	keys := fl.Int64("keys", 1000, "distinct keys (cachewindow)")
	brokers := fl.String("brokers", "", "Kafka brokers (kafkawindow)")
	socket := fl.String("socket", "", "read lines from this address instead of --dir (window)")
	if err := ctx.ParseFlags(os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, dstream.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "truthjob:", err)
		os.Exit(2)
	}
	sum := func(a, b int64) int64 { return a + b }
	switch *mode {
	case "outputs":
		// A broadcast value computed in the driver only (its pid), read by
		// every task, and an accumulator counting the records tasks saw.
		driverPID, err := dstream.NewBroadcast(ctx, "driver-pid", func() (int64, error) { return int64(os.Getpid()), nil })
		if err != nil {
			log.Fatal(err)
		}
		seen := dstream.NewAccumulator(ctx, "seen", dstream.Sum[int64])
		pairs := dstream.MapWithTask(dstream.Rate(ctx, *rate), func(task *dstream.Task, i int64) kv {
			seen.Add(task, 1)
			return kv{Key: fmt.Sprint("k", i%13), Value: 1}
		})
		pids := dstream.Map(dstream.Rate(ctx, 2), func(int64) int64 { return driverPID.Value() })
		dstream.ForeachRDD(pids, func(b *dstream.Batch, r *rdd.RDD[int64]) error {
			vs, err := dstream.Collect(b, r)
			if err != nil {
				return err
			}
			fmt.Printf("broadcast %s: tasks saw %v, driver is %d; accumulator %d\n", b.Time().UTC().Format(time.TimeOnly), vs, os.Getpid(), seen.Value())
			return nil
		})
		counts := dstream.ReduceByKey(pairs, sum)
		dstream.SaveAsTextFiles(dstream.Map(counts, func(e kv) string { return fmt.Sprintf("%s\t%d", e.Key, e.Value) }), *out, "")
		dstream.ForeachRDD(counts, func(b *dstream.Batch, r *rdd.RDD[kv]) error {
			if f, err := os.OpenFile(*marker, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
				fmt.Fprintf(f, "%d\n", os.Getpid())
				f.Close()
			}
			n, err := dstream.CountRDD(b, r)
			if err != nil {
				return err
			}
			all, err := dstream.Collect(b, r)
			if err != nil {
				return err
			}
			sort.Slice(all, func(i, j int) bool { return all[i].Key < all[j].Key })
			var sb strings.Builder
			var total int64
			for _, e := range all {
				fmt.Fprintf(&sb, " %s=%d", e.Key, e.Value)
				total += e.Value
			}
			fmt.Printf("batch %s: keys=%d total=%d%s\n", b.Time().UTC().Format(time.TimeOnly), n, total, sb.String())
			return nil
		})
	case "window":
		var lines *dstream.DStream[string]
		if *socket != "" {
			lines = dstream.SocketTextStream(ctx, *socket)
		} else {
			lines = dstream.TextFileStream(ctx, *dir)
		}
		dstream.ForeachRDD(dstream.Count(lines), func(b *dstream.Batch, r *rdd.RDD[int64]) error {
			n, err := dstream.Collect(b, r)
			if err != nil {
				return err
			}
			fmt.Printf("batch %s: input %d\n", b.Time().UTC().Format(time.TimeOnly), total(n))
			return nil
		})
		windowed := dstream.Count(dstream.Window(lines, 4*time.Second, 2*time.Second))
		dstream.ForeachRDD(windowed, func(b *dstream.Batch, r *rdd.RDD[int64]) error {
			n, err := dstream.Collect(b, r)
			if err != nil {
				return err
			}
			fmt.Printf("window %s: total %d\n", b.Time().UTC().Format(time.TimeOnly), total(n))
			return nil
		})
	case "crash":
		crashed := dstream.Map(dstream.Rate(ctx, *rate), func(i int64) int64 {
			if os.Getenv("SLUICE_ROLE") == "executor" {
				os.Exit(3) // as an out-of-memory kill would
			}
			return i
		})
		dstream.Print(crashed, 1)
	case "cachewindow":
		pairs := dstream.Map(dstream.Rate(ctx, *rate), func(i int64) kv { return kv{Key: fmt.Sprint("k", i%*keys), Value: 1} })
		counts := dstream.ReduceByKeyAndWindow(pairs, sum, 2*interval, interval)
		dstream.ForeachRDD(counts, func(b *dstream.Batch, r *rdd.RDD[kv]) error {
			all, err := dstream.Collect(b, r)
			if err != nil {
				return err
			}
			var n int64
			for _, e := range all {
				n += e.Value
			}
			fmt.Printf("batch %s: total %d\n", b.Time().UTC().Format("15:04:05.000"), n)
			return nil
		})
	case "kafkawindow":
		lines, err := kafka.NewValueStream(ctx, kafka.Config{Brokers: strings.Split(*brokers, ","), Topics: []string{"lines"},
			GroupID: "truthjob", Start: kafka.StartEarliest, MaxRatePerPartition: 2500}, kafka.String())
		if err != nil {
			log.Fatal(err)
		}
		pairs := dstream.FlatMapEmit(lines, func(line string, emit func(kv)) {
			wordgen.Fields(line, func(w string) { emit(kv{Key: w, Value: 1}) })
		})
		dstream.ForeachRDD(dstream.Count(pairs), func(b *dstream.Batch, r *rdd.RDD[int64]) error {
			n, err := dstream.Collect(b, r)
			if err != nil {
				return err
			}
			fmt.Printf("batch %s: input %d\n", b.Time().UTC().Format("15:04:05.000"), total(n))
			return nil
		})
		windowed := dstream.ReduceByKeyAndWindow(pairs, sum, 4*interval, 2*interval)
		dstream.ForeachRDD(windowed, func(b *dstream.Batch, r *rdd.RDD[kv]) error {
			all, err := dstream.Collect(b, r)
			if err != nil {
				return err
			}
			var n int64
			for _, e := range all {
				n += e.Value
			}
			fmt.Printf("window %s: total %d\n", b.Time().UTC().Format("15:04:05.000"), n)
			return nil
		})
	case "seq":
		var lines *dstream.DStream[string]
		if *brokers != "" {
			lines, err = kafka.NewValueStream(ctx, kafka.Config{Brokers: strings.Split(*brokers, ","), Topics: []string{"seq"},
				GroupID: "seqjob", Start: kafka.StartEarliest, MaxRatePerPartition: float64(*rate)}, kafka.String())
			if err != nil {
				log.Fatal(err)
			}
		} else {
			lines = dstream.TextFileStream(ctx, *dir, dstream.IncludeExisting())
		}
		seqjob.Build(lines, *out)
	default:
		fmt.Fprintf(os.Stderr, "truthjob: --mode=%q: use outputs, window, crash, cachewindow, kafkawindow or seq\n", *mode)
		os.Exit(2)
	}
	dstream.Main(ctx)
}

func total(vs []int64) int64 {
	var n int64
	for _, v := range vs {
		n += v
	}
	return n
}
