// Command deploy builds the demo's images and runs the docker-compose demo
// (deploy/docker-compose.yml). From a fresh clone, one command does the
// whole setup and waits for the job's first completed batch:
//
//	go run ./deploy up        # build binaries and images, make the secret, start, wait
//	go run ./deploy down      # stop and remove the containers, network and volumes
//	go run ./deploy images    # only build the images (sluice-*:demo)
//	go run ./deploy secret    # only make deploy/.secret/cluster-secret
//
// Every image is FROM scratch and holds static binaries (CGO_ENABLED=0)
// built here, so nothing is pulled from a registry. Compose is `docker
// compose` (v2) when it answers, else `docker-compose` (v1); --compose
// chooses.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

const usage = `usage: go run ./deploy COMMAND [flags] [-- COMPOSE-UP-ARGS]
  up      build the binaries and images, make the secret if missing, start the demo, wait for its first batch
  down    stop the demo and remove its containers, network and volumes
  images  build the images only
  secret  make deploy/.secret/cluster-secret if it is missing`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "deploy:", err)
		stop()
		os.Exit(1)
	}
}

// options of the commands.
type options struct {
	root    string   // the repository
	tag     string   // image tag
	project string   // compose project name
	compose []string // the compose command
	timeout time.Duration
	env     []string // extra environment of compose
	files   []string // compose files after deploy/docker-compose.yml
	secret  string   // the cluster secret file
	uiPort  string   // the host port of the job's web UI
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprintln(stdout, usage)
			return nil
		}
		return errors.New("no command\n" + usage)
	}
	cmd := args[0]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stdout)
	tag := fs.String("tag", "demo", "image tag")
	project := fs.String("project", "sluice-demo", "compose project name")
	composeCmd := fs.String("compose", "", `compose command: "docker compose" or "docker-compose" (default: whichever answers, v2 first)`)
	timeout := fs.Duration("timeout", 3*time.Minute, "up: how long to wait for the first completed batch")
	kafka := fs.String("kafka", "", "up, down: use this Kafka cluster (host:port,...) instead of the development broker (deploy/docker-compose.kafka.yml)")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	o := options{root: root, tag: *tag, project: *project, timeout: *timeout,
		secret: filepath.Join(root, "deploy", ".secret", "cluster-secret"), uiPort: envOr("SLUICE_UI_PORT", "4040")}
	if *kafka != "" {
		o.files = append(o.files, filepath.Join(root, "deploy", "docker-compose.kafka.yml"))
		o.env = append(o.env, "SLUICE_KAFKA_BROKERS="+*kafka)
	}
	if cmd == "up" || cmd == "down" {
		if o.compose, err = findCompose(ctx, *composeCmd); err != nil {
			return err
		}
	}
	switch cmd {
	case "images":
		return buildImages(ctx, o, stdout)
	case "secret":
		return makeSecret(o.secret, stdout)
	case "up":
		return up(ctx, o, kafka, fs.Args(), stdout)
	case "down":
		return composeRun(ctx, o, stdout, "down", "--volumes", "--remove-orphans", "--timeout", "30")
	default:
		return fmt.Errorf("unknown command %q\n%s", cmd, usage)
	}
}

// repoRoot finds the repository from the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && bytes.Contains(b, []byte("module github.com/sluicehq/sluice\n")) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("run this inside a Sluice checkout (no go.mod of github.com/sluicehq/sluice above %s)", dir)
		}
	}
}

// findCompose returns the compose command to use.
func findCompose(ctx context.Context, want string) ([]string, error) {
	if want != "" {
		return strings.Fields(want), nil
	}
	if exec.CommandContext(ctx, "docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}, nil
	}
	if _, err := exec.LookPath("docker-compose"); err == nil {
		return []string{"docker-compose"}, nil
	}
	return nil, errors.New(`neither "docker compose" (v2) nor "docker-compose" (v1) answers: install one of them`)
}

// The images: name, Dockerfile, binaries (name: package).
var images = []struct {
	name, dockerfile string
	bins             []string
}{
	{"sluice-driver", "driver.Dockerfile", []string{"driver"}},
	{"sluice-executor", "executor.Dockerfile", []string{"executor"}},
	{"sluice-demo-job", "demo-job.Dockerfile", []string{"driver", "demojob"}},
	{"sluice-demo-tools", "demo-tools.Dockerfile", []string{"demotool"}},
	{"sluice-devbroker", "devbroker.Dockerfile", []string{"devbroker"}},
}

var packages = map[string]string{
	"driver":    "./cmd/driver",
	"executor":  "./cmd/executor",
	"devbroker": "./cmd/devbroker",
	"demojob":   "./deploy/demojob",
	"demotool":  "./deploy/demotool",
}

// buildImages builds the static binaries, lays out one build context per
// image under deploy/.build/ and builds the images.
func buildImages(ctx context.Context, o options, stdout io.Writer) error {
	build := filepath.Join(o.root, "deploy", ".build")
	bin := filepath.Join(build, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	start := time.Now()
	args := []string{"build", "-trimpath", "-ldflags=-s -w", "-o", bin + string(filepath.Separator)}
	for _, p := range []string{"driver", "executor", "devbroker", "demojob", "demotool"} {
		args = append(args, packages[p])
	}
	gb := exec.CommandContext(ctx, "go", args...)
	gb.Dir = o.root
	gb.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	gb.Stdout, gb.Stderr = stdout, os.Stderr
	if err := gb.Run(); err != nil {
		return fmt.Errorf("go build of the static binaries: %w", err)
	}
	fmt.Fprintf(stdout, "deploy: static binaries built in %s\n", time.Since(start).Round(100*time.Millisecond))
	for _, im := range images {
		dir := filepath.Join(build, im.name)
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
			return err
		}
		if err := os.Chmod(filepath.Join(dir, "tmp"), 0o1777); err != nil {
			return err
		}
		for _, b := range im.bins {
			if err := copyFile(filepath.Join(bin, b), filepath.Join(dir, b)); err != nil {
				return err
			}
		}
		ref := im.name + ":" + o.tag
		db := exec.CommandContext(ctx, "docker", "build", "--quiet", "-t", ref,
			"-f", filepath.Join(o.root, "deploy", "docker", im.dockerfile), dir)
		db.Env = append(os.Environ(), "DOCKER_BUILDKIT=0") // the classic builder: FROM scratch needs no network
		var out bytes.Buffer
		db.Stdout, db.Stderr = &out, &out
		if err := db.Run(); err != nil {
			return fmt.Errorf("docker build %s: %w\n%s", ref, err, out.String())
		}
		fmt.Fprintf(stdout, "deploy: image %s built\n", ref)
	}
	return nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// makeSecret writes a random cluster secret to p unless there is one. It
// is mounted into the containers at run time, never copied into an image.
func makeSecret(p string, stdout io.Writer) error {
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	b := make([]byte, 32)
	rand.Read(b)
	if err := os.WriteFile(p, []byte(base64.StdEncoding.EncodeToString(b)+"\n"), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "deploy: cluster secret written to %s\n", p)
	return nil
}

// composeRun runs the compose command on deploy/docker-compose.yml.
func composeRun(ctx context.Context, o options, stdout io.Writer, args ...string) error {
	full := append(append([]string{}, o.compose[1:]...), "-f", filepath.Join(o.root, "deploy", "docker-compose.yml"))
	for _, f := range o.files {
		full = append(full, "-f", f)
	}
	full = append(full, "-p", o.project)
	c := exec.CommandContext(ctx, o.compose[0], append(full, args...)...)
	c.Env = append(append(os.Environ(), "SLUICE_TAG="+o.tag, "SLUICE_SECRET_FILE="+o.secret), o.env...)
	c.Stdout, c.Stderr = stdout, os.Stderr
	if err := c.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", strings.Join(o.compose, " "), strings.Join(args, " "), err)
	}
	return nil
}

// up builds, starts the demo and waits for the first completed batch.
func up(ctx context.Context, o options, kafka *string, extra []string, stdout io.Writer) error {
	start := time.Now()
	if err := buildImages(ctx, o, stdout); err != nil {
		return err
	}
	if err := makeSecret(o.secret, stdout); err != nil {
		return err
	}
	if err := composeRun(ctx, o, stdout, append([]string{"up", "-d"}, extra...)...); err != nil {
		return err
	}
	port := o.uiPort
	key, err := os.ReadFile(o.secret)
	if err != nil {
		return err
	}
	b, first, err := waitFirstBatch(ctx, "http://127.0.0.1:"+port, strings.TrimSpace(string(key)), o.timeout)
	if err != nil {
		return fmt.Errorf("%w (see `%s -f deploy/docker-compose.yml -p %s logs`)", err, strings.Join(o.compose, " "), o.project)
	}
	c := strings.Join(o.compose, " ") + " -f deploy/docker-compose.yml"
	for _, f := range o.files {
		c += " -f " + filepath.Join("deploy", filepath.Base(f))
	}
	c += " -p " + o.project
	brokers, down := "broker:9092", "go run ./deploy down"
	if *kafka != "" {
		brokers = *kafka
		down += " --kafka " + *kafka
	}
	if o.project != "sluice-demo" {
		down += " --project " + o.project
	}
	fmt.Fprintf(stdout, `
deploy: the demo runs; first completed batch (%d records) %s after the start of this command.
  web UI:   http://127.0.0.1:%s/  (any user name; password: the secret in deploy/.secret/cluster-secret)
  cluster:  http://127.0.0.1:%[7]s/  (every job and the executors; the same password)
  totals:   %[4]s exec producer /demotool tail --brokers %[5]s --topic word-totals
  windows:  %[4]s exec producer /demotool tail --brokers %[5]s --topic window-counts
  files:    docker cp $(%[4]s ps -q driver):/state/out ./demo-out
  scale:    %[4]s up -d --scale executor=3
  stop:     %[6]s
`, b.InputRecords, first.Sub(start).Round(100*time.Millisecond), port, c, brokers, down, envOr("SLUICE_CLUSTER_UI_PORT", "8080"))
	return nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// apiBatch is a batch of the job UI's JSON API.
type apiBatch struct {
	ID           int64  `json:"id"`
	Status       string `json:"status"`
	InputRecords int64  `json:"inputRecords"`
}

// apiGet decodes the JSON of one GET of the job UI's API.
func apiGet(ctx context.Context, url, secret string, v any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("job API: GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("job API: GET %s: %w", url, err)
	}
	return nil
}

// batches returns the job's completed batches, newest first (up to 1,000).
// The job's own UI lists the one job it runs, under its cluster job id.
func batches(ctx context.Context, base, secret string) (total int, bs []apiBatch, err error) {
	var jobs []struct {
		ID string `json:"id"`
	}
	if err := apiGet(ctx, base+"/api/v1/jobs", secret, &jobs); err != nil {
		return 0, nil, err
	}
	if len(jobs) != 1 {
		return 0, nil, fmt.Errorf("job API: %d jobs listed, want the demo job", len(jobs))
	}
	var page struct {
		Total   int        `json:"total"`
		Batches []apiBatch `json:"batches"`
	}
	if err := apiGet(ctx, base+"/api/v1/jobs/"+url.PathEscape(jobs[0].ID)+"/batches?limit=1000", secret, &page); err != nil {
		return 0, nil, err
	}
	return page.Total, page.Batches, nil
}

// waitFirstBatch polls the job's API until a batch with input succeeded,
// and returns it with the time it was seen.
func waitFirstBatch(ctx context.Context, base, secret string, timeout time.Duration) (apiBatch, time.Time, error) {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		_, bs, err := batches(ctx, base, secret)
		for i := len(bs) - 1; i >= 0; i-- {
			if bs[i].Status == "succeeded" && bs[i].InputRecords > 0 {
				return bs[i], time.Now(), nil
			}
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return apiBatch{}, time.Time{}, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return apiBatch{}, time.Time{}, fmt.Errorf("no completed batch with input within %v (last error: %v)", timeout, last)
}
