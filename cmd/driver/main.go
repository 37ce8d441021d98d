// Command driver is Sluice's cluster coordinator and its client:
//
//	driver serve  --listen :7077 --state-dir DIR --secret-file FILE
//	driver submit --master HOST:7077 --secret-file FILE [--supervise] ./job -- ARGS
//	driver jobs | status JOB | stop JOB   (--master, --secret-file)
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
		fmt.Fprintln(os.Stderr, "driver:", err)
		stop()
		os.Exit(exitCode(err))
	}
}
