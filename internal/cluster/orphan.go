package cluster

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultOrphanGrace is how long an executor keeps the job processes and
// shuffle data of a driver it cannot reach, by default.
const DefaultOrphanGrace = 30 * time.Second

// contact records when the driver last answered an executor.
type contact struct {
	mu   sync.Mutex
	last time.Time
	lost bool // logged as lost since the last answer
}

// watchedDriver is the executor's Driver client: it notes every answer to
// a registration or heartbeat.
type watchedDriver struct {
	sluicev1.DriverClient
	c   *contact
	log *slog.Logger
}

func (w watchedDriver) note(err error) {
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	if err == nil {
		if w.c.lost {
			w.log.Info("executor: the driver answers again")
		}
		w.c.last, w.c.lost = time.Now(), false
		return
	}
	if !w.c.lost && status.Code(err) != codes.Canceled {
		w.c.lost = true
		w.log.Warn("executor: lost the driver", slog.Any("err", err))
	}
}

func (w watchedDriver) RegisterExecutor(ctx context.Context, in *sluicev1.RegisterExecutorRequest, opts ...grpc.CallOption) (*sluicev1.RegisterExecutorResponse, error) {
	r, err := w.DriverClient.RegisterExecutor(ctx, in, opts...)
	w.note(err)
	return r, err
}

func (w watchedDriver) Heartbeat(ctx context.Context, in *sluicev1.HeartbeatRequest, opts ...grpc.CallOption) (*sluicev1.HeartbeatResponse, error) {
	r, err := w.DriverClient.Heartbeat(ctx, in, opts...)
	w.note(err)
	return r, err
}

// watchDriver wraps the daemon's Driver client to note its answers.
func (d *Daemon) watchDriver(dc sluicev1.DriverClient) sluicev1.DriverClient {
	d.contact.mu.Lock()
	d.contact.last = time.Now()
	d.contact.mu.Unlock()
	return watchedDriver{DriverClient: dc, c: &d.contact, log: d.cfg.Log}
}

// reapOrphans stops the job processes and deletes the job data of a driver
// that has not answered for OrphanGrace: the jobs died with it (a driver
// stops its jobs when it stops, and the kernel kills them when it is killed).
func (d *Daemon) reapOrphans(ctx context.Context) {
	grace := d.cfg.OrphanGrace
	if grace <= 0 {
		grace = DefaultOrphanGrace
	}
	tick := time.NewTicker(min(time.Second, grace/4))
	defer tick.Stop()
	missing := map[string]bool{}
	var swept time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		d.contact.mu.Lock()
		silent := time.Since(d.contact.last)
		d.contact.mu.Unlock()
		if silent < grace {
			if time.Since(swept) >= forgottenSweep {
				d.endForgottenJobs(ctx, missing)
				d.dropUnusedBinaries()
				swept = time.Now()
			}
			continue
		}
		d.mu.Lock()
		jobs := make([]string, 0, len(d.jobs))
		for id := range d.jobs {
			jobs = append(jobs, id)
		}
		d.mu.Unlock()
		if len(jobs) == 0 && d.leftovers() == 0 {
			continue
		}
		d.cfg.Log.Warn("executor: the driver has not answered for longer than the orphan grace: stopping its jobs and deleting their data",
			slog.Duration("silent", silent.Round(time.Second)), slog.Duration("grace", grace), slog.Any("jobs", jobs))
		d.stopJobs()
		for _, sub := range []string{"jobs", "shuffle"} {
			entries, _ := os.ReadDir(filepath.Join(d.cfg.WorkDir, sub))
			for _, e := range entries {
				os.RemoveAll(filepath.Join(d.cfg.WorkDir, sub, e.Name()))
			}
		}
		d.dropUnusedBinaries()
		d.cfg.Log.Info("executor: orphaned jobs stopped and their data deleted", slog.Any("jobs", jobs))
	}
}

// forgottenSweep is how often an executor asks the driver which of its
// jobs still run.
const forgottenSweep = 5 * time.Second

// endForgottenJobs ends the local jobs the driver does not list as running
// in two consecutive sweeps: jobs whose EndJob never arrived, and jobs of a
// driver that was restarted within the orphan grace.
func (d *Daemon) endForgottenJobs(ctx context.Context, missing map[string]bool) {
	d.mu.Lock()
	local := make([]string, 0, len(d.jobs))
	for id := range d.jobs {
		local = append(local, id)
	}
	d.mu.Unlock()
	if len(local) == 0 {
		clear(missing)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	resp, err := d.driver.ListJobs(cctx, &sluicev1.ListJobsRequest{})
	cancel()
	if err != nil {
		return
	}
	running := map[string]bool{}
	for _, j := range resp.GetJobs() {
		if s := j.GetState(); s != "finished" && s != "failed" { // starting, running, restarting, stopping
			running[j.GetJobId()] = true
		}
	}
	for id := range missing {
		if running[id] {
			delete(missing, id)
		}
	}
	for _, id := range local {
		switch {
		case running[id]:
		case !missing[id]:
			missing[id] = true
		default:
			delete(missing, id)
			d.cfg.Log.Warn("executor: the driver no longer runs this job: ending it here", slog.String("job", id))
			d.EndJob(ctx, &sluicev1.EndJobRequest{JobId: id})
		}
	}
}

// leftovers counts entries of job data in the work directory.
func (d *Daemon) leftovers() int {
	n := 0
	for _, sub := range []string{"jobs", "shuffle"} {
		entries, _ := os.ReadDir(filepath.Join(d.cfg.WorkDir, sub))
		n += len(entries)
	}
	return n
}

// dropUnusedBinaries deletes the cached binaries no job process runs. It
// does nothing while a task is in flight: that task may have its binary and
// not yet its process.
func (d *Daemon) dropUnusedBinaries() {
	d.binMu.Lock() // no download in progress; a task that comes now waits for it
	defer d.binMu.Unlock()
	d.mu.Lock()
	if d.running > 0 {
		d.mu.Unlock()
		return
	}
	used := map[string]bool{}
	for _, p := range d.jobs {
		select {
		case <-p.ready:
			if p.cmd != nil {
				used[filepath.Base(p.cmd.Path)] = true
			}
		default:
			d.mu.Unlock()
			return // a process is starting: its binary is not known yet
		}
	}
	d.mu.Unlock()
	dir := filepath.Join(d.cfg.WorkDir, "binaries")
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !used[e.Name()] {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// endJobRetrying tells one executor to drop a job, retrying for about half
// a minute while it cannot be reached.
func endJobRetrying(cl sluicev1.ExecutorClient, id string, log *slog.Logger) error {
	backoff := 250 * time.Millisecond
	var err error
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = cl.EndJob(ctx, &sluicev1.EndJobRequest{JobId: id})
		cancel()
		if err == nil || status.Code(err) == codes.InvalidArgument || attempt == endJobAttempts {
			return err
		}
		log.Debug("cannot end job on executor; retrying", slog.String("job", id), slog.Any("err", err))
		time.Sleep(backoff)
		backoff = min(2*backoff, 8*time.Second)
	}
}

const endJobAttempts = 6
