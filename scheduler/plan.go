package scheduler

import (
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/rdd"
)

// Stage is a set of tasks that run the same pipeline of narrow operators on
// different partitions. A shuffle map stage ends at a shuffle dependency and
// writes map outputs; the result stage ends at the job's final RDD.
type Stage struct {
	ID       int
	Node     *rdd.Node       // the last node pipelined in this stage
	Shuffle  *rdd.ShuffleDep // non-nil for shuffle map stages
	Parents  []*Stage
	NumTasks int
}

// IsShuffleMap reports whether the stage writes shuffle output.
func (s *Stage) IsShuffleMap() bool { return s.Shuffle != nil }

// Name describes the stage by its pipelined operators, last first:
// "reduceByKey<-map<-flatMap<-queue".
func (s *Stage) Name() string {
	var ops []string
	var walk func(n *rdd.Node)
	seen := map[int64]bool{}
	walk = func(n *rdd.Node) {
		if seen[n.ID] {
			return
		}
		seen[n.ID] = true
		ops = append(ops, n.Op)
		if n.Cached && n != s.Node {
			return
		}
		for _, d := range n.Deps {
			if d.Shuffle == nil {
				walk(d.Parent)
			}
		}
	}
	walk(s.Node)
	return strings.Join(ops, "<-")
}

func (s *Stage) String() string {
	kind := "result"
	if s.IsShuffleMap() {
		kind = fmt.Sprintf("shuffle %d", s.Shuffle.ID)
	}
	return fmt.Sprintf("stage %d (%s, %d tasks: %s)", s.ID, kind, s.NumTasks, s.Name())
}

// planner cuts lineage DAGs into stages. It memoizes shuffle map stages by
// shuffle id, so two jobs (or two branches of one DAG) that share a shuffle
// share its stage.
type planner struct {
	nextStage     int
	shuffleStages map[int64]*Stage
	// cached reports whether every partition of a cached node is stored, in
	// which case its lineage is not walked.
	cached func(n *rdd.Node) bool
	// replanned holds the shuffles whose stages the current resultStage
	// call has planned.
	replanned map[int64]bool
}

func newPlanner(cached func(*rdd.Node) bool) *planner {
	if cached == nil {
		cached = func(*rdd.Node) bool { return false }
	}
	return &planner{shuffleStages: map[int64]*Stage{}, cached: cached}
}

// resultStage cuts the DAG that ends at final.
func (p *planner) resultStage(final *rdd.Node) *Stage {
	p.replanned = map[int64]bool{}
	s := &Stage{ID: p.nextStage, Node: final, NumTasks: final.Parts}
	p.nextStage++
	s.Parents = p.parentStages(final)
	return s
}

// parentStages walks the narrow dependencies of n and returns the shuffle
// map stages it reads from, in first-encountered order.
func (p *planner) parentStages(n *rdd.Node) []*Stage {
	var parents []*Stage
	seen := map[int64]bool{}
	var walk func(n *rdd.Node)
	walk = func(n *rdd.Node) {
		if seen[n.ID] {
			return
		}
		seen[n.ID] = true
		if n.Cached && p.cached(n) {
			return
		}
		for _, d := range n.Deps {
			if d.Shuffle != nil {
				parents = append(parents, p.shuffleStage(d.Shuffle))
			} else {
				walk(d.Parent)
			}
		}
	}
	walk(n)
	return parents
}

func (p *planner) shuffleStage(dep *rdd.ShuffleDep) *Stage {
	if s, ok := p.shuffleStages[dep.ID]; ok {
		// Plan its parents again, once per job: a cached node stored (or
		// dropped) since the stage was first planned changes them, and a
		// forgotten parent shuffle has a new stage. Running parents the
		// cache made unneeded would recompute lineage whose inputs may be
		// gone.
		if !p.replanned[dep.ID] {
			p.replanned[dep.ID] = true
			s.Parents = p.parentStages(dep.Parent)
		}
		return s
	}
	s := &Stage{ID: p.nextStage, Node: dep.Parent, Shuffle: dep, NumTasks: dep.Parent.Parts}
	p.nextStage++
	p.shuffleStages[dep.ID] = s
	p.replanned[dep.ID] = true
	s.Parents = p.parentStages(dep.Parent)
	return s
}

// refresh plans the parents of s again, with the cache as it is now.
func (p *planner) refresh(s *Stage) {
	p.replanned = map[int64]bool{}
	if s.IsShuffleMap() {
		p.replanned[s.Shuffle.ID] = true
		s.Parents = p.parentStages(s.Shuffle.Parent)
		return
	}
	s.Parents = p.parentStages(s.Node)
}

// forget drops the memoized stages of the given shuffles (their outputs were
// removed), so that later jobs plan them afresh.
func (p *planner) forget(shuffleIDs ...int64) {
	for _, id := range shuffleIDs {
		delete(p.shuffleStages, id)
	}
}

// Describe renders the stage graph below s, one stage per line, parents
// indented under children. Golden tests compare it.
func Describe(s *Stage) string {
	var b strings.Builder
	var walk func(s *Stage, depth int)
	walk = func(s *Stage, depth int) {
		kind := "result"
		if s.IsShuffleMap() {
			kind = "shuffle-map"
		}
		fmt.Fprintf(&b, "%s%s tasks=%d ops=%s\n", strings.Repeat("  ", depth), kind, s.NumTasks, s.Name())
		for _, ps := range s.Parents {
			walk(ps, depth+1)
		}
	}
	walk(s, 0)
	return b.String()
}

// PlanStages cuts the DAG ending at final into stages without running it.
func PlanStages(final *rdd.Node) *Stage { return newPlanner(nil).resultStage(final) }
