package netsum

import (
	"strconv"
	"strings"
	"time"

	"github.com/csirt-toscana/platform/agents/internal/netsum/l7"
	"github.com/csirt-toscana/platform/internal/event"
)

// Custom (non-ECS) fields of flow summaries; see docs/network-summaries.md.
const (
	FieldConnState   = "connection.state"      // Zeek's conn_state (S0, SF, REJ, ...)
	FieldHistory     = "connection.history"    // Zeek's history string
	FieldOrigPayload = "connection.orig_bytes" // originator payload bytes (Zeek's orig_bytes)
	FieldRespPayload = "connection.resp_bytes" // responder payload bytes (Zeek's resp_bytes)
)

func transportName(p uint8) string {
	switch p {
	case protoTCP:
		return "tcp"
	case protoUDP:
		return "udp"
	case protoICMP:
		return "icmp"
	case protoICMPv6:
		return "ipv6-icmp"
	case protoSCTP:
		return "sctp"
	}
	return strconv.Itoa(int(p))
}

// base fills the fields every summary of a flow carries: the endpoints,
// transport and Community ID.
func (s *Summarizer) base(f *flow, dataset string, ts int64) event.Event {
	e := make(event.Event, 32) // sized for a flow event: no rehash while filling
	e["@timestamp"] = time.Unix(0, ts).UTC()
	e["event.kind"] = "event"
	e["event.module"] = "network"
	e["event.dataset"] = dataset
	e["network.transport"] = transportName(f.proto)
	if f.v6 {
		e["network.type"] = "ipv6"
	} else {
		e["network.type"] = "ipv4"
	}
	src, dst := toAddr(f.orig, f.v6), toAddr(f.resp, f.v6)
	cidSrc, cidDst := src, dst
	srcShown, sh1 := s.cfg.Privacy.shown(src)
	dstShown, sh2 := s.cfg.Privacy.shown(dst)
	if sh1 || sh2 {
		// The Community ID of pseudonymised flows is computed over the
		// pseudonyms: over the real addresses it could be brute-forced
		// back to the internal address.
		cidSrc, cidDst = srcShown, dstShown
		e["tags"] = []string{"pseudonymised"}
	}
	e["source.ip"] = srcShown.String()
	e["destination.ip"] = dstShown.String()
	sp, dp := f.origPort, f.respPort
	switch f.proto {
	case protoICMP, protoICMPv6:
		e["icmp.type"] = int64(f.icmpType)
		e["icmp.code"] = int64(f.icmpCode)
		sp, dp = uint16(f.icmpType), uint16(f.icmpCode)
	case protoTCP, protoUDP, protoSCTP:
		e["source.port"] = int64(f.origPort)
		e["destination.port"] = int64(f.respPort)
	}
	if f.cid == "" {
		f.cid = communityIDAddrs(cidSrc, cidDst, f.proto, sp, dp)
	}
	e["network.community_id"] = f.cid
	if svc := f.service(); svc != "" {
		e["network.protocol"] = svc
	}
	return e
}

func communityIDAddrs(src, dst interface{ AsSlice() []byte }, proto uint8, sp, dp uint16) string {
	return CommunityID(src.AsSlice(), dst.AsSlice(), proto, sp, dp)
}

func (s *Summarizer) emit(e event.Event) {
	s.stats.Summaries++
	s.cfg.Emit(e)
}

// emitFlow reports a flow: at its end, or while active (final=false).
func (s *Summarizer) emitFlow(f *flow, final bool) {
	e := s.base(f, "flow", f.start)
	e["event.category"] = []string{"network"}
	if final {
		e["event.type"] = []string{"connection", "end"}
	} else {
		e["event.type"] = []string{"connection", "info"}
	}
	e["event.start"] = time.Unix(0, f.start).UTC()
	e["event.end"] = time.Unix(0, f.last).UTC()
	e["event.duration"] = f.last - f.start
	e["source.packets"] = int64(f.origPkts)                //nolint:gosec // counters stay far below 2^63
	e["destination.packets"] = int64(f.respPkts)           //nolint:gosec // idem
	e["source.bytes"] = int64(f.origIPBytes)               //nolint:gosec // idem
	e["destination.bytes"] = int64(f.respIPBy)             //nolint:gosec // idem
	e["network.packets"] = int64(f.origPkts + f.respPkts)  //nolint:gosec // idem
	e["network.bytes"] = int64(f.origIPBytes + f.respIPBy) //nolint:gosec // idem
	ob, rb := f.payloadBytes()
	e[FieldOrigPayload] = int64(ob) //nolint:gosec // idem
	e[FieldRespPayload] = int64(rb) //nolint:gosec // idem
	e[FieldConnState] = f.connState()
	if h := f.History(); h != "" {
		e[FieldHistory] = h
	}
	s.emit(e)
}

// payloadBytes are Zeek's orig_bytes and resp_bytes: from sequence
// numbers for TCP, payload lengths otherwise.
func (f *flow) payloadBytes() (orig, resp uint64) {
	if f.proto == protoTCP {
		return f.tcp.orig.size(&f.tcp.resp), f.tcp.resp.size(&f.tcp.orig)
	}
	return f.origPayload, f.respPaylo
}

func (s *Summarizer) emitDNS(f *flow, ts int64, q, r *l7.DNSMessage) {
	e := s.base(f, "dns", ts)
	e["event.category"] = []string{"network"}
	e["event.type"] = []string{"protocol", "info"}
	m := q
	if m == nil {
		m = r
	}
	e["dns.id"] = strconv.Itoa(int(m.ID))
	if len(m.Questions) > 0 {
		e["dns.question.name"] = m.Questions[0].Name
		e["dns.question.type"] = l7.DNSTypeName(m.Questions[0].Type)
	} else if r != nil && len(r.Answers) > 0 {
		// An unsolicited response (mDNS): the name it answers for.
		e["dns.question.name"] = r.Answers[0].Name
	}
	e["dns.op_code"] = opcodeName(m.Opcode)
	if r == nil {
		e["dns.type"] = "query"
	} else {
		e["dns.type"] = "answer"
		e["dns.response_code"] = l7.DNSRCodeName(r.RCode)
		if len(r.Answers) > 0 {
			data := make([]string, 0, len(r.Answers))
			names := make([]string, 0, len(r.Answers))
			types := make([]string, 0, len(r.Answers))
			for _, a := range r.Answers {
				data = append(data, a.Data)
				names = append(names, a.Name)
				types = append(types, l7.DNSTypeName(a.Type))
			}
			e["dns.answers.data"] = data
			e["dns.answers.name"] = names
			e["dns.answers.type"] = types
		}
	}
	s.emit(e)
}

func opcodeName(op int) string {
	switch op {
	case 0:
		return "QUERY"
	case 1:
		return "IQUERY"
	case 2:
		return "STATUS"
	case 4:
		return "NOTIFY"
	case 5:
		return "UPDATE"
	}
	return strconv.Itoa(op)
}

func (s *Summarizer) emitTLS(f *flow, t *tlsTx) {
	e := s.base(f, "tls", t.ts)
	e["event.category"] = []string{"network"}
	e["event.type"] = []string{"protocol", "info"}
	h := &t.hello
	if h.SNI != "" {
		e["tls.client.server_name"] = h.SNI
		e["destination.domain"] = h.SNI
	}
	full, md5 := h.JA3()
	_ = full
	e["tls.client.ja3"] = md5
	e["tls.client.ja4"] = h.JA4()
	if len(h.ALPN) > 0 {
		e["tls.client.alpn"] = append([]string(nil), h.ALPN...)
	}
	if t.haveSH {
		if proto, v := tlsVersionName(t.server.NegotiatedVersion()); v != "" {
			e["tls.version_protocol"] = proto
			e["tls.version"] = v
		}
	}
	s.emit(e)
}

func (s *Summarizer) emitHTTP(f *flow, ts int64, req *l7.HTTPRequest, resp *l7.HTTPResponse) {
	e := s.base(f, "http", ts)
	e["event.category"] = []string{"network", "web"}
	e["event.type"] = []string{"protocol", "access"}
	if req != nil {
		e["http.request.method"] = req.Method
		e["url.original"] = req.URI
		path, query := splitURI(req.URI)
		e["url.path"] = path
		if query != "" {
			e["url.query"] = query
		}
		if host, port := splitHost(req.Host); host != "" {
			e["url.domain"] = host
			e["destination.domain"] = host
			if port > 0 {
				e["url.port"] = int64(port)
			}
		}
		if req.UserAgent != "" {
			e["user_agent.original"] = req.UserAgent
		}
		if req.Version != "" {
			e["http.version"] = req.Version
		}
	}
	if resp != nil {
		e["http.response.status_code"] = int64(resp.StatusCode)
		if req == nil && resp.Version != "" {
			e["http.version"] = resp.Version
		}
	}
	s.emit(e)
}

// splitHost separates a Host header's name and port ("[::1]:8080",
// "example.org:8080", "example.org").
func splitHost(h string) (string, int) {
	host, port := h, ""
	if strings.HasPrefix(h, "[") {
		if i := strings.Index(h, "]"); i > 0 {
			host = h[1:i]
			port = strings.TrimPrefix(h[i+1:], ":")
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 && strings.Count(h, ":") == 1 {
		host, port = h[:i], h[i+1:]
	}
	if port == "" {
		return host, 0
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return h, 0
	}
	return host, n
}
