package rdd

import "iter"

// MapPartitionsWithContext is MapPartitions for operators that need the task
// context and the partition index: stateful operators use them to find the
// partition of their state that this task owns. f pushes its outputs to
// yield; an error fails the task.
func MapPartitionsWithContext[T, U any](r *RDD[T], op string, c Codec[U],
	f func(tc *TaskContext, part int, in iter.Seq[T], yield func(U) bool) error) *RDD[U] {
	return narrow(op, r, c, func(n *Node) func(*TaskContext, int, func(U) bool) error {
		return func(tc *TaskContext, part int, yield func(U) bool) error {
			var err error
			tc.cur = n.ID
			ferr := f(tc, part, r.Seq(tc, part, &err), yield)
			if err != nil {
				return err
			}
			return ferr
		}
	})
}

// PartitionOf returns the partition, out of n, of a key with hash h: the
// placement every hash-partitioned shuffle uses, exported so that state can
// be co-partitioned with the shuffles that feed it.
func PartitionOf(h uint64, n int) int { return partitionOf(h, n) }
