package main

import (
	"testing"

	"github.com/sluicehq/sluice/internal/exampletest"
)

func TestMain(m *testing.M) { exampletest.RunSelf(m, "STATEFULNETWORKWORDCOUNT_RUN_MAIN", main) }

// TestStatefulNetworkWordCount runs the program against a text server on loopback
// and checks that counts continue from the initial state, then stops it
// with SIGTERM (exit 0).
func TestStatefulNetworkWordCount(t *testing.T) {
	exampletest.SocketJob(t, "STATEFULNETWORKWORDCOUNT_RUN_MAIN", "hello hello x\n", "(hello,3)",
		"(hello,2)", "(x,1)", "Time: ")
}
