//go:build unix

package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sluicehq/sluice/internal/ui"
	"github.com/sluicehq/sluice/internal/ui/uitest"
)

// TestUICluster runs `driver serve --ui` with two executor processes and
// the stateful test job, and checks the cluster's web UI: the JSON API
// (proxied from the job's driver) against the job's batch log lines, task
// rows against the stage figures, the executors with their state
// partitions and heartbeats, the stop action's authentication and
// /metrics; then the pages in headless Chromium, and `driver status
// --watch` as a process.
func TestUICluster(t *testing.T) {
	c := newClusterWith(t, 2, "--ui=127.0.0.1:0")
	c.driver.waitFor(t, "the web UI line", func() bool { return uiURLRE.MatchString(c.driver.stderr.String()) })
	base := uiURLRE.FindStringSubmatch(c.driver.stderr.String())[1]
	id := c.submitBinary(statejobBin)
	jobURL := base + "/api/v1/jobs/" + id

	t.Run("api", func(t *testing.T) {
		details := checkUIAgainstLog(t, c.driver, base, id, func() string { return c.jobStderr(id) })
		for _, d := range details {
			var attempts, records int64
			for _, j := range d.OutputJobs {
				for _, s := range j.Stages {
					attempts += int64(s.Tasks + s.Failed)
					records += s.RecordsRead
				}
			}
			var rowRecords int64
			for _, k := range d.Tasks {
				if k.Job < 0 || int(k.Job) >= len(d.OutputJobs) || !hasStage(d.OutputJobs[k.Job], k.Stage) {
					t.Errorf("batch %d: task row %+v names a job and stage not in outputJobs", d.ID, k)
				}
				if k.Executor != "exec0" && k.Executor != "exec1" {
					t.Errorf("batch %d: task %d ran on %q, not an executor of the cluster", d.ID, k.ID, k.Executor)
				}
				if k.Status == ui.StatusSucceeded {
					rowRecords += k.RecordsRead
				}
			}
			if int64(len(d.Tasks)+d.TasksDropped) != attempts || rowRecords != records || attempts == 0 {
				t.Errorf("batch %d: %d task rows (+%d dropped) reading %d records; the stages count %d attempts reading %d",
					d.ID, len(d.Tasks), d.TasksDropped, rowRecords, attempts, records)
			}
		}
		var es []ui.Executor
		getAPI(t, jobURL+"/executors", &es)
		held := map[string]string{}
		var done int64
		for _, e := range es {
			if e.State != ui.ExecutorActive || e.Slots != 2 || e.Epoch <= 0 || e.Incarnation <= 0 || !strings.HasPrefix(e.Address, "127.0.0.1:") ||
				e.LastHeartbeat == nil || time.Since(*e.LastHeartbeat) > 30*time.Second {
				t.Errorf("executor %+v: want active, 2 slots, an epoch and incarnation, its address and a recent heartbeat", e)
			}
			for _, p := range e.StatePartitions {
				if other, dup := held[p]; dup {
					t.Errorf("state partition %s is on %s and %s", p, other, e.ID)
				}
				held[p] = e.ID
			}
			done += e.TasksSucceeded
		}
		if len(es) != 2 || es[0].ID != "exec0" || es[1].ID != "exec1" || done == 0 {
			t.Fatalf("job executors %+v: want exec0 and exec1 that ran tasks", es)
		}
		// The partitions each executor caches, from the scheduler's
		// registry: statejob's state and window streams are persisted.
		cached := 0
		for _, e := range es {
			if e.CachedBlocks == nil {
				t.Errorf("executor %s: no cachedBlocks figure", e.ID)
			} else {
				cached += *e.CachedBlocks
			}
		}
		if cached == 0 {
			t.Errorf("the executors cache no partitions, as the registry has it: %+v", es)
		}
		// statejob keeps "totals", "window" and "events" state with one
		// partition per task slot (4).
		for _, op := range []string{"totals", "window", "events"} {
			for p := range 4 {
				if _, ok := held[fmt.Sprintf("%s/%d", op, p)]; !ok {
					t.Errorf("state partition %s/%d is on no executor: %v", op, p, held)
				}
			}
		}
		// The job driver's API socket is the owner's only.
		sock := filepath.Join(c.dir, "state", "jobs", id, "ui.sock")
		if st, err := os.Stat(sock); err != nil || st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o600 {
			t.Errorf("the job's UI socket %s: %v %v, want a socket with mode 0600", sock, st, err)
		}
		var all []ui.Executor
		getAPI(t, base+"/api/v1/executors", &all)
		if len(all) != 2 || all[0].LastHeartbeat == nil || all[0].Epoch != es[0].Epoch {
			t.Errorf("cluster executors %+v, want exec0 and exec1 as the job sees them", all)
		}
		// Reduce tasks read map outputs from the other executor: the
		// daemons count the bytes they serve and report them with their
		// heartbeats.
		var served int64
		for _, e := range all {
			if e.ShuffleBytesServed == nil {
				t.Errorf("executor %s: no shuffleBytesServed figure", e.ID)
			} else {
				served += *e.ShuffleBytesServed
			}
		}
		if served == 0 {
			t.Errorf("the executors served no shuffle bytes to each other: %+v", all)
		}
		for path, want := range map[string]int{"/api/v1/jobs/nojob": 404, "/api/v1/jobs/nojob/batches": 404, "/api/v1/jobs/" + id + "/batches/x": 400, "/api/v1/nothing": 404} {
			resp, err := http.Get(base + path)
			if err != nil {
				t.Fatal(err)
			}
			var e ui.Error
			json.NewDecoder(resp.Body).Decode(&e)
			resp.Body.Close()
			if resp.StatusCode != want || e.Error == "" {
				t.Errorf("GET %s: %d %q, want %d with a reason", path, resp.StatusCode, e.Error, want)
			}
		}
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		parser := expfmt.NewTextParser(model.LegacyValidation)
		fams, err := parser.TextToMetricFamilies(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		execs := map[string]float64{}
		for _, m := range fams["sluice_executors"].GetMetric() {
			execs[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
		}
		if execs["active"] != 2 || execs["lost"] != 0 {
			t.Errorf("sluice_executors %v, want 2 active", execs)
		}
		// The job's own metrics, proxied from its driver.
		resp, err = http.Get(jobURL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		parser = expfmt.NewTextParser(model.LegacyValidation)
		fams, err = parser.TextToMetricFamilies(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		var j ui.Job
		getAPI(t, jobURL, &j)
		completed := fams["sluice_batches_completed_total"].GetMetric()
		if len(completed) != 1 || completed[0].GetCounter().GetValue() < 3 || completed[0].GetCounter().GetValue() > float64(j.BatchesDone) {
			t.Errorf("job metrics: sluice_batches_completed_total %v, want from 3 to %d", completed, j.BatchesDone)
		}
	})

	t.Run("browser", func(t *testing.T) { clusterUIInBrowser(t, base, id) })

	t.Run("status", func(t *testing.T) {
		out, err := c.run("status", "--ui", base, id)
		if err != nil || !strings.Contains(out, "job "+id) || !strings.Contains(out, ": running,") || !strings.Contains(out, "SCHED DELAY") {
			t.Fatalf("driver status --ui: %v\n%s", err, out)
		}
		w := start(t, driverBin, "status", "--master", c.addr, "--secret-file", c.secret, "--ui", base, "--watch", "--interval", "300ms", id)
		w.waitFor(t, "3 redraws", func() bool { return strings.Count(w.stdout.String(), "\x1b[H\x1b[2J") >= 3 })
		frames := strings.Split(w.stdout.String(), "\x1b[H\x1b[2J")
		frame := frames[len(frames)-2] // the last whole one
		logged := map[string]string{}
		for _, l := range logLinesWithMsg(c.jobStderr(id), "batch") {
			logged[l["batch"][11:23]] = l["input_records"]
		}
		rows := 0
		for _, l := range strings.Split(frame, "\n") {
			f := strings.Fields(l)
			if len(f) == 7 && f[6] == "succeeded" {
				rows++
				if logged[f[0]] != f[1] {
					t.Errorf("watch row %q: the log has %q records for batch %s", l, logged[f[0]], f[0])
				}
			}
		}
		if rows == 0 || !strings.Contains(frame, "job "+id) {
			t.Fatalf("watch frame shows no batch:\n%s", frame)
		}
		// Stopping through the API needs the secret as a bearer token.
		for _, auth := range []string{"", "Basic " + basic(c.secret), "Bearer wrong-secret-0123456789"} {
			if code := post(t, jobURL+"/stop", auth); code != http.StatusForbidden {
				t.Errorf("POST stop with %q: %d, want 403", auth, code)
			}
		}
		if code := post(t, jobURL+"/stop", "Bearer "+readSecret(t, c.secret)); code != 200 {
			t.Fatalf("POST stop with the secret: %d", code)
		}
		if code := w.wait(t, exitBound+10*time.Second); code != 0 {
			t.Fatalf("status --watch exited %d after the job ended", code)
		}
		var j ui.Job
		getAPI(t, jobURL, &j)
		if j.State != "finished" {
			t.Errorf("job state %q after stop, want finished", j.State)
		}
		// The history ended with the job's driver: its paths say so.
		resp, err := http.Get(jobURL + "/batches")
		if err != nil {
			t.Fatal(err)
		}
		var e ui.Error
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != 404 || !strings.Contains(e.Error, "is finished") || !strings.Contains(e.Error, "jobs/"+id) {
			t.Errorf("GET batches of the finished job: %d %q, want 404 naming its log directory", resp.StatusCode, e.Error)
		}
		if _, err := os.Stat(filepath.Join(c.dir, "state", "jobs", id, "ui.sock")); !os.IsNotExist(err) {
			t.Errorf("the finished job's UI socket is still there: %v", err)
		}
	})
}

func readSecret(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func basic(secretFile string) string {
	b, _ := os.ReadFile(secretFile)
	return base64Std("user:" + strings.TrimSpace(string(b)))
}

func post(t *testing.T, url, auth string) int {
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(nil))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// clusterUIInBrowser opens the cluster's jobs list, the job's streaming
// page, a batch page and the executors page in headless Chromium, saving
// a screenshot of each, and fails on any page script error.
func clusterUIInBrowser(t *testing.T, base, id string) {
	br := uitest.NewBrowser(t)
	ctx := br.Ctx
	css := uitest.CSS
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(css(`#jobs a.job`)),
		br.Shot(t, "cluster-jobs.png"),
		uitest.Click(`#jobs a.job`),
		chromedp.WaitVisible(css(`.chart svg.timeline circle.pt`)),
		chromedp.WaitVisible(css(`#batches a.batch`)),
		br.Shot(t, "cluster-streaming.png"),
	); err != nil {
		t.Fatalf("jobs list and streaming page: %v", err)
	}
	hash, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.hash`))
	if err != nil || hash != "#/jobs/"+id {
		t.Fatalf("the jobs list's link opened %q (%v), want #/jobs/%s", hash, err, id)
	}
	points, err := chromedp.Run(ctx, chromedp.Evaluate[[]int](`[...document.querySelectorAll('.chart svg.timeline')].map(s => s.querySelectorAll('circle.pt').length)`))
	if err != nil || len(points) != 4 || points[0] < 3 {
		t.Fatalf("timeline points %v (%v): want 4 charts with a point per batch that ran (at least 3)", points, err)
	}
	if err := chromedp.Do(ctx,
		uitest.Click(`#batches a.batch`),
		chromedp.WaitVisible(css(`#stages tr.stage`)),
		chromedp.WaitVisible(css(`#tasks tr.task`)),
		br.Shot(t, "cluster-batch.png"),
	); err != nil {
		t.Fatalf("batch page: %v", err)
	}
	execs, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#tasks tr.task td:nth-child(6)')].map(td => td.textContent)`))
	if err != nil || len(execs) == 0 {
		t.Fatalf("task rows: %v %v", execs, err)
	}
	for _, e := range execs {
		if e != "exec0" && e != "exec1" {
			t.Fatalf("a task row names executor %q", e)
		}
	}
	if err := chromedp.Do(ctx,
		uitest.Click(`#crumbs a:nth-of-type(2)`),
		chromedp.WaitVisible(css(`#executors-link`)),
		uitest.Click(`#executors-link`),
		chromedp.WaitVisible(css(`#executors tr.executor`)),
		br.Shot(t, "cluster-executors.png"),
	); err != nil {
		t.Fatalf("executors page: %v", err)
	}
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#executors tr.executor td:first-child')].map(td => td.textContent)`))
	if err != nil || strings.Join(rows, ",") != "exec0,exec1" {
		t.Fatalf("executors page rows %v (%v), want exec0,exec1", rows, err)
	}
	br.CheckErrors(t)
}

func base64Std(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func hasStage(j ui.OutputJob, stage int) bool {
	for _, s := range j.Stages {
		if s.ID == stage {
			return true
		}
	}
	return false
}
