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

// NodePart is one partition of a lineage node.
type NodePart struct {
	Node *rdd.Node
	Part int
}

// NarrowParents returns the parent partitions that partition part of n
// reads through its narrow dependencies: the same partition of a parent with
// as many partitions (map-like operators), or, for a node whose narrow
// parents' partitions add up to its own (union), the parent partition at
// that position. Any other shape is answered with every partition of every
// narrow parent, which is never wrong for the callers (they only look for
// cached partitions).
func NarrowParents(n *rdd.Node, part int) []NodePart {
	var narrow []*rdd.Node
	total := 0
	for _, d := range n.Deps {
		if d.Shuffle == nil {
			narrow = append(narrow, d.Parent)
			total += d.Parent.Parts
		}
	}
	switch {
	case len(narrow) == 0:
		return nil
	case len(narrow) == 1 && narrow[0].Parts == n.Parts:
		return []NodePart{{narrow[0], part}}
	case len(narrow) > 1 && total == n.Parts && len(narrow) == len(n.Deps):
		for _, p := range narrow {
			if part < p.Parts {
				return []NodePart{{p, part}}
			}
			part -= p.Parts
		}
		return nil
	}
	var out []NodePart
	for _, p := range narrow {
		for i := 0; i < p.Parts; i++ {
			out = append(out, NodePart{p, i})
		}
	}
	return out
}
