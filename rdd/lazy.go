package rdd

import "github.com/apache/arrow/go/v15/arrow"

// FromRecordFunc is FromRecords whose partitions are fetched when a task
// first reads them: get returns partition part's record, retained (the RDD
// releases it after reading; nil for an empty partition). A cluster's
// executors read their driver's source input this way, inside the task that
// needs it, so nothing is fetched while the lineage is built.
func FromRecordFunc[T any](op string, c Codec[T], parts int, get func(tc *TaskContext, part int) (arrow.Record, error)) *RDD[T] {
	n := newNode(op, parts)
	return &RDD[T]{node: n, codec: c, iter: func(tc *TaskContext, part int, yield func(T) bool) error {
		rec, err := get(tc, part)
		if err != nil || rec == nil {
			return err
		}
		defer rec.Release()
		tc.RecordsRead += rec.NumRows()
		ForEach(c, rec, yield)
		return nil
	}}
}

// FromSliceFunc makes a source RDD whose partition part is the Go values
// get returns: sources that hold their input as Go values (the queue in
// local mode) give them to the tasks with no Arrow copy in between.
func FromSliceFunc[T any](op string, parts int, get func(tc *TaskContext, part int) ([]T, error)) *RDD[T] {
	n := newNode(op, parts)
	return &RDD[T]{node: n, codec: CodecOf[T](), iter: func(tc *TaskContext, part int, yield func(T) bool) error {
		vals, err := get(tc, part)
		if err != nil {
			return err
		}
		tc.RecordsRead += int64(len(vals))
		for _, v := range vals {
			if !yield(v) {
				break
			}
		}
		return nil
	}}
}
