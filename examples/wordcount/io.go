package main

import (
	"fmt"
	"io"
	"os"
)

func osArgs() []string    { return os.Args[1:] }
func osStderr() io.Writer { return os.Stderr }
func stdout() io.Writer   { return os.Stdout }
func exitUsage(err error) {
	fmt.Fprintf(os.Stderr, "wordcount: %v\n", err)
	os.Exit(2)
}
