package netsum

// TCP endpoint states, as Zeek's TCP analyzer names them. The connection
// state of a flow record (connState) is computed from the two endpoints'
// states, the same way Zeek computes conn.log's conn_state, so that the
// two agree on the same traffic.
const (
	tcpInactive uint8 = iota
	tcpSynSent
	tcpSynAckSent
	tcpPartial
	tcpEstablished
	tcpClosed
	tcpReset
)

// tooLargeSeqDelta bounds sequence jumps trusted on SYN and RST packets.
const tooLargeSeqDelta = 1 << 20

// History bits (one per endpoint and kind of event; the responder's are
// shifted by 16) so that each letter is added once, as Zeek does.
const (
	histSYN   = 1 << 0
	histFIN   = 1 << 1
	histRST   = 1 << 2
	histFINRS = 1 << 3
	histMulti = 1 << 4
	histData  = 1 << 5
	histACK   = 1 << 6
)

// tcpEndpoint is the sequence-space and state tracking of one side of a
// TCP connection.
type tcpEndpoint struct {
	state, prevState  uint8
	startSeq, lastSeq uint32
	ackSeq            uint32
	finCnt            uint32
	histLastSYN       int32 // relative sequence numbers
	histLastFIN       int32
	histLastRST       int32
	rxmtCnt, rxmtNext uint32
	didClose          bool
}

func seqDelta(a, b uint32) int32 { return int32(a - b) } //nolint:gosec // modular sequence arithmetic

func (e *tcpEndpoint) setState(s uint8) {
	if s != e.state {
		e.prevState = e.state
		e.state = s
	}
}

// size is the endpoint's payload size from sequence numbers (Zeek's
// orig_bytes/resp_bytes): what it sent or what was acknowledged,
// whichever is further, less the SYN and FIN octets.
func (e *tcpEndpoint) size(peer *tcpEndpoint) uint64 {
	if e.prevState == tcpSynSent && e.state == tcpReset && peer.state == tcpInactive &&
		e.ackSeq != e.startSeq && e.ackSeq != e.startSeq+1 {
		return 0
	}
	d := max(seqDelta(e.lastSeq, e.startSeq), seqDelta(e.ackSeq, e.startSeq))
	if d <= 0 {
		return 0
	}
	size := uint64(d)
	size--
	if e.finCnt > 0 && size != 0 {
		size--
	}
	return size
}

// tcpConn is the TCP state of a flow.
type tcpConn struct {
	orig, resp tcpEndpoint
}

// process updates the connection with one segment. f is the flow (for
// its history), isOrig the direction, length the payload length.
func (f *flow) tcpProcess(isOrig bool, flags uint8, seq, ack uint32, length int) {
	c := &f.tcp
	ep, peer := &c.resp, &c.orig
	if isOrig {
		ep, peer = &c.orig, &c.resp
	}
	syn, fin, rst, ackf := flags&flagSYN != 0, flags&flagFIN != 0, flags&flagRST != 0, flags&flagACK != 0

	segLen := length
	if syn {
		segLen++
	}
	if fin {
		segLen++
	}
	if rst {
		segLen -= length
	}
	onePast := seq + uint32(segLen) //nolint:gosec // modular sequence arithmetic

	// Initialise the endpoint's sequence space.
	reinit := func() { ep.startSeq, ep.ackSeq, ep.lastSeq = seq, seq, onePast }
	switch ep.state {
	case tcpInactive:
		if syn {
			reinit()
		} else {
			ep.startSeq, ep.ackSeq, ep.lastSeq = seq-1, seq-1, seq
		}
	case tcpSynSent, tcpSynAckSent:
		if syn && seq != ep.startSeq {
			reinit()
		}
	case tcpEstablished, tcpPartial:
		if syn {
			reinit()
		}
	case tcpReset:
		if syn && ep.prevState == tcpInactive {
			reinit()
		}
	}
	relSeq := seqDelta(seq, ep.startSeq)
	f.tcpHistory(isOrig, ep, syn, fin, rst, ackf, relSeq, length)

	if fin {
		ep.finCnt++
	}
	if ackf {
		if peer.state == tcpInactive {
			peer.startSeq, peer.ackSeq, peer.lastSeq = ack-1, ack-1, ack-1
		} else if !rst {
			d := seqDelta(ack, peer.ackSeq)
			if (ack != 0 || d <= tooLargeSeqDelta) && d > 0 {
				peer.ackSeq = ack
			}
		}
	}

	// Track the last sequence number sent.
	deltaLast := seqDelta(onePast, ep.lastSeq)
	switch {
	case (syn || rst) && (deltaLast > tooLargeSeqDelta || deltaLast < -tooLargeSeqDelta):
	case fin && ep.lastSeq == ep.startSeq+1:
		ep.lastSeq = onePast
	case ep.state == tcpReset:
	case deltaLast > 0:
		ep.lastSeq = onePast
	case length > 0:
		f.retransmit(isOrig, ep)
	}

	f.tcpStateMachine(isOrig, ep, peer, syn, fin, rst, ackf, seq, length)
}

func (f *flow) retransmit(isOrig bool, ep *tcpEndpoint) {
	ep.rxmtCnt++
	if ep.rxmtNext == 0 {
		ep.rxmtNext = 1
	}
	if ep.rxmtCnt >= ep.rxmtNext {
		f.addHistory(isOrig, 'T')
		ep.rxmtNext *= 10
	}
}

func (f *flow) tcpHistory(isOrig bool, ep *tcpEndpoint, syn, fin, rst, ackf bool, relSeq int32, length int) {
	bits := 0
	for _, b := range []bool{syn, fin, rst} {
		if b {
			bits++
		}
	}
	switch {
	case bits > 1:
		if fin && rst {
			f.checkHistory(isOrig, histFINRS, 'I')
		} else {
			f.checkHistory(isOrig, histMulti, 'Q')
		}
	case bits == 1:
		if syn {
			code := byte('S')
			if ackf {
				code = 'H'
			}
			if f.checkHistory(isOrig, histSYN, code) && relSeq != ep.histLastSYN {
				f.addHistory(isOrig, code)
			}
			ep.histLastSYN = relSeq
		}
		if fin {
			end := relSeq + int32(length) //nolint:gosec // modular sequence arithmetic
			if f.checkHistory(isOrig, histFIN, 'F') && end != ep.histLastFIN {
				f.addHistory(isOrig, 'F')
			}
			ep.histLastFIN = end
		}
		if rst {
			if f.checkHistory(isOrig, histRST, 'R') && relSeq != ep.histLastRST {
				f.addHistory(isOrig, 'R')
			}
			ep.histLastRST = relSeq
		}
	default:
		if length > 0 {
			f.checkHistory(isOrig, histData, 'D')
		} else if ackf {
			f.checkHistory(isOrig, histACK, 'A')
		}
	}
}

func (f *flow) tcpStateMachine(isOrig bool, ep, peer *tcpEndpoint, syn, fin, rst, ackf bool, seq uint32, length int) {
	closeConn := false
	switch ep.state {
	case tcpInactive:
		if syn {
			if isOrig {
				if ackf {
					ep.setState(tcpSynAckSent)
				} else {
					ep.setState(tcpSynSent)
				}
			} else {
				if !ackf && peer.state == tcpSynAckSent && seq == ep.startSeq {
					// A SYN answering a SYN-ACK: the roles were reversed.
					f.flip()
					ep, peer = peer, ep
					isOrig = !isOrig
					peer.setState(tcpEstablished)
				}
				if peer.state == tcpSynSent {
					peer.setState(tcpEstablished)
				}
				ep.setState(tcpEstablished)
			}
		}
		if fin {
			ep.setState(tcpClosed)
			closeConn = true
		}
		if rst {
			ep.setState(tcpReset)
			closeConn = true
		}
		if ep.state == tcpInactive {
			switch {
			case !isOrig && length == 0 && f.tcp.orig.state == tcpSynSent:
				// an ACK of the SYN before the SYN-ACK: not a partial connection
			case ackf && peer.state == tcpEstablished:
				ep.setState(tcpEstablished)
			default:
				ep.setState(tcpPartial)
			}
		}
	case tcpSynSent, tcpSynAckSent:
		if fin {
			ep.setState(tcpClosed)
			closeConn = true
		}
		if rst {
			ep.setState(tcpReset)
			closeConn = true
		}
	case tcpEstablished, tcpPartial:
		if syn && ep.state == tcpPartial && peer.state == tcpInactive && !ackf {
			ep.setState(tcpSynSent)
		}
		if fin && !rst {
			ep.setState(tcpClosed)
			if peer.state == tcpReset && peer.prevState == tcpClosed {
				peer.setState(tcpClosed)
			}
			closeConn = true
		}
		if rst {
			ep.setState(tcpReset)
			closeConn = true
		}
	case tcpClosed:
		if rst && peer.state != tcpClosed {
			ep.setState(tcpReset)
			if !ep.didClose {
				closeConn = true
			}
		}
	case tcpReset:
	}
	if closeConn && !ep.didClose {
		ep.didClose = true
		if ep.state == tcpReset || peer.didClose || peer.state == tcpInactive {
			f.closed = true
		}
	}
}

// connState is Zeek's conn_state for the flow.
func (f *flow) connState() string {
	switch f.proto {
	case protoTCP:
	case protoUDP:
		o, r := f.origPkts > 0, f.respPkts > 0
		switch {
		case o && r:
			return "SF"
		case o:
			return "S0"
		case r:
			return "SHR"
		}
		return "OTH"
	default:
		return "OTH"
	}
	os, rs := f.tcp.orig.state, f.tcp.resp.state
	oInactive := os == tcpInactive || os == tcpPartial
	rInactive := rs == tcpInactive || rs == tcpPartial
	switch {
	case rs == tcpReset:
		if os == tcpSynSent || os == tcpSynAckSent ||
			(os == tcpReset && f.tcp.orig.size(&f.tcp.resp) == 0 && f.tcp.resp.size(&f.tcp.orig) == 0) {
			return "REJ"
		}
		if oInactive {
			return "RSTRH"
		}
		return "RSTR"
	case os == tcpReset:
		if rInactive {
			if rstos0(f.History()) {
				return "RSTOS0"
			}
			return "OTH"
		}
		return "RSTO"
	case rs == tcpClosed && os == tcpClosed:
		return "SF"
	case os == tcpClosed:
		if rInactive {
			return "SH"
		}
		return "S2"
	case rs == tcpClosed:
		if oInactive {
			return "SHR"
		}
		return "S3"
	case os == tcpSynSent && rs == tcpInactive:
		return "S0"
	case os == tcpEstablished && rs == tcpEstablished:
		return "S1"
	}
	return "OTH"
}

// rstos0 matches Zeek's /^?S[^HAFGIQ]*R.*/ on the history: the originator
// sent a SYN and then a RST without seeing anything from the responder.
func rstos0(h string) bool {
	if len(h) > 0 && h[0] == '^' {
		h = h[1:]
	}
	if len(h) == 0 || h[0] != 'S' {
		return false
	}
	for i := 1; i < len(h); i++ {
		switch h[i] {
		case 'R':
			return true
		case 'H', 'A', 'F', 'G', 'I', 'Q':
			return false
		}
	}
	return false
}
