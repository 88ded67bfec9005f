package netsum

import (
	"time"

	"github.com/google/gopacket/layers"
	"github.com/sirupsen/logrus"

	"github.com/csirt-toscana/platform/internal/event"
)

// Defaults of Config.
const (
	DefaultMaxFlows     = 200_000
	DefaultBufferBudget = 32 << 20 // bytes of l7 stream buffers across all flows
)

// Config configures a Summarizer.
type Config struct {
	// MaxFlows caps the flow table. When it is full the least recently
	// active flow is reported and evicted (counted in Stats.Evicted and
	// logged). Default DefaultMaxFlows.
	MaxFlows int
	// StreamBuffer bounds the bytes buffered per flow direction for the
	// l7 decoders. Default DefaultStreamBuffer.
	StreamBuffer int
	// BufferBudget bounds the l7 buffers of all flows together.
	BufferBudget int64
	Timeouts     Timeouts
	// Privacy says what is never summarised and which addresses are
	// pseudonymised.
	Privacy *Privacy
	// Emit receives each summary event. It must not keep the event after
	// it returns unless it owns it (each event is a fresh map).
	Emit   func(event.Event)
	Logger logrus.FieldLogger
}

// Stats are the summarizer's counters.
type Stats struct {
	Packets     uint64 // frames given to Packet
	IPPackets   uint64 // frames that were IP packets of a flow
	Excluded    uint64 // packets dropped by the privacy exclusions
	NotIP       uint64 // frames of other protocols (ARP, LLDP, ...)
	Fragments   uint64 // non-first IP fragments (not reassembled)
	Malformed   uint64 // frames that could not be decoded
	Flows       uint64 // flows created
	Evicted     uint64 // flows evicted because the table was full
	ActiveFlows int    // flows in the table now
	BufferBytes int64  // bytes held in l7 stream buffers now
	BufferFull  uint64 // times a stream stopped being decoded for lack of buffer
	Summaries   uint64 // events emitted
}

// Summarizer turns packets into summary events. It is not safe for
// concurrent use: one goroutine feeds it.
type Summarizer struct {
	cfg     Config
	dec     *decoder
	tab     *table
	pkt     packet
	now     int64 // latest packet time
	lastExp int64
	// lastActive is when the table was last walked for active timeouts.
	lastActive int64
	stats      Stats

	bufBytes   int64
	bufferFull uint64
}

// New returns a Summarizer.
func New(cfg Config) *Summarizer {
	if cfg.MaxFlows <= 0 {
		cfg.MaxFlows = DefaultMaxFlows
	}
	if cfg.StreamBuffer <= 0 {
		cfg.StreamBuffer = DefaultStreamBuffer
	}
	if cfg.BufferBudget <= 0 {
		cfg.BufferBudget = DefaultBufferBudget
	}
	cfg.Timeouts = cfg.Timeouts.withDefaults()
	if cfg.Emit == nil {
		cfg.Emit = func(event.Event) {}
	}
	if cfg.Logger == nil {
		l := logrus.New()
		l.SetLevel(logrus.PanicLevel)
		cfg.Logger = l
	}
	return &Summarizer{cfg: cfg, dec: newDecoder(), tab: newTable(cfg.MaxFlows)}
}

// Stats returns the counters.
func (s *Summarizer) Stats() Stats {
	st := s.stats
	st.NotIP, st.Fragments, st.Malformed = s.dec.notIP, s.dec.fragments, s.dec.malformed
	st.ActiveFlows = len(s.tab.flows)
	st.BufferBytes = s.bufBytes
	st.BufferFull = s.bufferFull
	st.Evicted = s.tab.evicted
	return st
}

// likelyServerPorts are ports of services Zeek's analyzers register; as
// in Zeek, a flow whose first packet comes from such a port (and not to
// one) is taken to have been started by the other side.
var likelyServerPorts = func() [65536 / 64]uint64 {
	var bits [65536 / 64]uint64
	for _, p := range []uint16{
		21, 22, 23, 25, 53, 67, 68, 69, 80, 81, 88, 110, 111, 123, 135, 137, 139, 143, 161, 162,
		389, 443, 445, 465, 502, 514, 563, 585, 587, 614, 631, 636, 989, 990, 992, 993, 995, 1080,
		1194, 1812, 1813, 1883, 2049, 2811, 3128, 3306, 3389, 3544, 4789, 5060, 5222, 5223, 5269,
		5353, 5355, 5432, 6379, 6666, 6667, 6668, 6669, 8000, 8080, 8443, 8888, 20000,
	} {
		bits[p/64] |= 1 << (p % 64)
	}
	return bits
}()

func likelyServer(p uint16) bool { return likelyServerPorts[p/64]&(1<<(p%64)) != 0 }

// Packet summarises one frame captured at ts with the given link type.
// data is not retained.
func (s *Summarizer) Packet(ts time.Time, lt layers.LinkType, data []byte) {
	s.stats.Packets++
	p := &s.pkt
	if !s.dec.decode(lt, data, p) {
		s.advance(ts.UnixNano())
		return
	}
	p.ts = ts.UnixNano()
	s.stats.IPPackets++
	if s.cfg.Privacy != nil && s.cfg.Privacy.excluded(p) {
		s.stats.Excluded++
		s.advance(p.ts)
		return
	}
	s.advance(p.ts)
	s.handle(p)
}

// advance moves the table's clock and expires idle flows (at most once a
// second of packet time).
func (s *Summarizer) advance(ts int64) {
	if ts > s.now {
		s.now = ts
	}
	if s.now-s.lastExp >= int64(time.Second) {
		s.lastExp = s.now
		s.expire(s.now)
	}
}

// Tick expires idle flows as of now: a live capture calls it when no
// packet arrived for a while.
func (s *Summarizer) Tick(now time.Time) {
	if n := now.UnixNano(); n > s.now {
		s.now = n
	}
	s.lastExp = s.now
	s.expire(s.now)
}

func (s *Summarizer) expire(now int64) {
	for c := range uint8(numClasses) {
		limit := s.cfg.Timeouts.of(c)
		for f := s.tab.tails[c]; f != nil && now-f.last > limit; f = s.tab.tails[c] {
			s.end(f)
		}
	}
	// Active timeout: long-lived flows are reported while they last. The
	// whole table is walked, so only a few times per timeout period.
	active := int64(s.cfg.Timeouts.Active)
	if now-s.lastActive < active/8 {
		return
	}
	s.lastActive = now
	for c := range uint8(numClasses) {
		for f := s.tab.heads[c]; f != nil; f = f.next {
			if now-f.reported > active {
				f.reported = now
				s.emitFlow(f, false)
			}
		}
	}
}

// end reports a flow and removes it.
func (s *Summarizer) end(f *flow) {
	s.tab.remove(f)
	s.finishApp(f)
	s.emitFlow(f, true)
}

// Flush reports every flow still in the table (end of a pcap file, or
// shutdown), oldest first.
func (s *Summarizer) Flush() {
	for {
		f := s.tab.oldest()
		if f == nil {
			return
		}
		s.end(f)
	}
}

func (s *Summarizer) handle(p *packet) {
	sport, dport := p.sport, p.dport
	icmp := p.proto == protoICMP || p.proto == protoICMPv6
	if icmp {
		sport, dport, _ = icmpPorts(p.proto == protoICMPv6, uint8(p.sport), uint8(p.dport))
	}
	k := makeKey(p, sport, dport)
	f := s.tab.flows[k]
	if f != nil && f.proto == protoTCP && f.closed && p.flags&flagSYN != 0 && p.flags&flagACK == 0 &&
		p.ts-f.last > int64(time.Second) {
		// A new connection reusing the 5-tuple of a closed one.
		s.end(f)
		f = nil
	}
	if f == nil {
		f = s.newFlow(k, p, sport, dport)
	}
	isOrig := p.src == f.orig && sport == f.origPort
	if p.src == p.dst && sport == dport {
		isOrig = true
	}
	if icmp && !isOrig && p.src == f.orig && p.dst == f.resp {
		isOrig = true // one-way ICMP types keyed alike
	}
	f.last = p.ts
	if isOrig {
		f.origPkts++
		f.origIPBytes += uint64(p.ipLen)      //nolint:gosec // non-negative
		f.origPayload += uint64(p.payloadLen) //nolint:gosec // non-negative
	} else {
		f.respPkts++
		f.respIPBy += uint64(p.ipLen)       //nolint:gosec // non-negative
		f.respPaylo += uint64(p.payloadLen) //nolint:gosec // non-negative
	}
	switch p.proto {
	case protoTCP:
		if isOrig && p.flags&flagSYN != 0 && p.flags&flagACK == 0 {
			f.origSYN = true
		}
		f.tcpProcess(isOrig, p.flags, p.seq, p.ack, p.payloadLen)
		if f.proto == protoTCP && p.flags&flagRST == 0 {
			// the state machine may have flipped the roles
			isOrig = p.src == f.orig && p.sport == f.origPort
			s.tcpApp(f, isOrig, p.ts, p.seq, p.flags&flagSYN != 0, p)
		}
	case protoUDP:
		f.checkHistory(isOrig, histData, 'D')
		s.udpApp(f, isOrig, p.ts, p.payload)
	}
	s.tab.touch(f, flowClass(f))
}

func (s *Summarizer) newFlow(k flowKey, p *packet, sport, dport uint16) *flow {
	if len(s.tab.flows) >= s.cfg.MaxFlows {
		if o := s.tab.oldest(); o != nil {
			s.tab.evicted++
			if s.tab.evicted == 1 || s.tab.evicted%10000 == 0 {
				s.cfg.Logger.WithField("evicted", s.tab.evicted).WithField("max_flows", s.cfg.MaxFlows).
					Warn("flow table full: reporting and evicting the least recently active flows; raise the flow cap or narrow the capture filter")
			}
			s.end(o)
		}
	}
	f := &flow{v6: p.v6, proto: p.proto, orig: p.src, resp: p.dst, origPort: sport, respPort: dport,
		start: p.ts, last: p.ts, reported: p.ts}
	if p.proto == protoICMP || p.proto == protoICMPv6 {
		f.icmpType, f.icmpCode = uint8(p.sport), uint8(p.dport)
	}
	flip := false
	switch p.proto {
	case protoTCP:
		if p.flags&flagSYN == 0 || p.flags&flagACK != 0 {
			if likelyServer(sport) {
				if likelyServer(dport) {
					flip = p.flags&flagSYN == 0 && sport < dport
				} else {
					flip = true
				}
			}
		}
	case protoUDP:
		flip = likelyServer(sport) && !likelyServer(dport)
	}
	if flip {
		f.orig, f.resp, f.origPort, f.respPort = f.resp, f.orig, f.respPort, f.origPort
		f.appendHistory('^')
	}
	f.class = flowClass(f)
	s.tab.add(f, k)
	s.stats.Flows++
	return f
}
