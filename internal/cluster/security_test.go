package cluster

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// recorder counts the calls that reached a handler and keeps the last
// call's credential.
type recorder struct {
	calls atomic.Int64
	mu    sync.Mutex
	cred  string
}

func (r *recorder) hit(ctx context.Context) {
	r.calls.Add(1)
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(authHeader); len(v) == 1 {
		r.mu.Lock()
		r.cred = v[0]
		r.mu.Unlock()
	}
}

// method is one RPC of the wire protocol.
type method struct {
	name   string // /package.Service/Method
	stream bool
}

// protocol lists every method of every service of the wire protocol, from
// its file descriptor: a method added to proto/ is covered here at once.
func protocol() []method {
	var out []method
	svcs := sluicev1.File_sluice_v1_sluice_proto.Services()
	for i := range svcs.Len() {
		s := svcs.Get(i)
		for j := range s.Methods().Len() {
			m := s.Methods().Get(j)
			out = append(out, method{
				name:   "/" + string(s.FullName()) + "/" + string(m.Name()),
				stream: m.IsStreamingClient() || m.IsStreamingServer(),
			})
		}
	}
	return out
}

// serveRecording serves every service of the protocol with handlers that
// only record, and returns the address.
func serveRecording(t *testing.T, opts []grpc.ServerOption, r *recorder) string {
	t.Helper()
	descs := map[string]*grpc.ServiceDesc{}
	for _, m := range protocol() {
		svc, name, _ := strings.Cut(strings.TrimPrefix(m.name, "/"), "/")
		d := descs[svc]
		if d == nil {
			d = &grpc.ServiceDesc{ServiceName: svc, HandlerType: (*any)(nil)}
			descs[svc] = d
		}
		if m.stream {
			d.Streams = append(d.Streams, grpc.StreamDesc{StreamName: name, ClientStreams: true, ServerStreams: true,
				Handler: func(_ any, ss grpc.ServerStream) error { r.hit(ss.Context()); return nil }})
		} else {
			d.Methods = append(d.Methods, grpc.MethodDesc{MethodName: name,
				Handler: func(_ any, ctx context.Context, _ func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
					r.hit(ctx)
					return &emptypb.Empty{}, nil
				}})
		}
	}
	return serve(t, opts, func(s *grpc.Server) {
		for _, d := range descs {
			s.RegisterService(d, struct{}{})
		}
	})
}

// invoke calls m with an empty message (what the body holds does not
// matter: a refused call's body is never read).
func invoke(ctx context.Context, conn *grpc.ClientConn, m method, opts ...grpc.CallOption) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if !m.stream {
		return conn.Invoke(ctx, m.name, &emptypb.Empty{}, &emptypb.Empty{}, opts...)
	}
	s, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, m.name, opts...)
	if err != nil {
		return err
	}
	s.SendMsg(&emptypb.Empty{})
	s.CloseSend()
	err = s.RecvMsg(&emptypb.Empty{})
	if err == io.EOF {
		return nil
	}
	return err
}

func dial(t *testing.T, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// fixedCred presents one given credential on every call.
type fixedCred string

func (f fixedCred) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{authHeader: string(f)}, nil
}
func (fixedCred) RequireTransportSecurity() bool { return false }

// staleCreds makes right credentials with a time too far from now.
type staleCreds struct {
	key []byte
	by  time.Duration
}

func (s staleCreds) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	ri, _ := credentials.RequestInfoFromContext(ctx)
	return map[string]string{authHeader: credential(s.key, ri.Method, time.Now().Add(s.by))}, nil
}
func (staleCreds) RequireTransportSecurity() bool { return false }

func TestEveryMethodRefusesBadCredentialsBeforeItsHandler(t *testing.T) {
	good := mustSecret(t, "the-right-cluster-secret")
	wrong := mustSecret(t, "a-wrong-cluster-secret!")
	r := &recorder{}
	addr := serveRecording(t, good.ServerOptions(nil), r)
	tlsOnly := grpc.WithTransportCredentials(credentials.NewTLS(good.client)) // the right TLS, no call credential
	methods := protocol()
	if len(methods) < 10 {
		t.Fatalf("only %d methods found in the protocol", len(methods))
	}
	for _, tc := range []struct {
		name string
		opts []grpc.DialOption
		want codes.Code
	}{
		{"right secret", good.DialOptions(), codes.OK},
		{"no credential", []grpc.DialOption{tlsOnly}, codes.Unauthenticated},
		{"wrong secret's credential", []grpc.DialOption{tlsOnly, grpc.WithPerRPCCredentials(callCreds{wrong.key})}, codes.Unauthenticated},
		{"raw secret as key", []grpc.DialOption{tlsOnly, grpc.WithPerRPCCredentials(callCreds{[]byte("the-right-cluster-secret")})}, codes.Unauthenticated},
		{"malformed", []grpc.DialOption{tlsOnly, grpc.WithPerRPCCredentials(fixedCred("sluice-v2 1.2.3"))}, codes.Unauthenticated},
		{"old v1 token", []grpc.DialOption{tlsOnly, grpc.WithPerRPCCredentials(fixedCred("sluice-hmac 00"))}, codes.Unauthenticated},
		{"time 2 minutes ago", []grpc.DialOption{tlsOnly, grpc.WithPerRPCCredentials(staleCreds{good.key, -2 * time.Minute})}, codes.Unauthenticated},
		{"time 2 minutes ahead", []grpc.DialOption{tlsOnly, grpc.WithPerRPCCredentials(staleCreds{good.key, 2 * time.Minute})}, codes.Unauthenticated},
		{"wrong secret (TLS)", wrong.DialOptions(), codes.Unavailable},
		{"plaintext", Insecure().DialOptions(), codes.Unavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := dial(t, addr, tc.opts...)
			for _, m := range methods {
				before := r.calls.Load()
				err := invoke(context.Background(), conn, m)
				if got := status.Code(err); got != tc.want {
					t.Errorf("%s: got %v (%v), want %v", m.name, got, err, tc.want)
				}
				if ran := r.calls.Load() - before; (tc.want == codes.OK) != (ran == 1) {
					t.Errorf("%s: handler ran %d times", m.name, ran)
				}
			}
		})
	}
}

func TestRecordedCredentialIsRefused(t *testing.T) {
	good := mustSecret(t, "the-right-cluster-secret")
	r := &recorder{}
	addr := serveRecording(t, good.ServerOptions(nil), r)
	ctx := context.Background()
	methods := protocol()
	// Record a credential of each kind of method as it reaches the server.
	for _, m := range []method{{"/sluice.v1.Driver/ListExecutors", false}, {"/sluice.v1.Driver/SubmitJob", true}} {
		if err := invoke(ctx, dial(t, addr, good.DialOptions()...), m); err != nil {
			t.Fatal(err)
		}
		r.mu.Lock()
		recorded := r.cred
		r.mu.Unlock()
		replay := dial(t, addr, grpc.WithTransportCredentials(credentials.NewTLS(good.client)), grpc.WithPerRPCCredentials(fixedCred(recorded)))
		before := r.calls.Load()
		for _, other := range methods { // the same method first, then every other
			err := invoke(ctx, replay, other)
			if status.Code(err) != codes.Unauthenticated {
				t.Errorf("credential of %s replayed to %s: %v", m.name, other.name, err)
			}
			if other.name == m.name && !strings.Contains(err.Error(), "replayed") {
				t.Errorf("replay to the same method refused for another reason: %v", err)
			}
		}
		if ran := r.calls.Load() - before; ran != 0 {
			t.Errorf("replayed credential of %s reached %d handlers", m.name, ran)
		}
	}
	// A fresh credential made for one method, used first on another.
	cred := credential(good.key, "/sluice.v1.Driver/ListJobs", time.Now())
	err := invoke(ctx, dial(t, addr, grpc.WithTransportCredentials(credentials.NewTLS(good.client)), grpc.WithPerRPCCredentials(fixedCred(cred))),
		method{"/sluice.v1.Driver/StopJob", false})
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("a credential for ListJobs was accepted for StopJob: %v", err)
	}
}

func TestReplayCacheIsBounded(t *testing.T) {
	good := mustSecret(t, "the-right-cluster-secret")
	g := newGuard(good.key)
	g.maxNonce = 3
	now := time.Now()
	g.now = func() time.Time { return now }
	for i := range 4 {
		err := g.verify("/m", []string{credential(good.key, "/m", now)})
		if want := i < 3; (err == nil) != want {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	// Once their times are past the window, the nonces are forgotten.
	now = now.Add(2*ReplayWindow + time.Second)
	if err := g.verify("/m", []string{credential(good.key, "/m", now)}); err != nil {
		t.Fatal(err)
	}
	if len(g.nonces) != 1 {
		t.Fatalf("%d nonces kept, want 1", len(g.nonces))
	}
}

func TestConcurrentCallsAreCapped(t *testing.T) {
	t.Run("per peer", func(t *testing.T) { testCap(t, func(g *guard) { g.perPeer = 2 }) })
	t.Run("in all", func(t *testing.T) { testCap(t, func(g *guard) { g.total = 2 }) })
}

func testCap(t *testing.T, limit func(*guard)) {
	good := mustSecret(t, "the-right-cluster-secret")
	g := newGuard(good.key)
	limit(g)
	release := make(chan struct{})
	var entered atomic.Int64
	srv := func(s *grpc.Server) {
		s.RegisterService(&grpc.ServiceDesc{ServiceName: "sluice.v1.Driver", HandlerType: (*any)(nil),
			Methods: []grpc.MethodDesc{{MethodName: "ListJobs", Handler: func(_ any, ctx context.Context, _ func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				entered.Add(1)
				<-release
				return &emptypb.Empty{}, nil
			}}}}, struct{}{})
	}
	opts := good.serverOptions(nil, g)
	addr := serve(t, opts, srv)
	conn := dial(t, addr, good.DialOptions()...)
	m := method{"/sluice.v1.Driver/ListJobs", false}
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if err := invoke(context.Background(), conn, m); err != nil {
				t.Error(err)
			}
		})
	}
	for entered.Load() < 2 {
		time.Sleep(5 * time.Millisecond)
	}
	if err := invoke(context.Background(), conn, m); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("third concurrent call: %v, want ResourceExhausted", err)
	}
	close(release)
	wg.Wait()
	// Ended calls give their places back.
	for range 3 {
		if err := invoke(context.Background(), conn, m); err != nil {
			t.Fatalf("after the calls ended: %v", err)
		}
	}
}

func TestInsecureWarns(t *testing.T) {
	var buf strings.Builder
	Insecure().ServerOptions(slog.New(slog.NewTextHandler(&buf, nil)))
	if !strings.Contains(buf.String(), "authentication is off (--insecure)") {
		t.Fatalf("no warning: %q", buf.String())
	}
	buf.Reset()
	mustSecret(t, "the-right-cluster-secret").ServerOptions(slog.New(slog.NewTextHandler(&buf, nil)))
	if buf.Len() != 0 {
		t.Fatalf("a warning with a secret: %q", buf.String())
	}
}

func TestSecretRules(t *testing.T) {
	if _, err := NewSecret(strings.Repeat("x", MinSecretBytes-1), "test"); err == nil {
		t.Errorf("a %d-byte secret was accepted", MinSecretBytes-1)
	}
	if _, err := NewSecret(strings.Repeat("x", MinSecretBytes), "test"); err != nil {
		t.Errorf("a %d-byte secret was refused: %v", MinSecretBytes, err)
	}
	for _, v := range []string{"SLUICE_SECRET", "SLUICE_SECRET_FILE", "SLUICE_INSECURE"} {
		t.Setenv(v, "")
	}
	if s, err := SecretFromEnv(); err == nil {
		t.Fatalf("no secret in the environment gave %+v, want an error", s.IsInsecure())
	}
	t.Setenv("SLUICE_INSECURE", "0")
	if _, err := SecretFromEnv(); err == nil {
		t.Fatal("SLUICE_INSECURE=0 gave a secret")
	}
	t.Setenv("SLUICE_INSECURE", "1")
	if s, err := SecretFromEnv(); err != nil || !s.IsInsecure() {
		t.Fatalf("SLUICE_INSECURE=1: %v", err)
	}
	// The secret passed in the environment is the secret, and it works.
	good := mustSecret(t, "the-right-cluster-secret")
	t.Setenv("SLUICE_INSECURE", "")
	for _, kv := range good.Env("") {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	r := &recorder{}
	addr := serveRecording(t, good.ServerOptions(nil), r)
	opts, err := ClientOptionsFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if err := invoke(context.Background(), dial(t, addr, opts...), protocol()[0]); err != nil {
		t.Fatalf("client from the environment: %v", err)
	}
}

// The unix socket between an executor and its job processes is plaintext,
// and still authenticated.
func TestLocalIsPlaintextAndAuthenticated(t *testing.T) {
	good := mustSecret(t, "the-right-cluster-secret")
	for _, kv := range good.Env("") {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	opts, err := ServerOptionsFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "task.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	srv := grpc.NewServer(opts...)
	srv.RegisterService(&grpc.ServiceDesc{ServiceName: "sluice.v1.Executor", HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "EndJob", Handler: func(_ any, ctx context.Context, _ func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			r.hit(ctx)
			return &emptypb.Empty{}, nil
		}}}}, struct{}{})
	go srv.Serve(lis)
	defer srv.Stop()
	m := method{"/sluice.v1.Executor/EndJob", false}
	plain := grpc.WithTransportCredentials(insecure.NewCredentials())
	if err := invoke(context.Background(), dial(t, "unix://"+sock, plain, grpc.WithPerRPCCredentials(callCreds{good.key})), m); err != nil {
		t.Fatalf("plaintext client with credentials on the job socket: %v", err)
	}
	if err := invoke(context.Background(), dial(t, "unix://"+sock, good.Local().DialOptions()...), m); err != nil {
		t.Fatalf("Local() client: %v", err)
	}
	if err := invoke(context.Background(), dial(t, "unix://"+sock, plain), m); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no credential on the job socket: %v", err)
	}
	if r.calls.Load() != 2 {
		t.Fatalf("%d calls handled, want 2", r.calls.Load())
	}
}

// Job processes get the TLS files of their daemon: a job's client built
// from its environment talks to a server using those files.
func TestTLSFilesPassedToJobProcesses(t *testing.T) {
	files := writeCerts(t, t.TempDir(), "cluster")
	s, err := mustSecret(t, "the-right-cluster-secret").WithTLS(files)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range s.Env("") {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	r := &recorder{}
	addr := serveRecording(t, s.ServerOptions(nil), r)
	opts, err := ClientOptionsFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if err := invoke(context.Background(), dial(t, addr, opts...), protocol()[0]); err != nil {
		t.Fatalf("job client from the environment against the TLS-file server: %v", err)
	}
}

// rawCodec sends bytes as they are, so that a test can send big bodies
// without copying them per call.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)      { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error { *(v.(*[]byte)) = data; return nil }
func (rawCodec) Name() string                       { return "proto" }

// TestHelperServer is the server process of TestUnauthenticatedBigCalls.
func TestHelperServer(t *testing.T) {
	if os.Getenv("SLUICE_TEST_HELPER_SERVER") == "" {
		t.Skip("helper process")
	}
	good := mustSecret(t, "the-right-cluster-secret")
	c, err := NewCoordinator(CoordinatorConfig{StateDir: t.TempDir(), Advertise: "127.0.0.1:1", Secret: good})
	if err != nil {
		t.Fatal(err)
	}
	store, err := NewShuffleStore(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, good.ServerOptions(nil), func(s *grpc.Server) {
		sluicev1.RegisterDriverServer(s, c)
		sluicev1.RegisterShuffleServer(s, &ShuffleServer{Store: store})
	})
	fmt.Println("ADDR", addr)
	io.Copy(io.Discard, os.Stdin) // until the test closes stdin
}

func rss(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// 100 concurrent unauthenticated 7 MiB calls leave the server's memory
// where it was: their bodies are never read.
func TestUnauthenticatedBigCalls(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server process")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperServer$", "-test.v")
	cmd.Env = append(os.Environ(), "SLUICE_TEST_HELPER_SERVER=1")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	var addr string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
			addr = a
			break
		}
	}
	if addr == "" {
		t.Fatal("the helper server did not start")
	}
	go io.Copy(io.Discard, stdout)
	good := mustSecret(t, "the-right-cluster-secret")
	wrong := mustSecret(t, "a-wrong-cluster-secret!")
	// One authenticated call first, so that idle includes a served call.
	if _, err := sluicev1.NewDriverClient(dial(t, addr, good.DialOptions()...)).ListExecutors(context.Background(), &sluicev1.ListExecutorsRequest{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	idle := rss(t, cmd.Process.Pid, "VmRSS")
	body := make([]byte, 7<<20)
	for i := range body {
		body[i] = byte(i)
	}
	// Attackers that completed TLS (the worst case) but have no call key.
	conns := []*grpc.ClientConn{
		dial(t, addr, grpc.WithTransportCredentials(credentials.NewTLS(good.client)), grpc.WithPerRPCCredentials(callCreds{wrong.key})),
		dial(t, addr, grpc.WithTransportCredentials(credentials.NewTLS(good.client))),
	}
	var wg sync.WaitGroup
	var refused atomic.Int64
	for i := range 100 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			conn := conns[i%2]
			var err error
			call := []grpc.CallOption{grpc.ForceCodec(rawCodec{}), grpc.MaxCallSendMsgSize(64 << 20)}
			if i%4 < 2 {
				var out []byte
				err = conn.Invoke(ctx, "/sluice.v1.Driver/RegisterExecutor", &body, &out, call...)
			} else {
				var s grpc.ClientStream
				if s, err = conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, "/sluice.v1.Driver/SubmitJob", call...); err == nil {
					s.SendMsg(&body)
					s.CloseSend()
					var out []byte
					err = s.RecvMsg(&out)
				}
			}
			if status.Code(err) == codes.Unauthenticated {
				refused.Add(1)
			}
		})
	}
	wg.Wait()
	peak := rss(t, cmd.Process.Pid, "VmHWM")
	t.Logf("server RSS idle %d MiB, peak %d MiB after 100 unauthenticated 7 MiB calls", idle>>20, peak>>20)
	if refused.Load() != 100 {
		t.Errorf("%d of 100 calls refused as unauthenticated", refused.Load())
	}
	if peak-idle > 100<<20 {
		t.Errorf("server RSS grew by %d MiB (idle %d MiB, peak %d MiB)", (peak-idle)>>20, idle>>20, peak>>20)
	}
}
