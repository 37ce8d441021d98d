package cluster

import (
	"errors"
	"testing"

	"github.com/sluicehq/sluice/scheduler"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A TLS handshake cut short by an executor that went away is a lost
// executor (retried elsewhere); a handshake the peer refused is a
// misconfiguration that fails the job at once.
func TestClassifyHandshakeFailures(t *testing.T) {
	cases := []struct {
		msg   string
		fatal bool
	}{
		// Seen when an executor was killed during the dial (e2e).
		{`connection error: desc = "transport: authentication handshake failed: write tcp 127.0.0.1:53138->127.0.0.1:37471: write: connection reset by peer"`, false},
		{`connection error: desc = "transport: authentication handshake failed: EOF"`, false},
		{`connection error: desc = "transport: authentication handshake failed: read tcp 127.0.0.1:1->127.0.0.1:2: i/o timeout"`, false},
		{`connection error: desc = "transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority"`, true},
		{`connection error: desc = "transport: authentication handshake failed: remote error: tls: bad certificate"`, true},
		{`connection error: desc = "transport: authentication handshake failed: tls: first record does not look like a TLS handshake"`, true},
		{`connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:33407: connect: connection refused"`, false},
	}
	for _, c := range cases {
		err := classify("e1", status.Error(codes.Unavailable, c.msg))
		if got := scheduler.IsFatal(err); got != c.fatal {
			t.Errorf("%s: fatal %v, want %v (%v)", c.msg, got, c.fatal, err)
		}
		if !c.fatal && !errors.Is(err, scheduler.ErrExecutorLost) {
			t.Errorf("%s: %v, want an executor loss", c.msg, err)
		}
	}
}
