// Package kafka reads and writes Apache Kafka topics from Sluice jobs, in
// the model of Spark's direct Kafka stream.
//
// # Source
//
// NewDirectStream makes an input stream whose batches are offset ranges.
// At every batch the job's driver lists each topic-partition's offsets and
// plans one range per partition, from where the previous batch ended to
// the latest offset, bounded by the rate limit (see Config). One task per
// range reads exactly that range with per-partition fetches
// (github.com/segmentio/kafka-go Conn.ReadBatchWith, not kafka.Reader). In
// a cluster the executors read from the brokers themselves; only the
// ranges travel from the job's driver. A recomputed task reads the same
// records again, so every batch is deterministic and replayable.
// NewValueStream is the same stream of values only, read without a
// per-record allocation.
//
// After all of a batch's outputs succeed, its end offsets are committed to
// the consumer group (Config.GroupID), so kafka-consumer-groups and kcat
// show the job's progress. The offsets also appear on the batch log line
// ("offsets", with "lag": the records left for later batches, and "rate"
// under backpressure) and in dstream.BatchInfo.Inputs (as a BatchInput:
// per partition its offset range and the lag it left, which the web UI
// shows and /metrics exports as sluice_kafka_lag_records).
// With a checkpoint (--checkpoint) a restarted job does not start from the
// group's offsets: it replays the batches its write-ahead log holds with
// their recorded ranges and plans on right after the last one (see
// dstream.PlannedSource.Resume).
//
// Offsets deleted by retention before they were read (found when planning,
// or deleted between planning and the task's read) fail the batch with an
// error naming the topic, partition and lost range; with
// Config.OnLostOffsets = SkipLost the source skips forward, logs a warning
// and counts the lost records on the batch log line ("lost_records").
//
// A value the decoder cannot decode fails the task (and, after its
// retries, the batch) with a *DecodeError naming the topic, partition,
// offset and the decoder's error; with Config.OnUndecodable =
// SkipUndecodable such records are skipped, a warning is logged per range
// read and the batch log line counts them ("undecodable_records").
//
// # Sink
//
// Write and WriteKV write a stream to a topic with acknowledgement from all
// in-sync replicas. Every message carries the headers sluice-batch-time
// (the batch time in Unix milliseconds) and sluice-partition (the index of
// the stream partition that wrote it), so that consumers can de-duplicate.
// The sink is at-least-once: kafka-go has no idempotent or transactional
// producer, and a failed task is retried and writes its partition again.
// A write error fails the task; nothing is dropped.
package kafka
