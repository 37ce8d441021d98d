package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// MaxMessageBytes bounds every gRPC message; larger payloads are streamed.
const MaxMessageBytes = 8 << 20

// Secret is the shared cluster secret every peer proves it knows.
type Secret struct {
	key      []byte // the call key derived from the secret
	raw      []byte // the secret, passed on to child processes
	insecure bool
	tls      *TLSFiles // TLS from files, replacing the derived certificates
	server   *tls.Config
	client   *tls.Config
}

// TLSFiles names the PEM files of TLS. With Cert and Key, listeners serve
// TLS and clients present the certificate; with CA, peers' certificates must
// be signed by it (mutual TLS) and clients verify servers against it.
type TLSFiles struct {
	Cert, Key, CA string
}

// WithTLS returns s with TLS from files (the secret is still checked).
func (s Secret) WithTLS(f TLSFiles) (Secret, error) {
	if f.Cert == "" && f.Key == "" && f.CA == "" {
		return s, nil
	}
	if (f.Cert == "") != (f.Key == "") {
		return s, errors.New("cluster: TLS needs both a certificate and its key (--tls-cert and --tls-key)")
	}
	if f.Cert == "" {
		return s, errors.New("cluster: --tls-ca needs --tls-cert and --tls-key too")
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return s, fmt.Errorf("cluster: TLS key pair: %w", err)
	}
	srv := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	cli := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return s, fmt.Errorf("cluster: TLS CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return s, fmt.Errorf("cluster: TLS CA %s holds no PEM certificate", f.CA)
		}
		srv.ClientCAs, srv.ClientAuth = pool, tls.RequireAndVerifyClientCert
		cli.RootCAs = pool
	}
	s.tls, s.server, s.client = &f, srv, cli
	return s, nil
}

// TLSFromEnv reads SLUICE_TLS_CERT, SLUICE_TLS_KEY and SLUICE_TLS_CA.
func TLSFromEnv() TLSFiles {
	return TLSFiles{Cert: os.Getenv("SLUICE_TLS_CERT"), Key: os.Getenv("SLUICE_TLS_KEY"), CA: os.Getenv("SLUICE_TLS_CA")}
}

// MinSecretBytes is the shortest accepted cluster secret.
const MinSecretBytes = 16

// SecretFromFile reads a cluster secret (surrounding whitespace trimmed).
func SecretFromFile(path string) (Secret, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Secret{}, fmt.Errorf("cluster secret: %w (create it with e.g. `head -c 32 /dev/urandom | base64 > %s`)", err, path)
	}
	return NewSecret(strings.TrimSpace(string(b)), path)
}

// NewSecret checks a secret; from names where it came from, for errors.
func NewSecret(s, from string) (Secret, error) {
	if s == "" {
		return Secret{}, fmt.Errorf("cluster secret from %s is empty", from)
	}
	if len(s) < MinSecretBytes {
		return Secret{}, fmt.Errorf("cluster secret from %s has %d bytes; use at least %d", from, len(s), MinSecretBytes)
	}
	srv, cli := derivedTLS([]byte(s))
	return Secret{key: derive([]byte(s), "sluice call key v1"), raw: []byte(s), server: srv, client: cli}, nil
}

// Insecure is the explicit absence of authentication (--insecure).
func Insecure() Secret { return Secret{insecure: true} }

// IsInsecure reports whether the secret is the insecure mode.
func (s Secret) IsInsecure() bool { return s.insecure }

// SecretFromEnv reads SLUICE_SECRET, SLUICE_SECRET_FILE or SLUICE_INSECURE=1,
// as `driver serve` and `executor` pass them to job processes.
func SecretFromEnv() (Secret, error) {
	switch {
	case os.Getenv("SLUICE_SECRET") != "":
		return NewSecret(os.Getenv("SLUICE_SECRET"), "SLUICE_SECRET")
	case os.Getenv("SLUICE_SECRET_FILE") != "":
		return SecretFromFile(os.Getenv("SLUICE_SECRET_FILE"))
	case os.Getenv("SLUICE_INSECURE") == "1":
		return Insecure(), nil
	}
	return Secret{}, errors.New("cluster: no cluster secret: set SLUICE_SECRET_FILE or SLUICE_SECRET (or SLUICE_INSECURE=1 to run without authentication)")
}

// Env returns the environment that passes this secret (and TLS files) to a
// child process.
func (s Secret) Env(secretFile string) []string {
	var env []string
	switch {
	case s.insecure:
		env = []string{"SLUICE_INSECURE=1"}
	case secretFile != "":
		env = []string{"SLUICE_SECRET_FILE=" + secretFile}
	default:
		env = []string{"SLUICE_SECRET=" + string(s.raw)}
	}
	if s.tls != nil {
		env = append(env, "SLUICE_TLS_CERT="+s.tls.Cert, "SLUICE_TLS_KEY="+s.tls.Key, "SLUICE_TLS_CA="+s.tls.CA)
	}
	return env
}

// Local returns s without TLS, for the unix socket between an executor and
// its job processes (same machine; calls are still authenticated).
func (s Secret) Local() Secret {
	s.tls, s.server, s.client = nil, nil, nil
	return s
}

const authHeader = "authorization"

// callKey is the key calls are checked with; nil when insecure.
func (s Secret) callKey() []byte {
	if s.insecure {
		return nil
	}
	if s.key == nil {
		return []byte{} // a zero Secret authenticates nobody
	}
	return s.key
}

// ServerOptions authenticate every call before its stream is created (so
// before any of its message is read), bound concurrent calls and message
// sizes, serve TLS, and accept the clients' keepalive pings.
func (s Secret) ServerOptions(log *slog.Logger) []grpc.ServerOption {
	return s.serverOptions(log, newGuard(s.callKey()))
}

func (s Secret) serverOptions(log *slog.Logger, g *guard) []grpc.ServerOption {
	if s.insecure && log != nil {
		log.Warn("cluster: authentication is off (--insecure): any process that can reach this port can use it")
	}
	opts := []grpc.ServerOption{
		grpc.InTapHandle(g.tap),
		grpc.MaxRecvMsgSize(MaxMessageBytes),
		grpc.MaxSendMsgSize(MaxMessageBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Second, Timeout: 2 * time.Second}),
	}
	if s.server != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.server)))
	}
	return opts
}

// DialOptions present the secret on every call and detect a dead peer
// within a few seconds.
func (s Secret) DialOptions() []grpc.DialOption {
	creds := insecure.NewCredentials()
	if s.client != nil {
		creds = credentials.NewTLS(s.client)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 2 * time.Second, Timeout: 2 * time.Second, PermitWithoutStream: true}),
	}
	if !s.insecure {
		opts = append(opts, grpc.WithPerRPCCredentials(callCreds{s.key}))
	}
	return opts
}

// ClientOptionsFromEnv returns the dial options of a job process (to the
// coordinator and executors: TLS if configured).
func ClientOptionsFromEnv() ([]grpc.DialOption, error) {
	s, err := SecretFromEnv()
	if err != nil {
		return nil, err
	}
	if s, err = s.WithTLS(TLSFromEnv()); err != nil {
		return nil, err
	}
	return s.DialOptions(), nil
}

// ServerOptionsFromEnv returns the server options of a job executor
// process, which serves its daemon on a unix socket (no TLS).
func ServerOptionsFromEnv() ([]grpc.ServerOption, error) {
	s, err := SecretFromEnv()
	if err != nil {
		return nil, err
	}
	return s.Local().ServerOptions(nil), nil
}
