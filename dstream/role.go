package dstream

import "os"

// ProcessRole says which part of a job this process plays.
//
// A job binary is an ordinary Go program: in a cluster, its main runs in
// every process of the job, once as the job's driver (started by `driver
// serve`) and once on each executor (started by the executor daemon), up to
// the call of Main. Everything main does before Main (creating the
// context, defining the streams) happens in all of them; what happens after
// the graph is built is split by role: sources that receive data in the
// driver, batch generation and output functions (Print, ForeachRDD,
// SaveAsTextFiles) run only in the driver; transformations run in tasks on
// the executors. Code in main with side effects of its own (preparing or
// deleting an output directory, connecting to a database) should run only
// where IsDriver is true.
type ProcessRole int

const (
	// RoleLocal is a job run on its own (`./job --master local[4]`): one
	// process is driver and executor.
	RoleLocal ProcessRole = iota
	// RoleDriver is the job's driver process in a cluster.
	RoleDriver
	// RoleExecutor is one of the job's processes on an executor.
	RoleExecutor
)

func (r ProcessRole) String() string {
	switch r {
	case RoleDriver:
		return "driver"
	case RoleExecutor:
		return "executor"
	}
	return "local"
}

// Role returns the role of this process, from the environment `driver
// serve` and the executor daemon set for the job processes they start
// (SLUICE_ROLE). It can be called anywhere, before any Context exists.
func Role() ProcessRole {
	switch os.Getenv("SLUICE_ROLE") {
	case roleDriver:
		return RoleDriver
	case roleExecutor:
		return RoleExecutor
	}
	return RoleLocal
}

// IsDriver reports whether this process drives the job: true in local mode
// and in a cluster's driver process, false on executors. Output functions
// run where IsDriver is true.
func IsDriver() bool { return Role() != RoleExecutor }
