package dstream

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/sluicehq/sluice/internal/ui"
	"github.com/sluicehq/sluice/scheduler"
)

// get returns a response's status and body, failing on a body over max
// bytes: every API answer is bounded whatever the history holds.
func getBounded(t *testing.T, url string, max int64) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) > max {
		t.Fatalf("GET %s: body over %d bytes", url, max)
	}
	return resp.StatusCode, b
}

// syntheticUI serves a context that finished n synthetic batches (each
// with 3 jobs of 4 stages, every 100th failed with a 1 MiB error), half of
// them before the UI started, and keeps the last size. Batch i is at
// zero + i seconds.
func syntheticUI(t *testing.T, size, n int) (*ui.Server, time.Time) {
	t.Helper()
	c, err := New(Config{AppName: "big", BatchInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.flags.Parse([]string{fmt.Sprint("--ui-history=", size)}); err != nil {
		t.Fatal(err)
	}
	zero := time.Unix(1_700_000_000, 0)
	stage := scheduler.StageMetrics{Name: strings.Repeat("map ", 10), Tasks: 8, TaskTime: time.Second, MaxTaskTime: time.Second / 4, RecordsRead: 1000}
	job := scheduler.JobMetrics{Stages: []scheduler.StageMetrics{stage, stage, stage, stage}}
	add := func(i int) {
		var err error
		if i%100 == 0 {
			err = fmt.Errorf("boom: %s", strings.Repeat("e", 1<<20))
		}
		c.obs.record(BatchInfo{Time: zero.Add(time.Duration(i) * time.Second), InputRecords: 10,
			SchedulingDelay: time.Millisecond, ProcessingTime: time.Duration(i) * time.Microsecond,
			TotalDelay: time.Millisecond + time.Duration(i)*time.Microsecond,
			Jobs:       []scheduler.JobMetrics{job, job, job}}, err)
	}
	for i := 1; i <= n/2; i++ {
		add(i)
	}
	srv, _, err := c.serveUI("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	for i := n/2 + 1; i <= n; i++ {
		add(i)
	}
	return srv, zero
}

// TestUIWithTenThousandBatches serves a synthetic history of 10,000
// batches (each with 3 jobs of 4 stages, every 100th failed with a long
// error): every answer is bounded in size and count, the counters and the
// metrics cover all 10,000.
func TestUIWithTenThousandBatches(t *testing.T) {
	for _, size := range []int{DefaultHistorySize, 10_000} {
		t.Run(fmt.Sprint("history=", size), func(t *testing.T) {
			const n = 10_000
			srv, zero := syntheticUI(t, size, n)
			base := "http://" + srv.Addr()
			jobURL := base + "/api/v1/jobs/big"

			var j ui.Job
			code, body := getBounded(t, jobURL, 8<<10) // the last batch failed: its error is cut to 4 KiB
			if code != 200 || jsonUnmarshal(body, &j) != nil {
				t.Fatalf("job: %d %s", code, body)
			}
			if j.BatchesDone != n-n/100 || j.BatchesFailed != n/100 || j.InputRecords != 10*n || j.HistoryBatches != size || j.HistoryCapacity != size || j.PendingBatches != 0 {
				t.Fatalf("job %+v: want %d done, %d failed, %d records, %d kept", j, n-n/100, n/100, 10*n, size)
			}
			// Pages: the default of 100, the largest of 1,000, the last.
			for _, tc := range []struct {
				query string
				count int
				first int // batch number of the first (newest) batch in the page
			}{
				{"", ui.DefaultLimit, n},
				{"?limit=1000", 1000, n},
				{fmt.Sprintf("?offset=%d&limit=1000", size-10), 10, n - size + 10},
				{fmt.Sprintf("?offset=%d", size), 0, 0},
			} {
				var p ui.BatchPage
				// a batch is under 400 bytes of JSON, its error cut to 4 KiB
				began := time.Now()
				code, body := getBounded(t, jobURL+"/batches"+tc.query, int64(tc.count)*400+(int64(tc.count)/100+1)*(5<<10)+200)
				t.Logf("GET /batches%s: %d bytes in %v (measured, not asserted)", tc.query, len(body), time.Since(began))
				if code != 200 || jsonUnmarshal(body, &p) != nil {
					t.Fatalf("batches%s: %d %.200s", tc.query, code, body)
				}
				if len(p.Batches) != tc.count || p.Total != size {
					t.Fatalf("batches%s: %d of %d, want %d of %d", tc.query, len(p.Batches), p.Total, tc.count, size)
				}
				if tc.count > 0 && p.Batches[0].ID != zero.Add(time.Duration(tc.first)*time.Second).UnixMilli() {
					t.Fatalf("batches%s: first is %v, want batch %d", tc.query, p.Batches[0].Time, tc.first)
				}
			}
			if code, _ := getBounded(t, jobURL+"/batches?limit=100000", 1<<10); code != 400 {
				t.Fatalf("limit=100000: status %d, want 400 (at most %d a page)", code, ui.MaxLimit)
			}
			// The oldest batch kept and a failed one open; a dropped one does not.
			oldest := zero.Add(time.Duration(n-size+1) * time.Second).UnixMilli()
			var d ui.BatchDetail
			code, body = getBounded(t, fmt.Sprintf("%s/batches/%d", jobURL, oldest), 16<<10)
			if code != 200 || jsonUnmarshal(body, &d) != nil || len(d.OutputJobs) != 3 || len(d.OutputJobs[0].Stages) != 4 {
				t.Fatalf("oldest batch: %d %.300s", code, body)
			}
			failed := zero.Add(n * time.Second).UnixMilli()
			code, body = getBounded(t, fmt.Sprintf("%s/batches/%d", jobURL, failed), 16<<10)
			if code != 200 || jsonUnmarshal(body, &d) != nil || d.Status != ui.StatusFailed || !strings.HasPrefix(d.Error, "boom: eee") {
				t.Fatalf("failed batch: %d %.300s", code, body)
			}
			if code, _ := getBounded(t, fmt.Sprintf("%s/batches/%d", jobURL, oldest-1000), 1<<10); code != 404 {
				t.Fatalf("a batch older than the history: %d, want 404", code)
			}
			// The metrics count every batch, those before the UI started too.
			code, body = getBounded(t, base+"/metrics", 256<<10)
			p := expfmt.NewTextParser(model.LegacyValidation)
			fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
			if code != 200 || err != nil {
				t.Fatalf("metrics: %d %v", code, err)
			}
			if got := fams["sluice_batch_processing_seconds"].GetMetric()[0].GetHistogram().GetSampleCount(); got != n {
				t.Fatalf("processing histogram: %d samples, want %d", got, n)
			}
			if got := fams["sluice_batches_failed_total"].GetMetric()[0].GetCounter().GetValue(); got != n/100 {
				t.Fatalf("failed batches %v, want %d", got, n/100)
			}
		})
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
