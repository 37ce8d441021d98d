package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/ui"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// TestCoordinatorUIAuth checks who may read the coordinator's UI and stop
// jobs through it: beyond loopback every read but /metrics needs the
// secret (Basic password or bearer token); on loopback reads are open;
// a stop always needs the secret as a bearer token, and --insecure has
// none to give.
func TestCoordinatorUIAuth(t *testing.T) {
	const secret = "coordinator-ui-secret-0123456789"
	s, err := NewSecret(secret, "test")
	if err != nil {
		t.Fatal(err)
	}
	type req struct {
		method, path, auth string
		want               int
	}
	basic := "Basic " + basicAuth("any", secret)
	for _, tc := range []struct {
		name   string
		secret Secret
		opts   func(tok string) ui.Options
		reqs   []req
	}{
		{"beyond loopback", s, func(tok string) ui.Options { return ui.Options{Secret: tok} }, []req{
			{"GET", "/api/v1/jobs", "", 401},
			{"GET", "/", "", 401},
			{"GET", "/api/v1/jobs", "Bearer wrong-wrong-wrong-wrong", 401},
			{"GET", "/api/v1/jobs", "Bearer " + secret, 200},
			{"GET", "/api/v1/executors", basic, 200},
			{"GET", "/metrics", "", 200},
			{"POST", "/api/v1/jobs/j/stop", "", 403},
			{"POST", "/api/v1/jobs/j/stop", basic, 403},
			{"POST", "/api/v1/jobs/j/stop", "Bearer " + secret, 404},
			{"POST", "/api/v1/jobs", "Bearer " + secret, 405},
			{"DELETE", "/api/v1/jobs/j", "Bearer " + secret, 405},
		}},
		{"loopback", s, func(tok string) ui.Options { return ui.Options{Secret: tok, OpenReads: true} }, []req{
			{"GET", "/api/v1/jobs", "", 200},
			{"GET", "/api/v1/jobs/j", "", 404},
			{"GET", "/api/v1/jobs/j/batches", "", 404},
			{"POST", "/api/v1/jobs/j/stop", "", 403},
			{"POST", "/api/v1/jobs/j/stop", "Bearer " + secret, 404},
		}},
		{"insecure loopback", Insecure(), func(tok string) ui.Options { return ui.Options{Secret: tok, OpenReads: true} }, []req{
			{"GET", "/api/v1/jobs", "", 200},
			{"POST", "/api/v1/jobs/j/stop", "", 403},
			{"POST", "/api/v1/jobs/j/stop", "Bearer ", 403},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewCoordinator(CoordinatorConfig{StateDir: t.TempDir(), Advertise: "127.0.0.1:1", Secret: tc.secret})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(c.UIHandler(tc.opts(tc.secret.UIToken())))
			defer srv.Close()
			for _, r := range tc.reqs {
				hr, _ := http.NewRequest(r.method, srv.URL+r.path, nil)
				if r.auth != "" {
					hr.Header.Set("Authorization", r.auth)
				}
				resp, err := http.DefaultClient.Do(hr)
				if err != nil {
					t.Fatal(err)
				}
				var e ui.Error
				if r.want != 200 {
					json.NewDecoder(resp.Body).Decode(&e)
				}
				resp.Body.Close()
				if resp.StatusCode != r.want {
					t.Errorf("%s %s (auth %q): %d, want %d", r.method, r.path, r.auth, resp.StatusCode, r.want)
				}
				if r.want != 200 && e.Error == "" {
					t.Errorf("%s %s: %d without a reason", r.method, r.path, resp.StatusCode)
				}
				if tc.secret.IsInsecure() && r.method == "POST" && !strings.Contains(e.Error, "--insecure") {
					t.Errorf("POST stop in --insecure mode: %q, want a reason naming --insecure", e.Error)
				}
			}
		})
	}
}

func basicAuth(user, pw string) string {
	r, _ := http.NewRequest("GET", "/", nil)
	r.SetBasicAuth(user, pw)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

// TestCoordinatorUITLSClientCerts serves the coordinator's UI over TLS from
// the TLS files, as `driver serve --ui` does beyond loopback: a client
// certificate signed by the CA stands for the secret (reads and stop); a
// client without one needs the secret.
func TestCoordinatorUITLSClientCerts(t *testing.T) {
	dir := t.TempDir()
	files := writeCerts(t, dir, "ui")
	s, err := NewSecret("coordinator-ui-secret-0123456789", "test")
	if err != nil {
		t.Fatal(err)
	}
	if s, err = s.WithTLS(files); err != nil {
		t.Fatal(err)
	}
	c, err := NewCoordinator(CoordinatorConfig{StateDir: t.TempDir(), Advertise: "127.0.0.1:1", Secret: s})
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.UITLS()
	if cfg == nil || cfg.ClientCAs == nil {
		t.Fatal("UITLS: no TLS config with the CA")
	}
	srv, err := ui.ListenTLS("127.0.0.1:0", c.UIHandler(ui.Options{Secret: s.UIToken(), ClientCerts: true}), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	withCert := &http.Client{Transport: &http.Transport{TLSClientConfig: s.UIClientTLS()}}
	noCert := s.UIClientTLS()
	noCert.Certificates = nil
	without := &http.Client{Transport: &http.Transport{TLSClientConfig: noCert}}
	for _, tc := range []struct {
		client       *http.Client
		method, path string
		auth         string
		want         int
	}{
		{withCert, "GET", "/api/v1/jobs", "", 200},
		{withCert, "POST", "/api/v1/jobs/j/stop", "", 404}, // authorized; no such job
		{without, "GET", "/api/v1/jobs", "", 401},
		{without, "GET", "/metrics", "", 200},
		{without, "GET", "/api/v1/jobs", "Bearer coordinator-ui-secret-0123456789", 200},
		{without, "POST", "/api/v1/jobs/j/stop", "", 403},
	} {
		req, _ := http.NewRequest(tc.method, "https://"+srv.Addr()+tc.path, nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := tc.client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s (client cert: %v, auth %q): %d, want %d", tc.method, tc.path, tc.client == withCert, tc.auth, resp.StatusCode, tc.want)
		}
	}
	// Plain HTTP is not served.
	if resp, err := http.Get("http://" + srv.Addr() + "/metrics"); err == nil && resp.StatusCode == 200 {
		t.Error("the TLS UI answered plain HTTP")
	}
}

// TestCoordinatorUIExecutorStates checks the executors the coordinator's
// UI lists: a draining executor says so, one that missed its heartbeats is
// listed as lost with its last heartbeat, and re-registering makes it
// active again under a new epoch.
func TestCoordinatorUIExecutorStates(t *testing.T) {
	c, err := NewCoordinator(CoordinatorConfig{StateDir: t.TempDir(), Advertise: "127.0.0.1:1", Secret: Insecure(), HeartbeatInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_000_000, 0)
	c.now = func() time.Time { return now }
	ctx := context.Background()
	for _, id := range []string{"a", "b"} {
		if _, err := c.RegisterExecutor(ctx, &sluicev1.RegisterExecutorRequest{ExecutorId: id, Address: "127.0.0.1:91", Slots: 2}); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(2 * time.Second)
	c.Heartbeat(ctx, &sluicev1.HeartbeatRequest{ExecutorId: "a", Epoch: 1, Draining: true})
	states := func() string {
		var out []string
		for _, e := range c.UIExecutors() {
			out = append(out, fmt.Sprintf("%s:%s:%d:%d", e.ID, e.State, e.Epoch, e.LastHeartbeat.Unix()))
		}
		return strings.Join(out, " ")
	}
	if got, want := states(), "a:draining:1:1000002 b:active:2:1000000"; got != want {
		t.Fatalf("executors %q, want %q", got, want)
	}
	now = now.Add(2 * time.Second) // b missed 4 s of heartbeats, a 2 s
	c.expire(now)
	if got, want := states(), "a:draining:1:1000002 b:lost:2:1000000"; got != want {
		t.Fatalf("after expiry: executors %q, want %q", got, want)
	}
	c.RegisterExecutor(ctx, &sluicev1.RegisterExecutorRequest{ExecutorId: "b", Address: "127.0.0.1:92", Slots: 2})
	if got, want := states(), "a:draining:1:1000002 b:active:3:1000004"; got != want {
		t.Fatalf("after b came back: executors %q, want %q", got, want)
	}
}
