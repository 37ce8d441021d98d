package cluster

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/scheduler"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// protoString makes s fit a protobuf string field, which must be UTF-8:
// text from a process's stderr or a task's error (user data in a panic)
// may not be, and a message with such a field fails to marshal, losing
// the whole response.
func protoString(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

// maxEchoBytes bounds what an error message quotes of a client's input.
const maxEchoBytes = maxIDBytes

// Quote quotes s for an error message that names a client's input, with
// at most maxEchoBytes of it: a request holding megabytes where an id
// belongs gets an error that says so without sending them back.
func Quote(s string) string {
	if len(s) <= maxEchoBytes {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.Quote(strings.ToValidUTF8(s[:maxEchoBytes], "")), len(s))
}

func invalidArgument(format string, args ...any) error {
	return status.Error(codes.InvalidArgument, fmt.Sprintf(format, args...))
}

// classify turns the error of a call to an executor into a task failure:
// the executor lost (unreachable, its process died, the call was cut:
// scheduler.ErrExecutorLost, retried elsewhere within the lost-executor
// limit), fatal (authentication, TLS, a peer that does not know the method
// or refuses the request: no retry can fix it, the job fails at once), or
// retryable (anything else: counts as an attempt).
func classify(executor string, err error) error {
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.Unauthenticated, codes.PermissionDenied, codes.Unimplemented, codes.InvalidArgument, codes.FailedPrecondition:
		return scheduler.Fatal(fmt.Errorf("executor %s refused the task (%s): %s; check that the driver and executors share the cluster secret, TLS settings and Sluice version", executor, st.Code(), st.Message()))
	case codes.Unavailable:
		if isHandshakeFailure(st.Message()) {
			return scheduler.Fatal(fmt.Errorf("executor %s: TLS handshake failed: %s; check --tls-cert/--tls-key/--tls-ca on both sides", executor, st.Message()))
		}
		return fmt.Errorf("%w: %s: %s", scheduler.ErrExecutorLost, executor, st.Message())
	case codes.Canceled, codes.DeadlineExceeded, codes.Aborted, codes.Internal, codes.Unknown, codes.DataLoss, codes.ResourceExhausted:
		return fmt.Errorf("%w: %s: %s: %s", scheduler.ErrExecutorLost, executor, st.Code(), st.Message())
	default:
		return fmt.Errorf("executor %s: %s: %s", executor, st.Code(), st.Message())
	}
}

// isHandshakeFailure reports whether an Unavailable error is a TLS
// misconfiguration (a certificate refused, a TLS alert, a peer that does not
// speak TLS). A handshake cut short because the peer went away (reset,
// EOF, refused, timed out: a killed executor) is not one: that executor is
// lost, and the task runs elsewhere.
func isHandshakeFailure(msg string) bool {
	if strings.Contains(msg, "x509:") || strings.Contains(msg, "tls:") {
		return true
	}
	if !strings.Contains(msg, "authentication handshake failed") {
		return false
	}
	for _, gone := range []string{"connection reset", "EOF", "broken pipe", "connection refused", "i/o timeout", "use of closed network connection"} {
		if strings.Contains(msg, gone) {
			return false
		}
	}
	return true
}
