//go:build unix

package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/ui"
)

var uiURLRE = regexp.MustCompile(`msg="web UI".* url=(http://\S+)/ `)

func getAPI(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// checkUIAgainstLog reads the job's API once it ran 3 batches, and checks
// every batch it lists against the job's batch log lines.
func checkUIAgainstLog(t *testing.T, p *proc, base, id string, stderr func() string) []ui.BatchDetail {
	t.Helper()
	var jobs []ui.Job
	getAPI(t, base+"/api/v1/jobs", &jobs)
	if len(jobs) != 1 || jobs[0].ID != id || jobs[0].State != "running" {
		t.Fatalf("/api/v1/jobs: %+v, want the running job %s", jobs, id)
	}
	jobURL := base + "/api/v1/jobs/" + id
	var j ui.Job
	p.waitFor(t, "3 batches in the API", func() bool {
		getAPI(t, jobURL, &j)
		return j.BatchesDone >= 3
	})
	var page ui.BatchPage
	getAPI(t, jobURL+"/batches?limit=1000", &page)
	logged := map[string]logLine{}
	for _, l := range logLinesWithMsg(stderr(), "batch") {
		logged[l["batch"]] = l
	}
	if len(page.Batches) < 3 {
		t.Fatalf("API lists %d batches, want at least 3", len(page.Batches))
	}
	var details []ui.BatchDetail
	for _, b := range page.Batches {
		key := b.Time.UTC().Format("2006-01-02T15:04:05.000Z")
		l, ok := logged[key]
		if !ok {
			t.Fatalf("batch %s is in the API but not in the log", key)
		}
		if l["input_records"] != fmt.Sprint(b.InputRecords) || b.InputRecords == 0 {
			t.Errorf("batch %s: API input %d, log %s", key, b.InputRecords, l["input_records"])
		}
		for field, ms := range map[string]float64{"scheduling_delay": b.SchedulingDelayMs, "processing_time": b.ProcessingTimeMs, "total_delay": b.TotalDelayMs} {
			d, err := time.ParseDuration(l[field])
			if err != nil || int64(math.Round(ms*1e6)) != int64(d) {
				t.Errorf("batch %s: API %s %vms, log %s", key, field, ms, l[field])
			}
		}
		var detail ui.BatchDetail
		getAPI(t, fmt.Sprintf("%s/batches/%d", jobURL, b.ID), &detail)
		if fmt.Sprint(len(detail.OutputJobs)) != l["jobs"] {
			t.Errorf("batch %s: API %d jobs, log %s", key, len(detail.OutputJobs), l["jobs"])
		}
		details = append(details, detail)
	}
	return details
}

// TestUILocalJobProcess runs the demo job as a process with --ui and checks
// its JSON API against its batch log lines; SIGTERM stops job and UI.
func TestUILocalJobProcess(t *testing.T) {
	needProcesses(t)
	p := start(t, wordcountBin, "--ui=127.0.0.1:0", "--master=local[2]", "--lines-per-second=2000")
	p.waitFor(t, "the web UI line", func() bool { return uiURLRE.MatchString(p.stderr.String()) })
	base := uiURLRE.FindStringSubmatch(p.stderr.String())[1]
	checkUIAgainstLog(t, p, base, "wordcount", p.stderr.String)
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t, exitBound); code != 0 {
		t.Fatalf("exit %d after SIGTERM", code)
	}
	if _, err := http.Get(base + "/api/v1/jobs"); err == nil {
		t.Fatal("the UI still answers after the job exited")
	}
}

// TestUIClusterJobDriver submits the demo job with --ui to a cluster: its
// driver process serves the job's API (the cluster's own `driver serve
// --ui` is still to come), with figures that match its batch log lines.
func TestUIClusterJobDriver(t *testing.T) {
	c := newCluster(t, 1)
	id := c.submit("--ui=127.0.0.1:0", "--lines-per-second=2000")
	c.driver.waitFor(t, "the job driver's web UI line", func() bool { return uiURLRE.MatchString(c.jobStderr(id)) })
	base := uiURLRE.FindStringSubmatch(c.jobStderr(id))[1]
	checkUIAgainstLog(t, c.driver, base, id, func() string { return c.jobStderr(id) })
	if _, err := c.run("stop", id); err != nil {
		t.Fatal(err)
	}
}
