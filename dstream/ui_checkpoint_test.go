package dstream

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/sluicehq/sluice/internal/checkpoint"
	"github.com/sluicehq/sluice/internal/ui"
	"github.com/sluicehq/sluice/rdd"
)

// scrape GETs /metrics and parses it with the Prometheus text parser.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// gaugeOf returns the value of an unlabelled gauge, failing if absent.
func gaugeOf(t *testing.T, fams map[string]*dto.MetricFamily, name string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok || f.GetType() != dto.MetricType_GAUGE || len(f.GetMetric()) != 1 || len(f.GetMetric()[0].GetLabel()) != 0 {
		t.Fatalf("/metrics: %s is %v, want one unlabelled gauge", name, f)
	}
	return f.GetMetric()[0].GetGauge().GetValue()
}

// readmeMetrics returns the metrics the README's "Watching a job" section
// lists: name, type and the rest of the row.
func readmeMetrics(t *testing.T) map[string][2]string {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	sec := string(readme)
	i := strings.Index(sec, "\n## Watching a job")
	if i < 0 {
		t.Fatal("README has no \"Watching a job\" section")
	}
	sec = sec[i+1:]
	if j := strings.Index(sec, "\n## "); j >= 0 {
		sec = sec[:j]
	}
	out := map[string][2]string{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(sluice_[a-z_]+)(?:\\{[a-z,]+\\})?` \\| ([a-z]+) \\|(.*)$").FindAllStringSubmatch(sec, -1) {
		out[m[1]] = [2]string{m[2], m[3]}
	}
	return out
}

var ckptMetrics = []string{"sluice_checkpoint_age_seconds", "sluice_checkpoint_last_batch_time_seconds", "sluice_checkpoint_generation",
	"sluice_checkpoint_metadata_bytes", "sluice_checkpoint_snapshot_age_seconds", "sluice_checkpoint_snapshot_bytes"}

// TestUICheckpointFigures runs a stateful local job with --checkpoint and
// holds it in batch 8 (its output blocks, then fails the batch, so that
// batch 7's checkpoint is the last): the job summary's checkpoint and the
// sluice_checkpoint_* gauges show batch 7's metadata generation and the
// newest snapshot, and equal what the checkpoint store reads back from the
// directory once the job exited, and the last "batch" log line.
func TestUICheckpointFigures(t *testing.T) {
	dir := t.TempDir()
	const holdAt = 8
	held := make(chan time.Time, 1)
	release := make(chan struct{})
	var n atomic.Int64
	j := startUIJob(t, 5, func(in *DStream[int64]) {
		kv := Map(in, func(v int64) KV[string, int64] { return KV[string, int64]{Key: fmt.Sprint("k", v%3), Value: v} })
		sums := UpdateStateByKey(kv, "sums", func(vs []int64, s int64, _ bool) (int64, bool) {
			for _, v := range vs {
				s += v
			}
			return s, true
		})
		ForeachRDD(sums, func(b *Batch, r *rdd.RDD[KV[string, int64]]) error {
			if _, err := Collect(b, r); err != nil {
				return err
			}
			if n.Add(1) == holdAt {
				held <- b.Time()
				<-release
				return errors.New("the test ends the job here")
			}
			return nil
		})
	}, "--checkpoint="+dir, "--checkpoint-interval=100ms")
	exited := false
	defer func() {
		if !exited {
			close(release)
			<-j.done
		}
	}()
	var holdT time.Time
	select {
	case holdT = <-held:
	case code := <-j.done:
		exited = true
		t.Fatalf("job exited %d before batch %d: %s", code, holdAt, j.log.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("batch %d did not run in 60s: %s", holdAt, j.log.String())
	}
	jobURL := j.base + "/api/v1/jobs/ui_job"
	var raw map[string]json.RawMessage
	getJSON(t, jobURL, &raw)
	var job ui.Job
	getJSON(t, jobURL, &job)
	fams := scrape(t, j.base)
	c := job.Checkpoint
	if c == nil || raw["checkpoint"] == nil {
		t.Fatalf("job %s: no checkpoint", raw)
	}
	last := holdT.Add(-50 * time.Millisecond) // batch 7
	if c.LastBatchTime == nil || !c.LastBatchTime.Equal(last) {
		t.Fatalf("checkpoint %+v: want the last batch %s (the one before the held batch)", c, fmtTime(last))
	}
	if c.Snapshot == nil || c.Snapshot.Bytes == 0 || c.Snapshot.BatchTime.After(last) || !c.Snapshot.BatchTime.After(last.Add(-100*time.Millisecond)) {
		t.Fatalf("checkpoint snapshot %+v: want one of the last 100ms before %s", c.Snapshot, fmtTime(last))
	}
	if c.MetadataBytes == 0 || c.WrittenAt.After(time.Now()) || c.AgeMs < 0 || c.Snapshot.WrittenAt.After(c.WrittenAt) {
		t.Fatalf("checkpoint %+v", c)
	}
	// /metrics, scraped after the API answered, shows the same checkpoint.
	for name, want := range map[string]float64{
		"sluice_checkpoint_generation":              float64(c.Generation),
		"sluice_checkpoint_metadata_bytes":          float64(c.MetadataBytes),
		"sluice_checkpoint_snapshot_bytes":          float64(c.Snapshot.Bytes),
		"sluice_checkpoint_last_batch_time_seconds": float64(last.UnixNano()) / 1e9,
	} {
		if got := gaugeOf(t, fams, name); got != want {
			t.Errorf("%s = %v, the API says %v", name, got, want)
		}
	}
	if age := gaugeOf(t, fams, "sluice_checkpoint_age_seconds"); age < float64(c.AgeMs)/1000 {
		t.Errorf("sluice_checkpoint_age_seconds = %v, below the API's earlier age %dms", age, c.AgeMs)
	}
	if age := gaugeOf(t, fams, "sluice_checkpoint_snapshot_age_seconds"); age < float64(c.Snapshot.AgeMs)/1000 {
		t.Errorf("sluice_checkpoint_snapshot_age_seconds = %v, below the API's earlier age %dms", age, c.Snapshot.AgeMs)
	}
	listed := readmeMetrics(t)
	for _, name := range ckptMetrics {
		if listed[name][0] != "gauge" {
			t.Errorf("README lists %s as %q, /metrics serves a gauge", name, listed[name][0])
		}
	}

	// Batch 8 fails; the job exits, and the directory says what the API did.
	close(release)
	exited = true
	if code := <-j.done; code == 0 {
		t.Fatalf("job exited 0 after its batch failed")
	}
	j.mem.AssertSize(t, 0)
	lines := logLines(t, j.log.String(), "batch")
	if len(lines) == 0 || lines[len(lines)-1]["batch"] != fmtTime(last) {
		t.Fatalf("last batch log line %v, want batch %s", lines[len(lines)-1:], fmtTime(last))
	}
	if f := logLines(t, j.log.String(), "batch failed"); len(f) != 1 || f[0]["batch"] != fmtTime(holdT) {
		t.Fatalf("failed batch log lines %v, want batch %s", f, fmtTime(holdT))
	}
	st, err := checkpoint.Open(checkpoint.Config{Dir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m, ok, err := st.LoadMeta()
	if err != nil || !ok {
		t.Fatalf("LoadMeta: %v %v", ok, err)
	}
	snaps := st.Snapshots()
	got := st.Stats()
	if !m.Completed.Equal(last) || got.Generation != c.Generation || got.MetaBytes != c.MetadataBytes {
		t.Errorf("the store reads generation %d (%d bytes) completing %s; the API said %d (%d bytes), %s",
			got.Generation, got.MetaBytes, fmtTime(m.Completed), c.Generation, c.MetadataBytes, fmtTime(*c.LastBatchTime))
	}
	if len(snaps) == 0 || !snaps[0].Time.Equal(c.Snapshot.BatchTime) {
		t.Fatalf("the store's snapshots %+v; the API said the newest is as of %s", snaps, fmtTime(c.Snapshot.BatchTime))
	}
	fi, err := os.Stat(snaps[0].File)
	if err != nil || fi.Size() != c.Snapshot.Bytes {
		t.Errorf("snapshot file %s: %v (%v); the API said %d bytes", snaps[0].File, fi.Size(), err, c.Snapshot.Bytes)
	}
}

// A job without --checkpoint has no checkpoint in its summary and no
// checkpoint metrics (absent, not zero).
func TestUINoCheckpointNoFigures(t *testing.T) {
	base, _, stop := runUIJob(t, 3)
	jobURL := base + "/api/v1/jobs/ui_job"
	waitBatches(t, jobURL, 2)
	var raw map[string]json.RawMessage
	getJSON(t, jobURL, &raw)
	fams := scrape(t, base)
	stop()
	if raw["checkpoint"] != nil {
		t.Errorf("job without --checkpoint: checkpoint %s, want none", raw["checkpoint"])
	}
	for _, name := range append(ckptMetrics, "sluice_kafka_lag_records") {
		if f, ok := fams[name]; ok {
			t.Errorf("job without --checkpoint or Kafka: /metrics serves %v", f)
		}
	}
}
