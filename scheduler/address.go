package scheduler

import "github.com/sluicehq/sluice/rdd"

// Lineage addressing. A cluster runs the same job binary in every process,
// and every process rebuilds a batch's RDDs from the same DStream graph, so
// the lineage below a job's final RDD has the same shape everywhere, while
// node and shuffle ids (process-local counters) differ. A task therefore
// names its stage by ordinals in a fixed walk of the lineage, which the
// executor resolves against its own copy.

// Walk returns the nodes of the lineage ending at final in depth-first
// pre-order, dependencies in order, each node once.
func Walk(final *rdd.Node) []*rdd.Node {
	var out []*rdd.Node
	seen := map[*rdd.Node]bool{}
	var visit func(n *rdd.Node)
	visit = func(n *rdd.Node) {
		if seen[n] {
			return
		}
		seen[n] = true
		out = append(out, n)
		for _, d := range n.Deps {
			visit(d.Parent)
		}
	}
	visit(final)
	return out
}

// ShuffleDeps returns the shuffle dependencies of the lineage ending at
// final, in Walk order; a dependency's index is its ordinal.
func ShuffleDeps(final *rdd.Node) []*rdd.ShuffleDep {
	var out []*rdd.ShuffleDep
	seen := map[*rdd.ShuffleDep]bool{}
	for _, n := range Walk(final) {
		for _, d := range n.Deps {
			if d.Shuffle != nil && !seen[d.Shuffle] {
				seen[d.Shuffle] = true
				out = append(out, d.Shuffle)
			}
		}
	}
	return out
}

// Shape describes the lineage's structure (operators, partition counts and
// edges, not ids), so that two processes can check they built the same graph.
func Shape(final *rdd.Node) string {
	nodes := Walk(final)
	idx := map[*rdd.Node]int{}
	for i, n := range nodes {
		idx[n] = i
	}
	var b []byte
	for _, n := range nodes {
		b = append(b, n.Op...)
		b = append(b, '/')
		b = appendInt(b, n.Parts)
		for _, d := range n.Deps {
			b = append(b, ' ')
			if d.Shuffle != nil {
				b = append(b, 's')
			}
			b = appendInt(b, idx[d.Parent])
		}
		b = append(b, ';')
	}
	return string(b)
}

func appendInt(b []byte, v int) []byte {
	if v < 0 {
		b = append(b, '-')
		v = -v
	}
	var tmp [20]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(b, tmp[i:]...)
}

// StateOf returns the operator state a stage's tasks use (rdd.Node.State of
// a node pipelined into the stage), "" if none: such tasks must run where
// that state's partition lives.
func StateOf(s *Stage) string {
	seen := map[*rdd.Node]bool{}
	var find func(n *rdd.Node) string
	find = func(n *rdd.Node) string {
		if seen[n] {
			return ""
		}
		seen[n] = true
		if n.State != "" {
			return n.State
		}
		for _, d := range n.Deps {
			if d.Shuffle == nil {
				if st := find(d.Parent); st != "" {
					return st
				}
			}
		}
		return ""
	}
	return find(s.Node)
}
