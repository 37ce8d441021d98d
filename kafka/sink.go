package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/sluicehq/sluice/dstream"
)

// Headers the sink adds to every message, so that consumers can
// de-duplicate the messages a retried task writes again.
const (
	// HeaderBatchTime holds the batch time in Unix milliseconds, decimal.
	HeaderBatchTime = "sluice-batch-time"
	// HeaderPartition holds the index of the stream partition that wrote
	// the message, decimal.
	HeaderPartition = "sluice-partition"
)

// Encoder turns a value into message bytes.
type Encoder[V any] func(v V) ([]byte, error)

// BytesEncoder writes byte slices as they are.
func BytesEncoder() Encoder[[]byte] { return func(b []byte) ([]byte, error) { return b, nil } }

// StringEncoder writes strings.
func StringEncoder() Encoder[string] { return func(s string) ([]byte, error) { return []byte(s), nil } }

// JSONEncoder writes values as JSON.
func JSONEncoder[V any]() Encoder[V] { return func(v V) ([]byte, error) { return json.Marshal(v) } }

// Int64Encoder writes integers in decimal.
func Int64Encoder() Encoder[int64] {
	return func(v int64) ([]byte, error) { return strconv.AppendInt(nil, v, 10), nil }
}

// SinkConfig configures a Kafka sink. Zero values mean defaults.
type SinkConfig struct {
	// Brokers are the bootstrap brokers, host:port; required.
	Brokers []string
	// Topic is the topic written to; required.
	Topic string
	// BatchSize is the number of messages sent per produce request and
	// partition. Default 10,000.
	BatchSize int
	// WriteTimeout bounds writing one partition's messages. Default 30s.
	WriteTimeout time.Duration
}

func (c *SinkConfig) validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("kafka: SinkConfig.Brokers is empty: give at least one broker as host:port")
	}
	if c.Topic == "" {
		return errors.New("kafka: SinkConfig.Topic is empty: name the topic to write to")
	}
	if c.BatchSize < 0 {
		return fmt.Errorf("kafka: SinkConfig.BatchSize %d: must be >= 0 (0 means 10,000)", c.BatchSize)
	}
	if c.BatchSize == 0 {
		c.BatchSize = 10_000
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 30 * time.Second
	}
	return nil
}

// Write writes every element of s as a message without a key (spread over
// the topic's partitions at random). See the package documentation for
// the delivery guarantee.
func Write[V any](s *dstream.DStream[V], cfg SinkConfig, value Encoder[V]) error {
	if value == nil {
		return errors.New("kafka: Write: value encoder is nil")
	}
	return write(s, cfg, func(v V) (k, b []byte, err error) {
		b, err = value(v)
		return nil, b, err
	})
}

// WriteKV writes every pair of s as a message with that key and value;
// messages with the same key go to the same partition, the one the Java
// client's default partitioner (murmur2) picks.
func WriteKV[K comparable, V any](s *dstream.DStream[dstream.KV[K, V]], cfg SinkConfig, key Encoder[K], value Encoder[V]) error {
	if key == nil || value == nil {
		return errors.New("kafka: WriteKV: key or value encoder is nil")
	}
	return write(s, cfg, func(kv dstream.KV[K, V]) (k, b []byte, err error) {
		if k, err = key(kv.Key); err != nil {
			return nil, nil, err
		}
		b, err = value(kv.Value)
		return k, b, err
	})
}

// sinkWriter buffers one partition's messages and sends them in batches.
type sinkWriter struct {
	w       *kafkago.Writer
	buf     []kafkago.Message
	headers []Header
	ctx     context.Context
	cancel  context.CancelFunc
}

func (sw *sinkWriter) flush() error {
	if len(sw.buf) == 0 {
		return nil
	}
	err := sw.w.WriteMessages(sw.ctx, sw.buf...)
	sw.buf = sw.buf[:0]
	return err
}

func write[T any](s *dstream.DStream[T], cfg SinkConfig, encode func(T) (k, v []byte, err error)) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	// One transport per sink and process: connections are kept between
	// tasks and batches.
	transport := &kafkago.Transport{}
	dstream.ForeachPartition(s, dstream.Sink[T, *sinkWriter]{
		Open: func(p dstream.PartitionInfo) (*sinkWriter, error) {
			ctx, cancel := context.WithTimeout(context.Background(), cfg.WriteTimeout)
			return &sinkWriter{
				w: &kafkago.Writer{
					Addr:         kafkago.TCP(cfg.Brokers...),
					Topic:        cfg.Topic,
					Balancer:     kafkago.Murmur2Balancer{}, // the Java client's partitioner; nil keys: random
					RequiredAcks: kafkago.RequireAll,
					BatchSize:    cfg.BatchSize,
					BatchBytes:   64 << 20,
					BatchTimeout: time.Millisecond,
					Transport:    transport,
				},
				headers: []Header{
					{Key: HeaderBatchTime, Value: strconv.AppendInt(nil, p.BatchTime.UnixMilli(), 10)},
					{Key: HeaderPartition, Value: strconv.AppendInt(nil, int64(p.Partition), 10)},
				},
				ctx:    ctx,
				cancel: cancel,
			}, nil
		},
		Write: func(sw *sinkWriter, v T) error {
			k, b, err := encode(v)
			if err != nil {
				return fmt.Errorf("kafka sink %s: encode: %w", cfg.Topic, err)
			}
			sw.buf = append(sw.buf, kafkago.Message{Key: k, Value: b, Headers: sw.headers})
			if len(sw.buf) >= cfg.BatchSize {
				if err := sw.flush(); err != nil {
					return fmt.Errorf("kafka sink %s: %w", cfg.Topic, err)
				}
			}
			return nil
		},
		Close: func(sw *sinkWriter, werr error) error {
			defer sw.cancel()
			var err error
			if werr == nil {
				if err = sw.flush(); err != nil {
					err = fmt.Errorf("kafka sink %s: %w", cfg.Topic, err)
				}
			}
			return errors.Join(err, sw.w.Close())
		},
	})
	return nil
}
