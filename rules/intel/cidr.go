package intel

import (
	"cmp"
	"encoding/binary"
	"math"
	"net/netip"
	"slices"
)

// u128 is an address as a 128-bit number (IPv4 in the low 32 bits).
type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || a.hi == b.hi && a.lo < b.lo }

func (a u128) inc() u128 {
	if a.lo == math.MaxUint64 {
		return u128{a.hi + 1, 0}
	}
	return u128{a.hi, a.lo + 1}
}

func addrU128(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{0, uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// lastOf returns the last address of a masked prefix.
func lastOf(p netip.Prefix) u128 {
	s := addrU128(p.Addr())
	host := p.Addr().BitLen() - p.Bits() // host bits, at most 120 (prefixes are at least /8)
	switch {
	case host == 0:
		return s
	case host >= 64:
		return u128{s.hi | (1<<(host-64) - 1), math.MaxUint64}
	}
	return u128{s.hi, s.lo | (1<<host - 1)}
}

// cidrTable finds every prefix containing an address in O(log n + depth).
// CIDR prefixes are laminar (two are nested or disjoint), so they form a
// forest; the address space is cut into segments each mapped to the
// innermost prefix covering it, and a lookup is a binary search over the
// segment starts followed by a walk up the parents.
type cidrTable struct {
	nodes    []cidrNode
	segStart []u128
	segNode  []int32 // -1: no prefix covers the segment
}

type cidrNode struct {
	prefix     netip.Prefix
	start, end u128
	parent     int32
	post       post
}

func buildCIDRTable(prefixes map[netip.Prefix]post) cidrTable {
	t := cidrTable{nodes: make([]cidrNode, 0, len(prefixes))}
	for p, ps := range prefixes {
		t.nodes = append(t.nodes, cidrNode{prefix: p, start: addrU128(p.Addr()), end: lastOf(p), parent: -1, post: ps})
	}
	slices.SortFunc(t.nodes, func(a, b cidrNode) int {
		if a.start != b.start {
			if a.start.less(b.start) {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.prefix.Bits(), b.prefix.Bits()) // the wider first
	})
	t.segStart = make([]u128, 1, 2*len(t.nodes)+1)
	t.segNode = make([]int32, 1, 2*len(t.nodes)+1)
	t.segNode[0] = -1
	emit := func(at u128, node int32) {
		last := len(t.segStart) - 1
		if t.segStart[last] == at {
			t.segNode[last] = node
			return
		}
		t.segStart = append(t.segStart, at)
		t.segNode = append(t.segNode, node)
	}
	var stack []int32
	top := func() int32 {
		if len(stack) == 0 {
			return -1
		}
		return stack[len(stack)-1]
	}
	for i := range t.nodes {
		n := &t.nodes[i]
		for len(stack) > 0 && t.nodes[top()].end.less(n.start) {
			end := t.nodes[top()].end
			stack = stack[:len(stack)-1]
			emit(end.inc(), top())
		}
		n.parent = top()
		stack = append(stack, int32(i))
		emit(n.start, int32(i))
	}
	for len(stack) > 0 {
		end := t.nodes[top()].end
		stack = stack[:len(stack)-1]
		if end != (u128{math.MaxUint64, math.MaxUint64}) {
			emit(end.inc(), top())
		}
	}
	return t
}

// innermost returns the innermost prefix containing a (-1 for none); walk
// the parent links for the others.
func (t *cidrTable) innermost(a netip.Addr) int32 {
	if len(t.nodes) == 0 {
		return -1
	}
	x := addrU128(a)
	lo, hi := 0, len(t.segStart) // find the last segment starting at or before x
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if x.less(t.segStart[m]) {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return t.segNode[lo-1]
}
