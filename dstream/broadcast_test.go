package dstream

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sluicehq/sluice/rdd"
)

// TestBroadcastLocal: the value is computed once, on the driver, and tasks
// read it.
func TestBroadcastLocal(t *testing.T) {
	c, run := manualJob(t, "local[2]")
	var computed atomic.Int64
	names, err := NewBroadcast(c, "names", func() (map[int]string, error) {
		computed.Add(1)
		return map[int]string{1: "one", 2: "two"}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	q := NewQueue[int](c)
	q.Push(1, 2, 3)
	q.Push(2)
	var got []string
	ForeachRDD(Map(q.Stream(), func(v int) string { return names.Value()[v] }), func(b *Batch, r *rdd.RDD[string]) error {
		vals, err := Collect(b, r)
		got = append(got, strings.Join(vals, ","))
		return err
	})
	run(2)
	if computed.Load() != 1 {
		t.Errorf("computed %d times, want once", computed.Load())
	}
	if strings.Join(got, "|") != "one,two,|two" {
		t.Errorf("got %q", got)
	}
	if _, err := NewBroadcast(c, "names", func() (int, error) { return 0, nil }); err == nil || !strings.Contains(err.Error(), "used twice") {
		t.Errorf("duplicate name: %v", err)
	}
	if _, err := NewBroadcast(c, "bad", func() (int, error) { return 0, errors.New("db down") }); err == nil || !strings.Contains(err.Error(), `broadcast "bad": db down`) {
		t.Errorf("compute error: %v", err)
	}
}

// TestBroadcastExecutorSeam: in an executor process the compute function
// does not run; the value comes from the driver's encoded copy through the
// fetch hook the cluster runtime sets.
func TestBroadcastExecutorSeam(t *testing.T) {
	type table struct {
		Rows map[string]int
		Note string
	}
	driver, _ := manualJob(t, "local[1]")
	want := table{Rows: map[string]int{"a": 1, "b": 2}, Note: "v1"}
	if _, err := NewBroadcast(driver, "table", func() (table, error) { return want, nil }); err != nil {
		t.Fatal(err)
	}

	old := processRole
	processRole = func() string { return roleExecutor }
	defer func() { processRole = old }()
	exec, run := manualJob(t, "local[1]")
	var computed atomic.Int64
	tb, err := NewBroadcast(exec, "table", func() (table, error) {
		computed.Add(1)
		return table{}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var fetches atomic.Int64
	exec.setBroadcastFetcher(func(name string) ([]byte, error) {
		fetches.Add(1)
		return driver.broadcastBytes(name)
	})
	q := NewQueue[string](exec)
	q.Push("a", "b", "a")
	var sum atomic.Int64
	ForeachRDD(Map(q.Stream(), func(k string) int { return tb.Value().Rows[k] }), func(b *Batch, r *rdd.RDD[int]) error {
		vals, err := Collect(b, r)
		for _, v := range vals {
			sum.Add(int64(v))
		}
		return err
	})
	run(1)
	if computed.Load() != 0 {
		t.Errorf("the executor ran the compute function %d times", computed.Load())
	}
	if fetches.Load() != 1 || sum.Load() != 4 || tb.Value().Note != "v1" {
		t.Errorf("fetches %d, sum %d, note %q", fetches.Load(), sum.Load(), tb.Value().Note)
	}
	if _, err := driver.broadcastBytes("nope"); err == nil || !strings.Contains(err.Error(), `no broadcast value named "nope"`) {
		t.Errorf("unknown name: %v", err)
	}
}
