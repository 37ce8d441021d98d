package ui

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"
)

// oneJob is a Source with a fixed job and no batches.
type oneJob struct{}

func (oneJob) Job() Job                                 { return Job{ID: "j", Name: "j", State: "running"} }
func (oneJob) Batches(offset, limit int) ([]Batch, int) { return nil, 0 }
func (oneJob) Batch(int64) (BatchDetail, bool)          { return BatchDetail{}, false }
func (oneJob) Executors() []Executor                    { return nil }

func TestPagesAreSelfContained(t *testing.T) {
	// No page loads anything from elsewhere: no URL with a scheme or a
	// protocol-relative one in src, href, url() or fetch.
	ext := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:)?//|url\(\s*["']?(https?:)?//|fetch\(\s*["'](https?:)?//|@import`)
	n := 0
	err := fs.WalkDir(static, "static", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(path)
		if err != nil {
			return err
		}
		if m := ext.Find(b); m != nil {
			t.Errorf("%s refers outside the server: %q", path, m)
		}
		n++
		return nil
	})
	if err != nil || n < 3 {
		t.Fatalf("walked %d embedded files: %v", n, err)
	}
}

func TestHandlerServesPagesReadOnly(t *testing.T) {
	srv := httptest.NewServer(Handler(oneJob{}, nil, Options{}))
	defer srv.Close()
	for path, ctype := range map[string]string{"/": "text/html", "/app.js": "javascript", "/style.css": "text/css", "/api/v1/jobs": "application/json"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), ctype) {
			t.Errorf("GET %s: %d %q, want 200 %s", path, resp.StatusCode, resp.Header.Get("Content-Type"), ctype)
		}
		if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") || resp.Header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("GET %s: headers %v, want a self-only CSP and no framing", path, resp.Header)
		}
	}
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH"} {
		req, _ := http.NewRequest(m, srv.URL+"/api/v1/jobs", strings.NewReader("{}"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s: %d, want 405", m, resp.StatusCode)
		}
	}
	resp, err := http.Head(srv.URL + "/api/v1/jobs/j")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("HEAD: %v %v", resp, err)
	}
	// No route reaches the file system: a path out of the embedded tree is 404.
	for _, path := range []string{"/../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/static/app.js", "/server.go"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 && strings.Contains(string(b), "root:") {
			t.Errorf("GET %s read a file: %.100s", path, b)
		}
		if path == "/server.go" && resp.StatusCode != 404 {
			t.Errorf("GET %s: %d, want 404", path, resp.StatusCode)
		}
	}
}

func TestNormalizeAddrAndLoopback(t *testing.T) {
	for in, want := range map[string]string{":4040": "127.0.0.1:4040", "4041": "127.0.0.1:4041", "0.0.0.0:80": "0.0.0.0:80", "localhost": "localhost:4040", "[::1]:5": "[::1]:5", "10.0.0.1": "10.0.0.1:4040"} {
		if got, err := NormalizeAddr(in); err != nil || got != want {
			t.Errorf("NormalizeAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "a:b:c", ":70000", "h:port"} {
		if _, err := NormalizeAddr(bad); err == nil {
			t.Errorf("NormalizeAddr(%q): no error", bad)
		}
	}
	for addr, want := range map[string]bool{"127.0.0.1:1": true, "[::1]:1": true, "localhost:1": true, "0.0.0.0:1": false, "10.1.2.3:1": false, ":1": false} {
		if IsLoopback(addr) != want {
			t.Errorf("IsLoopback(%q) = %v", addr, !want)
		}
	}
}

func TestListenAndClose(t *testing.T) {
	s, err := Listen("127.0.0.1:0", Handler(oneJob{}, nil, Options{}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(s.Addr(), http.NotFoundHandler()); err == nil || !strings.Contains(err.Error(), "--ui") {
		t.Errorf("second Listen on %s: %v; want an error naming --ui", s.Addr(), err)
	}
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + s.Addr() + "/api/v1/jobs")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get("http://" + s.Addr() + "/api/v1/jobs"); err == nil {
		t.Error("served after Close")
	}
}
