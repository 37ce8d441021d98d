//go:build unix

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/ui"
	"github.com/sluicehq/sluice/internal/ui/uitest"
)

// offsetRange is a Kafka source's offset range and lag as the API's input
// metadata holds it.
type offsetRange struct {
	Topic     string
	Partition int
	From      int64
	Until     int64
	Lag       int64
}

// endOffsets returns the end offset of each partition of topic "lines", as
// franz-go's admin client sees them.
func endOffsets(t *testing.T, addr string) map[int]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, "lines")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[int(o.Partition)] = o.Offset })
	return out
}

// TestUIKafkaInputs runs the Kafka WordCount with backpressure and --ui
// against a broker process: each batch's input in the API (offset ranges
// per partition, total lag, backpressure rate) equals its batch log line,
// the ranges add up to its records, each partition's lag is what the
// broker held past its range (the lags add up to the log line's), the
// sluice_kafka_lag_records gauges equal the last batch's lags, and the
// batch page shows a row per partition with its lag.
func TestUIKafkaInputs(t *testing.T) {
	needProcesses(t)
	addr := startDevbroker(t)
	produceLines(t, addr, 0, 20_000, 0)
	ends := endOffsets(t, addr) // nothing is produced while the job runs
	job := start(t, kafkawcBin, "--brokers="+addr, "--group=e2e-ui", "--start=earliest", "--top=1",
		"--max-rate-per-partition=2000", "--backpressure", "--master=local[2]", "--ui=127.0.0.1:0")
	job.waitFor(t, "the web UI line", func() bool { return uiURLRE.MatchString(job.stderr.String()) })
	base := uiURLRE.FindStringSubmatch(job.stderr.String())[1]
	var jobs []ui.Job
	getAPI(t, base+"/api/v1/jobs", &jobs)
	if len(jobs) != 1 {
		t.Fatalf("jobs %+v", jobs)
	}
	jobURL := base + "/api/v1/jobs/" + jobs[0].ID
	var j ui.Job
	job.waitFor(t, "3 batches", func() bool { getAPI(t, jobURL, &j); return j.BatchesDone >= 3 })
	if len(j.LastInputs) != 1 || j.LastInputs[0].Attrs["rate"] == "" {
		t.Errorf("job's last inputs %+v: want the Kafka stream with its backpressure rate", j.LastInputs)
	}
	var page ui.BatchPage
	getAPI(t, jobURL+"/batches?limit=1000", &page)
	logged := map[string]logLine{}
	for _, l := range logLinesWithMsg(job.stderr.String(), "batch") {
		logged[l["batch"]] = l
	}
	withRecords, lagged := int64(0), int64(0)
	for _, b := range page.Batches {
		l := logged[b.Time.UTC().Format("2006-01-02T15:04:05.000Z")]
		var d ui.BatchDetail
		getAPI(t, fmt.Sprintf("%s/batches/%d", jobURL, b.ID), &d)
		if len(d.Inputs) != 1 {
			t.Fatalf("batch %d: inputs %+v, want the Kafka stream", b.ID, d.Inputs)
		}
		in := d.Inputs[0]
		for _, k := range []string{"offsets", "lag", "rate"} {
			if in.Attrs[k] == "" || in.Attrs[k] != l[k] {
				t.Errorf("batch %d: API %s=%q, log %q", b.ID, k, in.Attrs[k], l[k])
			}
		}
		var ranges []offsetRange
		if err := json.Unmarshal(in.Metadata, &ranges); err != nil || len(ranges) != 4 {
			t.Fatalf("batch %d: metadata %s (%v), want 4 offset ranges", b.ID, in.Metadata, err)
		}
		var sum, lag int64
		var desc []string
		for i, r := range ranges {
			sum += r.Until - r.From
			lag += r.Lag
			desc = append(desc, fmt.Sprintf("%s/%d:%d-%d", r.Topic, r.Partition, r.From, r.Until))
			if r.Until+r.Lag != ends[r.Partition] {
				t.Errorf("batch %d: %s/%d read to %d with lag %d; the broker's end offset is %d", b.ID, r.Topic, r.Partition, r.Until, r.Lag, ends[r.Partition])
			}
			if len(in.Partitions) != len(ranges) || in.Partitions[i] != (ui.PartitionInput{Topic: r.Topic, Partition: r.Partition, FromOffset: r.From, UntilOffset: r.Until, Lag: r.Lag}) {
				t.Errorf("batch %d: partitions %+v, metadata %+v", b.ID, in.Partitions, ranges)
			}
		}
		if fmt.Sprint(lag) != l["lag"] {
			t.Errorf("batch %d: partition lags %v add up to %d; log lag=%s", b.ID, ranges, lag, l["lag"])
		}
		if lag > 0 && in.Records > 0 {
			lagged = b.ID
		}
		if sum != in.Records || fmt.Sprint(in.Records) != l["input_records"] || strings.Join(desc, " ") != l["offsets"] {
			t.Errorf("batch %d: ranges %v hold %d records; input %d; log %s records, offsets %s", b.ID, ranges, sum, in.Records, l["input_records"], l["offsets"])
		}
		if in.Records > 0 {
			withRecords = b.ID
		}
	}
	if withRecords == 0 {
		t.Fatal("no batch read records")
	}
	if lagged == 0 {
		t.Fatal("no batch left a lag: the test checks no lag figure (the rate bound should leave one)")
	}
	// The lag gauges show the last batch's lags: read between two reads of
	// the job that name the same last batch.
	for attempt := 0; ; attempt++ {
		var before, after ui.Job
		getAPI(t, jobURL, &before)
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		parser := expfmt.NewTextParser(model.LegacyValidation)
		fams, err := parser.TextToMetricFamilies(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("parse /metrics: %v", err)
		}
		getAPI(t, jobURL, &after)
		if before.LastBatch == nil || after.LastBatch == nil || before.LastBatch.ID != after.LastBatch.ID {
			if attempt == 20 {
				t.Fatal("the last batch changed during each of 20 scrapes")
			}
			continue
		}
		f := fams["sluice_kafka_lag_records"]
		if f.GetType() != dto.MetricType_GAUGE || len(f.GetMetric()) != 4 || len(before.LastInputs) != 1 {
			t.Fatalf("sluice_kafka_lag_records %v, want 4 gauges (one per partition); last inputs %+v", f, before.LastInputs)
		}
		want := map[string]float64{}
		for _, p := range before.LastInputs[0].Partitions {
			want[fmt.Sprintf("stream=%s topic=%s partition=%d", before.LastInputs[0].Stream, p.Topic, p.Partition)] = float64(p.Lag)
		}
		for _, m := range f.GetMetric() {
			ls := map[string]string{}
			for _, lp := range m.GetLabel() {
				ls[lp.GetName()] = lp.GetValue()
			}
			k := fmt.Sprintf("stream=%s topic=%s partition=%s", ls["stream"], ls["topic"], ls["partition"])
			if w, ok := want[k]; !ok || w != m.GetGauge().GetValue() {
				t.Errorf("sluice_kafka_lag_records{%s} = %v; the last batch's lags %v", k, m.GetGauge().GetValue(), want)
			}
		}
		break
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "| `sluice_kafka_lag_records{stream,topic,partition}` | gauge |") {
		t.Error("README does not list sluice_kafka_lag_records{stream,topic,partition} as a gauge")
	}
	if findChromiumForE2E() {
		br := uitest.NewBrowser(t)
		if err := chromedp.Do(br.Ctx,
			chromedp.Navigate(fmt.Sprintf("%s/#/jobs/%s/batches/%d", base, jobs[0].ID, withRecords)),
			chromedp.WaitVisible(uitest.CSS(`#inputs tr.range`)),
			br.Shot(t, "kafka-batch.png"),
		); err != nil {
			t.Fatalf("batch page: %v", err)
		}
		n, err := chromedp.Run(br.Ctx, chromedp.Evaluate[int](`document.querySelectorAll('#inputs tr.range').length`))
		if err != nil || n != 4 {
			t.Errorf("the batch page shows %d offset ranges (%v), want 4", n, err)
		}
		// A batch that left a lag shows each partition's.
		var d ui.BatchDetail
		getAPI(t, fmt.Sprintf("%s/batches/%d", jobURL, lagged), &d)
		if err := chromedp.Do(br.Ctx,
			chromedp.Navigate(fmt.Sprintf("%s/#/jobs/%s/batches/%d", base, jobs[0].ID, lagged)),
			chromedp.WaitVisible(uitest.CSS(`#inputs tr.range td.lag`)),
			br.Shot(t, "kafka-batch-lag.png"),
		); err != nil {
			t.Fatalf("batch page: %v", err)
		}
		lags, err := chromedp.Run(br.Ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#inputs tr.range td.lag')].map(td => td.textContent)`))
		var want []string
		for _, p := range d.Inputs[0].Partitions {
			want = append(want, strconv.FormatInt(p.Lag, 10))
		}
		for i := range lags {
			lags[i] = strings.ReplaceAll(lags[i], ",", "")
		}
		if err != nil || strings.Join(lags, " ") != strings.Join(want, " ") {
			t.Errorf("the batch page shows lags %q (%v); the API %q", lags, err, want)
		}
		br.CheckErrors(t)
	}
	job.signal(t, syscall.SIGTERM)
	if code := job.wait(t, exitBound); code != 0 {
		t.Fatalf("exit %d after SIGTERM", code)
	}
}

func findChromiumForE2E() bool { return uitest.FindChromium() != "" }
