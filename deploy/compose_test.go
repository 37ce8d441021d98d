package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/devkafka"
	"github.com/sluicehq/sluice/internal/wordgen"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestComposeDemo runs the docker-compose demo end to end: it builds the
// images, brings the demo up under a project name of its own, waits for
// completed batches, checks the job's committed files and its totals topic
// against the producer's known input, scales the executors to 3 and sees the
// new one receive tasks, kills an executor and checks that processing goes
// on with nothing lost, and tears everything down, checking that no
// container, network or volume of the project is left.
//
// It needs a Docker engine and Compose (v2 or v1); .ci/run runs it with
// SLUICE_E2E_DOCKER=1. Without an engine it is skipped with a notice.
func TestComposeDemo(t *testing.T) {
	d, ports, ctx := newDemo(t)
	defer d.cancel()
	begin := time.Now()
	root, secret := d.o.root, d.o.secret
	t.Cleanup(d.down) // also after a failure; the last step checks it

	// 1. The one command (go run ./deploy up): images, compose up, the
	// first completed batch seen in the job's API.
	noKafka := ""
	if err := up(ctx, d.o, &noKafka, nil, tlog{t}); err != nil {
		t.Fatal(err)
	}
	d.top = t

	// 2. N completed batches, committed as files.
	const n = 5
	d.waitFor("5 completed batches with input", 2*time.Minute, func() bool {
		with := 0
		for _, b := range d.outputs() {
			if b.words > 0 {
				with++
			}
		}
		return with >= n
	})
	jobID := d.jobID()
	// The cluster CLI works from the host, through the published port.
	// (deploy/.build/bin/driver is the static binary the images hold.)
	cli := exec.CommandContext(ctx, filepath.Join(root, "deploy", ".build", "bin", "driver"), "jobs", "--master", "127.0.0.1:"+ports[2], "--secret-file", secret)
	if out, err := cli.CombinedOutput(); err != nil || !strings.Contains(string(out), jobID) {
		t.Fatalf("driver jobs from the host: %v\n%s", err, out)
	}
	// The cluster's UI (driver serve --ui), published on the host's
	// loopback: it lists the demo job, running, and its executors.
	var jobs []struct{ ID, State string }
	if err := apiGet(ctx, "http://127.0.0.1:"+ports[1]+"/api/v1/jobs", strings.TrimSpace(readFile(t, secret)), &jobs); err != nil {
		t.Fatalf("the cluster UI: %v", err)
	}
	if len(jobs) != 1 || jobs[0].ID != jobID || jobs[0].State != "running" {
		t.Fatalf("the cluster UI lists %+v, want the running job %s", jobs, jobID)
	}
	var execs []struct{ ID, State string }
	if err := apiGet(ctx, "http://127.0.0.1:"+ports[1]+"/api/v1/executors", strings.TrimSpace(readFile(t, secret)), &execs); err != nil || len(execs) != 2 {
		t.Fatalf("the cluster UI's executors: %+v, %v; want 2", execs, err)
	}
	vocab := map[string]bool{}
	for _, w := range wordgen.Vocabulary(wordgen.VocabularySize) {
		vocab[w] = true
	}
	for bt, b := range d.outputs() {
		if b.words%10 != 0 {
			t.Errorf("batch %d: %d words, not a multiple of the 10 words of every line", bt, b.words)
		}
		for w := range b.counts {
			if !vocab[w] {
				t.Fatalf("batch %d counts %q, which the producer never writes", bt, w)
			}
		}
	}

	t.Logf("%v: %d batches committed", time.Since(begin).Round(time.Second), n)

	// 3. The output against the known input: stop the producer, let the
	// job catch up, compare the files and the totals topic.
	lines := d.checkAll("after the first batches")

	t.Logf("%v: output checked", time.Since(begin).Round(time.Second))

	// 4. Scale to 3: the new executor receives tasks.
	d.compose("start", "producer")
	producer := d.containers("producer")
	d.waitFor("the producer to continue after the lines in the topic", 30*time.Second, func() bool {
		out, _ := exec.CommandContext(ctx, "docker", "logs", producer[0]).CombinedOutput()
		return bytes.Contains(out, []byte(fmt.Sprintf("from line %d on", lines)))
	})
	before := d.containers("executor")
	if len(before) != 2 {
		t.Fatalf("%d executor containers, want 2", len(before))
	}
	d.compose("up", "-d", "--no-recreate", "--scale", "executor=3")
	var added string
	for _, c := range d.containers("executor") {
		if !slices.Contains(before, c) {
			added = c
		}
	}
	if added == "" {
		t.Fatal("scaled to 3 executors but no new container")
	}
	d.waitFor("the new executor to receive a task", time.Minute, func() bool {
		out, _ := exec.Command("docker", "logs", added).CombinedOutput()
		return bytes.Contains(out, []byte(`msg="executor: job process started"`)) && bytes.Contains(out, []byte("job="+jobID))
	})
	// `up` ran the submit container again: --unless-running submitted nothing.
	if ids := d.jobIDs(); len(ids) != 1 || ids[0] != jobID {
		t.Fatalf("after up --scale: jobs %v, want only %s (submit --unless-running)", ids, jobID)
	}

	t.Logf("%v: the third executor received a task", time.Since(begin).Round(time.Second))

	// 5. Kill an executor that was there from the start.
	t.Run("KillExecutor", func(t *testing.T) {
		d.t = t
		defer func() { d.t = d.outer() }()
		batchesBefore := len(d.outputs())
		if out, err := exec.Command("docker", "kill", before[0]).CombinedOutput(); err != nil {
			t.Fatalf("docker kill: %v: %s", err, out)
		}
		killedAt := time.Now()
		deadline := killedAt.Add(90 * time.Second)
		for {
			state, msg := d.jobState(jobID)
			if state == "failed" {
				t.Fatalf("the job failed after an executor was killed: %s", msg)
			}
			if len(d.outputs()) >= batchesBefore+10 && time.Since(killedAt) > 10*time.Second {
				break // ten more batches committed, the job still running
			}
			if time.Now().After(deadline) {
				t.Fatalf("after killing an executor: %d batches committed in %v, job %s", len(d.outputs())-batchesBefore, time.Since(killedAt), state)
			}
			time.Sleep(500 * time.Millisecond)
		}
		d.checkAll("after an executor was killed")
		_, status := d.jobState(jobID)
		t.Logf("after the kill: %s (an attempt above 1: the killed executor held operator state, and the job driver was restarted from its checkpoint)", status)
	})

	// 6. Down with volumes: nothing of the project is left.
	d.down()
	d.checkNothingLeft()
	t.Logf("whole test: %v", time.Since(begin).Round(100*time.Millisecond))
}

// demo drives one compose project.
type demo struct {
	t         *testing.T
	top       *testing.T
	ctx       context.Context
	cancel    context.CancelFunc
	o         options
	kafkaPort string
	downDone  bool
	driverID  string // the driver's container, which is never recreated
}

// newDemo skips the test when it cannot run (-short, no SLUICE_E2E_DOCKER,
// no Docker engine or Compose), and otherwise returns a demo under a project
// name, image tag, secret and host ports of its own, removed at the end of
// the test.
func newDemo(t *testing.T) (*demo, []string, context.Context) {
	if testing.Short() {
		t.Skip("slow: builds images and runs containers")
	}
	if os.Getenv("SLUICE_E2E_DOCKER") == "" {
		t.Skip("the docker-compose demo tests run with SLUICE_E2E_DOCKER=1 (as .ci/run does)")
	}
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "NOTICE: %s skipped: no Docker engine answers (%v: %s)\n", t.Name(), err, bytes.TrimSpace(out))
		t.Skipf("no Docker engine answers: %v: %s", err, bytes.TrimSpace(out))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	compose, err := findCompose(ctx, os.Getenv("SLUICE_COMPOSE"))
	if err != nil {
		cancel()
		fmt.Fprintf(os.Stderr, "NOTICE: %s skipped: %v\n", t.Name(), err)
		t.Skip(err)
	}
	root, err := repoRoot()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	uniq := fmt.Sprintf("sluicee2e%d", time.Now().UnixNano()%1_000_000_000)
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("e2e-secret-"+uniq+"-0123456789abcdef\n"), 0o600); err != nil {
		cancel()
		t.Fatal(err)
	}
	ports := freePorts(t, 4)
	d := &demo{t: t, ctx: ctx, cancel: cancel, o: options{root: root, tag: uniq, project: uniq, compose: compose, secret: secret, uiPort: ports[0],
		timeout: 3 * time.Minute, env: []string{
			"SLUICE_UI_PORT=" + ports[0], "SLUICE_CLUSTER_UI_PORT=" + ports[1],
			"SLUICE_DRIVER_PORT=" + ports[2], "SLUICE_KAFKA_PORT=" + ports[3],
		}}, kafkaPort: ports[3]}
	return d, ports, ctx
}

// checkNothingLeft fails the test if a container, network or volume of the
// project is left.
func (d *demo) checkNothingLeft() {
	d.t.Helper()
	for _, kind := range []string{"container", "network", "volume"} {
		args := []string{kind, "ls", "-q", "--filter", "label=com.docker.compose.project=" + d.o.project}
		if kind == "container" {
			args = []string{"ps", "-aq", "--filter", "label=com.docker.compose.project=" + d.o.project}
		}
		out, err := exec.Command("docker", args...).CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			d.t.Errorf("after down: docker %s: %v %s; want nothing left", strings.Join(args, " "), err, out)
		}
	}
}

func (d *demo) outer() *testing.T {
	if d.top == nil {
		return d.t
	}
	return d.top
}

// compose runs a compose command of the project.
func (d *demo) compose(args ...string) {
	d.t.Helper()
	if d.top == nil {
		d.top = d.t
	}
	var out bytes.Buffer
	if err := composeRun(d.ctx, d.o, &out, args...); err != nil {
		d.t.Fatalf("%v\n%s", err, out.String())
	}
}

// composeOut runs a compose command and returns its standard output.
func (d *demo) composeOut(args ...string) string {
	d.t.Helper()
	c := exec.CommandContext(d.ctx, d.o.compose[0], append(d.composeArgs(), args...)...)
	c.Env = append(append(os.Environ(), "SLUICE_TAG="+d.o.tag, "SLUICE_SECRET_FILE="+d.o.secret), d.o.env...)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		d.t.Fatalf("compose %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// composeArgs are the compose command's arguments before the subcommand.
func (d *demo) composeArgs() []string {
	full := append(append([]string{}, d.o.compose[1:]...), "-f", filepath.Join(d.o.root, "deploy", "docker-compose.yml"))
	for _, f := range d.o.files {
		full = append(full, "-f", f)
	}
	return append(full, "-p", d.o.project)
}

// containers returns the ids of a service's containers, sorted.
func (d *demo) containers(service string) []string {
	ids := strings.Fields(d.composeOut("ps", "-q", service))
	slices.Sort(ids)
	return ids
}

// logs returns the logs of a service's containers (docker logs: faster
// than compose's, which matters when polled).
func (d *demo) logs(service string) string {
	var b strings.Builder
	for _, id := range d.containers(service) {
		out, _ := exec.CommandContext(d.ctx, "docker", "logs", id).CombinedOutput()
		b.Write(out)
	}
	return b.String()
}

// driver returns the driver's container id.
func (d *demo) driver() string {
	d.t.Helper()
	if d.driverID == "" {
		ids := d.containers("driver")
		if len(ids) != 1 {
			d.t.Fatalf("%d driver containers", len(ids))
		}
		d.driverID = ids[0]
	}
	return d.driverID
}

// logsQuiet is logs for a failed test: errors are part of the text.
func (d *demo) logsQuiet(service string) string {
	c := exec.Command(d.o.compose[0], append(d.composeArgs(), "logs", "--no-color", service)...)
	c.Env = append(append(os.Environ(), "SLUICE_TAG="+d.o.tag, "SLUICE_SECRET_FILE="+d.o.secret), d.o.env...)
	out, _ := c.CombinedOutput()
	return string(out)
}

func tailLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// down removes the project with its volumes and images; once.
func (d *demo) down() {
	if d.downDone {
		return
	}
	d.downDone = true
	if d.t.Failed() {
		for _, svc := range []string{"driver", "executor", "submit", "producer", "broker"} {
			d.t.Logf("logs of %s:\n%s", svc, tailLines(d.logsQuiet(svc), 30))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := composeRun(ctx, d.o, io.Discard, "down", "--volumes", "--remove-orphans", "--timeout", "10"); err != nil {
		d.t.Errorf("down: %v", err)
	}
	for _, im := range images {
		exec.Command("docker", "rmi", im.name+":"+d.o.tag).Run()
	}
}

// driverExec runs the driver binary inside the driver container.
func (d *demo) driverExec(args ...string) string {
	d.t.Helper()
	id := d.driver()
	// the flags first: those after a positional argument are not parsed
	full := append([]string{"exec", id, "/driver", args[0], "--master", "127.0.0.1:7077", "--secret-file", "/run/secrets/sluice-secret"}, args[1:]...)
	out, err := exec.CommandContext(d.ctx, "docker", full...).CombinedOutput()
	if err != nil {
		d.t.Fatalf("docker %s: %v\n%s", strings.Join(full, " "), err, out)
	}
	return string(out)
}

// jobID is the id of the demo job, from `driver jobs`.
func (d *demo) jobID() string {
	d.t.Helper()
	ids := d.jobIDs()
	if len(ids) != 1 {
		d.t.Fatalf("driver jobs lists %d sluice-demo jobs, want 1", len(ids))
	}
	return ids[0]
}

// jobIDs are the ids of the sluice-demo jobs, sorted (by start time).
func (d *demo) jobIDs() []string {
	d.t.Helper()
	var ids []string
	for _, l := range strings.Split(d.driverExec("jobs"), "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[1] == "sluice-demo" {
			ids = append(ids, f[0])
		}
	}
	slices.Sort(ids)
	return ids
}

// jobState returns the job's state and its status line.
func (d *demo) jobState(id string) (string, string) {
	out := strings.TrimSpace(d.driverExec("status", id))
	// job ID (NAME): STATE[ (attempt N)][: error]
	_, rest, _ := strings.Cut(out, "): ")
	state, _, _ := strings.Cut(rest, ":")
	state, _, _ = strings.Cut(state, " (attempt ")
	return state, out
}

// batchOut is one committed batch directory.
type batchOut struct {
	counts map[string]int64
	words  int64
}

// outputs reads the job's committed batch directories from the driver's
// volume (docker cp of /state/out, as a tar stream); directories still
// being written (._temporary) are left out.
func (d *demo) outputs() map[int64]*batchOut {
	d.t.Helper()
	id := d.driver()
	cmd := exec.CommandContext(d.ctx, "docker", "cp", id+":/state/out", "-")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	raw, err := cmd.Output()
	if err != nil {
		if strings.Contains(stderr.String(), "No such") || strings.Contains(stderr.String(), "Could not find") {
			return nil // no batch yet
		}
		d.t.Fatalf("docker cp: %v: %s", err, stderr.String())
	}
	res := map[int64]*batchOut{}
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			d.t.Fatalf("docker cp: tar: %v", err)
		}
		dir, file := filepath.Split(h.Name)
		name := filepath.Base(dir)
		ms, ok := strings.CutPrefix(name, "counts-")
		if h.Typeflag != tar.TypeReg || !ok || !strings.HasPrefix(file, "part-") {
			continue
		}
		bt, err := strconv.ParseInt(ms, 10, 64)
		if err != nil {
			continue // counts-T._temporary: not committed
		}
		b := res[bt]
		if b == nil {
			b = &batchOut{counts: map[string]int64{}}
			res[bt] = b
		}
		sc := bufio.NewScanner(tr)
		for sc.Scan() {
			w, c, ok := strings.Cut(sc.Text(), "\t")
			v, err := strconv.ParseInt(c, 10, 64)
			if !ok || err != nil {
				d.t.Fatalf("%s: line %q is not word<TAB>count", h.Name, sc.Text())
			}
			if _, dup := b.counts[w]; dup {
				d.t.Fatalf("batch %d counts %q twice", bt, w)
			}
			b.counts[w] = v
			b.words += v
		}
	}
	return res
}

// kafka returns a client of the demo's broker, reached through its
// published port (it advertises broker:9092, a name of the compose network).
func (d *demo) kafka(opts ...kgo.Opt) *kgo.Client {
	d.t.Helper()
	var dialer net.Dialer
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers("127.0.0.1:" + d.kafkaPort),
		kgo.Dialer(func(ctx context.Context, network, host string) (net.Conn, error) {
			if h, _, _ := net.SplitHostPort(host); h == "broker" {
				host = "127.0.0.1:" + d.kafkaPort
			}
			return dialer.DialContext(ctx, network, host)
		})}, opts...)...)
	if err != nil {
		d.t.Fatal(err)
	}
	return cl
}

// linesInTopic is the number of lines the producer wrote (the topic's end
// offsets; the producer continues after them when it restarts).
func (d *demo) linesInTopic() int64 {
	d.t.Helper()
	cl := d.kafka()
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(d.ctx, "lines")
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		d.t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

// totals reads the totals topic: the last total of every word.
func (d *demo) totals() map[string]int64 {
	d.t.Helper()
	cl := d.kafka(kgo.ConsumeTopics("word-totals"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(d.ctx, "word-totals")
	if err != nil {
		d.t.Fatal(err)
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	res := map[string]int64{}
	ctx, cancel := context.WithTimeout(d.ctx, time.Minute)
	defer cancel()
	for len(left) > 0 {
		f := cl.PollFetches(ctx)
		if err := f.Err(); err != nil {
			d.t.Fatalf("read word-totals: %v", err)
		}
		f.EachRecord(func(r *kgo.Record) {
			v, err := strconv.ParseInt(string(r.Value), 10, 64)
			if err != nil {
				d.t.Fatalf("word-totals: value %q of %q is no number", r.Value, r.Key)
			}
			res[string(r.Key)] = v
			if r.Offset+1 >= left[r.Partition] {
				delete(left, r.Partition)
			}
		})
	}
	return res
}

// checkAll stops the producer, waits until the job has counted every line
// in the topic and compares the committed files (summed over batches) and
// the totals topic with the counts of the known input. It returns the
// number of lines.
func (d *demo) checkAll(when string) int64 {
	d.t.Helper()
	d.compose("stop", "producer")
	lines := d.linesInTopic()
	want := map[string]int64{}
	vocab := wordgen.Vocabulary(wordgen.VocabularySize)
	for i := range lines {
		wordgen.Fields(wordgen.LineAt(vocab, i), func(w string) { want[w]++ })
	}
	var got map[string]int64
	var words int64
	d.waitFor(fmt.Sprintf("the job to count the %d lines in the topic (%s)", lines, when), 90*time.Second, func() bool {
		got, words = map[string]int64{}, 0
		for _, b := range d.outputs() {
			for w, c := range b.counts {
				got[w] += c
			}
			words += b.words
		}
		if words > lines*10 {
			d.t.Fatalf("%s: the committed files count %d words, more than the %d of the %d lines produced: records counted twice", when, words, lines*10, lines)
		}
		return words == lines*10
	})
	for w, c := range want {
		if got[w] != c {
			d.t.Fatalf("%s: files count %q %d times, the input has it %d times", when, w, got[w], c)
		}
	}
	if len(got) != len(want) {
		d.t.Fatalf("%s: files count %d distinct words, the input has %d", when, len(got), len(want))
	}
	// The totals topic is written by the same batches as the files; its last
	// value per word is the running total.
	d.waitFor(fmt.Sprintf("the totals topic to hold the totals of %d lines (%s)", lines, when), 30*time.Second, func() bool {
		tot := d.totals()
		for w, c := range want {
			if tot[w] != c {
				return false
			}
		}
		return len(tot) == len(want)
	})
	d.t.Logf("%s: %d lines, %d words, %d distinct: files and totals topic match the input exactly", when, lines, words, len(want))
	return lines
}

// waitFor polls cond until it holds, failing the test after within.
func (d *demo) waitFor(what string, within time.Duration, cond func() bool) {
	d.t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			d.t.Fatalf("waited %v for %s", within, what)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// freePorts returns n ports free on 127.0.0.1 now.
func freePorts(t *testing.T, n int) []string {
	var ports []string
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		_, p, _ := net.SplitHostPort(l.Addr().String())
		ports = append(ports, p)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// tlog writes to the test log.
type tlog struct{ t *testing.T }

func (l tlog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestComposeDemoOnExternalKafka runs the demo with the override for a real
// Kafka cluster (deploy/docker-compose.kafka.yml, as `go run ./deploy up
// --kafka HOSTS` does) against a broker outside Compose: a development
// broker started by this test on the Docker bridge's gateway address, which
// the containers reach as they would any Kafka host. The job's first batch
// completes, its topics (created by the producer) fill on that broker, and
// no development broker runs in the project.
func TestComposeDemoOnExternalKafka(t *testing.T) {
	d, _, ctx := newDemo(t)
	defer d.cancel()
	t.Cleanup(d.down)
	host := bridgeGateway(t)
	b, err := devkafka.StartOn(host, host, 0, 4) // no topics: the producer creates them
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	brokers := strings.Join(b.Addrs, ",")
	d.o.files = []string{filepath.Join(d.o.root, "deploy", "docker-compose.kafka.yml")}
	d.o.env = append(d.o.env, "SLUICE_KAFKA_BROKERS="+brokers)
	if err := up(ctx, d.o, &brokers, nil, tlog{t}); err != nil {
		t.Fatal(err)
	}
	for _, id := range d.containers("broker") {
		out, err := exec.Command("docker", "inspect", "--format", "{{.Config.Image}}", id).Output()
		if err != nil || !strings.HasPrefix(string(out), "sluice-demo-tools:") {
			t.Errorf("the broker service runs %s (%v), want the demo tools watching the external Kafka", out, err)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	d.waitFor("records in word-totals and window-counts on the external broker", time.Minute, func() bool {
		ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, "lines", "word-totals", "window-counts")
		if err != nil {
			return false
		}
		n := map[string]int64{}
		ends.Each(func(o kadm.ListedOffset) { n[o.Topic] += o.Offset })
		return n["lines"] > 0 && n["word-totals"] > 0 && n["window-counts"] > 0
	})
	d.down()
	d.checkNothingLeft()
}

// bridgeGateway is the host's address on Docker's default bridge (docker0),
// which containers on any compose network reach.
func bridgeGateway(t *testing.T) string {
	gw, _ := exec.Command("docker", "network", "inspect", "bridge", "--format", "{{range .IPAM.Config}}{{.Gateway}}{{end}}").Output()
	if ip := net.ParseIP(strings.TrimSpace(string(gw))); ip != nil {
		return ip.String()
	}
	if ifc, err := net.InterfaceByName("docker0"); err == nil {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
				return n.IP.String()
			}
		}
	}
	t.Skip("no address of Docker's default bridge (docker0) on this host: no place for a Kafka outside Compose")
	return ""
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
