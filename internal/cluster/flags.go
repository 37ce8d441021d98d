package cluster

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
)

// ErrNoSecret is returned by SecurityFlags.Load when no way to authenticate
// was given.
var ErrNoSecret = errors.New("--secret-file is required (or SLUICE_SECRET, or --insecure to run without authentication)")

// SecurityFlags are the authentication flags every cluster command takes.
type SecurityFlags struct {
	secretFile, tlsCert, tlsKey, tlsCA *string
	insecure                           *bool
}

// AddSecurityFlags defines --secret-file, --insecure and the TLS flags on fs.
func AddSecurityFlags(fs *flag.FlagSet) SecurityFlags {
	return SecurityFlags{
		secretFile: fs.String("secret-file", "", "file holding the cluster secret, at least 16 bytes (or set SLUICE_SECRET); calls are authenticated with it and TLS uses a certificate derived from it"),
		insecure:   fs.Bool("insecure", false, "run without TLS and without authentication (anyone who can reach the port can use it)"),
		tlsCert:    fs.String("tls-cert", "", "PEM certificate to serve and connect with, instead of the one derived from the secret"),
		tlsKey:     fs.String("tls-key", "", "PEM key of --tls-cert"),
		tlsCA:      fs.String("tls-ca", "", "PEM CA: verify peers against it and require client certificates (mutual TLS)"),
	}
}

// Load returns the secret (with TLS, if given) and the secret file's
// absolute path, which is passed on to the processes a command starts.
func (f SecurityFlags) Load() (Secret, string, error) {
	var s Secret
	var err error
	file := abs(*f.secretFile)
	switch {
	case *f.insecure:
		s, file = Insecure(), ""
	case file != "":
		s, err = SecretFromFile(file)
	case os.Getenv("SLUICE_SECRET") != "":
		s, err = NewSecret(os.Getenv("SLUICE_SECRET"), "SLUICE_SECRET")
	default:
		return s, "", ErrNoSecret
	}
	if err != nil {
		return s, "", err
	}
	s, err = s.WithTLS(TLSFiles{Cert: abs(*f.tlsCert), Key: abs(*f.tlsKey), CA: abs(*f.tlsCA)})
	return s, file, err
}

// abs makes a path absolute, for processes started in other directories.
func abs(p string) string {
	if p == "" {
		return ""
	}
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
