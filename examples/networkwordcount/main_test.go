package main

import (
	"testing"

	"github.com/sluicehq/sluice/internal/exampletest"
)

func TestMain(m *testing.M) { exampletest.RunSelf(m, "NETWORKWORDCOUNT_RUN_MAIN", main) }

// TestNetworkWordCount runs the program against a text server on loopback
// and checks Spark's output form, then stops it with SIGTERM (exit 0).
func TestNetworkWordCount(t *testing.T) {
	exampletest.SocketJob(t, "NETWORKWORDCOUNT_RUN_MAIN", "to be or not to be\n", "(to,2)",
		"(be,2)", "(or,1)", "(not,1)", "Time: ")
}
