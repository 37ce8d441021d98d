package dstream

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/cluster"
	"github.com/sluicehq/sluice/internal/ui"
)

// startUI serves the web UI when --ui is set: the hook in Run. It returns
// the function that stops it.
func (c *Context) startUI() (stop func(), err error) {
	o := c.obs
	o.mu.Lock()
	o.started = time.Now()
	addr := ""
	if o.uiAddr != nil {
		addr = *o.uiAddr
	}
	o.mu.Unlock()
	if addr == "" {
		return func() {}, nil
	}
	if *o.histSize < 1 {
		return nil, Usagef("--ui-history=%d: must be at least 1", *o.histSize)
	}
	srv, _, err := c.serveUI(addr)
	if err != nil {
		return nil, err
	}
	c.log.Info("web UI", slog.String("url", "http://"+srv.Addr()+"/"), slog.String("metrics", "http://"+srv.Addr()+"/metrics"))
	return func() { srv.Close() }, nil
}

// serveUI serves the job's web UI, JSON API (/api/v1/) and Prometheus
// metrics (/metrics) at addr (":4040" binds 127.0.0.1:4040) until the
// returned server is closed. Run calls it for --ui; tests of a context
// started by hand may call it once.
func (c *Context) serveUI(addr string) (_ *ui.Server, _ *ui.Metrics, err error) {
	o := c.obs
	_, m := o.get()
	o.mu.Lock()
	if o.serving {
		o.mu.Unlock()
		return nil, nil, fmt.Errorf("dstream: the web UI is served already (once per job)")
	}
	o.serving = true
	if o.started.IsZero() {
		o.started = time.Now()
	}
	o.mu.Unlock()
	defer func() {
		if err != nil {
			o.mu.Lock()
			o.serving = false
			o.mu.Unlock()
		}
	}()
	a, err := ui.NormalizeAddr(addr)
	if err != nil {
		return nil, nil, err
	}
	var opts ui.Options
	if o.uiSecret != nil && *o.uiSecret != "" {
		b, err := os.ReadFile(*o.uiSecret)
		if err != nil {
			return nil, nil, Usagef("--ui-secret-file: %v", err)
		}
		if opts.Secret = strings.TrimSpace(string(b)); len(opts.Secret) < 16 {
			return nil, nil, Usagef("--ui-secret-file %s: the secret is %d bytes; use at least 16 (e.g. head -c 32 /dev/urandom | base64 > FILE)", *o.uiSecret, len(opts.Secret))
		}
	}
	if !ui.IsLoopback(a) && opts.Secret == "" {
		return nil, nil, Usagef("--ui=%s binds beyond loopback: give --ui-secret-file FILE too (the pages and API then ask for it; /metrics stays open), or bind 127.0.0.1", addr)
	}
	srv, err := ui.Listen(a, ui.Handler(uiSource{c}, m.Handler(), opts))
	if err != nil {
		return nil, nil, err
	}
	return srv, m, nil
}

// uiSource shows a Context to package ui.
type uiSource struct{ c *Context }

// jobID is the job's id in the API paths: its app name, made URL-safe.
func jobID(name string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, name)
}

// id is the job's id in the API: the cluster's job id for a job driver
// of a cluster, else the app name.
func (s uiSource) id() string {
	if id := s.c.obs.clusterJob; id != "" {
		return id
	}
	return jobID(s.c.cfg.AppName)
}

func (s uiSource) Job() ui.Job {
	c := s.c
	c.mu.Lock()
	st, zero := c.state, c.zeroTime
	c.mu.Unlock()
	_, clocked := runs.Load(c) // batches come from the timer (Run), not by hand
	o := c.obs
	o.mu.Lock()
	since := o.started
	o.mu.Unlock()
	h := c.History()
	cnt := h.Counters()
	keys, bytes := c.StateSize()
	master := c.cfg.Master
	if c.role == roleDriver { // a cluster job, as its "started" log line says
		master = "cluster " + c.clusterAddr
	}
	j := ui.Job{
		ID: s.id(), Name: c.cfg.AppName, State: "running", Master: master,
		StartTime: since, UptimeMs: time.Since(since).Milliseconds(),
		BatchIntervalMs: c.cfg.BatchInterval.Milliseconds(),
		BatchesDone:     cnt.BatchesDone, BatchesFailed: cnt.BatchesFailed,
		InputRecords: cnt.InputRecords, TaskFailures: cnt.TaskFailures,
		StateKeys: keys, StateBytes: bytes,
		HistoryBatches: h.Len(), HistoryCapacity: h.Cap(),
		Checkpoint: o.checkpoint(),
	}
	switch st {
	case created:
		j.State = "created"
	case stopped:
		j.State = "stopped"
	}
	done := zero
	if last, ok := h.Last(); ok {
		b := toUIBatch(last)
		j.LastBatch = &b
		j.LastInputs = uiInputs(last.Inputs)
		done = last.Time
	}
	if st == started && clocked && c.cfg.BatchInterval > 0 {
		j.PendingBatches = max(0, int64(time.Since(done)/c.cfg.BatchInterval))
	}
	return j
}

func (s uiSource) Executors() []ui.Executor { return s.c.uiExecutors() }

func (s uiSource) Batches(offset, limit int) ([]ui.Batch, int) {
	rs, total := s.c.History().Page(offset, limit)
	out := make([]ui.Batch, len(rs))
	for i, r := range rs {
		out[i] = toUIBatch(r)
	}
	return out, total
}

func (s uiSource) Batch(ms int64) (ui.BatchDetail, bool) {
	r, ok := s.c.History().Find(time.UnixMilli(ms))
	if !ok {
		return ui.BatchDetail{}, false
	}
	d := ui.BatchDetail{Batch: toUIBatch(r), OutputJobs: make([]ui.OutputJob, 0, len(r.Jobs)),
		Inputs: uiInputs(r.Inputs), Tasks: r.Tasks, TasksDropped: r.TasksDropped, TasksForgotten: r.TasksForgotten}
	if d.Tasks == nil {
		d.Tasks = []ui.Task{}
	}
	// The rows carry the scheduler's job ids; a batch's jobs run one after
	// another, so their ids in order are the outputJobs indexes.
	ids := map[int64]int64{}
	for _, k := range d.Tasks {
		ids[k.Job] = 0
	}
	order := make([]int64, 0, len(ids))
	for id := range ids {
		order = append(order, id)
	}
	slices.Sort(order)
	for i, id := range order {
		ids[id] = int64(i)
	}
	d.Tasks = slices.Clone(d.Tasks)
	for i := range d.Tasks {
		d.Tasks[i].Job = ids[d.Tasks[i].Job]
	}
	for i, j := range r.Jobs {
		oj := ui.OutputJob{Index: i, Stages: make([]ui.Stage, 0, len(j.Stages))}
		for _, st := range j.Stages {
			oj.Stages = append(oj.Stages, ui.Stage{
				ID: st.StageID, Name: st.Name, Tasks: st.Tasks, Failed: st.Failed, Resubmits: st.Resubmits,
				TaskTimeMs: ui.Ms(st.TaskTime), MaxTaskTimeMs: ui.Ms(st.MaxTaskTime), RecordsRead: st.RecordsRead,
			})
		}
		d.OutputJobs = append(d.OutputJobs, oj)
	}
	return d, true
}

func toUIBatch(r BatchRecord) ui.Batch {
	b := ui.Batch{
		ID: r.Time.UnixMilli(), Time: r.Time.UTC(), Status: ui.StatusSucceeded,
		InputRecords:      r.InputRecords,
		SchedulingDelayMs: ui.Ms(r.SchedulingDelay), ProcessingTimeMs: ui.Ms(r.ProcessingTime), TotalDelayMs: ui.Ms(r.TotalDelay),
		Jobs: len(r.Jobs), TaskFailures: r.TaskFailures(), Error: r.Error,
	}
	if r.Failed {
		b.Status = ui.StatusFailed
	}
	return b
}

// serveClusterUI serves, in the driver role of a cluster job, the job's
// API for the coordinator (serveClusterAPI); its stop writes the job's
// last summary where the coordinator names (SLUICE_JOB_SUMMARY), which
// the coordinator's API shows once the job's driver is gone.
func (c *Context) serveClusterUI(log *slog.Logger) (stop func(), err error) {
	stopAPI, err := c.serveClusterAPI(log)
	if err != nil {
		return nil, err
	}
	summary := os.Getenv(cluster.SummaryEnv)
	return func() {
		stopAPI()
		if summary != "" {
			// The coordinator shows these figures once this process is gone.
			if err := writeSummary(summary, uiSource{c}.Job()); err != nil {
				log.Warn("job summary for the coordinator", slog.Any("err", err))
			}
		}
	}, nil
}

// writeSummary writes j as JSON to path, whole or not at all.
func writeSummary(path string, j ui.Job) error {
	b, err := json.Marshal(j)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// serveClusterAPI serves the job's API on the unix socket the coordinator
// names (SLUICE_UI_SOCKET): the coordinator's `driver serve --ui` proxies
// everything below /api/v1/jobs/JOB to it. The socket is the owner's only
// (0600) and asks for the cluster secret too.
func (c *Context) serveClusterAPI(log *slog.Logger) (stop func(), err error) {
	path := os.Getenv(cluster.UISocketEnv)
	if path == "" {
		return func() {}, nil
	}
	secret, err := cluster.SecretFromEnv()
	if err != nil {
		return nil, err
	}
	_, m := c.obs.get()
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("dstream: UI socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("dstream: UI socket: listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("dstream: UI socket: %w", err)
	}
	srv := ui.Serve(ln, ui.Handler(uiSource{c}, m.Handler(), ui.Options{Secret: secret.UIToken()}))
	log.Info("job API for the coordinator", slog.String("socket", path))
	return func() { srv.Close(); os.Remove(path) }, nil
}
