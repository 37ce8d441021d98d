package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/sluicehq/sluice/dstream"
)

func osArgs() []string    { return os.Args[1:] }
func osStderr() io.Writer { return os.Stderr }

func exit(err error) {
	if errors.Is(err, dstream.ErrHelp) {
		os.Exit(0)
	}
	fmt.Fprintln(os.Stderr, "statejob:", err)
	os.Exit(2)
}
