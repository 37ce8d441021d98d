// Command executor runs a Sluice executor: it registers with the driver,
// runs tasks of submitted jobs and serves shuffle data to other executors.
//
//	executor --driver HOST:7077 --listen :7078 --work-dir DIR --slots N --secret-file FILE
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
		fmt.Fprintln(os.Stderr, "executor:", err)
		stop()
		os.Exit(exitCode(err))
	}
}
