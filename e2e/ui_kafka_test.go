//go:build unix

package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/sluicehq/sluice/internal/ui"
	"github.com/sluicehq/sluice/internal/ui/uitest"
)

// offsetRange is a Kafka source's offset range as the API's input
// metadata holds it.
type offsetRange struct {
	Topic     string
	Partition int
	From      int64
	Until     int64
}

// TestUIKafkaInputs runs the Kafka WordCount with backpressure and --ui
// against a broker process: each batch's input in the API (offset ranges
// per partition, total lag, backpressure rate) equals its batch log line,
// the ranges add up to its records, and the batch page shows a row per
// partition.
func TestUIKafkaInputs(t *testing.T) {
	needProcesses(t)
	addr := startDevbroker(t)
	produceLines(t, addr, 0, 20_000, 0)
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
	withRecords := int64(0)
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
		var sum int64
		var desc []string
		for _, r := range ranges {
			sum += r.Until - r.From
			desc = append(desc, fmt.Sprintf("%s/%d:%d-%d", r.Topic, r.Partition, r.From, r.Until))
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
		br.CheckErrors(t)
	}
	job.signal(t, syscall.SIGTERM)
	if code := job.wait(t, exitBound); code != 0 {
		t.Fatalf("exit %d after SIGTERM", code)
	}
}

func findChromiumForE2E() bool { return uitest.FindChromium() != "" }
