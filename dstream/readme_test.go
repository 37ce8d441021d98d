package dstream_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// readmeSection returns the README's section that starts with heading,
// up to the next "## " heading.
func readmeSection(t *testing.T, heading string) string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README has no %q section", heading)
	}
	s = s[i+1:]
	if j := strings.Index(s[len(heading):], "\n## "); j >= 0 {
		s = s[:len(heading)+j]
	}
	return s
}

// snippetEnv declares what the README's table snippets refer to.
const snippetEnv = `package readmecheck

import (
	"flag"
	"strings"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/rdd"
)

var (
	_ = flag.Int
	_ = strings.Fields
	_ = time.Second
	_ *rdd.RDD[int]
)

var (
	ctx    *dstream.Context
	cfg    dstream.Config
	build  func(*dstream.Context) error
	lines  *dstream.DStream[string]
	words  *dstream.DStream[string]
	pairs  *dstream.DStream[dstream.KV[string, int]]
	other  *dstream.DStream[dstream.KV[string, string]]
	table  *dstream.Dataset[dstream.KV[string, string]]
	acc    *dstream.Accumulator[int64]
	task   *dstream.Task
	sink   dstream.Sink[string, int]
	update func(values []int, state int, exists bool) (int, bool)
	track  func(key string, value dstream.Option[int], state *dstream.State[int]) (string, bool)
	loadGeo func() (map[string]string, error)
)

func snippets() {
`

// TestReadmeSparkTable compiles every Sluice snippet of the README's
// "Coming from Spark Streaming" table, and checks that the NetworkWordCount
// port shown there is examples/networkwordcount/main.go.
func TestReadmeSparkTable(t *testing.T) {
	sec := readmeSection(t, "## Coming from Spark Streaming")

	port, err := os.ReadFile("../examples/networkwordcount/main.go")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sec, "```go\n"+string(port)+"```\n") {
		t.Errorf("the README's NetworkWordCount block is not examples/networkwordcount/main.go")
	}

	call := regexp.MustCompile(`^[a-z][A-Za-z]*\.[A-Z][A-Za-z]*[\[(].*\)$`)
	span := regexp.MustCompile("`([^`]+)`")
	var body strings.Builder
	n := 0
	for _, line := range strings.Split(sec, "\n") {
		cells := strings.Split(line, " | ")
		if !strings.HasPrefix(line, "| ") || len(cells) != 2 || strings.HasPrefix(line, "|---") {
			continue
		}
		for _, m := range span.FindAllStringSubmatch(cells[1], -1) {
			if call.MatchString(m[1]) {
				body.WriteString("\t{\n\t\t" + m[1] + "\n\t}\n")
				n++
			}
		}
	}
	if n < 35 {
		t.Fatalf("only %d snippets found in the table", n)
	}
	if testing.Short() {
		t.Skip("compiling the snippets runs the go tool")
	}
	dir, err := os.MkdirTemp(".", "readmecheck")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	src := snippetEnv + body.String() + "}\n"
	if err := os.WriteFile(filepath.Join(dir, "snippets.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("go", "vet", "./"+filepath.Base(dir)).CombinedOutput()
	if err != nil {
		t.Fatalf("the README's snippets do not compile: %v\n%s\n%s", err, out, src)
	}
}

// TestReadmeIntroCompiles compiles the README's first Go block, the
// introduction's job, as a main package.
func TestReadmeIntroCompiles(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "```go\n")
	j := strings.Index(s[i+6:], "```\n")
	if i < 0 || j < 0 {
		t.Fatal("README has no Go block")
	}
	code := s[i+6 : i+6+j]
	if !strings.Contains(code, "dstream.Run(") {
		t.Fatalf("the first Go block is not the introduction's job:\n%s", code)
	}
	if testing.Short() {
		t.Skip("compiling runs the go tool")
	}
	dir, err := os.MkdirTemp(".", "readmecheck")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	src := "package main\n\nimport (\n\t\"flag\"\n\t\"strings\"\n\t\"time\"\n\n\t\"github.com/sluicehq/sluice/dstream\"\n)\n\n" + code
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("go", "vet", "./"+filepath.Base(dir)).CombinedOutput(); err != nil {
		t.Fatalf("the README's introduction does not compile: %v\n%s\n%s", err, out, src)
	}
}

// The README's command for the whole suite is the one CI runs: the e2e
// package takes longer than go test's default 10-minute limit, so a
// command without -timeout (as the README once gave) fails there.
func TestReadmeTestCommandIsCIs(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(b), "Run the whole test suite")
	if !ok {
		t.Fatal(`README.md no longer says "Run the whole test suite"`)
	}
	m := regexp.MustCompile(`(?m)^    (go test[^\n]*)$`).FindStringSubmatch(after)
	if m == nil {
		t.Fatal("no indented go test command after \"Run the whole test suite\"")
	}
	ci, err := os.ReadFile("../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(m[1]) + `$`).Match(ci) {
		t.Errorf("the README's test command %q is not a line of .ci/run", m[1])
	}
	if !strings.Contains(m[1], "-timeout") {
		t.Errorf("the README's test command %q has no -timeout: the e2e package runs past the 10-minute default", m[1])
	}
}
