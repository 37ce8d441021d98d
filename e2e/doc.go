// Package e2e holds end-to-end tests that build the example jobs into real
// binaries and run them as separate processes: graceful stop on SIGTERM and
// SIGINT, a failing batch, bad flags, and the file-directory, socket and
// demo sources, checked through the processes' exit status, standard
// output, logs and output files.
//
// The tests need the go command (to build the binaries once, in TestMain)
// and the loopback interface. They are skipped under -short.
package e2e
