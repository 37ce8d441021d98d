package cluster

import (
	"context"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// How calls are authenticated (see docs/DESIGN.md, "Threat model"):
//
//   - Two keys are derived from the cluster secret with HKDF-SHA256: a call
//     key and an Ed25519 TLS key. The secret itself never leaves a process.
//   - Unless --tls-cert/--tls-key name other certificates, every TCP
//     connection is TLS 1.3 with a certificate of the derived key, on both
//     sides, and each side checks that the other's public key is the derived
//     one: only holders of the secret complete a handshake, and an
//     eavesdropper sees nothing but TLS records.
//   - Every call also carries a credential of its own:
//     HMAC(call key, method, time, nonce). The server checks it in a
//     grpc.InTapHandle, before the stream exists and before any of its body
//     is read; it refuses a time more than ReplayWindow away from its own
//     clock, and a nonce it has seen (nonces are remembered for as long as
//     their time is acceptable). A recorded credential is thus refused for
//     its own method (nonce seen) and for any other (MAC over the method).
//   - --insecure turns both off.

// ReplayWindow is how far a call's time may be from the server's clock.
const ReplayWindow = 30 * time.Second

const (
	credScheme = "sluice-v2"
	// maxNonces bounds the replay cache; only authenticated calls enter it.
	maxNonces = 1 << 19
	// MaxCallsPerPeer and MaxCalls bound the calls a server runs at once,
	// from one host and in all.
	MaxCallsPerPeer = 256
	MaxCalls        = 1024
)

// derive returns a key for one purpose, derived from the secret.
func derive(secret []byte, purpose string) []byte {
	k, err := hkdf.Key(sha256.New, secret, []byte("sluice cluster secret"), purpose, 32)
	if err != nil {
		panic(err) // only for lengths HKDF cannot produce
	}
	return k
}

// callMAC is the MAC of one call's credential.
func callMAC(key []byte, method, ts, nonce string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(credScheme + "\n" + method + "\n" + ts + "\n" + nonce))
	return m.Sum(nil)
}

// credential makes a fresh credential for one call of method.
func credential(key []byte, method string, now time.Time) string {
	var n [16]byte
	rand.Read(n[:])
	nonce := hex.EncodeToString(n[:])
	ts := strconv.FormatInt(now.UnixMilli(), 10)
	return credScheme + " " + ts + "." + nonce + "." + hex.EncodeToString(callMAC(key, method, ts, nonce))
}

// callCreds puts a fresh credential on every call.
type callCreds struct{ key []byte }

func (c callCreds) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	ri, ok := credentials.RequestInfoFromContext(ctx)
	if !ok {
		return nil, errors.New("cluster: no method for the call credential")
	}
	return map[string]string{authHeader: credential(c.key, ri.Method, time.Now())}, nil
}

func (callCreds) RequireTransportSecurity() bool { return false }

// guard admits calls: it checks credentials (unless insecure) and bounds
// concurrent calls. Its tap runs before a stream is created.
type guard struct {
	key      []byte // nil: no authentication (--insecure)
	now      func() time.Time
	perPeer  int
	total    int
	maxNonce int
	mu       sync.Mutex
	nonces   map[string]int64 // nonce -> unix ms after which its time is refused anyway
	swept    int64
	running  map[string]int // calls in progress by peer host
	inFlight int
}

func newGuard(key []byte) *guard {
	return &guard{key: key, now: time.Now, perPeer: MaxCallsPerPeer, total: MaxCalls, maxNonce: maxNonces,
		nonces: map[string]int64{}, running: map[string]int{}}
}

func refuse(format string, args ...any) error {
	return status.Errorf(codes.Unauthenticated, "sluice: call refused: "+format+
		" (every process of a cluster needs the same secret, and clocks within %s of each other)", append(args, ReplayWindow)...)
}

// verify checks one credential for method.
func (g *guard) verify(method string, got []string) error {
	if len(g.key) == 0 {
		return refuse("this server has no cluster secret")
	}
	if len(got) != 1 {
		return refuse("no credential")
	}
	rest, ok := strings.CutPrefix(got[0], credScheme+" ")
	parts := strings.Split(rest, ".")
	if !ok || len(parts) != 3 || len(parts[1]) != 32 {
		return refuse("malformed credential")
	}
	ts, nonce := parts[0], parts[1]
	mac, err := hex.DecodeString(parts[2])
	if err != nil || !hmac.Equal(mac, callMAC(g.key, method, ts, nonce)) {
		return refuse("wrong credential for %s", method)
	}
	ms, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return refuse("malformed credential time")
	}
	now := g.now().UnixMilli()
	if d := time.Duration(now-ms) * time.Millisecond; d > ReplayWindow || d < -ReplayWindow {
		return refuse("credential time is %s away from this server's clock", d.Round(time.Millisecond))
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if now-g.swept > ReplayWindow.Milliseconds() || len(g.nonces) >= g.maxNonce {
		for n, until := range g.nonces {
			if until < now {
				delete(g.nonces, n)
			}
		}
		g.swept = now
	}
	if _, seen := g.nonces[nonce]; seen {
		return refuse("credential replayed")
	}
	if len(g.nonces) >= g.maxNonce {
		return status.Errorf(codes.ResourceExhausted, "sluice: more than %d calls within %s; retry", g.maxNonce, ReplayWindow)
	}
	g.nonces[nonce] = ms + ReplayWindow.Milliseconds()
	return nil
}

// tap is the grpc.InTapHandle: it runs before the call's stream exists and
// before any of its message is read.
func (g *guard) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	if g.key != nil {
		if err := g.verify(info.FullMethodName, info.Header.Get(authHeader)); err != nil {
			return ctx, err
		}
	}
	host := "local"
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		if h, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
			host = h
		}
	}
	g.mu.Lock()
	if g.inFlight >= g.total || g.running[host] >= g.perPeer {
		g.mu.Unlock()
		return ctx, status.Errorf(codes.ResourceExhausted, "sluice: too many calls at once (at most %d from one host, %d in all); retry later", g.perPeer, g.total)
	}
	g.inFlight++
	g.running[host]++
	g.mu.Unlock()
	// The stream's context ends when the call ends, however it ends.
	context.AfterFunc(ctx, func() {
		g.mu.Lock()
		g.inFlight--
		if g.running[host]--; g.running[host] == 0 {
			delete(g.running, host)
		}
		g.mu.Unlock()
	})
	return ctx, nil
}

// derivedTLS returns TLS configurations whose only accepted peer
// certificate is one of the Ed25519 key derived from the secret.
func derivedTLS(secret []byte) (server, client *tls.Config) {
	priv := ed25519.NewKeyFromSeed(derive(secret, "sluice tls ed25519 v1"))
	pub := priv.Public().(ed25519.PublicKey)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sluice cluster"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		panic(fmt.Sprintf("cluster: derived certificate: %v", err))
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}
	pinned := func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("sluice: the peer presented no certificate")
		}
		c, err := x509.ParseCertificate(raw[0])
		if err != nil {
			return err
		}
		if k, ok := c.PublicKey.(ed25519.PublicKey); !ok || !k.Equal(pub) {
			return errors.New("sluice: the peer's certificate is not the cluster's (different cluster secret?)")
		}
		return nil
	}
	server = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13,
		ClientAuth: tls.RequireAnyClientCert, VerifyPeerCertificate: pinned}
	client = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13,
		InsecureSkipVerify:    true, // the certificate is checked by pinned, against the derived key
		VerifyPeerCertificate: pinned}
	return server, client
}
