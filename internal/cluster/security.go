package cluster

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// MaxMessageBytes bounds every gRPC message; larger payloads are streamed.
const MaxMessageBytes = 8 << 20

// Secret is the shared cluster secret every peer proves it knows.
type Secret struct {
	key      []byte
	insecure bool
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
	return Secret{key: []byte(s)}, nil
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

// Env returns the environment that passes this secret to a child process.
func (s Secret) Env(secretFile string) []string {
	switch {
	case s.insecure:
		return []string{"SLUICE_INSECURE=1"}
	case secretFile != "":
		return []string{"SLUICE_SECRET_FILE=" + secretFile}
	}
	return []string{"SLUICE_SECRET=" + string(s.key)}
}

const authHeader = "authorization"

// token proves knowledge of the secret without sending it.
func (s Secret) token() string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte("sluice-v1"))
	return "sluice-hmac " + hex.EncodeToString(m.Sum(nil))
}

func (s Secret) check(ctx context.Context) error {
	if s.insecure {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	got := md.Get(authHeader)
	if len(got) != 1 || !hmac.Equal([]byte(got[0]), []byte(s.token())) {
		return status.Error(codes.Unauthenticated, "sluice: missing or wrong cluster secret")
	}
	return nil
}

type perRPC struct{ s Secret }

func (p perRPC) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{authHeader: p.s.token()}, nil
}
func (perRPC) RequireTransportSecurity() bool { return false }

// ServerOptions authenticate every call before its handler runs, bound
// message sizes, and accept the clients' keepalive pings.
func (s Secret) ServerOptions(log *slog.Logger) []grpc.ServerOption {
	if s.insecure && log != nil {
		log.Warn("cluster: authentication is off (--insecure): any process that can reach this port can use it")
	}
	return []grpc.ServerOption{
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := s.check(ctx); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := s.check(ss.Context()); err != nil {
				return err
			}
			return h(srv, ss)
		}),
		grpc.MaxRecvMsgSize(MaxMessageBytes),
		grpc.MaxSendMsgSize(MaxMessageBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Second, Timeout: 2 * time.Second}),
	}
}

// DialOptions present the secret on every call and detect a dead peer
// within a few seconds.
func (s Secret) DialOptions() []grpc.DialOption {
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 2 * time.Second, Timeout: 2 * time.Second, PermitWithoutStream: true}),
	}
	if !s.insecure {
		opts = append(opts, grpc.WithPerRPCCredentials(perRPC{s}))
	}
	return opts
}

// ClientOptionsFromEnv returns the dial options of a job process.
func ClientOptionsFromEnv() ([]grpc.DialOption, error) {
	s, err := SecretFromEnv()
	if err != nil {
		return nil, err
	}
	return s.DialOptions(), nil
}

// ServerOptionsFromEnv returns the server options of a job process.
func ServerOptionsFromEnv() ([]grpc.ServerOption, error) {
	s, err := SecretFromEnv()
	if err != nil {
		return nil, err
	}
	return s.ServerOptions(nil), nil
}
