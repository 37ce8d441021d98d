package ui

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// DefaultLimit is the page size of /batches without ?limit=; MaxLimit is
// the largest page a request may ask for.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// DefaultPort is the UI's port when --ui names none, as Spark's :4040.
const DefaultPort = "4040"

//go:embed static
var static embed.FS

// NormalizeAddr turns a --ui value into a listen address: a bare port or
// ":port" binds loopback (127.0.0.1), "host:port" binds as given, and
// "host" alone gets DefaultPort.
func NormalizeAddr(addr string) (string, error) {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return "", errors.New("ui: empty address: give host:port, :port or port (e.g. :4040)")
	}
	if _, err := strconv.Atoi(addr); err == nil {
		addr = ":" + addr
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		if strings.Contains(addr, ":") && !strings.HasPrefix(addr, "[") {
			return "", fmt.Errorf("ui: address %q: %v; give host:port, :port or port (e.g. 127.0.0.1:4040)", addr, err)
		}
		host, port = strings.Trim(addr, "[]"), DefaultPort
	}
	if host == "" {
		host = "127.0.0.1"
	}
	if port == "" {
		port = DefaultPort
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return "", fmt.Errorf("ui: address %q: port %q is not a number from 0 to 65535", addr, port)
	}
	return net.JoinHostPort(host, port), nil
}

// Options configure Handler and Secure.
type Options struct {
	// Secret, when set, is required for everything but /metrics: as the
	// password of HTTP Basic authentication (any user name; browsers ask
	// for it) or as a bearer token (Authorization: Bearer SECRET).
	Secret string
	// OpenReads serves GET and HEAD without the secret (a UI bound to
	// loopback); a POST still needs it.
	OpenReads bool
	// ClientCerts accepts a TLS client certificate that the server's
	// tls.Config verified in place of the secret.
	ClientCerts bool
}

// Handler returns the UI's routes: the pages at /, the JSON API under
// /api/v1/ and metrics (may be nil) at /metrics.
func Handler(src Source, metrics http.Handler, opts Options) http.Handler {
	mux := http.NewServeMux()
	a := &api{src: src}
	mux.HandleFunc("GET /api/v1/jobs", a.jobs)
	mux.HandleFunc("GET /api/v1/jobs/{id}", a.job)
	mux.HandleFunc("GET /api/v1/jobs/{id}/batches", a.batches)
	mux.HandleFunc("GET /api/v1/jobs/{id}/batches/{time}", a.batch)
	mux.HandleFunc("GET /api/v1/jobs/{id}/executors", a.executors)
	mux.HandleFunc("GET /api/", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, http.StatusNotFound, fmt.Sprintf("no API path %s: see /api/v1/jobs", r.URL.Path))
	})
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
		// The same below the job: the path a cluster's coordinator proxies.
		mux.HandleFunc("GET /api/v1/jobs/{id}/metrics", func(w http.ResponseWriter, r *http.Request) {
			if _, ok := a.checkJob(w, r); ok {
				metrics.ServeHTTP(w, r)
			}
		})
	}
	mux.Handle("GET /", Static())
	return Secure(mux, opts)
}

// Static serves the embedded pages.
func Static() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return http.FileServerFS(sub)
}

// IsLoopback reports whether a listen address (see NormalizeAddr) binds
// loopback only.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// authorized reports whether r carries the secret (Basic password or
// bearer token), or a verified client certificate when certs count.
func authorized(r *http.Request, opts Options, bearerOnly bool) bool {
	if opts.ClientCerts && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		return true
	}
	if opts.Secret == "" {
		return false
	}
	got := ""
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		got = tok
	} else if _, pw, ok := r.BasicAuth(); ok && !bearerOnly {
		got = pw
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(opts.Secret)) == 1
}

// IsStopPath reports whether path is a job's stop action,
// /api/v1/jobs/{id}/stop: the one path a POST may reach.
func IsStopPath(path string) bool {
	rest, ok := strings.CutPrefix(path, "/api/v1/jobs/")
	id, tail, _ := strings.Cut(rest, "/")
	return ok && id != "" && tail == "stop"
}

// Secure asks for the secret (when set and reads are not open) for
// everything but /metrics, refuses every method but GET and HEAD except a
// POST to a job's stop path, which always needs the secret as a bearer
// token (a browser never sends one by itself, so no other site can make it
// stop a job) or a verified client certificate, and sets headers that keep
// the pages from being framed or sniffed.
func Secure(h http.Handler, opts Options) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		read := r.Method == http.MethodGet || r.Method == http.MethodHead
		if !read && !(r.Method == http.MethodPost && IsStopPath(r.URL.Path)) {
			w.Header().Set("Allow", "GET, HEAD")
			WriteError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s: the UI is read-only but for POST /api/v1/jobs/ID/stop; use GET", r.Method))
			return
		}
		if !read && !authorized(r, opts, true) {
			msg := "stopping a job needs the cluster secret as Authorization: Bearer SECRET (or a TLS client certificate); `driver stop` sends it"
			if opts.Secret == "" && !opts.ClientCerts {
				msg = "this cluster runs without a secret (--insecure): the API cannot stop jobs; use `driver stop --insecure JOB`"
			}
			WriteError(w, http.StatusForbidden, msg)
			return
		}
		if read && (opts.Secret != "" || opts.ClientCerts) && !opts.OpenReads && r.URL.Path != "/metrics" && !authorized(r, opts, false) {
			w.Header().Set("WWW-Authenticate", `Basic realm="sluice", charset="UTF-8"`)
			WriteError(w, http.StatusUnauthorized, "this UI needs the secret (the --ui-secret-file of a job, the cluster secret of `driver serve`): as the password (any user name) or as Authorization: Bearer SECRET")
			return
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'")
		h.ServeHTTP(w, r)
	})
}

type api struct{ src Source }

func (a *api) jobs(w http.ResponseWriter, r *http.Request) {
	WriteJSON(w, []Job{a.src.Job()})
}

// checkJob writes a 404 unless id names the job.
func (a *api) checkJob(w http.ResponseWriter, r *http.Request) (Job, bool) {
	j := a.src.Job()
	if id := r.PathValue("id"); id != j.ID {
		WriteError(w, http.StatusNotFound, fmt.Sprintf("no job %q: this process runs job %q (see /api/v1/jobs)", id, j.ID))
		return j, false
	}
	return j, true
}

func (a *api) job(w http.ResponseWriter, r *http.Request) {
	if j, ok := a.checkJob(w, r); ok {
		WriteJSON(w, j)
	}
}

// BatchPage is the answer of /api/v1/jobs/{id}/batches.
type BatchPage struct {
	// Total is how many batches the history holds; Offset and Limit echo
	// the request.
	Total   int     `json:"total"`
	Offset  int     `json:"offset"`
	Limit   int     `json:"limit"`
	Batches []Batch `json:"batches"` // newest first
}

func (a *api) batches(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.checkJob(w, r); !ok {
		return
	}
	offset, err := intParam(r, "offset", 0, 0, 1<<31-1)
	if err != nil {
		WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	limit, err := intParam(r, "limit", DefaultLimit, 1, MaxLimit)
	if err != nil {
		WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	bs, total := a.src.Batches(offset, limit)
	if bs == nil {
		bs = []Batch{}
	}
	WriteJSON(w, BatchPage{Total: total, Offset: offset, Limit: limit, Batches: bs})
}

func (a *api) executors(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.checkJob(w, r); !ok {
		return
	}
	es := a.src.Executors()
	if es == nil {
		es = []Executor{}
	}
	WriteJSON(w, es)
}

func (a *api) batch(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.checkJob(w, r); !ok {
		return
	}
	ms, err := strconv.ParseInt(r.PathValue("time"), 10, 64)
	if err != nil {
		WriteError(w, http.StatusBadRequest, fmt.Sprintf("batch %q: give the batch time in Unix milliseconds (the id field of /batches)", r.PathValue("time")))
		return
	}
	b, ok := a.src.Batch(ms)
	if !ok {
		WriteError(w, http.StatusNotFound, fmt.Sprintf("no batch %d in the history: it holds the last finished batches only (see /batches)", ms))
		return
	}
	WriteJSON(w, b)
}

func intParam(r *http.Request, name string, def, lo, hi int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s=%q: must be an integer from %d to %d", name, s, lo, hi)
	}
	return n, nil
}

// WriteJSON writes v as the JSON answer.
func WriteJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		WriteError(w, http.StatusInternalServerError, "ui: encode: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(append(b, '\n'))
}

// Error is the body of every API error.
type Error struct {
	Error string `json:"error"`
}

// WriteError writes an API error.
func WriteError(w http.ResponseWriter, code int, msg string) {
	b, _ := json.Marshal(Error{msg})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// Server is a running UI.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// Listen binds addr (see NormalizeAddr) and serves h until Close.
func Listen(addr string, h http.Handler) (*Server, error) { return ListenTLS(addr, h, nil) }

// ListenTLS is Listen serving TLS with cfg, when cfg is not nil.
func ListenTLS(addr string, h http.Handler, cfg *tls.Config) (*Server, error) {
	a, err := NormalizeAddr(addr)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", a)
	if err != nil {
		return nil, fmt.Errorf("ui: listen on %s: %w (choose another address with --ui, e.g. --ui=:4041)", a, err)
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	return Serve(ln, h), nil
}

// Serve serves h on ln until Close.
func Serve(ln net.Listener, h http.Handler) *Server {
	s := &Server{
		srv:  &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, MaxHeaderBytes: 64 << 10},
		ln:   ln,
		done: make(chan struct{}),
	}
	go func() { // ends when Close shuts the server down
		defer close(s.done)
		s.srv.Serve(ln)
	}()
	return s
}

// Addr returns the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server, letting requests in flight finish for up to 2s.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	<-s.done
	return err
}
