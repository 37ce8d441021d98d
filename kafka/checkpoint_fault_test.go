//go:build unix

package kafka_test

import (
	"context"
	"fmt"
	"github.com/sluicehq/sluice/internal/seqjob"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/kafka"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The Kafka fault test's job: values "k3 17" (per-key sequence numbers)
// from topic "seq"; every batch's values go to a committing sink, the state
// per key (count, sum of sequence numbers) to another.
const (
	kfKeys       = 5
	kfPerKey     = 200
	kfInterval   = 100 * time.Millisecond
	kfMaxRate    = 300 // records/s per partition: at most 30 per partition per batch
	kfPartitions = 3
)

// TestKafkaCheckpointJobProcess is not a test: TestKafkaCheckpointKill9
// runs it in a child process, with the job's command line after --.
func TestKafkaCheckpointJobProcess(t *testing.T) {
	if os.Getenv("SLUICE_KCKPT_JOB") != "1" {
		t.Skip("the job process of TestKafkaCheckpointKill9")
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	broker, out := os.Getenv("SLUICE_KCKPT_BROKER"), os.Getenv("SLUICE_KCKPT_OUT")
	code := dstream.RunArgs(dstream.Config{AppName: "kafkackpt", BatchInterval: kfInterval, Master: "local[2]", Parallelism: 3},
		args, os.Stderr, func(ctx *dstream.Context) error {
			lines, err := kafka.NewValueStream(ctx, kafka.Config{Brokers: []string{broker}, Topics: []string{"seq"}, GroupID: "kckpt",
				MaxRatePerPartition: kfMaxRate}, kafka.String())
			if err != nil {
				return err
			}
			lines = dstream.Map(lines, func(s string) string { return strings.Clone(s) })
			seqjob.Build(lines, out)
			return nil
		})
	os.Exit(code)
}

// TestKafkaCheckpointKill9: a broker (cmd/devbroker) in its own process, a
// producer (franz-go) writing per-key sequence numbers, and a local-mode
// stateful job with --checkpoint killed with -9 at random points three
// times and rerun: every record exactly once in the committing sink, exact
// state at every batch, no batch time skipped, every batch within the
// rate limit (catch-up after downtime in bounded batches), and the group's
// committed offsets at the end of the log after the last batch.
func TestKafkaCheckpointKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: a broker process, a job process killed 3 times")
	}
	root := t.TempDir()
	bin := filepath.Join(root, "devbroker")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/devbroker").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/devbroker: %v\n%s", err, out)
	}
	bout, err := os.Create(filepath.Join(root, "devbroker.out"))
	if err != nil {
		t.Fatal(err)
	}
	bcmd := exec.Command(bin, "--port=0", fmt.Sprintf("--partitions=%d", kfPartitions), "--topics=seq")
	bcmd.Stdout, bcmd.Stderr = bout, bout
	if err := bcmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bcmd.Process.Kill(); bcmd.Wait() })
	addrRE := regexp.MustCompile(`on (127\.0\.0\.1:\d+)`)
	var addr string
	for deadline := time.Now().Add(30 * time.Second); addr == ""; time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile(bout.Name())
		if m := addrRE.FindSubmatch(b); m != nil {
			addr = string(m[1])
		} else if time.Now().After(deadline) {
			t.Fatalf("devbroker printed no address in 30s:\n%s", b)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("seq"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	out, ckdir := filepath.Join(root, "out"), filepath.Join(root, "ckpt")

	// The producer: every 20ms the next sequence number of every key (the
	// key picks the partition, so each key's records stay in order).
	producerDone := make(chan error, 1)
	go func() {
		for seq := 1; seq <= kfPerKey; seq++ {
			recs := make([]*kgo.Record, 0, kfKeys)
			for k := range kfKeys {
				key := "k" + strconv.Itoa(k)
				recs = append(recs, &kgo.Record{Key: []byte(key), Value: fmt.Appendf(nil, "%s %d", key, seq)})
			}
			if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
				producerDone <- err
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		producerDone <- nil
	}()

	start := func() *seqjob.Process {
		return seqjob.Start(t, "TestKafkaCheckpointJobProcess", []string{"SLUICE_KCKPT_JOB=1", "SLUICE_KCKPT_BROKER=" + addr, "SLUICE_KCKPT_OUT=" + out},
			"--checkpoint", ckdir, "--checkpoint-interval", "500ms")
	}
	// Down for up to 0.8 s after each kill: a backlog builds.
	recoveries := seqjob.KillLoop(t, start, out, 3, kfInterval, 800*time.Millisecond, 11)
	if err := <-producerDone; err != nil {
		t.Fatalf("produce: %v", err)
	}
	p := start()
	cmd, logs := p.Cmd, p.Logs
	recoveries = append(recoveries, float64(p.Recovered(t, out))/float64(kfInterval))
	total := int64(kfKeys * kfPerKey)
	deadline := time.Now().Add(60 * time.Second)
	for {
		n := seqjob.StateLines(t, out)
		if n >= total {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("state holds %d of %d records after 60s; job log:\n%s", n, total, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(3 * kfInterval) // a commit after the last batch with records
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("job exit: %v; log:\n%s", err, logs.String())
	}

	// Every record exactly once, batch times without gaps, exact state at
	// every batch (the producer's key k, sequence s is "file" s-1 of Feed's
	// layout with one number per key).
	nb := seqjob.Check(t, out, kfInterval, kfPerKey, kfKeys, 1)
	if t.Failed() {
		t.FailNow()
	}
	// No batch over the rate limit.
	bound := kfPartitions * int(kfMaxRate*kfInterval/time.Second)
	biggest := 0
	for ms, d := range seqjob.BatchDirs(t, filepath.Join(out, "lines")) {
		n := len(seqjob.DirLines(t, d))
		biggest = max(biggest, n)
		if n > bound {
			t.Errorf("batch %d has %d records, over the rate limit's %d", ms, n, bound)
		}
	}
	// The group's offsets follow completed batches: at the end of the log.
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, "seq")
	if err != nil {
		t.Fatal(err)
	}
	committed, err := adm.FetchOffsets(ctx, "kckpt")
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		c, ok := committed.Lookup("seq", o.Partition)
		if !ok || c.At != o.Offset {
			t.Errorf("group kckpt on seq/%d: committed %v (%v), want the end of the log %d", o.Partition, c.At, ok, o.Offset)
		}
	})
	t.Logf("%d batches, %d records, 3 kills; largest batch %d records (limit %d); recovery (restart to first new batch) in batch intervals: %.1f",
		nb, total, biggest, bound, recoveries)
}
