package netsum

import (
	"bytes"
	"time"
)

// flowKey identifies a flow in either direction: the lower (address,
// port) endpoint first.
type flowKey struct {
	a, b   [16]byte
	ap, bp uint16
	proto  uint8
	v6     bool
}

func makeKey(p *packet, sport, dport uint16) flowKey {
	k := flowKey{proto: p.proto, v6: p.v6}
	c := bytes.Compare(p.src[:], p.dst[:])
	if c < 0 || (c == 0 && sport <= dport) {
		k.a, k.b, k.ap, k.bp = p.src, p.dst, sport, dport
	} else {
		k.a, k.b, k.ap, k.bp = p.dst, p.src, dport, sport
	}
	return k
}

// Timeout classes: each has its own LRU list so that expiry walks only
// flows that may have expired.
const (
	classTCP    = iota // TCP, not yet closed
	classShort         // UDP, ICMP, other IP protocols
	classClosed        // TCP after a complete close
	classDNS           // UDP flows carrying DNS
	numClasses
)

// flow is one connection in the table.
type flow struct {
	v6       bool
	proto    uint8
	orig     [16]byte // originator address
	resp     [16]byte
	origPort uint16 // ICMP: type
	respPort uint16 // ICMP: counterpart type or code
	icmpType uint8  // of the first packet, for the Community ID
	icmpCode uint8
	start    int64
	last     int64
	reported int64 // last active-timeout report

	origPkts, respPkts     uint64
	origIPBytes, respIPBy  uint64
	origPayload, respPaylo uint64 // UDP/ICMP payload bytes

	tcp       tcpConn
	origSYN   bool // the originator's SYN was seen (the stream start is known)
	closed    bool // TCP close complete
	histFlags uint32
	hist      [24]byte
	histLen   uint8

	app *appState // nil until application bytes are seen
	cid string    // Community ID, computed at the first summary

	class      uint8
	prev, next *flow
}

func (f *flow) checkHistory(isOrig bool, mask uint32, code byte) bool {
	if !isOrig {
		mask <<= 16
		code = lower(code)
	}
	if f.histFlags&mask != 0 {
		return true
	}
	f.histFlags |= mask
	f.appendHistory(code)
	return false
}

func (f *flow) addHistory(isOrig bool, code byte) {
	if !isOrig {
		code = lower(code)
	}
	f.appendHistory(code)
}

func (f *flow) appendHistory(c byte) {
	if int(f.histLen) < len(f.hist) {
		f.hist[f.histLen] = c
		f.histLen++
	}
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// History is the Zeek-style history string.
func (f *flow) History() string { return string(f.hist[:f.histLen]) }

// flip swaps the originator and responder.
func (f *flow) flip() {
	f.cid = ""
	f.orig, f.resp = f.resp, f.orig
	f.origPort, f.respPort = f.respPort, f.origPort
	f.origPkts, f.respPkts = f.respPkts, f.origPkts
	f.origIPBytes, f.respIPBy = f.respIPBy, f.origIPBytes
	f.origPayload, f.respPaylo = f.respPaylo, f.origPayload
	f.tcp.orig, f.tcp.resp = f.tcp.resp, f.tcp.orig
	f.histFlags = f.histFlags<<16 | f.histFlags>>16
	f.appendHistory('^')
	if f.app != nil {
		f.app.flip()
	}
}

// table is the bounded flow table with per-class LRU lists (most
// recently active at the head).
type table struct {
	flows   map[flowKey]*flow
	heads   [numClasses]*flow
	tails   [numClasses]*flow
	max     int
	evicted uint64
}

func newTable(maxFlows int) *table {
	return &table{flows: make(map[flowKey]*flow, min(maxFlows, 1<<16)), max: maxFlows}
}

func (t *table) unlink(f *flow) {
	c := f.class
	if f.prev != nil {
		f.prev.next = f.next
	} else {
		t.heads[c] = f.next
	}
	if f.next != nil {
		f.next.prev = f.prev
	} else {
		t.tails[c] = f.prev
	}
	f.prev, f.next = nil, nil
}

func (t *table) pushFront(f *flow, class uint8) {
	f.class = class
	f.prev = nil
	f.next = t.heads[class]
	if f.next != nil {
		f.next.prev = f
	} else {
		t.tails[class] = f
	}
	t.heads[class] = f
}

// touch moves f to the head of its (possibly new) class list.
func (t *table) touch(f *flow, class uint8) {
	if t.heads[f.class] == f && f.class == class {
		return
	}
	t.unlink(f)
	t.pushFront(f, class)
}

// keyOf rebuilds a flow's table key.
func keyOf(f *flow) flowKey {
	p := packet{v6: f.v6, proto: f.proto, src: f.orig, dst: f.resp}
	return makeKey(&p, f.origPort, f.respPort)
}

func (t *table) add(f *flow, k flowKey) {
	t.flows[k] = f
	t.pushFront(f, f.class)
}

func (t *table) remove(f *flow) {
	t.unlink(f)
	delete(t.flows, keyOf(f))
}

// oldest returns the least recently active flow of any class.
func (t *table) oldest() *flow {
	var o *flow
	for c := range numClasses {
		if tl := t.tails[c]; tl != nil && (o == nil || tl.last < o.last) {
			o = tl
		}
	}
	return o
}

// Timeouts of the flow table. Idle timeouts follow Zeek's defaults
// (tcp_inactivity_timeout 5 min, udp and icmp 1 min, tcp_close_delay 5 s).
type Timeouts struct {
	TCP    time.Duration // idle TCP connection
	Short  time.Duration // idle UDP, ICMP and other flows
	Closed time.Duration // TCP connection after its close (FIN both ways or RST)
	DNS    time.Duration // UDP flow carrying DNS (Zeek's dns_session_timeout, 10 s)
	Active time.Duration // a flow active longer than this is reported (and again every Active)
}

// DefaultTimeouts are used for zero fields.
var DefaultTimeouts = Timeouts{TCP: 5 * time.Minute, Short: time.Minute, Closed: 5 * time.Second, DNS: 10 * time.Second, Active: 10 * time.Minute}

func (t Timeouts) withDefaults() Timeouts {
	if t.TCP <= 0 {
		t.TCP = DefaultTimeouts.TCP
	}
	if t.Short <= 0 {
		t.Short = DefaultTimeouts.Short
	}
	if t.Closed <= 0 {
		t.Closed = DefaultTimeouts.Closed
	}
	if t.DNS <= 0 {
		t.DNS = DefaultTimeouts.DNS
	}
	if t.Active <= 0 {
		t.Active = DefaultTimeouts.Active
	}
	return t
}

func (t Timeouts) of(class uint8) int64 {
	switch class {
	case classTCP:
		return int64(t.TCP)
	case classClosed:
		return int64(t.Closed)
	case classDNS:
		return int64(t.DNS)
	}
	return int64(t.Short)
}

func flowClass(f *flow) uint8 {
	if f.proto == protoTCP {
		if f.closed {
			return classClosed
		}
		return classTCP
	}
	if f.proto == protoUDP && f.app != nil && f.app.proto == appDNS {
		return classDNS
	}
	return classShort
}
