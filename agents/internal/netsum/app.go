package netsum

import (
	"errors"
	"strings"

	"github.com/csirt-toscana/platform/agents/internal/netsum/l7"
)

// Application protocols recognised by the l7 decoders.
const (
	appUnknown uint8 = iota
	appNone          // looked at, not one we decode
	appDNS
	appHTTP
	appTLS
)

// Limits of the per-flow application state.
const (
	// DefaultStreamBuffer bounds the bytes buffered per flow direction
	// for the l7 decoders (unparsed bytes only: parsed heads are dropped).
	DefaultStreamBuffer = 4096
	maxPendingTx        = 16 // DNS queries or HTTP requests awaiting an answer
	maxUDPPayload       = 4096
)

// errNoProgress guards the decoding loops against a decoder that
// consumes nothing.
var errNoProgress = errors.New("decoder made no progress")

// stream is one direction of a TCP connection as the l7 decoders see it:
// in-order bytes from the stream start, bounded.
type stream struct {
	buf  []byte
	next uint32 // next expected relative sequence number (1 = first byte)
	skip int64  // body bytes to skip before the next HTTP head
	done bool   // nothing more to decode in this direction
}

type dnsTx struct {
	ts  int64
	msg l7.DNSMessage
}

type httpTx struct {
	ts  int64
	req l7.HTTPRequest
}

// appState is the l7 state of a flow.
type appState struct {
	orig, resp stream
	proto      uint8
	dns        []dnsTx
	http       []httpTx
	tls        *tlsTx
	ok         bool // a decoder succeeded: the service is confirmed
}

type tlsTx struct {
	ts       int64
	hello    l7.ClientHello
	server   l7.ServerHello
	haveSH   bool
	reported bool
}

func (a *appState) flip() {
	a.orig, a.resp = a.resp, a.orig
}

// dnsPorts are the UDP ports on which payloads are decoded as DNS (DNS,
// NetBIOS name service, mDNS, LLMNR), as Zeek's DNS analyzer does.
func dnsPort(p uint16) bool { return p == 53 || p == 137 || p == 5353 || p == 5355 }

// udpApp decodes one UDP datagram.
func (s *Summarizer) udpApp(f *flow, isOrig bool, ts int64, payload []byte) {
	if len(payload) == 0 || len(payload) > maxUDPPayload {
		return
	}
	if !dnsPort(f.origPort) && !dnsPort(f.respPort) {
		return
	}
	msg, err := l7.ParseDNS(payload)
	if err != nil {
		return
	}
	a := s.appOf(f)
	a.proto, a.ok = appDNS, true
	if msg.Response && isOrig && f.respPkts == 0 && f.origPkts == 1 && !toAddr(f.resp, f.v6).IsMulticast() {
		// The first message is a response: its sender is the server
		// (Zeek flips such connections too, unless sent to a group).
		f.flip()
	}
	if f.origPort == 137 || f.respPort == 137 {
		netbiosNames(&msg)
	}
	s.dnsMessage(f, a, ts, msg)
}

func (s *Summarizer) appOf(f *flow) *appState {
	if f.app == nil {
		f.app = &appState{orig: stream{next: 1}, resp: stream{next: 1}}
	}
	return f.app
}

// dnsMessage pairs queries and responses by transaction id.
func (s *Summarizer) dnsMessage(f *flow, a *appState, ts int64, msg l7.DNSMessage) {
	if !msg.Response {
		if len(a.dns) >= maxPendingTx {
			s.emitDNS(f, a.dns[0].ts, &a.dns[0].msg, nil)
			a.dns = a.dns[1:]
		}
		a.dns = append(a.dns, dnsTx{ts: ts, msg: msg})
		return
	}
	for i := range a.dns {
		if a.dns[i].msg.ID == msg.ID {
			q := a.dns[i]
			a.dns = append(a.dns[:i], a.dns[i+1:]...)
			s.emitDNS(f, q.ts, &q.msg, &msg)
			return
		}
	}
	s.emitDNS(f, ts, nil, &msg)
}

// netbiosNames decodes NetBIOS first-level encoded names (RFC 1001: each
// byte as two letters 'A'+nibble) into their 15-character name, without
// the type suffix and trailing spaces, as Zeek logs them.
func netbiosNames(m *l7.DNSMessage) {
	for i := range m.Questions {
		m.Questions[i].Name = netbiosName(m.Questions[i].Name)
	}
	for i := range m.Answers {
		m.Answers[i].Name = netbiosName(m.Answers[i].Name)
	}
}

func netbiosName(s string) string {
	label, rest, _ := strings.Cut(s, ".")
	if len(label) != 32 {
		return s
	}
	var b [16]byte
	for i := range 16 {
		hi, lo := lower(label[2*i])-'a', lower(label[2*i+1])-'a'
		if hi > 15 || lo > 15 {
			return s
		}
		b[i] = hi<<4 | lo
	}
	name := strings.TrimRight(string(b[:15]), " ")
	for _, c := range []byte(name) {
		if c < 0x20 || c > 0x7e {
			return s
		}
	}
	if rest != "" {
		return name + "." + rest
	}
	return name
}

// tcpApp feeds one TCP segment's payload to the flow's streams.
func (s *Summarizer) tcpApp(f *flow, isOrig bool, ts int64, seq uint32, syn bool, p *packet) {
	if !f.origSYN || p.payloadLen == 0 {
		return // partial connection: the stream start is unknown (Zeek does not analyse it either)
	}
	a := f.app
	if a == nil {
		a = s.appOf(f)
	}
	if a.proto == appNone {
		return
	}
	st, ep := &a.resp, &f.tcp.resp
	if isOrig {
		st, ep = &a.orig, &f.tcp.orig
	}
	if st.done {
		return
	}
	rel := seq - ep.startSeq
	if syn {
		rel++
	}
	data := p.payload
	switch d := seqDelta(rel, st.next); {
	case d > 0: // a gap: the rest of this direction cannot be decoded
		s.streamDone(st)
		return
	case d < 0: // retransmission overlapping what we have
		if int(-d) >= len(data) {
			return
		}
		data = data[-d:]
	}
	truncated := len(p.payload) < p.payloadLen
	st.next += uint32(len(data)) //nolint:gosec // bounded by the snap length
	if st.skip > 0 {
		n := min(st.skip, int64(len(data)))
		st.skip -= n
		data = data[n:]
	}
	if len(data) > 0 {
		room := s.cfg.StreamBuffer - len(st.buf)
		if room <= 0 || s.bufBytes+int64(len(data)) > s.cfg.BufferBudget {
			s.bufferFull++
			s.streamDone(st)
			return
		}
		if len(data) > room {
			data = data[:room]
			truncated = true
		}
		if st.buf == nil {
			st.buf = make([]byte, 0, min(s.cfg.StreamBuffer, (len(data)+63)&^63))
			s.bufBytes += int64(cap(st.buf))
		}
		old := cap(st.buf)
		st.buf = append(st.buf, data...)
		s.bufBytes += int64(cap(st.buf) - old)
	}
	s.decodeStreams(f, a, isOrig, ts)
	if truncated && !st.done {
		s.streamDone(st) // bytes after the snap length are lost
	}
	s.releaseEmpty(&a.orig)
	s.releaseEmpty(&a.resp)
}

// releaseEmpty frees a stream buffer that holds nothing: most flows are
// idle between messages, and their memory is what bounds the table.
func (s *Summarizer) releaseEmpty(st *stream) {
	if st.buf != nil && len(st.buf) == 0 {
		s.bufBytes -= int64(cap(st.buf))
		st.buf = nil
	}
}

func (s *Summarizer) streamDone(st *stream) {
	st.done = true
	s.bufBytes -= int64(cap(st.buf))
	st.buf = nil
}

// consume drops n parsed bytes from the stream buffer.
func consume(st *stream, n int) {
	st.buf = st.buf[:copy(st.buf, st.buf[n:])]
}

func (s *Summarizer) decodeStreams(f *flow, a *appState, isOrig bool, ts int64) {
	if a.proto == appUnknown {
		b := a.orig.buf
		switch {
		case len(b) == 0:
			if !a.resp.done && len(a.resp.buf) >= s.cfg.StreamBuffer {
				s.stopApp(a)
			}
			return // wait for the client to speak
		case l7.LooksLikeTLS(b):
			a.proto = appTLS
		case l7.LooksLikeHTTPRequest(b):
			a.proto = appHTTP
		case (f.respPort == 53 || f.origPort == 53) && len(b) >= 2:
			a.proto = appDNS
		case len(b) >= 8:
			s.stopApp(a)
			return
		default:
			return
		}
	}
	switch a.proto {
	case appTLS:
		s.decodeTLS(f, a, ts)
	case appHTTP:
		s.decodeHTTP(f, a, ts)
	case appDNS:
		s.decodeTCPDNS(f, a, ts, &a.orig)
		s.decodeTCPDNS(f, a, ts, &a.resp)
	}
}

func (s *Summarizer) stopApp(a *appState) {
	a.proto = appNone
	if !a.orig.done {
		s.streamDone(&a.orig)
	}
	if !a.resp.done {
		s.streamDone(&a.resp)
	}
}

func (s *Summarizer) decodeTLS(f *flow, a *appState, ts int64) {
	if !a.orig.done && len(a.orig.buf) > 0 {
		h, err := l7.ParseClientHello(a.orig.buf)
		switch {
		case err == nil:
			a.tls = &tlsTx{ts: ts, hello: h}
			a.ok = true
			s.streamDone(&a.orig)
		case errors.Is(err, l7.ErrIncomplete) && len(a.orig.buf) < s.cfg.StreamBuffer:
		default:
			s.stopApp(a)
			return
		}
	}
	if a.tls != nil && !a.resp.done && len(a.resp.buf) > 0 {
		sh, err := l7.ParseServerHello(a.resp.buf)
		switch {
		case err == nil:
			a.tls.server, a.tls.haveSH = sh, true
			s.streamDone(&a.resp)
		case errors.Is(err, l7.ErrIncomplete) && len(a.resp.buf) < s.cfg.StreamBuffer:
		default:
			s.streamDone(&a.resp)
		}
	}
	if a.tls != nil && !a.tls.reported && (a.tls.haveSH || a.resp.done) {
		a.tls.reported = true
		s.emitTLS(f, a.tls)
	}
}

func (s *Summarizer) decodeHTTP(f *flow, a *appState, ts int64) {
	st := &a.orig
	for !st.done && len(st.buf) > 0 {
		req, n, err := l7.ParseHTTPRequest(st.buf)
		if err == nil && (n <= 0 || n > len(st.buf)) {
			err = errNoProgress
		}
		if err != nil {
			if !errors.Is(err, l7.ErrIncomplete) || len(st.buf) >= s.cfg.StreamBuffer {
				s.streamDone(st)
			}
			break
		}
		a.ok = true
		if len(a.http) >= maxPendingTx {
			s.emitHTTP(f, a.http[0].ts, &a.http[0].req, nil)
			a.http = a.http[1:]
		}
		a.http = append(a.http, httpTx{ts: ts, req: req})
		consume(st, n)
		if req.Chunked {
			s.streamDone(st)
			break
		}
		s.skipBody(st, req.ContentLength)
	}
	st = &a.resp
	for !st.done && len(st.buf) > 0 {
		resp, n, err := l7.ParseHTTPResponse(st.buf)
		if err == nil && (n <= 0 || n > len(st.buf)) {
			err = errNoProgress
		}
		if err != nil {
			if !errors.Is(err, l7.ErrIncomplete) || len(st.buf) >= s.cfg.StreamBuffer {
				s.streamDone(st)
			}
			break
		}
		consume(st, n)
		if resp.StatusCode >= 100 && resp.StatusCode < 200 {
			continue // interim response: the final one follows
		}
		head := false
		if len(a.http) > 0 {
			tx := a.http[0]
			a.http = a.http[1:]
			head = tx.req.Method == "HEAD"
			s.emitHTTP(f, tx.ts, &tx.req, &resp)
		} else {
			s.emitHTTP(f, ts, nil, &resp)
		}
		switch {
		case head || resp.StatusCode == 204 || resp.StatusCode == 304:
		case resp.Chunked || resp.ContentLength < 0:
			s.streamDone(st) // body framed by chunks or by the close: stop here
		default:
			s.skipBody(st, resp.ContentLength)
		}
	}
}

// skipBody drops a body of n bytes: what is buffered now, and the rest as
// it arrives.
func (s *Summarizer) skipBody(st *stream, n int64) {
	if n <= 0 {
		return
	}
	k := min(n, int64(len(st.buf)))
	consume(st, int(k))
	st.skip = n - k
}

func (s *Summarizer) decodeTCPDNS(f *flow, a *appState, ts int64, st *stream) {
	for !st.done && len(st.buf) >= 2 {
		msg, rest, ok := l7.NextTCPDNS(st.buf)
		if !ok {
			if len(st.buf) >= s.cfg.StreamBuffer {
				s.streamDone(st)
			}
			return
		}
		if len(rest) >= len(st.buf) {
			s.streamDone(st)
			return
		}
		m, err := l7.ParseDNS(msg)
		if err != nil {
			s.streamDone(st)
			if !a.ok {
				s.stopApp(a)
			}
			return
		}
		a.ok = true
		consume(st, len(st.buf)-len(rest))
		s.dnsMessage(f, a, ts, m)
	}
}

// finishApp reports what is still pending when a flow ends.
func (s *Summarizer) finishApp(f *flow) {
	a := f.app
	if a == nil {
		return
	}
	for i := range a.dns {
		s.emitDNS(f, a.dns[i].ts, &a.dns[i].msg, nil)
	}
	for i := range a.http {
		s.emitHTTP(f, a.http[i].ts, &a.http[i].req, nil)
	}
	if a.tls != nil && !a.tls.reported {
		a.tls.reported = true
		s.emitTLS(f, a.tls)
	}
	if !a.orig.done {
		s.streamDone(&a.orig)
	}
	if !a.resp.done {
		s.streamDone(&a.resp)
	}
	a.dns, a.http = nil, nil
}

// service is the flow's application protocol, when a decoder confirmed it.
func (f *flow) service() string {
	if f.app == nil || !f.app.ok {
		return ""
	}
	switch f.app.proto {
	case appDNS:
		return "dns"
	case appHTTP:
		return "http"
	case appTLS:
		return "tls"
	}
	return ""
}

// tlsVersionName renders a TLS version number as ECS's tls.version ("1.2").
func tlsVersionName(v uint16) (proto, version string) {
	switch v {
	case 0x0300:
		return "ssl", "3.0"
	case 0x0301:
		return "tls", "1.0"
	case 0x0302:
		return "tls", "1.1"
	case 0x0303:
		return "tls", "1.2"
	case 0x0304:
		return "tls", "1.3"
	}
	if v>>8 == 0x7f { // TLS 1.3 drafts
		return "tls", "1.3"
	}
	return "", ""
}

// splitURI separates path and query of a request target.
func splitURI(uri string) (path, query string) {
	if i := strings.IndexByte(uri, '?'); i >= 0 {
		return uri[:i], uri[i+1:]
	}
	return uri, ""
}
