// Package devkafka runs a Kafka wire-protocol broker inside a process and
// feeds it the standard workload. It is for demos, tests and benchmarks
// only: the broker (github.com/twmb/franz-go/pkg/kfake) keeps every record
// in memory, has no replication and forgets everything when it stops.
package devkafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/internal/wordgen"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Broker is an in-process development broker listening on 127.0.0.1.
type Broker struct {
	c *kfake.Cluster
	// Addrs are the broker's listen addresses, host:port.
	Addrs []string
}

// Start starts a one-node broker on 127.0.0.1:port (0: any free port) with
// the given topics, each with the given number of partitions.
func Start(port int, partitions int32, topics ...string) (*Broker, error) {
	if partitions <= 0 {
		return nil, fmt.Errorf("devkafka: %d partitions: must be > 0", partitions)
	}
	c, err := kfake.NewCluster(kfake.Ports(port), kfake.SeedTopics(partitions, topics...))
	if err != nil {
		return nil, fmt.Errorf("devkafka: start broker on port %d: %w", port, err)
	}
	return &Broker{c: c, Addrs: c.ListenAddrs()}, nil
}

// StartOn is Start listening on host (e.g. "0.0.0.0" in a container) and
// telling clients to connect to advertise (e.g. the container's service
// name); an empty advertise is the listen host. Addrs are the advertised
// addresses.
func StartOn(host, advertise string, port int, partitions int32, topics ...string) (*Broker, error) {
	if partitions <= 0 {
		return nil, fmt.Errorf("devkafka: %d partitions: must be > 0", partitions)
	}
	if advertise == "" {
		advertise = host
	}
	listen := func(network, _ string) (net.Listener, error) {
		ln, err := net.Listen(network, net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return nil, err
		}
		_, p, _ := net.SplitHostPort(ln.Addr().String())
		return advertised{ln, advertise + ":" + p}, nil
	}
	c, err := kfake.NewCluster(kfake.Ports(port), kfake.ListenFn(listen), kfake.SeedTopics(partitions, topics...))
	if err != nil {
		return nil, fmt.Errorf("devkafka: start broker on %s: %w", net.JoinHostPort(host, strconv.Itoa(port)), err)
	}
	return &Broker{c: c, Addrs: c.ListenAddrs()}, nil
}

// advertised is a listener whose address is the one clients are told.
type advertised struct {
	net.Listener
	addr string
}

func (a advertised) Addr() net.Addr { return advertisedAddr(a.addr) }

type advertisedAddr string

func (a advertisedAddr) Network() string { return "tcp" }
func (a advertisedAddr) String() string  { return string(a) }

// Close stops the broker.
func (b *Broker) Close() { b.c.Close() }

// Generate produces lines of the standard workload (wordgen.LineAt from
// line first on) to topic, spread over its partitions, at linesPerSecond
// (0: as fast as the broker takes them), until ctx ends or total lines
// were produced (total <= 0: no limit). It returns the lines acknowledged.
func Generate(ctx context.Context, addrs []string, topic string, linesPerSecond int, first, total int64) (int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.ProducerLinger(5*time.Millisecond),
		kgo.MaxBufferedRecords(1<<20), kgo.ProducerBatchMaxBytes(1<<20))
	if err != nil {
		return 0, fmt.Errorf("devkafka: producer: %w", err)
	}
	defer cl.Close()
	vocab := wordgen.Vocabulary(wordgen.VocabularySize)
	var acked atomic.Int64
	var firstErr atomic.Pointer[error]
	done := func(_ *kgo.Record, err error) {
		if err != nil {
			firstErr.CompareAndSwap(nil, &err)
			return
		}
		acked.Add(1)
	}
	const tick = 10 * time.Millisecond
	per := int64(linesPerSecond) * int64(tick) / int64(time.Second)
	if linesPerSecond <= 0 {
		per = 10_000
	}
	next := first
	end := int64(-1)
	if total > 0 {
		end = first + total
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for ctx.Err() == nil && (end < 0 || next < end) && firstErr.Load() == nil {
		n := per
		if end >= 0 {
			n = min(n, end-next)
		}
		for i := range n {
			cl.Produce(ctx, &kgo.Record{Value: []byte(wordgen.LineAt(vocab, next+i))}, done)
		}
		next += n
		if linesPerSecond > 0 {
			select {
			case <-ctx.Done():
			case <-t.C:
			}
		} else if err := cl.Flush(ctx); err != nil {
			break
		}
	}
	flushCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.Flush(flushCtx); err != nil {
		return acked.Load(), fmt.Errorf("devkafka: flush: %w", err)
	}
	if p := firstErr.Load(); p != nil && !errors.Is(*p, context.Canceled) {
		return acked.Load(), fmt.Errorf("devkafka: produce to %s: %w", topic, *p)
	}
	return acked.Load(), nil
}
