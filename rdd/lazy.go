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
