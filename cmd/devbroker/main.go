// Command devbroker runs a Kafka wire-protocol broker for development,
// demos and tests: github.com/twmb/franz-go/pkg/kfake, one node, in memory,
// no replication, everything forgotten when it stops. Never use it to keep
// data. It can also feed a topic with the standard workload.
//
//	devbroker --port 9092 --partitions 4 --topics lines,counts
//	devbroker --port 9092 --generate lines --lines-per-second 100000
//	devbroker --host 0.0.0.0 --advertise broker   # in a container named broker
//	devbroker --check 127.0.0.1:9092              # health check: exit 0 if it answers
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "devbroker:", err)
		stop()
		os.Exit(2)
	}
}
