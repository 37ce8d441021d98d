package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluicehq/sluice/internal/ui"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// The coordinator's web UI (`driver serve --ui`) serves the same pages and
// API paths as a local job's: /api/v1/jobs lists the cluster's jobs, and
// everything below /api/v1/jobs/JOB is the job driver's own API, which the
// job's driver process serves on a unix socket in its job directory
// (SLUICE_UI_SOCKET) and the coordinator proxies. The coordinator adds what
// only it knows: a finished job's summary, executors' heartbeats, and the
// stop action.

// uiProxyTimeout bounds one proxied call to a job driver.
const uiProxyTimeout = 10 * time.Second

// maxLostExecutors bounds the lost executors the coordinator remembers.
const maxLostExecutors = 100

// lostExec is an executor the coordinator declared lost.
type lostExec struct {
	info     *sluicev1.ExecutorInfo
	lastSeen time.Time
}

// UIHandler returns the coordinator's web UI and API routes, with its
// metrics at /metrics. token is what the coordinator sends job drivers
// (the cluster secret; "" in --insecure mode).
func (c *Coordinator) UIHandler(opts ui.Options) http.Handler {
	u := &coordUI{c: c, token: c.cfg.Secret.UIToken()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/jobs", u.jobs)
	mux.HandleFunc("GET /api/v1/executors", u.executors)
	mux.HandleFunc("GET /api/v1/jobs/{id}", u.job)
	mux.HandleFunc("GET /api/v1/jobs/{id}/executors", u.jobExecutors)
	mux.HandleFunc("GET /api/v1/jobs/{id}/", u.proxy)
	mux.HandleFunc("POST /api/v1/jobs/{id}/stop", u.stop)
	mux.HandleFunc("GET /api/", func(w http.ResponseWriter, r *http.Request) {
		ui.WriteError(w, http.StatusNotFound, fmt.Sprintf("no API path %s: see /api/v1/jobs", Quote(r.URL.Path)))
	})
	mux.Handle("GET /metrics", c.metricsHandler())
	mux.Handle("GET /", ui.Static())
	return ui.Secure(mux, opts)
}

type coordUI struct {
	c     *Coordinator
	token string
}

// client returns an HTTP client that reaches a job driver's UI socket.
func (j *jobRec) client() *http.Client {
	j.uiOnce.Do(func() {
		sock := j.uiSocket
		j.ui = &http.Client{
			Timeout: uiProxyTimeout,
			Transport: &http.Transport{
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, "unix", sock)
				},
				MaxIdleConns: 4, IdleConnTimeout: 30 * time.Second,
			},
		}
	})
	return j.ui
}

// lookup returns a job's record and a copy of its info.
func (u *coordUI) lookup(id string) (*jobRec, *sluicev1.JobInfo, bool) {
	u.c.mu.Lock()
	defer u.c.mu.Unlock()
	j, ok := u.c.jobs[id]
	if !ok {
		return nil, nil, false
	}
	return j, cloneJob(j), true
}

// call does a GET of path on a job driver's API.
func (u *coordUI) call(ctx context.Context, j *jobRec, path, query string) (*http.Response, error) {
	url := "http://job" + path
	if query != "" {
		url += "?" + query
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if u.token != "" {
		req.Header.Set("Authorization", "Bearer "+u.token)
	}
	return j.client().Do(req)
}

// summary is a job's row of /api/v1/jobs: the job driver's summary while
// it answers, else what the coordinator knows.
func (u *coordUI) summary(ctx context.Context, j *jobRec, info *sluicev1.JobInfo) ui.Job {
	started := time.UnixMilli(info.GetStartedUnixMs()).UTC()
	base := ui.Job{ID: info.GetJobId(), Name: info.GetName(), State: info.GetState(), Master: "cluster",
		StartTime: started, UptimeMs: time.Since(started).Milliseconds(), Error: info.GetError()}
	over := info.GetState() == "finished" || info.GetState() == "failed"
	if fi, err := os.Stat(filepath.Join(filepath.Dir(j.summary), "stderr.log")); over && err == nil {
		// Its uptime stopped with its last driver process's last word.
		base.UptimeMs = max(0, fi.ModTime().Sub(started).Milliseconds())
	}
	if info.GetState() != "running" && info.GetState() != "stopping" {
		// Starting, restarting, or over: the figures of its last driver
		// process, as it wrote them when it exited (none if it was killed).
		b, err := os.ReadFile(j.summary)
		fi, serr := os.Stat(j.summary)
		var last ui.Job
		if err != nil || serr != nil || json.Unmarshal(b, &last) != nil || last.ID != base.ID {
			return base
		}
		last.Name, last.State, last.Master, last.Error, last.StartTime = base.Name, base.State, base.Master, base.Error, base.StartTime
		if over {
			// Its uptime stopped when its last process wrote the file.
			last.UptimeMs = max(0, fi.ModTime().Sub(started).Milliseconds())
		} else {
			last.UptimeMs = base.UptimeMs
		}
		last.PendingBatches = 0
		return last
	}
	resp, err := u.call(ctx, j, "/api/v1/jobs/"+info.GetJobId(), "")
	if err != nil {
		return base // starting: its API is not up yet
	}
	defer resp.Body.Close()
	var got ui.Job
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&got) != nil {
		return base
	}
	got.ID, got.Name, got.Master, got.Error = base.ID, base.Name, base.Master, base.Error
	if base.State != "running" || got.State == "created" {
		got.State = base.State
	}
	return got
}

func (u *coordUI) jobs(w http.ResponseWriter, r *http.Request) {
	resp, _ := u.c.ListJobs(r.Context(), nil)
	out := make([]ui.Job, len(resp.GetJobs()))
	var wg sync.WaitGroup
	for i, info := range resp.GetJobs() {
		j, _, ok := u.lookup(info.GetJobId())
		if !ok {
			continue
		}
		wg.Go(func() { out[i] = u.summary(r.Context(), j, info) })
	}
	wg.Wait()
	ui.WriteJSON(w, out)
}

func (u *coordUI) job(w http.ResponseWriter, r *http.Request) {
	j, info, ok := u.lookup(r.PathValue("id"))
	if !ok {
		ui.WriteError(w, http.StatusNotFound, fmt.Sprintf("no job %s in this cluster (see /api/v1/jobs)", Quote(r.PathValue("id"))))
		return
	}
	ui.WriteJSON(w, u.summary(r.Context(), j, info))
}

// proxy passes a GET below a job to its driver's API.
func (u *coordUI) proxy(w http.ResponseWriter, r *http.Request) {
	j, info, ok := u.lookup(r.PathValue("id"))
	if !ok {
		ui.WriteError(w, http.StatusNotFound, fmt.Sprintf("no job %s in this cluster (see /api/v1/jobs)", Quote(r.PathValue("id"))))
		return
	}
	resp, err := u.call(r.Context(), j, r.URL.Path, r.URL.RawQuery)
	if err != nil {
		code, msg := http.StatusBadGateway, fmt.Sprintf("job %s (%s): its driver's API does not answer: %v", info.GetJobId(), info.GetState(), err)
		if st := info.GetState(); st == "starting" || st == "restarting" {
			code, msg = http.StatusServiceUnavailable, fmt.Sprintf("job %s is %s: its driver's API answers once it runs; try again", info.GetJobId(), st)
		} else if st != "running" && st != "stopping" {
			code, msg = http.StatusNotFound, fmt.Sprintf("job %s is %s: its batch history ended with its driver process (its log is in the state directory, jobs/%s)", info.GetJobId(), st, info.GetJobId())
		}
		ui.WriteError(w, code, msg)
		return
	}
	defer resp.Body.Close()
	for _, h := range []string{"Content-Type", "Content-Encoding", "Cache-Control"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

// jobExecutors is the job driver's executors list, with the heartbeats the
// coordinator saw.
func (u *coordUI) jobExecutors(w http.ResponseWriter, r *http.Request) {
	j, info, ok := u.lookup(r.PathValue("id"))
	if !ok {
		ui.WriteError(w, http.StatusNotFound, fmt.Sprintf("no job %s in this cluster (see /api/v1/jobs)", Quote(r.PathValue("id"))))
		return
	}
	resp, err := u.call(r.Context(), j, r.URL.Path, "")
	if err != nil {
		ui.WriteError(w, http.StatusBadGateway, fmt.Sprintf("job %s (%s): its driver's API does not answer: %v", info.GetJobId(), info.GetState(), err))
		return
	}
	defer resp.Body.Close()
	var es []ui.Executor
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&es) != nil {
		ui.WriteError(w, http.StatusBadGateway, fmt.Sprintf("job %s: its driver's API answered %s", info.GetJobId(), resp.Status))
		return
	}
	seen := u.c.heartbeats()
	for i := range es {
		if hb, ok := seen[es[i].ID]; ok && (hb.epoch == es[i].Epoch || es[i].State == ui.ExecutorLost) {
			t := hb.at.UTC()
			es[i].LastHeartbeat = &t
			served := hb.served
			es[i].ShuffleBytesServed = &served
		}
	}
	if es == nil {
		es = []ui.Executor{}
	}
	ui.WriteJSON(w, es)
}

type heartbeat struct {
	epoch int64
	at    time.Time
	// served is the shuffle bytes the executor had sent (all jobs).
	served int64
}

// heartbeats returns when each executor incarnation was last heard from,
// lost ones included.
func (c *Coordinator) heartbeats() map[string]heartbeat {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]heartbeat{}
	for _, l := range c.lost {
		out[l.info.GetExecutorId()] = heartbeat{l.info.GetEpoch(), l.lastSeen, l.info.GetShuffleBytesServed()}
	}
	for id, e := range c.execs {
		out[id] = heartbeat{e.info.GetEpoch(), e.lastSeen, e.info.GetShuffleBytesServed()}
	}
	return out
}

// UIExecutors lists the cluster's executors as the coordinator knows them:
// the registered ones and the last ones lost.
func (c *Coordinator) UIExecutors() []ui.Executor {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := []ui.Executor{}
	add := func(i *sluicev1.ExecutorInfo, seen time.Time, state string) {
		t := seen.UTC()
		served := i.GetShuffleBytesServed()
		out = append(out, ui.Executor{ID: i.GetExecutorId(), Epoch: i.GetEpoch(), Address: i.GetAddress(),
			Slots: int(i.GetSlots()), State: state, StatePartitions: []string{}, LastHeartbeat: &t, ShuffleBytesServed: &served})
	}
	for _, e := range c.execs {
		st := ui.ExecutorActive
		if e.info.GetDraining() {
			st = ui.ExecutorDraining
		}
		add(e.info, e.lastSeen, st)
	}
	for _, l := range c.lost {
		if _, back := c.execs[l.info.GetExecutorId()]; !back {
			add(l.info, l.lastSeen, ui.ExecutorLost)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (u *coordUI) executors(w http.ResponseWriter, r *http.Request) {
	ui.WriteJSON(w, u.c.UIExecutors())
}

func (u *coordUI) stop(w http.ResponseWriter, r *http.Request) {
	if _, err := u.c.StopJob(r.Context(), &sluicev1.StopJobRequest{JobId: r.PathValue("id")}); err != nil {
		ui.WriteError(w, http.StatusNotFound, fmt.Sprintf("no job %s in this cluster (see /api/v1/jobs)", Quote(r.PathValue("id"))))
		return
	}
	j, info, _ := u.lookup(r.PathValue("id"))
	ui.WriteJSON(w, u.summary(r.Context(), j, info))
}

// metricsHandler serves the coordinator's metrics: executors by state,
// jobs by state, and the process's own.
func (c *Coordinator) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(&coordCollector{c: c,
		execs: prometheus.NewDesc("sluice_executors", "Executors of the cluster by state (active, draining, lost: lost ones the coordinator still remembers).", []string{"state"}, nil),
		jobs:  prometheus.NewDesc("sluice_jobs", "Jobs of the cluster by state.", []string{"state"}, nil),
	})
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

type coordCollector struct {
	c           *Coordinator
	execs, jobs *prometheus.Desc
}

func (k *coordCollector) Describe(ch chan<- *prometheus.Desc) { ch <- k.execs; ch <- k.jobs }

func (k *coordCollector) Collect(ch chan<- prometheus.Metric) {
	es := map[string]int{ui.ExecutorActive: 0, ui.ExecutorDraining: 0, ui.ExecutorLost: 0}
	for _, e := range k.c.UIExecutors() {
		es[e.State]++
	}
	for st, n := range es {
		ch <- prometheus.MustNewConstMetric(k.execs, prometheus.GaugeValue, float64(n), st)
	}
	js := map[string]int{"starting": 0, "running": 0, "restarting": 0, "stopping": 0, "finished": 0, "failed": 0}
	k.c.mu.Lock()
	for _, j := range k.c.jobs {
		js[j.info.GetState()]++
	}
	k.c.mu.Unlock()
	for st, n := range js {
		ch <- prometheus.MustNewConstMetric(k.jobs, prometheus.GaugeValue, float64(n), st)
	}
}

// removeUISocket removes a finished job's UI socket, if its driver left it.
func removeUISocket(path string) {
	if path != "" {
		os.Remove(path)
	}
}
