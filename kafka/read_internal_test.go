package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/devkafka"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Records deleted between planning and reading: the task fails naming the
// lost offsets by default; SkipLost reads what is left of the range.
func TestReadRangeDeletedBeforeRead(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic("t"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for i := range 100 {
		recs = append(recs, &kgo.Record{Value: []byte(strconv.Itoa(i))})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var del kadm.Offsets
	del.AddOffset("t", 0, 60, -1)
	if resp, err := kadm.NewClient(cl).DeleteRecords(context.Background(), del); err != nil || resp.Error() != nil {
		t.Fatalf("delete records: %v %v", err, resp.Error())
	}
	planned := OffsetRange{Topic: "t", Partition: 0, From: 20, Until: 90}
	for _, policy := range []LostPolicy{FailOnLost, SkipLost} {
		cfg := Config{Brokers: c.ListenAddrs(), Topics: []string{"t"}, OnLostOffsets: policy, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
		if err := cfg.validate(); err != nil {
			t.Fatal(err)
		}
		rd := newReader(cfg, String())
		var got []int64
		err := rd.read(context.Background(), time.Time{}, planned, func(r Record[string]) bool {
			if strconv.FormatInt(r.Offset, 10) != r.Value {
				t.Fatalf("offset %d holds %q", r.Offset, r.Value)
			}
			got = append(got, r.Offset)
			return true
		})
		if policy == FailOnLost {
			var lost *LostOffsetsError
			if !errors.As(err, &lost) || lost.Range != (OffsetRange{"t", 0, 20, 60}) {
				t.Fatalf("read error %v, want offsets t/0:[20,60) lost", err)
			}
			continue
		}
		if err != nil || len(got) != 30 || got[0] != 60 || got[29] != 89 {
			t.Fatalf("SkipLost read %d records (%v), err %v; want offsets 60..89", len(got), got, err)
		}
	}
}

// BenchmarkReadValues measures the values-only read path (fetch, parse,
// hand-off, decode) of one 100,000-record range of standard lines from an
// in-process broker: go test -run X -bench ReadValues ./kafka/
func BenchmarkReadValues(b *testing.B) {
	br, err := devkafka.Start(0, 1, "lines")
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	const n = 100_000
	if _, err := devkafka.Generate(context.Background(), br.Addrs, "lines", 0, 0, n); err != nil {
		b.Fatal(err)
	}
	cfg := Config{Brokers: br.Addrs, Topics: []string{"lines"}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if err := cfg.validate(); err != nil {
		b.Fatal(err)
	}
	rd := newReader(cfg, String())
	rd.valuesOnly = true
	defer rd.closeIdle()
	rg := OffsetRange{"lines", 0, 0, n}
	b.ResetTimer()
	for range b.N {
		var bytes int
		if err := rd.readValues(context.Background(), time.Time{}, rg, func(v string) bool { bytes += len(v); return true }); err != nil {
			b.Fatal(err)
		}
		if bytes < n {
			b.Fatalf("read %d bytes", bytes)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
}

// A range's fetches ask for little more than the range: once the reader
// has seen the records' size, reading 5,000 records of a partition that
// holds 200,000 moves about their bytes over the wire, not the fetch
// bound's 8 MiB. Both read paths (values only, whole records).
func TestReadRangeFetchesLittleMoreThanTheRange(t *testing.T) {
	br, err := devkafka.Start(0, 1, "lines")
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	const n, per = 200_000, 5_000
	if _, err := devkafka.Generate(context.Background(), br.Addrs, "lines", 0, 0, n); err != nil {
		t.Fatal(err)
	}
	for _, valuesOnly := range []bool{true, false} {
		cfg := Config{Brokers: br.Addrs, Topics: []string{"lines"}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
		if err := cfg.validate(); err != nil {
			t.Fatal(err)
		}
		rd := newReader(cfg, String())
		rd.valuesOnly = valuesOnly
		var wire atomic.Int64
		rd.netDial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return countedConn{c, &wire}, nil
		}
		for k := int64(0); k < 4; k++ {
			rg := OffsetRange{"lines", 0, k * per, (k + 1) * per}
			before := wire.Load()
			var got, bytes int64
			count := func(v string) bool { got++; bytes += int64(len(v)); return true }
			if valuesOnly {
				err = rd.readValues(context.Background(), time.Time{}, rg, count)
			} else {
				err = rd.read(context.Background(), time.Time{}, rg, func(r Record[string]) bool { return count(r.Value) })
			}
			if err != nil || got != per {
				t.Fatalf("range %s: %d records, err %v", rg, got, err)
			}
			// The first read has no record size to go by.
			if moved := wire.Load() - before; k > 0 && moved > 2*bytes+1<<20 {
				t.Errorf("valuesOnly=%v: range %s of %d value bytes moved %d bytes over the wire", valuesOnly, rg, bytes, moved)
			}
		}
		rd.closeIdle()
	}
}

// writeCountingConn counts the writes on a connection (a fetch is one).
type writeCountingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c writeCountingConn) Write(b []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Write(b)
}

// A values-only read never sees keys and headers, yet its fetch bound
// counts them (it measures bytes on the wire): with 1 KiB keys and 10-byte
// values, a 5,000-record range takes a few fetches, not dozens sized by
// the values alone.
func TestReadRangeFetchBoundCountsUnseenKeys(t *testing.T) {
	br, err := devkafka.Start(0, 1, "keyed")
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(br.Addrs...), kgo.DefaultProduceTopic("keyed"),
		kgo.ProducerBatchMaxBytes(16<<10), kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const n, per = 20_000, 5_000
	var recs []*kgo.Record
	for i := range n {
		key := fmt.Appendf(nil, "%08d", i)
		key = append(key, strings.Repeat(string(key), 128)...) // 1 KiB, different for every record
		recs = append(recs, &kgo.Record{Key: key, Value: []byte(fmt.Sprintf("v%09d", i))})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Brokers: br.Addrs, Topics: []string{"keyed"}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	rd := newReader(cfg, String())
	rd.valuesOnly = true
	defer rd.closeIdle()
	var writes atomic.Int64
	rd.netDial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return writeCountingConn{c, &writes}, nil
	}
	for k := int64(0); k < n/per; k++ {
		rg := OffsetRange{"keyed", 0, k * per, (k + 1) * per}
		before := writes.Load()
		var got int64
		if err := rd.readValues(context.Background(), time.Time{}, rg, func(string) bool { got++; return true }); err != nil || got != per {
			t.Fatalf("range %s: %d records, err %v", rg, got, err)
		}
		t.Logf("range %s: %d writes", rg, writes.Load()-before)
		if fetches := writes.Load() - before; k > 0 && fetches > 6 {
			t.Errorf("range %s of %d records with 1 KiB keys: %d fetches", rg, per, fetches)
		}
	}
}
