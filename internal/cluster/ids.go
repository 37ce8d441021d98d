package cluster

import (
	"fmt"
	"net"
	"os"
	"strings"

	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	"google.golang.org/grpc/status"
)

// maxIDBytes bounds an id that names a file or directory.
const maxIDBytes = 128

// checkID refuses an id that would not name exactly one new directory
// entry: empty, `.`, `..`, anything with a separator, and anything but
// letters, digits, `.`, `_` and `-` (starting with a letter or digit). kind
// names the id in the error ("job id").
func checkID(kind, id string) error {
	switch {
	case id == "":
		return invalidArgument("%s is empty", kind)
	case len(id) > maxIDBytes:
		return invalidArgument("%s is %d bytes long; at most %d", kind, len(id), maxIDBytes)
	case !isAlnum(id[0]):
		return invalidArgument("%s %q must start with a letter or digit", kind, id)
	}
	for i := range len(id) {
		if c := id[i]; !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return invalidArgument("%s %q: only letters, digits, '.', '_' and '-' are allowed", kind, id)
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// checkSHA refuses anything but a lower-case hex SHA-256.
func checkSHA(sha string) error {
	if len(sha) != 64 || strings.Trim(sha, "0123456789abcdef") != "" {
		return invalidArgument("binary id %s is not a hex SHA-256", Quote(sha))
	}
	return nil
}

// MaxSlots bounds an executor's task slots: a job's default parallelism is
// the sum over the executors, and every process of the job builds that many
// partitions.
const MaxSlots = 4096

// checkExecutor checks what an executor registers with: an id (as checkID),
// a host:port address and 1 to MaxSlots slots. The daemon checks its own
// flags with it, so a bad --id or --slots fails at startup.
func checkExecutor(id, addr string, slots int) error {
	if err := checkID("executor id", id); err != nil {
		return fmt.Errorf("%s (set --id)", status.Convert(err).Message())
	}
	if host, port, err := net.SplitHostPort(addr); err != nil || host == "" || port == "" {
		return fmt.Errorf("executor address %s is not host:port (set --advertise)", Quote(addr))
	}
	if slots <= 0 || slots > MaxSlots {
		return fmt.Errorf("executor slots %d: must be 1 to %d (set --slots)", slots, MaxSlots)
	}
	return nil
}

// Bounds of a submitted job's name and arguments: they are kept in the
// registry and sent in every ListJobs answer.
const (
	maxJobNameBytes = 256
	maxJobArgsBytes = 64 << 10
)

// checkHeader checks a submission's name and arguments: bounded, and
// arguments without NUL bytes (which no process argument can hold).
func checkHeader(h *sluicev1.SubmitHeader) error {
	if n := len(h.GetName()); n > maxJobNameBytes {
		return invalidArgument("submit: the job name is %d bytes long; at most %d", n, maxJobNameBytes)
	}
	total := 0
	for i, a := range h.GetArgs() {
		if strings.IndexByte(a, 0) >= 0 {
			return invalidArgument("submit: argument %d holds a NUL byte, which no process argument can", i+1)
		}
		total += len(a)
	}
	if total > maxJobArgsBytes {
		return invalidArgument("submit: the job's arguments are %d bytes long; at most %d in all", total, maxJobArgsBytes)
	}
	return nil
}

// DefaultExecutorID is an executor's id when --id is not given: the host
// name and the port it advertises ("executor" for a host without a name).
func DefaultExecutorID(advertise string) string {
	host, _ := os.Hostname()
	if host == "" {
		host = "executor"
	}
	return host + "-" + advertise[strings.LastIndexByte(advertise, ':')+1:]
}
