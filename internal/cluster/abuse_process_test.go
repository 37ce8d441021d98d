package cluster

// The abuse campaign through an executor daemon into a real job process
// (e2e/testdata/truthjob, built here): RunTask, KillTask and CommitState
// are forwarded to the job process's TaskServer and its resolver (the
// dstream graph), which must refuse malformed tasks in their response or
// with InvalidArgument, and never die: the job process's incarnation stays
// the same through all of it.

import (
	"context"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// buildAbuseJob builds the e2e truthjob (its window mode reads a directory
// in the driver: its tasks read driver input, FetchInput).
func buildAbuseJob(t *testing.T) []byte {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "truthjob")
	cmd := exec.Command("go", "build", "-o", bin, "../../e2e/testdata/truthjob")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.WaitDelay = 10 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the job: %v\n%s", err, out)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// abuseJob is a job whose tasks the test sends to the daemon by hand, as
// its driver would: the coordinator lists it as running (so that the
// daemon's sweep does not end it) and holds its binary.
type abuseJob struct {
	id, sha, dir string
	zero         time.Time
	fingerprint  map[int64]string // the executor's graph fingerprint by batch time
	blackhole    string           // accepts connections, never answers
}

func (a *abuseCluster) startAbuseJob(t *testing.T, id string, bin []byte) *abuseJob {
	t.Helper()
	j := &abuseJob{id: id, sha: shaOf(bin), dir: t.TempDir(), zero: time.Unix(1_800_000_000, 0), fingerprint: map[int64]string{}}
	for _, dir := range []string{filepath.Join(a.state, "binaries"), filepath.Join(a.work, "binaries")} {
		if err := os.WriteFile(filepath.Join(dir, j.sha), bin, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	close(done)
	a.coord.mu.Lock()
	a.coord.jobs[id] = &jobRec{info: &sluicev1.JobInfo{JobId: id, State: "running", Sha256: j.sha}, done: done}
	a.coord.mu.Unlock()
	hole, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	conns.Go(func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := hole.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	})
	t.Cleanup(func() {
		hole.Close()
		conns.Wait()
	})
	j.blackhole = hole.Addr().String()
	return j
}

// batch returns the time of batch k.
func (j *abuseJob) batch(k int) int64 { return j.zero.Add(time.Duration(k) * time.Second).UnixNano() }

// task is a well-formed map task of batch k (reading its driver input of
// one partition from an address that never answers) but for the graph
// fingerprint, which fix fills in.
func (j *abuseJob) task(k int) *sluicev1.TaskRequest {
	bt := j.batch(k)
	return &sluicev1.TaskRequest{JobId: j.id, BinarySha256: j.sha, Args: []string{"--mode=window", "--dir=" + j.dir}, TaskId: int64(k),
		ZeroTimeUnixNano: j.zero.UnixNano(), BatchTimeUnixNano: bt, Action: "take", ActionArg: -1, Parallelism: 2, DriverAttempt: 1,
		ShuffleMap: true, Shuffles: []*sluicev1.ShuffleInput{{Ordinal: 0, ShuffleId: int64(1000 + k)}},
		Inputs: []*sluicev1.InputRef{{Input: 0, BatchTimeUnixNano: bt, Partitions: 1}}, DriverBlocksAddress: j.blackhole}
}

var fingerprintRE = regexp.MustCompile(`fingerprint ([0-9a-f]{32}),`)

// fix sets req's fingerprint to the one the job process computes for its
// lineage, asking it first (a mismatch names it) if need be.
func (j *abuseJob) fix(t *testing.T, a *abuseCluster, req *sluicev1.TaskRequest) *sluicev1.TaskRequest {
	t.Helper()
	probe := proto.Clone(req).(*sluicev1.TaskRequest)
	probe.GraphFingerprint = "probe"
	resp, err := a.ec.RunTask(context.Background(), probe)
	if err != nil {
		t.Fatalf("fingerprint probe: %v", err)
	}
	m := fingerprintRE.FindStringSubmatch(resp.GetError())
	if m == nil {
		t.Fatalf("fingerprint probe: %q", resp.GetError())
	}
	req.GraphFingerprint = m[1]
	return req
}

func TestAbuseExecutorIntoAJobProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a job binary")
	}
	bin := buildAbuseJob(t)
	noLeaks(t, func(t *testing.T) {
		t.Run("abuse", func(t *testing.T) {
			a := newAbuseCluster(t)
			j := a.startAbuseJob(t, "job-abuse", bin)
			ctx, cancel := context.WithTimeout(context.Background(), 2*abuseCallTimeout)
			defer cancel()
			// The first task starts the job process (its graph fingerprint is
			// wrong: fatal, naming the executor's).
			first, err := a.ec.RunTask(ctx, j.task(1))
			if err != nil || !first.GetFatal() || !strings.Contains(first.GetError(), "graph mismatch") {
				t.Fatalf("first task: %v %v", first, err)
			}
			inc := first.GetIncarnation()
			if inc == 0 {
				t.Fatal("no incarnation")
			}
			type outcome struct {
				fatal bool
				code  codes.Code
				words []string
			}
			cases := map[string]struct {
				req  *sluicev1.TaskRequest
				want outcome
			}{}
			add := func(name string, want outcome, k int, f func(r *sluicev1.TaskRequest)) {
				r := j.fix(t, a, j.task(k))
				f(r)
				cases[name] = struct {
					req  *sluicev1.TaskRequest
					want outcome
				}{r, want}
			}
			refusedTask := func(words ...string) outcome { return outcome{fatal: true, words: words} }
			invalid := func(words ...string) outcome { return outcome{code: codes.InvalidArgument, words: words} }
			add("partition -1", invalid("out of range"), 2, func(r *sluicev1.TaskRequest) { r.Partition = -1 })
			add("partition max", invalid("out of range"), 2, func(r *sluicev1.TaskRequest) { r.Partition = math.MaxInt32 })
			add("stage node 9", invalid("out of range"), 2, func(r *sluicev1.TaskRequest) { r.StageNode = 9 })
			add("shuffle ordinal -3", invalid("out of range"), 2, func(r *sluicev1.TaskRequest) { r.Shuffles[0].Ordinal = -3 })
			add("cached ordinal max", invalid("out of range"), 2, func(r *sluicev1.TaskRequest) {
				r.Cached = []*sluicev1.CachedBlock{{Ordinal: math.MaxInt32, Partition: math.MinInt32}}
			})
			add("job index -1", refusedTask("graph mismatch", "not job -1"), 2, func(r *sluicev1.TaskRequest) { r.JobIndex = -1 })
			add("job index max", refusedTask("graph mismatch"), 2, func(r *sluicev1.TaskRequest) { r.JobIndex = math.MaxInt32 })
			add("action garbage", refusedTask("unknown job action"), 2, func(r *sluicev1.TaskRequest) { r.Action = "garbage" })
			add("fingerprint garbage", refusedTask("graph mismatch"), 2, func(r *sluicev1.TaskRequest) { r.GraphFingerprint = strings.Repeat("z", 4096) })
			add("batch unaligned", refusedTask("multiple of the batch interval"), 2, func(r *sluicev1.TaskRequest) { r.BatchTimeUnixNano++ })
			add("batch zero", refusedTask("not after the start time"), 2, func(r *sluicev1.TaskRequest) { r.BatchTimeUnixNano = 0 })
			add("batch min", refusedTask("not after the start time"), 2, func(r *sluicev1.TaskRequest) { r.BatchTimeUnixNano = math.MinInt64 })
			add("batch max", refusedTask("not after the start time"), 2, func(r *sluicev1.TaskRequest) { r.BatchTimeUnixNano = math.MaxInt64 })
			add("batch = zero time", refusedTask("not after the start time"), 2, func(r *sluicev1.TaskRequest) { r.BatchTimeUnixNano = r.ZeroTimeUnixNano })
			add("another zero time", refusedTask("started at"), 2, func(r *sluicev1.TaskRequest) { r.ZeroTimeUnixNano = 5 })
			add("required incarnation", refusedTask("state is lost"), 2, func(r *sluicev1.TaskRequest) { r.RequiredIncarnation = inc + 1 })
			// Input lists that do not match the batch: another lineage (a
			// graph mismatch), or, with its fingerprint, tasks that are
			// refused or fail reading the input, but never kill the process.
			for name, in := range map[string][]*sluicev1.InputRef{
				"input partitions -5":     {{Input: 0, Partitions: -5}},
				"input partitions 100000": {{Input: 0, Partitions: 100_000}},
				"input -1 and 7":          {{Input: -1, Partitions: -1}, {Input: 7, Partitions: 3}},
			} {
				for k, r := range []*sluicev1.TaskRequest{j.task(3 + len(cases)), j.task(4 + len(cases))} {
					for _, i := range in {
						i.BatchTimeUnixNano = r.BatchTimeUnixNano
					}
					r.Inputs = in
					if k == 0 {
						cases[name] = struct {
							req  *sluicev1.TaskRequest
							want outcome
						}{r, refusedTask("graph mismatch")}
						continue
					}
					resp, err := a.ec.RunTask(ctx, r)
					if m := fingerprintRE.FindStringSubmatch(resp.GetError()); err == nil && m != nil {
						r.GraphFingerprint = m[1]
						cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
						resp, err = a.ec.RunTask(cctx, r) // reads its input from the black hole
						ccancel()
						if resp.GetIncarnation() != 0 && resp.GetIncarnation() != inc {
							t.Errorf("%s: the job process changed: %v %v", name, resp, err)
						}
					}
				}
			}
			for name, c := range cases {
				cctx, ccancel := context.WithTimeout(ctx, abuseCallTimeout)
				resp, err := a.ec.RunTask(cctx, c.req)
				ccancel()
				if c.want.code != codes.OK {
					wantCode(t, name, err, c.want.code, c.want.words...)
					continue
				}
				if err != nil || resp.GetFatal() != c.want.fatal {
					t.Errorf("%s: %v %v, want a fatal task error", name, resp, err)
					continue
				}
				for _, w := range c.want.words {
					if !strings.Contains(resp.GetError(), w) {
						t.Errorf("%s: task error %q does not say %q", name, resp.GetError(), w)
					}
				}
				if got := resp.GetIncarnation(); got != 0 && got != inc {
					t.Errorf("%s: the job process changed (incarnation %d, was %d)", name, got, inc)
				}
			}

			// A task stuck reading its input from a driver that never
			// answers: KillTask ends it at once; a client's cancel too.
			stuck := j.fix(t, a, j.task(90))
			res := make(chan error, 1)
			go func() {
				_, err := a.ec.RunTask(ctx, stuck)
				res <- err
			}()
			eventually(t, "the task is running", func() bool {
				a.daemon.mu.Lock()
				defer a.daemon.mu.Unlock()
				return a.daemon.killers[killKey(j.id, 90)] != nil
			})
			if _, err := a.ec.KillTask(ctx, &sluicev1.KillTaskRequest{JobId: "job-other", TaskId: 90}); err == nil {
				t.Error("KillTask of another job's task id succeeded")
			}
			if _, err := a.ec.KillTask(ctx, &sluicev1.KillTaskRequest{JobId: j.id, TaskId: 90}); err != nil {
				t.Fatalf("KillTask: %v", err)
			}
			select {
			case err := <-res:
				wantCode(t, "a killed task", err, codes.Canceled)
			case <-time.After(abuseCallTimeout):
				t.Fatal("a killed task did not end")
			}
			cctx, ccancel := context.WithTimeout(ctx, 500*time.Millisecond)
			_, err = a.ec.RunTask(cctx, j.fix(t, a, j.task(91)))
			ccancel()
			wantCode(t, "a task whose caller gave up", err, codes.DeadlineExceeded)

			// CommitState into the job process.
			for name, req := range map[string]*sluicev1.CommitStateRequest{
				"another incarnation": {JobId: j.id, Incarnation: inc + 1},
				"no incarnation":      {JobId: j.id},
			} {
				_, err := a.ec.CommitState(ctx, req)
				wantCode(t, name, err, codes.FailedPrecondition, "incarnation")
			}
			_, err = a.ec.CommitState(ctx, &sluicev1.CommitStateRequest{JobId: j.id, Incarnation: inc, BatchTimeUnixNano: j.batch(1),
				Snapshot: []string{"../..", "win/abc", "", "/"}})
			wantCode(t, "snapshot of partitions the job does not have", err, codes.InvalidArgument, "../..")
			if _, err := a.ec.CommitState(ctx, &sluicev1.CommitStateRequest{JobId: j.id, Incarnation: inc, BatchTimeUnixNano: math.MinInt64,
				Reports: map[string][]byte{"a/b/c/d": {0xff}, "": nil, "acc/1/2/x": {1, 2, 3}}}); err != nil {
				t.Errorf("CommitState with reports no operator takes: %v", err)
			}

			// The same process served all of it.
			last, err := a.ec.RunTask(ctx, j.task(1))
			if err != nil || last.GetIncarnation() != inc {
				t.Errorf("after the abuse: incarnation %d (was %d), %v", last.GetIncarnation(), inc, err)
			}
			if _, err := a.ec.EndJob(ctx, &sluicev1.EndJobRequest{JobId: j.id}); err != nil {
				t.Fatal(err)
			}

			// Tasks, kills, commits and ends of one job all at once: every
			// call ends, and the job runs again afterwards.
			stuckTask := j.fix(t, a, j.task(95))
			var wg sync.WaitGroup
			for i := range 24 {
				wg.Go(func() {
					cctx, ccancel := context.WithTimeout(ctx, abuseCallTimeout)
					defer ccancel()
					var err error
					switch i % 4 {
					case 0:
						rctx, rcancel := context.WithTimeout(cctx, time.Duration(100+50*i)*time.Millisecond)
						_, err = a.ec.RunTask(rctx, stuckTask)
						rcancel()
						if c := status.Code(err); c == codes.DeadlineExceeded || c == codes.ResourceExhausted || c == codes.Unavailable || c == codes.Canceled {
							err = nil
						}
					case 1:
						_, err = a.ec.EndJob(cctx, &sluicev1.EndJobRequest{JobId: j.id})
					case 2:
						_, err = a.ec.CommitState(cctx, &sluicev1.CommitStateRequest{JobId: j.id, Incarnation: inc})
						if status.Code(err) == codes.FailedPrecondition {
							err = nil
						}
					case 3:
						_, err = a.ec.KillTask(cctx, &sluicev1.KillTaskRequest{JobId: j.id, TaskId: 95})
						if status.Code(err) == codes.NotFound {
							err = nil
						}
					}
					// On a loaded machine (CI's race run) an EndJob or
					// CommitState waiting for the job process the storm's
					// tasks start may outlive its deadline: it still ends.
					if status.Code(err) == codes.DeadlineExceeded {
						err = nil
					}
					if err != nil {
						t.Errorf("concurrent call %d: %v", i, err)
					}
				})
			}
			wg.Wait()
			again, err := a.ec.RunTask(ctx, j.task(1))
			if err != nil || again.GetIncarnation() == 0 || !strings.Contains(again.GetError(), "graph mismatch") {
				t.Errorf("the job after the storm: %v %v", again, err)
			}
			if _, err := a.ec.EndJob(ctx, &sluicev1.EndJobRequest{JobId: j.id}); err != nil {
				t.Fatal(err)
			}
			a.healthy(t)
		})
	})
}
