package scheduler

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/rdd"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// The lineages below are never run: stage cutting only looks at their nodes.

type kv = rdd.KV[string, int]

func sum(a, b int) int { return a + b }

func words(op string, parts int) *rdd.RDD[string] {
	return rdd.Generate[string](op, parts, func(int, func(string) bool) {})
}

func pairsOf(r *rdd.RDD[string]) *rdd.RDD[kv] {
	return rdd.Map(r, func(w string) kv { return kv{Key: w, Value: 1} })
}

func double(v int) int { return 2 * v }

func positive(p kv) bool { return p.Value > 0 }

// planCase is one stage-cutting golden test: build returns the final node of
// a lineage and which cached nodes have every partition stored.
type planCase struct {
	name  string
	build func() (final *rdd.Node, stored map[*rdd.Node]bool)
	// check, if set, asserts what the rendering cannot show (stage identity).
	check func(t *testing.T, s *Stage)
}

var planCases = []planCase{
	{name: "narrow_chain", build: func() (*rdd.Node, map[*rdd.Node]bool) {
		lines := words("queue", 4)
		w := rdd.FlatMap(lines, strings.Fields)
		long := rdd.Filter(w, func(s string) bool { return len(s) > 3 })
		return rdd.MapValues(pairsOf(long), double).Node(), nil
	}},
	{name: "reduce_by_key", build: func() (*rdd.Node, map[*rdd.Node]bool) {
		w := rdd.FlatMap(words("queue", 3), strings.Fields)
		return rdd.ReduceByKey(pairsOf(w), sum, 2).Node(), nil
	}},
	{name: "group_by_key", build: func() (*rdd.Node, map[*rdd.Node]bool) {
		g := rdd.GroupByKey(pairsOf(words("queue", 2)), 5)
		return rdd.MapValues(g, func(vs []int) int { return len(vs) }).Node(), nil
	}},
	{name: "repartition", build: func() (*rdd.Node, map[*rdd.Node]bool) {
		r := rdd.Repartition(rdd.Filter(words("queue", 3), func(string) bool { return true }), 7)
		return rdd.Map(r, strings.ToUpper).Node(), nil
	}},
	{name: "cogroup", build: func() (*rdd.Node, map[*rdd.Node]bool) {
		a := pairsOf(words("clicks", 2))
		b := rdd.Map(words("views", 3), func(w string) rdd.KV[string, string] { return rdd.KV[string, string]{Key: w, Value: w} })
		return rdd.CoGroup(a, b, 4).Node(), nil
	}},
	{name: "union_of_shuffles", build: func() (*rdd.Node, map[*rdd.Node]bool) {
		a := rdd.ReduceByKey(pairsOf(words("left", 2)), sum, 3)
		g := rdd.GroupByKey(pairsOf(words("right", 4)), 2)
		b := rdd.MapValues(g, func(vs []int) int { return len(vs) })
		return rdd.Union(a, b).Node(), nil
	}},
	{name: "diamond_one_shuffle", build: func() (*rdd.Node, map[*rdd.Node]bool) {
		r := rdd.ReduceByKey(pairsOf(words("queue", 2)), sum, 3)
		return rdd.Union(rdd.MapValues(r, double), rdd.Filter(r, positive)).Node(), nil
	}},
	{
		name: "diamond_of_stages",
		build: func() (*rdd.Node, map[*rdd.Node]bool) {
			r := rdd.ReduceByKey(pairsOf(words("queue", 2)), sum, 3)
			a := rdd.ReduceByKey(rdd.MapValues(r, double), sum, 2)
			b := rdd.GroupByKey(rdd.Filter(r, positive), 2)
			return rdd.CoGroup(a, b, 2).Node(), nil
		},
		check: func(t *testing.T, s *Stage) {
			// cogroup reads two shuffles (each a groupByKey over a and b),
			// which read a and b's shuffles, which both read r's: one stage.
			var shared []*Stage
			var walk func(s *Stage)
			walk = func(s *Stage) {
				if len(s.Parents) == 0 {
					shared = append(shared, s)
				}
				for _, p := range s.Parents {
					walk(p)
				}
			}
			walk(s)
			if len(shared) != 2 || shared[0] != shared[1] {
				t.Fatalf("the leaf stage is not shared: %v", shared)
			}
		},
	},
	{name: "two_shuffles", build: func() (*rdd.Node, map[*rdd.Node]bool) {
		counts := rdd.ReduceByKey(pairsOf(rdd.FlatMap(words("queue", 3), strings.Fields)), sum, 4)
		byCount := rdd.Map(counts, func(p kv) rdd.KV[int, string] { return rdd.KV[int, string]{Key: p.Value, Value: p.Key} })
		return rdd.Map(rdd.GroupByKey(byCount, 2), func(p rdd.KV[int, []string]) int { return len(p.Value) }).Node(), nil
	}},
	{name: "named", build: func() (*rdd.Node, map[*rdd.Node]bool) {
		r := rdd.Named(rdd.ReduceByKey(pairsOf(words("queue", 2)), sum, 2), "counts")
		return rdd.Named(rdd.MapValues(r, double), "doubled").Node(), nil
	}},
	{name: "cached_not_stored", build: func() (*rdd.Node, map[*rdd.Node]bool) {
		r := rdd.ReduceByKey(pairsOf(words("queue", 2)), sum, 3)
		c := rdd.MapValues(r, double).Persist()
		return rdd.ReduceByKey(rdd.Filter(c, positive), sum, 2).Node(), nil
	}},
	{name: "cached_stored", build: func() (*rdd.Node, map[*rdd.Node]bool) {
		r := rdd.ReduceByKey(pairsOf(words("queue", 2)), sum, 3)
		c := rdd.MapValues(r, double).Persist()
		return rdd.ReduceByKey(rdd.Filter(c, positive), sum, 2).Node(), map[*rdd.Node]bool{c.Node(): true}
	}},
	{name: "cached_final_stored", build: func() (*rdd.Node, map[*rdd.Node]bool) {
		r := rdd.ReduceByKey(pairsOf(words("queue", 2)), sum, 3)
		c := rdd.MapValues(r, double).Persist()
		return c.Node(), map[*rdd.Node]bool{c.Node(): true}
	}},
	{name: "cached_union_one_side_stored", build: func() (*rdd.Node, map[*rdd.Node]bool) {
		a := rdd.ReduceByKey(pairsOf(words("left", 2)), sum, 2).Persist()
		b := rdd.ReduceByKey(pairsOf(words("right", 2)), sum, 2).Persist()
		return rdd.Union(a, b).Node(), map[*rdd.Node]bool{a.Node(): true}
	}},
	{name: "zero_partitions", build: func() (*rdd.Node, map[*rdd.Node]bool) {
		return rdd.Map(rdd.Empty[string]("empty", 0), strings.ToUpper).Node(), nil
	}},
}

func TestPlanGolden(t *testing.T) {
	for _, tc := range planCases {
		t.Run(tc.name, func(t *testing.T) {
			final, stored := tc.build()
			s := newPlanner(func(n *rdd.Node) bool { return stored[n] }).resultStage(final)
			if tc.check != nil {
				tc.check(t, s)
			}
			got := Describe(s)
			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./scheduler -run TestPlanGolden -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs (run with -update if the change is intended)\ngot:\n%s\nwant:\n%s", path, got, want)
			}
		})
	}
}

// TestPlanStagesMatchesPlanner checks that the exported entry point plans as
// the core does when nothing is cached.
func TestPlanStagesMatchesPlanner(t *testing.T) {
	r := rdd.ReduceByKey(pairsOf(words("queue", 2)), sum, 3)
	final := rdd.MapValues(r, double).Node()
	if got, want := Describe(PlanStages(final)), Describe(newPlanner(nil).resultStage(final)); got != want {
		t.Fatalf("PlanStages:\n%s\nplanner:\n%s", got, want)
	}
}

// TestPlannerSharesShuffleStages checks the memo: two jobs over one shuffle
// get the same stage, so the second finds the first's output.
func TestPlannerSharesShuffleStages(t *testing.T) {
	r := rdd.ReduceByKey(pairsOf(words("queue", 2)), sum, 3)
	p := newPlanner(nil)
	a := p.resultStage(rdd.MapValues(r, double).Node())
	b := p.resultStage(rdd.Filter(r, positive).Node())
	if a.ID == b.ID {
		t.Fatalf("result stages share id %d", a.ID)
	}
	if len(a.Parents) != 1 || len(b.Parents) != 1 || a.Parents[0] != b.Parents[0] {
		t.Fatalf("shuffle stage not shared: %v vs %v", a.Parents, b.Parents)
	}
	p.forget(r.Node().Deps[0].Shuffle.ID)
	c := p.resultStage(r.Node())
	if c.Parents[0] == a.Parents[0] {
		t.Fatal("forgotten shuffle stage reused")
	}
}

func TestStageString(t *testing.T) {
	r := rdd.ReduceByKey(pairsOf(words("queue", 2)), sum, 3)
	s := PlanStages(rdd.MapValues(r, double).Node())
	shuffleID := r.Node().Deps[0].Shuffle.ID
	if got, want := s.String(), "stage 0 (result, 3 tasks: mapValues<-reduceByKey)"; got != want {
		t.Errorf("result stage: got %q want %q", got, want)
	}
	p := s.Parents[0]
	if got, want := p.String(), fmt.Sprintf("stage 1 (shuffle %d, 2 tasks: map<-queue)", shuffleID); got != want {
		t.Errorf("shuffle stage: got %q want %q", got, want)
	}
	if s.IsShuffleMap() || !p.IsShuffleMap() {
		t.Error("IsShuffleMap wrong")
	}
}

// TestPlannerReplansEachSharedStageOnce plans a tower of stage diamonds,
// each level's shuffles read by both shuffles of the level above, twice.
// The second job finds every stage memoized and plans each one's parents
// again once, not once per path to it (2^levels).
func TestPlannerReplansEachSharedStageOnce(t *testing.T) {
	const levels = 40
	visits := 0
	p := newPlanner(func(*rdd.Node) bool { visits++; return false })
	prev := rdd.ReduceByKey(pairsOf(words("queue", 2)), sum, 2)
	for range levels {
		a := rdd.ReduceByKey(rdd.MapValues(prev, double), sum, 2)
		b := rdd.ReduceByKey(rdd.Filter(prev, positive), sum, 2)
		prev = rdd.Union(a, b).Persist() // never stored: counts the walks
	}
	p.resultStage(prev.Node())
	first := visits
	visits = 0
	s := p.resultStage(prev.Node())
	if first != 2*levels-1 || visits != first {
		t.Fatalf("cached nodes visited %d times planning the first job, %d the second; want %d", first, visits, 2*levels-1)
	}
	if got := len(s.Parents); got != 2 {
		t.Fatalf("%d parents", got)
	}
}
