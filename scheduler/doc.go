// Package scheduler runs jobs over RDD lineages.
//
// A job asks for every partition of a final RDD. The planner cuts the
// lineage into stages at shuffle dependencies: a shuffle map stage computes
// the map side of one shuffle, the result stage computes the final RDD, and
// the narrow operators between two cuts run pipelined in one task. Shuffle
// map stages are memoised by shuffle, so jobs that share a shuffle (or read
// one computed by an earlier batch) share its stage, and stages whose output
// is complete are skipped.
//
// Core is the scheduler's state machine. It takes events and returns
// actions, and does no I/O and reads no clock:
//
//	core := scheduler.NewCore(scheduler.DefaultMaxAttempts, nil)
//	acts := core.Submit(job)          // Launch actions for the first stage's tasks
//	acts = core.Completed(taskResult) // more Launches, or JobDone
//	acts = core.ExecutorLost("exec-1")
//
// A failed task is retried until it has failed DefaultMaxAttempts (4) times;
// then its job fails with a *TaskFailedError naming the stage's operators, the
// partition and the batch time. A task that could not fetch a shuffle map
// output (rdd.FetchFailedError) makes the core forget that output, rerun the
// stage that produced it for the missing partitions, and then retry. Results
// of tasks the core no longer expects (stale attempts, fenced executors,
// finished jobs) are dropped.
//
// Scheduler drives a Core from one goroutine and hands Launch actions to a
// Backend: LocalBackend runs tasks on N goroutines in this process (local
// mode); cluster mode's backend sends them to executor processes. RunTask
// is what both run for one task; a panic in user code becomes a *PanicError
// naming the operator whose function panicked.
//
// Walk, ShuffleDeps and Shape address a lineage by position rather than by
// process-local ids, which is how an executor finds a task's stage in its own
// copy of the job's graph.
package scheduler
