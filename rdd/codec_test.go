package rdd

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/apache/arrow/go/v15/arrow/memory"
)

type userStruct struct {
	Name  string
	Score float64
}

func roundTrip[T any](t *testing.T, vals []T) {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	c := CodecOf[T]()
	rec := Encode(mem, c, vals)
	defer rec.Release()
	got := Decode(c, rec)
	if len(vals) == 0 && len(got) == 0 {
		return
	}
	if !reflect.DeepEqual(got, vals) {
		t.Fatalf("%T: got %v, want %v", c, got, vals)
	}
	for i := range vals {
		if c.Hash(got[i]) != c.Hash(vals[i]) {
			t.Fatalf("%T: hash of a decoded value differs", c)
		}
	}
}

func TestCodecRoundTrips(t *testing.T) {
	roundTrip(t, []string{"", "a", "héllo"})
	roundTrip(t, [][]byte{{1, 2}, {}, {3}})
	roundTrip(t, []int64{-1, 0, 1 << 62})
	roundTrip(t, []int{-5, 7})
	roundTrip(t, []int32{-5, 7})
	roundTrip(t, []uint64{0, 1 << 63})
	roundTrip(t, []float64{-1.5, 0, 3.25})
	roundTrip(t, []bool{true, false})
	roundTrip(t, []KV[string, int64]{{Key: "a", Value: 1}, {Key: "b", Value: -2}})
	roundTrip(t, []KV[string, []int64]{{Key: "a", Value: []int64{1, 2}}, {Key: "b", Value: []int64{}}})
	roundTrip(t, []Pair[int, string]{{First: 1, Second: "x"}})
	roundTrip(t, []Option[string]{Some("x"), {}})
	roundTrip(t, []userStruct{{Name: "n", Score: 2.5}})
	roundTrip(t, []string{})
	if HasNativeCodec[userStruct]() || !HasNativeCodec[KV[string, int]]() {
		t.Fatal("HasNativeCodec is wrong")
	}
}

type registered struct{ N int64 }

func TestRegisterCodec(t *testing.T) {
	RegisterCodec[registered](JSONCodec[registered]{})
	if _, ok := CodecOf[registered]().(JSONCodec[registered]); !ok {
		t.Fatal("registered codec not used")
	}
}

// Partitioning depends on these hashes across processes and releases: a
// change here moves keys between partitions and breaks state placement.
func TestHashesAreStable(t *testing.T) {
	for _, tc := range []struct {
		got  uint64
		want string
	}{
		{CodecOf[string]().Hash("sluice"), "d830e37c283570c1"},
		{CodecOf[int64]().Hash(42), "a759ea27d4727622"},
	} {
		if got := fmt.Sprintf("%016x", tc.got); got != tc.want {
			t.Errorf("hash %s, pinned %s", got, tc.want)
		}
	}
}
