package dstream

import (
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/sluicehq/sluice/rdd"
)

// These tests drive the state store the way a stateful operator's tasks and
// the batch loop do (begin, get/set/remove, finish, commit), for changes
// that once left the whole suite green (issue 16); tools/mutate replays
// them.

var storeT0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func sec(s int) time.Time { return storeT0.Add(time.Duration(s) * time.Second) }

// batch runs one task attempt over partition part at batch time t.
func runTxn[K comparable, S any](t *testing.T, st *stateStore[K, S], part int, bt time.Time, f func(x *txn[K, S])) {
	t.Helper()
	x, err := st.begin(part, bt)
	if err != nil {
		t.Fatal(err)
	}
	f(x)
	x.finish(nil)
}

func committedState[K comparable, S any](st *stateStore[K, S]) map[K]S {
	m := map[K]S{}
	for _, kv := range st.snapshot() {
		m[kv.Key] = kv.Value
	}
	return m
}

func TestStateCommitKeepsTheDeltasOfLaterBatches(t *testing.T) {
	st := newStateStore[string, int]("s", 1)
	runTxn(t, st, 0, sec(1), func(x *txn[string, int]) { x.set("a", stateEntry[int]{value: 1}) })
	// Batch 2's task finished before batch 1 committed (its outputs ran
	// ahead); committing batch 1 must not drop it.
	runTxn(t, st, 0, sec(2), func(x *txn[string, int]) { x.set("b", stateEntry[int]{value: 2}) })
	st.commit(sec(1), nil)
	st.commit(sec(2), nil)
	if got := committedState(st); len(got) != 2 || got["a"] != 1 || got["b"] != 2 {
		t.Fatalf("state after committing batches 1 and 2: %v, want a=1 b=2", got)
	}
}

func TestStateByteSizeFollowsTheState(t *testing.T) {
	long, short := strings.Repeat("x", 1000), "y"
	for _, loaded := range []bool{false, true} {
		st := newStateStore[string, string]("s", 2)
		if loaded {
			st.load([]KV[string, string]{{Key: "k", Value: long}}, sec(0))
		} else {
			runTxn(t, st, st.partOf("k"), sec(1), func(x *txn[string, string]) { x.set("k", stateEntry[string]{value: long}) })
			st.commit(sec(1), nil)
		}
		keys, big := st.size()
		if keys != 1 || big < 1000 {
			t.Fatalf("loaded %v: size %d keys, %d bytes with a 1000-byte value", loaded, keys, big)
		}
		runTxn(t, st, st.partOf("k"), sec(2), func(x *txn[string, string]) { x.set("k", stateEntry[string]{value: short}) })
		st.commit(sec(2), nil)
		_, small := st.size()
		if small >= big-900 {
			t.Fatalf("loaded %v: %d bytes after replacing a 1000-byte value by 1 byte, %d before", loaded, small, big)
		}
		runTxn(t, st, st.partOf("k"), sec(3), func(x *txn[string, string]) { x.remove("k") })
		st.commit(sec(3), nil)
		// The figure is the memory the store holds: its columns and key
		// arena keep their capacity, the removed key's bytes go.
		if keys, b := st.size(); keys != 0 || b > small {
			t.Fatalf("loaded %v: size %d keys, %d bytes with the state empty (%d with one 1-byte value)", loaded, keys, b, small)
		}
	}
}

func TestStateIsDueAtItsWakeTime(t *testing.T) {
	st := newStateStore[string, int]("s", 1)
	wake := sec(5)
	wakeOf := func(string, stateEntry[int]) time.Time { return wake }
	runTxn(t, st, 0, sec(1), func(x *txn[string, int]) { x.set("a", stateEntry[int]{value: 1}) })
	st.commit(sec(1), wakeOf)
	for _, c := range []struct {
		s   int
		due bool
	}{{4, false}, {5, true}, {6, true}} {
		x, _ := st.begin(0, sec(c.s))
		if got := x.due(); got != c.due {
			t.Fatalf("wake at 5s: due at %ds = %v, want %v", c.s, got, c.due)
		}
	}

	// The batch at the wake time recomputes it even when it changed
	// nothing (a timeout that was pushed back), so the partition is not
	// due at every batch after.
	wake = sec(9)
	runTxn(t, st, 0, sec(5), func(*txn[string, int]) {})
	st.commit(sec(5), wakeOf)
	if x, _ := st.begin(0, sec(6)); x.due() {
		t.Fatal("due at 6s after the batch at 5s moved the wake time to 9s")
	}
	if x, _ := st.begin(0, sec(9)); !x.due() {
		t.Fatal("not due at the new wake time")
	}
}

func TestStateWakeIsTheEarliestOfItsKeys(t *testing.T) {
	st := newStateStore[string, int]("s", 1)
	runTxn(t, st, 0, sec(1), func(x *txn[string, int]) {
		x.set("soon", stateEntry[int]{value: 3})
		x.set("late", stateEntry[int]{value: 8})
		x.set("never", stateEntry[int]{value: 0})
	})
	st.commit(sec(1), func(_ string, e stateEntry[int]) time.Time {
		if e.value == 0 {
			return time.Time{}
		}
		return sec(e.value)
	})
	if x, _ := st.begin(0, sec(3)); !x.due() {
		t.Fatal("not due at 3s with a key due at 3s and one at 8s")
	}
}

// poisonAlloc overwrites the buffers it frees, so state that still aliases
// a released Arrow record reads garbage.
type poisonAlloc struct{ *memory.CheckedAllocator }

func (a poisonAlloc) Free(b []byte) {
	for i := range b {
		b[i] = 0xA5
	}
	a.CheckedAllocator.Free(b)
}

// decoded returns strings decoded from an Arrow record, aliasing its
// buffers as shuffle reads do, and the record to release.
func decoded(t *testing.T, vals ...string) ([]string, arrow.Record) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	t.Cleanup(func() { mem.AssertSize(t, 0) })
	rec := rdd.Encode(poisonAlloc{mem}, rdd.CodecOf[string](), vals)
	var out []string
	rdd.ForEach(rdd.CodecOf[string](), rec, func(s string) bool { out = append(out, s); return true })
	return out, rec
}

func TestStateDoesNotAliasReleasedArrowBuffers(t *testing.T) {
	key, val := strings.Repeat("key", 10), strings.Repeat("value", 10)
	st := newStateStore[string, string]("s", 1)
	vals, rec := decoded(t, key, val)
	runTxn(t, st, 0, sec(1), func(x *txn[string, string]) { x.set(vals[0], stateEntry[string]{value: vals[1]}) })
	rec.Release() // the task's input is gone once the task ends
	st.commit(sec(1), nil)
	if got := committedState(st); len(got) != 1 || got[key] != val {
		t.Fatalf("committed state %q after its input was released, want %q=%q", got, key, val)
	}

	// A value set in place during a walk over the state (as
	// UpdateStateByKey does) must be copied too.
	vals, rec = decoded(t, strings.Repeat("walked", 10))
	runTxn(t, st, 0, sec(2), func(x *txn[string, string]) {
		x.each(func(k string, _ stateEntry[string]) bool {
			x.set(k, stateEntry[string]{value: vals[0]})
			return true
		})
	})
	rec.Release()
	st.commit(sec(2), nil)
	if got := committedState(st); len(got) != 1 || got[key] != strings.Repeat("walked", 10) {
		t.Fatalf("committed state %q after a walk set a value from released input", got)
	}

	// A removal keyed by a decoded string must still find the key when
	// the batch commits.
	vals, rec = decoded(t, key)
	runTxn(t, st, 0, sec(3), func(x *txn[string, string]) { x.remove(vals[0]) })
	rec.Release()
	st.commit(sec(3), nil)
	if got := committedState(st); len(got) != 0 {
		t.Fatalf("state %q after removing its only key", got)
	}
}

func TestStateTxnSeesItsOwnChanges(t *testing.T) {
	st := newStateStore[string, int]("s", 1)
	st.load([]KV[string, int]{{Key: "a", Value: 1}, {Key: "b", Value: 2}}, sec(0))
	runTxn(t, st, 0, sec(1), func(x *txn[string, int]) {
		x.set("a", stateEntry[int]{value: 10})
		x.remove("b")
		if _, ok := x.get("b"); ok {
			t.Error("get finds a key removed in the same attempt")
		}
		seen := map[string]int{}
		x.each(func(k string, e stateEntry[int]) bool {
			seen[k]++
			if k == "a" && e.value != 10 {
				t.Errorf("each gives a=%d, want the attempt's 10", e.value)
			}
			return true
		})
		if len(seen) != 1 || seen["a"] != 1 {
			t.Errorf("each visited %v, want a once", seen)
		}
	})
	st.commit(sec(1), nil)
	if got := committedState(st); len(got) != 1 || got["a"] != 10 {
		t.Fatalf("state %v, want a=10", got)
	}
}

func TestStateBeginChecksThePartition(t *testing.T) {
	st := newStateStore[string, int]("s", 2)
	for _, p := range []int{-1, 2} {
		if _, err := st.begin(p, sec(1)); err == nil || !strings.Contains(err.Error(), "out of range") {
			t.Fatalf("begin(%d) of 2 partitions: error %v", p, err)
		}
	}
}
