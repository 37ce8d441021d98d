package scheduler

import (
	"context"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/sluicehq/sluice/rdd"
)

func TestWordCountEndToEnd(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	sh, bl := rdd.NewMemShuffle(), rdd.NewMemBlocks()
	defer sh.Close()
	defer bl.Close()
	s, err := New(Config{Backend: NewLocalBackend(3, mem, sh, bl)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	lines := [][]string{{"a b c", "a a"}, {"b c d"}, {}}
	var recs []arrow.Record
	for _, p := range lines {
		recs = append(recs, rdd.Encode(mem, rdd.CodecOf[string](), p))
	}
	src := rdd.FromRecords("queue", rdd.CodecOf[string](), recs)
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	words := rdd.FlatMap(src, strings.Fields)
	pairs := rdd.Map(words, func(w string) rdd.KV[string, int] { return rdd.KV[string, int]{Key: w, Value: 1} })
	counts := rdd.ReduceByKey(pairs, func(a, b int) int { return a + b }, 2)
	got := map[string]int{}
	c := counts.Codec()
	_, err = s.RunJob(context.Background(), &Job{
		Final: counts.Node(),
		Func: func(tc *rdd.TaskContext, part int) (arrow.Record, error) {
			b := rdd.NewBuilder(tc.Alloc, c)
			defer b.Release()
			err := counts.Iterate(tc, part, func(kv rdd.KV[string, int]) bool { b.Append(kv); return true })
			return b.NewRecord(), err
		},
		OnResult: func(part int, rec arrow.Record) error {
			for _, kv := range rdd.Decode(c, rec) {
				got[rdd.Clone(kv.Key)] += kv.Value
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"a": 3, "b": 2, "c": 2, "d": 1}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %d want %d (all %v)", k, got[k], v, got)
		}
	}
	t.Log(Describe(PlanStages(counts.Node())))
}
