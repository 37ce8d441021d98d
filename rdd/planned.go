package rdd

// ReadPlanned makes a narrow RDD whose partition p holds what read yields
// for each value of plan's partition p. It is the task side of a planned
// source: plan holds small descriptions of what to read (a Kafka offset
// range), fixed by the driver, and read fetches exactly that, so a
// recomputed partition reads the same values. An error from read fails the
// task, which is retried.
func ReadPlanned[M, T any](op string, plan *RDD[M], read func(tc *TaskContext, m M, yield func(T) bool) error) *RDD[T] {
	return narrow(op, plan, CodecOf[T](), func(n *Node) func(*TaskContext, int, func(T) bool) error {
		return func(tc *TaskContext, part int, yield func(T) bool) error {
			var rerr error
			var count int64
			stopped := false
			err := plan.Iterate(tc, part, func(m M) bool {
				tc.cur = n.ID
				rerr = read(tc, m, func(v T) bool {
					count++
					if !yield(v) {
						stopped = true
						return false
					}
					tc.cur = n.ID
					return true
				})
				return rerr == nil && !stopped
			})
			tc.RecordsRead += count
			if rerr != nil {
				return rerr
			}
			return err
		}
	})
}
