package dstream

import (
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/sluicehq/sluice/internal/ui"
)

// TestMetricsScrapeParses scrapes /metrics of a running job and parses it
// with the Prometheus text parser; the figures agree with the JSON API.
func TestMetricsScrapeParses(t *testing.T) {
	base, _, stop := runUIJob(t, 5)
	jobURL := base + "/api/v1/jobs/ui_job"
	waitBatches(t, jobURL, 3)
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("Content-Type %q, want the text format", ct)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	var j ui.Job
	getJSON(t, jobURL, &j) // after the scrape: at least as many batches
	stop()

	want := map[string]dto.MetricType{
		"sluice_batch_scheduling_delay_seconds": dto.MetricType_HISTOGRAM,
		"sluice_batch_processing_seconds":       dto.MetricType_HISTOGRAM,
		"sluice_batch_total_delay_seconds":      dto.MetricType_HISTOGRAM,
		"sluice_input_records_total":            dto.MetricType_COUNTER,
		"sluice_batches_completed_total":        dto.MetricType_COUNTER,
		"sluice_batches_failed_total":           dto.MetricType_COUNTER,
		"sluice_task_failures_total":            dto.MetricType_COUNTER,
		"sluice_last_batch_time_seconds":        dto.MetricType_GAUGE,
		"sluice_state_keys":                     dto.MetricType_GAUGE,
		"sluice_state_bytes":                    dto.MetricType_GAUGE,
		"go_goroutines":                         dto.MetricType_GAUGE,
	}
	for name, typ := range want {
		f, ok := fams[name]
		if !ok {
			t.Errorf("/metrics has no %s", name)
			continue
		}
		if f.GetType() != typ {
			t.Errorf("%s is a %v, want %v", name, f.GetType(), typ)
		}
		if f.GetHelp() == "" {
			t.Errorf("%s has no help text", name)
		}
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != 0 {
				t.Errorf("%s has labels %v: the job's metrics carry none", name, m.GetLabel())
			}
		}
	}
	// The README lists every sluice_ metric with its type, and no other;
	// those it says are absent without a checkpoint or a Kafka source are
	// checked by TestUICheckpointFigures and the Kafka UI test.
	listed := readmeMetrics(t)
	for name, f := range fams {
		if !strings.HasPrefix(name, "sluice_") {
			continue
		}
		if typ := strings.ToLower(f.GetType().String()); listed[name][0] != typ {
			t.Errorf("README lists %s as %q, /metrics serves a %s", name, listed[name][0], typ)
		}
		delete(listed, name)
	}
	for name, row := range listed {
		if !strings.Contains(row[1], "absent") {
			t.Errorf("README lists %s, which /metrics does not serve", name)
		}
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	sec := string(readme)
	sec = sec[strings.Index(sec, "\n## Watching a job")+1:]
	// Its example answer has the API's fields and no others.
	ex := regexp.MustCompile(`(?m)^    (\{"total":.*)$`).FindStringSubmatch(sec)
	if ex == nil {
		t.Fatal("README has no example /batches answer")
	}
	dec := json.NewDecoder(strings.NewReader(ex[1]))
	dec.DisallowUnknownFields()
	var page ui.BatchPage
	if err := dec.Decode(&page); err != nil || len(page.Batches) != 1 || page.Batches[0].Status != ui.StatusSucceeded {
		t.Errorf("README's example /batches answer: %v, %+v", err, page)
	}

	done := fams["sluice_batches_completed_total"].GetMetric()[0].GetCounter().GetValue()
	if done < 3 || done > float64(j.BatchesDone) {
		t.Errorf("batches completed %v, want 3..%d (the API's count after the scrape)", done, j.BatchesDone)
	}
	h := fams["sluice_batch_total_delay_seconds"].GetMetric()[0].GetHistogram()
	// A batch may finish while the scrape collects: allow it on one side.
	if n := float64(h.GetSampleCount()); n < done-1 || n > done+1 {
		t.Errorf("total delay histogram has %d samples, want one per batch (%v)", h.GetSampleCount(), done)
	}
	in := fams["sluice_input_records_total"].GetMetric()[0].GetCounter().GetValue()
	if in != 5*done && in != 5*(done+1) && in != 5*(done-1) {
		t.Errorf("input records %v, want 5 a batch (%v batches)", in, done)
	}
}
