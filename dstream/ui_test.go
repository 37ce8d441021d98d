package dstream

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/sluicehq/sluice/internal/ui"
	"github.com/sluicehq/sluice/rdd"
	"github.com/sluicehq/sluice/scheduler"
)

func TestHistoryRingKeepsTheLastBatches(t *testing.T) {
	h := NewHistory(3)
	t0 := time.Unix(1000, 0)
	for i := 1; i <= 5; i++ {
		r := BatchRecord{BatchInfo: BatchInfo{Time: t0.Add(time.Duration(i) * time.Second), InputRecords: int64(i)}}
		if i == 4 {
			r.Failed, r.Error = true, strings.Repeat("x", 5000)
			r.Jobs = []scheduler.JobMetrics{{Stages: []scheduler.StageMetrics{{Failed: 2}, {Failed: 1}}}}
		}
		h.Add(r)
	}
	if h.Len() != 3 || h.Cap() != 3 {
		t.Fatalf("len %d cap %d, want 3 3", h.Len(), h.Cap())
	}
	page, total := h.Page(0, 10)
	if total != 3 || len(page) != 3 {
		t.Fatalf("page of %d, total %d; want 3, 3", len(page), total)
	}
	for i, want := range []int64{5, 4, 3} { // newest first
		if page[i].InputRecords != want {
			t.Fatalf("page[%d] is batch %d, want %d", i, page[i].InputRecords, want)
		}
	}
	if p, _ := h.Page(1, 1); len(p) != 1 || p[0].InputRecords != 4 {
		t.Fatalf("Page(1,1) = %+v, want batch 4", p)
	}
	if p, _ := h.Page(3, 1); len(p) != 0 {
		t.Fatalf("Page past the end = %+v, want none", p)
	}
	if _, ok := h.Find(t0.Add(2 * time.Second)); ok {
		t.Fatal("found batch 2, which the ring of 3 dropped")
	}
	r, ok := h.Find(t0.Add(4 * time.Second))
	if !ok || !r.Failed || len(r.Error) > maxBatchError+len("…") {
		t.Fatalf("batch 4: found %v failed %v error of %d bytes; want found, failed, error cut to %d", ok, r.Failed, len(r.Error), maxBatchError)
	}
	c := h.Counters()
	if c != (HistoryCounters{BatchesDone: 4, BatchesFailed: 1, InputRecords: 15, TaskFailures: 3}) {
		t.Fatalf("counters %+v", c)
	}
	if last, ok := h.Last(); !ok || last.InputRecords != 5 {
		t.Fatalf("last %+v", last)
	}
}

// syncBuffer is a bytes.Buffer the job's logger and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// logLines returns the JSON log lines whose msg is one of msgs.
func logLines(t *testing.T, log string, msgs ...string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) != nil {
			continue
		}
		for _, msg := range msgs {
			if m["msg"] == msg {
				out = append(out, m)
			}
		}
	}
	return out
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("GET %s: %v in %s", url, err, b)
		}
	}
	return resp.StatusCode
}

// runUIJob runs a local job with --ui on a free loopback port: a rate
// source of perBatch records a batch, counted by an output. It returns
// the UI's base URL, the job's log and a function that stops the job and
// waits for it.
func runUIJob(t *testing.T, perBatch int64, extra ...string) (base string, log *syncBuffer, stop func()) {
	t.Helper()
	return runUIJobGraph(t, perBatch, func(in *DStream[int64]) {
		ForeachRDD(Count(in), func(b *Batch, r *rdd.RDD[int64]) error {
			_, err := Collect(b, r)
			return err
		})
	}, extra...)
}

// runUIJobGraph is runUIJob with the graph over the rate source given.
func runUIJobGraph(t *testing.T, perBatch int64, graph func(in *DStream[int64]), extra ...string) (base string, log *syncBuffer, stop func()) {
	t.Helper()
	j := startUIJob(t, perBatch, graph, extra...)
	var once sync.Once
	stop = func() {
		once.Do(func() {
			j.sc.Stop()
			if code := <-j.done; code != 0 {
				t.Errorf("job exited %d: %s", code, j.log.String())
			}
			j.mem.AssertSize(t, 0)
		})
	}
	t.Cleanup(stop)
	return j.base, j.log, stop
}

// uiJob is a local job started by startUIJob.
type uiJob struct {
	base string // the UI's base URL
	log  *syncBuffer
	sc   *Context
	done chan int // the exit code of RunArgs
	mem  *memory.CheckedAllocator
}

// startUIJob starts a local job with --ui and the graph over a rate source
// of perBatch records a batch, and waits for its UI. The caller stops it.
func startUIJob(t *testing.T, perBatch int64, graph func(in *DStream[int64]), extra ...string) uiJob {
	t.Helper()
	var base string
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	log := &syncBuffer{}
	interval := 50 * time.Millisecond
	cfg := Config{AppName: "ui job", BatchInterval: interval, Allocator: mem, Stdout: io.Discard}
	var sc *Context
	ready := make(chan struct{})
	done := make(chan int, 1)
	args := append([]string{"--ui=127.0.0.1:0", "--log-format=json", "--master=local[2]"}, extra...)
	go func() { // the job; stop waits for it
		done <- RunArgs(cfg, args, log, func(ctx *Context) error {
			sc = ctx
			close(ready)
			graph(Rate(ctx, perBatch*int64(time.Second/interval)))
			return nil
		})
	}()
	<-ready
	deadline := time.Now().Add(30 * time.Second)
	for base == "" {
		for _, l := range logLines(t, log.String(), "web UI") {
			base = strings.TrimSuffix(l["url"].(string), "/")
		}
		if base != "" {
			break
		}
		select {
		case code := <-done:
			t.Fatalf("job exited %d before serving the UI: %s", code, log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no \"web UI\" log line after 30s: %s", log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return uiJob{base: base, log: log, sc: sc, done: done, mem: mem}
}

// waitBatches polls the job until it finished at least n batches.
func waitBatches(t *testing.T, jobURL string, n int64) ui.Job {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var j ui.Job
		if code := getJSON(t, jobURL, &j); code != 200 {
			t.Fatalf("GET %s: status %d", jobURL, code)
		}
		if j.BatchesDone >= n {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job did %d batches in 60s, want %d", j.BatchesDone, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestUIAPIOfARunningLocalJob(t *testing.T) {
	base, log, stop := runUIJob(t, 7)
	var jobs []ui.Job
	if code := getJSON(t, base+"/api/v1/jobs", &jobs); code != 200 || len(jobs) != 1 {
		t.Fatalf("/api/v1/jobs: status %d, %d jobs; want 200 and the one job", code, len(jobs))
	}
	if jobs[0].ID != "ui_job" || jobs[0].Name != "ui job" || jobs[0].State != "running" || jobs[0].BatchIntervalMs != 50 {
		t.Fatalf("job %+v", jobs[0])
	}
	jobURL := base + "/api/v1/jobs/" + jobs[0].ID
	j := waitBatches(t, jobURL, 5)
	if j.LastBatch == nil || j.HistoryCapacity != DefaultHistorySize {
		t.Fatalf("job %+v: want a last batch and a history of %d", j, DefaultHistorySize)
	}
	var page ui.BatchPage
	if code := getJSON(t, jobURL+"/batches?limit=3", &page); code != 200 {
		t.Fatalf("batches: status %d", code)
	}
	if len(page.Batches) != 3 || page.Total < 5 || page.Limit != 3 {
		t.Fatalf("page %+v: want 3 batches of at least 5", page)
	}
	for i := 1; i < len(page.Batches); i++ {
		if page.Batches[i].ID >= page.Batches[i-1].ID {
			t.Fatalf("batches not newest first: %d then %d", page.Batches[i-1].ID, page.Batches[i].ID)
		}
	}
	var all ui.BatchPage
	getJSON(t, jobURL+"/batches?limit=1000", &all)
	var detail ui.BatchDetail
	b0 := page.Batches[0]
	if code := getJSON(t, fmt.Sprintf("%s/batches/%d", jobURL, b0.ID), &detail); code != 200 {
		t.Fatalf("batch %d: status %d", b0.ID, code)
	}
	if detail.ID != b0.ID || len(detail.OutputJobs) != 1 || len(detail.OutputJobs[0].Stages) == 0 {
		t.Fatalf("batch detail %+v: want the batch with one job and its stages", detail)
	}
	tasks := 0
	for _, s := range detail.OutputJobs[0].Stages {
		tasks += s.Tasks
	}
	if tasks == 0 {
		t.Fatalf("batch detail %+v: no successful tasks", detail)
	}
	// Errors say what was wrong.
	var e ui.Error
	for path, want := range map[string]int{
		"/api/v1/jobs/nope":                        404,
		jobURL[len(base):] + "/batches/1":          404,
		jobURL[len(base):] + "/batches/x":          400,
		jobURL[len(base):] + "/batches?limit=1001": 400,
		jobURL[len(base):] + "/batches?offset=-1":  400,
		"/api/v2/": 404,
	} {
		if code := getJSON(t, base+path, &e); code != want || e.Error == "" {
			t.Errorf("GET %s: %d %q, want %d and a message", path, code, e.Error, want)
		}
	}
	resp, err := http.Post(base+"/api/v1/jobs", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", resp.StatusCode)
	}
	stop()
	if _, err := http.Get(base + "/api/v1/jobs"); err == nil {
		t.Error("the UI still answers after the job stopped")
	}

	// The figures match the batch log lines.
	logged := map[string]map[string]any{}
	for _, l := range logLines(t, log.String(), "batch") {
		logged[l["batch"].(string)] = l
	}
	for _, b := range all.Batches {
		l, ok := logged[fmtTime(b.Time)]
		if !ok {
			t.Fatalf("batch %s is in the API but not in the log", fmtTime(b.Time))
		}
		if int64(l["input_records"].(float64)) != b.InputRecords || b.InputRecords != 7 {
			t.Errorf("batch %s: API input %d, log %v, want 7", fmtTime(b.Time), b.InputRecords, l["input_records"])
		}
		if time.Duration(l["processing_time"].(float64)) != time.Duration(b.ProcessingTimeMs*1e6+0.5) {
			t.Errorf("batch %s: API processing %vms, log %vns", fmtTime(b.Time), b.ProcessingTimeMs, l["processing_time"])
		}
	}
	if len(logged) < len(all.Batches) {
		t.Fatalf("log has %d batches, API %d", len(logged), len(all.Batches))
	}
}

func TestUIFlagErrors(t *testing.T) {
	for _, args := range [][]string{{"--ui=:99999"}, {"--ui=127.0.0.1:0", "--ui-history=0"}} {
		var stderr syncBuffer
		cfg := Config{AppName: "j", BatchInterval: time.Second, Stdout: io.Discard}
		code := RunArgs(cfg, args, &stderr, func(ctx *Context) error {
			Print(Rate(ctx, 1), 1)
			return nil
		})
		if code == 0 || !strings.Contains(stderr.String(), "ui") {
			t.Errorf("%v: exit %d, stderr %q; want a failure naming the flag", args, code, stderr.String())
		}
	}
}

func TestUISecret(t *testing.T) {
	dir := t.TempDir()
	secret := "0123456789abcdef0123456789abcdef"
	file := filepath.Join(dir, "secret")
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base, _, _ := runUIJob(t, 3, "--ui-secret-file="+file)
	do := func(path string, auth func(r *http.Request)) *http.Response {
		req, err := http.NewRequest("GET", base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if auth != nil {
			auth(req)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for _, path := range []string{"/", "/app.js", "/api/v1/jobs", "/api/v1/jobs/ui_job/batches"} {
		resp := do(path, nil)
		if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("GET %s without the secret: %d, want 401 asking for Basic auth", path, resp.StatusCode)
		}
		if code := do(path, func(r *http.Request) { r.SetBasicAuth("me", "wrong-secret-wrong-secret") }).StatusCode; code != 401 {
			t.Errorf("GET %s with a wrong secret: %d, want 401", path, code)
		}
		if code := do(path, func(r *http.Request) { r.SetBasicAuth("anyone", secret) }).StatusCode; code != 200 {
			t.Errorf("GET %s with the secret as password: %d, want 200", path, code)
		}
		if code := do(path, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+secret) }).StatusCode; code != 200 {
			t.Errorf("GET %s with the secret as bearer token: %d, want 200", path, code)
		}
	}
	if code := do("/metrics", nil).StatusCode; code != 200 {
		t.Errorf("GET /metrics without the secret: %d, want 200 (metrics stay open)", code)
	}

	// Beyond loopback the secret is required; a short one is refused.
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("abc"), 0o600)
	for args, want := range map[string]string{
		"--ui=0.0.0.0:0":                            "--ui-secret-file",
		"--ui=:0 --ui-secret-file=" + short:         "at least 16",
		"--ui=:0 --ui-secret-file=" + dir + "/none": "--ui-secret-file",
	} {
		var stderr syncBuffer
		cfg := Config{AppName: "j", BatchInterval: time.Second, Stdout: io.Discard}
		code := RunArgs(cfg, strings.Fields(args), &stderr, func(ctx *Context) error {
			Print(Rate(ctx, 1), 1)
			return nil
		})
		if code == 0 || !strings.Contains(stderr.String(), want) {
			t.Errorf("%s: exit %d, stderr %q; want a failure and %q", args, code, stderr.String(), want)
		}
	}
}

// TestUIStateSize: the job's state size in the API and the metrics is its
// stateful operators'.
func TestUIStateSize(t *testing.T) {
	base, _, stop := runUIJobGraph(t, 10, func(in *DStream[int64]) {
		keyed := Map(in, func(v int64) KV[int64, int64] { return KVOf(v%5, int64(1)) })
		sums := UpdateStateByKey(keyed, "sums", func(vs []int64, s int64, ok bool) (int64, bool) {
			for _, v := range vs {
				s += v
			}
			return s, true
		})
		ForeachRDD(Count(sums), func(b *Batch, r *rdd.RDD[int64]) error {
			_, err := Collect(b, r)
			return err
		})
	})
	j := waitBatches(t, base+"/api/v1/jobs/ui_job", 2)
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	stop()
	if j.StateKeys != 5 || j.StateBytes <= 0 {
		t.Fatalf("job state %d keys, %d bytes; want 5 keys (v mod 5) and some bytes", j.StateKeys, j.StateBytes)
	}
	if !strings.Contains(string(body), "\nsluice_state_keys 5\n") {
		t.Fatalf("/metrics has no sluice_state_keys 5:\n%s", body)
	}
}

// TestUIPendingBatches: a job whose batches take longer than its interval
// shows the batches it owes.
func TestUIPendingBatches(t *testing.T) {
	base, _, stop := runUIJobGraph(t, 1, func(in *DStream[int64]) {
		ForeachRDD(in, func(b *Batch, r *rdd.RDD[int64]) error {
			time.Sleep(150 * time.Millisecond) // three batch intervals
			return nil
		})
	})
	jobURL := base + "/api/v1/jobs/ui_job"
	var j ui.Job
	for deadline := time.Now().Add(60 * time.Second); j.PendingBatches < 3; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("job %+v: pending batches never reached 3 while each batch takes 3 intervals", j)
		}
		getJSON(t, jobURL, &j)
	}
	stop()
}
