package parse

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
)

// Suricata parses Suricata's EVE JSON: alert, dns, flow, http and tls
// records (common 5-tuple and community id for every type).
type Suricata struct{ opts *Options }

var _ lineParser = (*Suricata)(nil)

func (*Suricata) Name() string { return "suricata" }

func (p *Suricata) Parse(rec Record) (event.Event, error) { return runLine(p, rec, p.opts) }

type eve map[string]any

func (e eve) str(path ...string) string {
	var cur any = map[string]any(e)
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = m[p]
	}
	switch v := cur.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		return strconv.FormatBool(v)
	}
	return ""
}

func (e eve) num(path ...string) (int64, bool) {
	return atoi(e.str(path...))
}

func (p *Suricata) parseLine(in *input) (event.Event, error) {
	line := strings.TrimSpace(in.line)
	if !strings.HasPrefix(line, "{") {
		// EVE through syslog: "suricata[1]: {...}"
		if !splitSyslog(in) || !strings.HasPrefix(strings.TrimSpace(in.msg), "{") {
			return nil, ErrNoMatch
		}
		line = strings.TrimSpace(in.msg)
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(line)))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, ErrNoMatch
	}
	e := eve(m)
	typ := e.str("event_type")
	if typ == "" {
		return nil, ErrNoMatch
	}
	ev := in.base(p.Name())
	delete(ev, "message")
	ev["event.module"] = "suricata"
	ev["event.provider"] = "suricata"
	if t, err := time.Parse("2006-01-02T15:04:05.999999999-0700", e.str("timestamp")); err == nil {
		ev["@timestamp"] = t.UTC()
	} else if t, err := time.Parse(time.RFC3339Nano, e.str("timestamp")); err == nil {
		ev["@timestamp"] = t.UTC()
	}
	setIP(ev, "source.ip", "", e.str("src_ip"))
	setInt(ev, "source.port", e.str("src_port"))
	setIP(ev, "destination.ip", "", e.str("dest_ip"))
	setInt(ev, "destination.port", e.str("dest_port"))
	if pr := e.str("proto"); pr != "" {
		ev["network.transport"] = strings.ToLower(pr)
	}
	set(ev, "network.community_id", e.str("community_id"))
	set(ev, "network.protocol", strings.ToLower(e.str("app_proto")))
	set(ev, "observer.ingress.interface.name", e.str("in_iface"))
	if h := e.str("host"); h != "" {
		set(ev, "observer.name", h)
	}
	ev["event.code"] = typ
	switch typ {
	case "alert":
		typ := []string{"info"}
		switch e.str("alert", "action") {
		case "allowed":
			typ = []string{"allowed"}
		case "blocked":
			typ = []string{"denied"}
		}
		categorize(ev, "alert", []string{"network", "intrusion_detection"}, typ)
		set(ev, "rule.id", e.str("alert", "signature_id"))
		set(ev, "rule.name", e.str("alert", "signature"))
		set(ev, "rule.category", e.str("alert", "category"))
		set(ev, "event.action", e.str("alert", "action"))
		if n, ok := e.num("alert", "severity"); ok {
			ev["event.severity"] = n
		}
		if s := e.str("alert", "signature"); s != "" {
			ev["message"] = s
		}
	case "dns":
		categorize(ev, "", []string{"network"}, []string{"protocol", "info"})
		ev["network.protocol"] = "dns"
		d := e.str("dns", "type")
		switch d {
		case "query":
			ev["dns.type"] = "query"
		case "answer":
			ev["dns.type"] = "answer"
		}
		set(ev, "dns.id", e.str("dns", "id"))
		set(ev, "dns.question.name", e.str("dns", "rrname"))
		set(ev, "dns.question.type", e.str("dns", "rrtype"))
		set(ev, "dns.response_code", e.str("dns", "rcode"))
		if dm, ok := m["dns"].(map[string]any); ok {
			if q, ok := dm["queries"].([]any); ok && len(q) > 0 {
				if qm, ok := q[0].(map[string]any); ok {
					qe := eve(qm)
					set(ev, "dns.question.name", qe.str("rrname"))
					set(ev, "dns.question.type", qe.str("rrtype"))
				}
			}
			var answers []string
			if a, ok := dm["answers"].([]any); ok {
				for _, x := range a {
					if am, ok := x.(map[string]any); ok {
						if s := eve(am).str("rdata"); s != "" {
							answers = append(answers, s)
						}
					}
				}
			}
			if g, ok := dm["grouped"].(map[string]any); ok {
				for _, v := range g {
					if l, ok := v.([]any); ok {
						for _, x := range l {
							if s, ok := x.(string); ok {
								answers = append(answers, s)
							}
						}
					}
				}
			}
			if len(answers) > 0 {
				ev["dns.answers.data"] = answers
			}
		}
	case "flow", "netflow":
		categorize(ev, "", []string{"network"}, []string{"connection", "end"})
		ts, okA := e.num("flow", "bytes_toserver")
		tc, okB := e.num("flow", "bytes_toclient")
		if okA {
			ev["source.bytes"] = ts
		}
		if okB {
			ev["destination.bytes"] = tc
		}
		if okA || okB {
			ev["network.bytes"] = ts + tc
		}
		ps, okC := e.num("flow", "pkts_toserver")
		pc, okD := e.num("flow", "pkts_toclient")
		if okC {
			ev["source.packets"] = ps
		}
		if okD {
			ev["destination.packets"] = pc
		}
		if okC || okD {
			ev["network.packets"] = ps + pc
		}
		set(ev, "event.reason", e.str("flow", "reason"))
	case "http":
		categorize(ev, "", []string{"network", "web"}, []string{"access", "protocol"})
		ev["network.protocol"] = "http"
		set(ev, "url.domain", e.str("http", "hostname"))
		if u := e.str("http", "url"); u != "" {
			setURL(ev, u)
		}
		set(ev, "http.request.method", e.str("http", "http_method"))
		if pr := e.str("http", "protocol"); strings.HasPrefix(pr, "HTTP/") {
			ev["http.version"] = pr[5:]
		}
		setInt(ev, "http.response.status_code", e.str("http", "status"))
		setInt(ev, "http.response.body.bytes", e.str("http", "length"))
		set(ev, "user_agent.original", e.str("http", "http_user_agent"))
		set(ev, "http.request.referrer", e.str("http", "http_refer"))
	case "tls":
		categorize(ev, "", []string{"network"}, []string{"protocol", "info"})
		ev["network.protocol"] = "tls"
		set(ev, "tls.client.server_name", e.str("tls", "sni"))
		if v := e.str("tls", "version"); v != "" {
			ev["tls.version"] = strings.TrimPrefix(strings.TrimPrefix(v, "TLS "), "TLSv")
		}
		set(ev, "tls.client.ja3", e.str("tls", "ja3", "hash"))
		set(ev, "tls.client.ja4", e.str("tls", "ja4"))
	default:
		categorize(ev, "", []string{"network"}, []string{"info"})
	}
	return ev, nil
}
