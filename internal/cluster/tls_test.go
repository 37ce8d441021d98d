package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// writeCA makes a CA and a certificate for 127.0.0.1 signed by it, as PEM
// files in dir, and returns their paths.
func writeCerts(t *testing.T, dir, name string) TLSFiles {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	f := TLSFiles{Cert: filepath.Join(dir, name+".crt"), Key: filepath.Join(dir, name+".key"), CA: filepath.Join(dir, name+"-ca.crt")}
	for path, block := range map[string]*pem.Block{
		f.Cert: {Type: "CERTIFICATE", Bytes: der},
		f.Key:  {Type: "EC PRIVATE KEY", Bytes: keyDER},
		f.CA:   {Type: "CERTIFICATE", Bytes: caDER},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	files := writeCerts(t, dir, "cluster")
	other := writeCerts(t, dir, "other")
	secret := mustSecret(t, "the-right-cluster-secret")
	server, err := secret.WithTLS(files)
	if err != nil {
		t.Fatal(err)
	}
	d := &countingDriver{}
	addr := serve(t, server.ServerOptions(nil), func(s *grpc.Server) { sluicev1.RegisterDriverServer(s, d) })
	call := func(opts []grpc.DialOption) error {
		conn, err := grpc.NewClient(addr, opts...)
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = sluicev1.NewDriverClient(conn).ListExecutors(ctx, &sluicev1.ListExecutorsRequest{})
		return err
	}
	if err := call(server.DialOptions()); err != nil {
		t.Fatalf("client with the cluster's certificate: %v", err)
	}
	// A client whose certificate another CA signed, and one with no TLS.
	stranger, err := secret.WithTLS(TLSFiles{Cert: other.Cert, Key: other.Key, CA: files.CA})
	if err != nil {
		t.Fatal(err)
	}
	if err := call(stranger.DialOptions()); err == nil {
		t.Fatal("a client certificate from another CA was accepted")
	}
	if err := call(secret.DialOptions()); err == nil {
		t.Fatal("a plaintext client was accepted")
	}
	if d.calls.Load() != 1 {
		t.Fatalf("handler ran %d times, want 1", d.calls.Load())
	}
	// TLS does not replace the secret.
	wrong, _ := mustSecret(t, "a-wrong-cluster-secret!").WithTLS(files)
	if err := call(wrong.DialOptions()); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("wrong secret over TLS: %v", err)
	}
	if _, err := secret.WithTLS(TLSFiles{Cert: files.Cert}); err == nil {
		t.Fatal("a certificate without its key was accepted")
	}
}
