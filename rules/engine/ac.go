package engine

import "sort"

// acMachine is an Aho-Corasick automaton over byte strings. The root has a
// full transition table; other states keep sorted edge lists. Outputs of
// suffix states are folded into each state at build time, so a scan reports
// every occurrence of every pattern ending at each position.
type acMachine struct {
	root  [256]int32
	start []int32 // per state: first edge
	end   []int32 // per state: one past the last edge
	edges []acEdge
	fail  []int32
	outs  [][]int32 // per state: the pattern ids ending here
}

type acEdge struct {
	b  byte
	to int32
}

func buildAC(patterns []string) *acMachine {
	type tnode struct {
		next []acEdge // unsorted while building; fan-out is small
		out  []int32
	}
	find := func(n *tnode, b byte) (int32, bool) {
		for _, e := range n.next {
			if e.b == b {
				return e.to, true
			}
		}
		return 0, false
	}
	nodes := []tnode{{}}
	for id, p := range patterns {
		s := int32(0)
		for i := 0; i < len(p); i++ {
			t, ok := find(&nodes[s], p[i])
			if !ok {
				t = int32(len(nodes))
				nodes = append(nodes, tnode{})
				nodes[s].next = append(nodes[s].next, acEdge{b: p[i], to: t})
			}
			s = t
		}
		nodes[s].out = append(nodes[s].out, int32(id))
	}
	m := &acMachine{fail: make([]int32, len(nodes)), outs: make([][]int32, len(nodes))}
	// Breadth-first: failure links and folded outputs.
	queue := make([]int32, 0, len(nodes))
	for _, e := range nodes[0].next {
		m.root[e.b] = e.to
		queue = append(queue, e.to)
	}
	m.outs[0] = nodes[0].out
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		if f := m.outs[m.fail[s]]; len(f) > 0 {
			m.outs[s] = append(append(make([]int32, 0, len(nodes[s].out)+len(f)), nodes[s].out...), f...)
		} else {
			m.outs[s] = nodes[s].out
		}
		for _, e := range nodes[s].next {
			b, t := e.b, e.to
			f := m.fail[s]
			for {
				if f == 0 {
					m.fail[t] = m.root[b]
					if m.fail[t] == t {
						m.fail[t] = 0
					}
					break
				}
				if nt, ok := find(&nodes[f], b); ok {
					m.fail[t] = nt
					break
				}
				f = m.fail[f]
			}
			queue = append(queue, t)
		}
	}
	m.start = make([]int32, len(nodes))
	m.end = make([]int32, len(nodes))
	for s := range nodes {
		m.start[s] = int32(len(m.edges))
		es := nodes[s].next
		sort.Slice(es, func(i, j int) bool { return es[i].b < es[j].b })
		m.edges = append(m.edges, es...)
		m.end[s] = int32(len(m.edges))
	}
	return m
}

func (m *acMachine) step(s int32, b byte) int32 {
	for {
		if s == 0 {
			return m.root[b]
		}
		lo, hi := m.start[s], m.end[s]
		for lo < hi {
			mid := (lo + hi) / 2
			e := m.edges[mid]
			if e.b == b {
				return e.to
			} else if e.b < b {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		s = m.fail[s]
	}
}

// scan appends to dst the id of every pattern occurring in text (possibly
// several times for the same pattern).
func (m *acMachine) scan(text string, dst []int32) []int32 {
	s := int32(0)
	for i := 0; i < len(text); i++ {
		s = m.step(s, text[i])
		if o := m.outs[s]; len(o) > 0 {
			dst = append(dst, o...)
		}
	}
	return dst
}
