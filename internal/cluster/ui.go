package cluster

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"os"
	"path/filepath"
	"sort"
)

// UISocketEnv names the environment variable that tells a job's driver
// process where to serve its web UI API for the coordinator to proxy: a
// unix socket, reachable only by the user running the cluster.
const UISocketEnv = "SLUICE_UI_SOCKET"

// SummaryEnv names the environment variable that tells a job's driver
// process where to write the job's last summary (the API's job, as JSON)
// when it exits, for the coordinator to show once the process is gone.
const SummaryEnv = "SLUICE_JOB_SUMMARY"

// SummaryPath returns where the driver of the job whose driver runs in dir
// writes its last summary.
func SummaryPath(dir string) string { return filepath.Join(dir, "summary.json") }

// UISocketPath returns the UI socket of the job whose driver runs in dir:
// dir/ui.sock, or a socket in the temporary directory named by a hash of
// that path when it is too long for a unix socket.
func UISocketPath(dir string) string {
	p := filepath.Join(dir, "ui.sock")
	if len(p) > maxUnixPath {
		sum := sha256.Sum256([]byte(p))
		p = filepath.Join(os.TempDir(), "sluice-ui-"+hex.EncodeToString(sum[:8])+".sock")
	}
	return p
}

// UIToken returns what the web UI and API ask for: the cluster secret
// itself ("" in --insecure mode).
func (s Secret) UIToken() string { return string(s.raw) }

// UITLS returns the TLS configuration for a UI bound beyond loopback when
// TLS files were given (--tls-cert, --tls-key), else nil. With --tls-ca,
// client certificates signed by that CA are verified and accepted in place
// of the secret; without one, browsers may still present none.
func (s Secret) UITLS() *tls.Config {
	if s.tls == nil || s.server == nil {
		return nil
	}
	c := s.server.Clone()
	if c.ClientCAs != nil {
		c.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return c
}

// ExecutorView is one executor as a job driver's backend knows it.
type ExecutorView struct {
	ID       string
	Addr     string
	Epoch    int64 // the executor's incarnation
	Slots    int
	Running  int // the job's tasks running there
	Draining bool
}

// ExecutorViews returns the executors the backend runs tasks on, by id.
func (b *RemoteBackend) ExecutorViews() []ExecutorView {
	b.mu.Lock()
	out := make([]ExecutorView, 0, len(b.execs))
	for _, e := range b.execs {
		out = append(out, ExecutorView{ID: e.id, Addr: e.addr, Epoch: e.epoch, Slots: e.slots, Running: e.running, Draining: e.draining})
	}
	b.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// UIClientTLS returns the TLS configuration a client of an https:// UI
// uses: the TLS files' client certificate and CA, or nil for the system's
// roots.
func (s Secret) UIClientTLS() *tls.Config {
	if s.tls == nil || s.client == nil {
		return nil
	}
	return s.client.Clone()
}
