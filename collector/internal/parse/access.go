package parse

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
)

// Access parses web server access logs: the common and combined formats,
// vhost_combined ("host[:port] " before the client), nginx's and Apache's
// defaults, and JSON access logs with the usual nginx variable names
// (remote_addr, request, status, ...). One type serves nginx and Apache:
// the dataset says which server wrote the file (nginx.access,
// apache.access).
type Access struct {
	opts    *Options
	dataset string // nginx.access or apache.access
}

var _ lineParser = (*Access)(nil)

func (p *Access) Name() string { return p.dataset }

func (p *Access) Parse(rec Record) (event.Event, error) { return runLine(p, rec, p.opts) }

func (p *Access) parseLine(in *input) (event.Event, error) {
	line := in.line
	if hdrOK := len(line) > 0 && line[0] == '<'; hdrOK || looksSyslog(line) {
		// An access log shipped through syslog ("nginx: 1.2.3.4 - - [...").
		if splitSyslog(in) {
			line = in.msg
		}
	}
	ev := in.base(p.dataset)
	delete(ev, "message")
	ev["event.module"] = strings.SplitN(p.dataset, ".", 2)[0]
	var err error
	if strings.HasPrefix(strings.TrimSpace(line), "{") {
		err = parseAccessJSON(strings.TrimSpace(line), ev, in.opts)
	} else {
		err = parseAccessText(line, ev)
	}
	if err != nil {
		return nil, err
	}
	webOutcome(ev)
	return ev, nil
}

func looksSyslog(s string) bool {
	if len(s) < 16 {
		return false
	}
	_, ok := months[s[:3]]
	return ok && s[3] == ' '
}

func webOutcome(ev event.Event) {
	ev["network.protocol"] = "http"
	categorize(ev, "", []string{"web"}, []string{"access"})
	if st, ok := ev["http.response.status_code"].(int64); ok {
		if st >= 400 {
			ev["event.outcome"] = "failure"
		} else {
			ev["event.outcome"] = "success"
		}
	}
}

// quotedField reads a double-quoted field honouring backslash escapes (Apache
// writes \" and \\; nginx writes \x22). It returns the unescaped-quote value
// and the rest after the closing quote.
func quotedField(s string) (string, string, bool) {
	if len(s) == 0 || s[0] != '"' {
		return "", "", false
	}
	var b []byte
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
				if b == nil {
					b = append([]byte(nil), s[1:i]...)
				}
				b = append(b, s[i+1])
				i++
				continue
			}
		case '"':
			// A closing quote is followed by a space or the end of line.
			if i+1 == len(s) || s[i+1] == ' ' {
				if b == nil {
					return s[1:i], s[i+1:], true
				}
				return string(b), s[i+1:], true
			}
		}
		if b != nil {
			b = append(b, s[i])
		}
	}
	return "", "", false
}

const clfTime = "02/Jan/2006:15:04:05 -0700"

func parseAccessText(line string, ev event.Event) error {
	// Optional vhost, client, ident, user, then [time].
	open := strings.IndexByte(line, '[')
	if open < 7 {
		return ErrNoMatch
	}
	pre := strings.Fields(line[:open])
	if len(pre) < 2 || len(pre) > 4 {
		return ErrNoMatch
	}
	// The client is the first field that is an address, after an optional
	// vhost; a vhost is present when there are four fields or when the first
	// is not an address but the second is.
	i := 0
	if len(pre) == 4 {
		i = 1
	} else if _, ok := cleanIP(pre[0]); !ok {
		if _, ok2 := cleanIP(pre[1]); ok2 && len(pre) >= 3 {
			i = 1
		}
	}
	if i == 1 {
		host, port, hasPort := strings.Cut(pre[0], ":")
		if strings.Count(pre[0], ":") > 1 {
			host, hasPort = pre[0], false
		}
		set(ev, "url.domain", host)
		if hasPort {
			setInt(ev, "url.port", port)
		}
	}
	client := pre[i]
	setIP(ev, "source.ip", "source.domain", client)
	ev["source.address"] = client
	// ident and user: "- -" normally; some formats log only one of them.
	if rest := pre[i+1:]; len(rest) > 0 {
		set(ev, "user.name", rest[len(rest)-1])
	}
	closeIdx := strings.IndexByte(line[open:], ']')
	if closeIdx < 0 {
		return ErrNoMatch
	}
	t, err := time.Parse(clfTime, line[open+1:open+closeIdx])
	if err != nil {
		return ErrNoMatch
	}
	ev["@timestamp"] = t.UTC()
	rest := strings.TrimLeft(line[open+closeIdx+1:], " ")
	req, rest, ok := quotedField(rest)
	if !ok {
		return ErrNoMatch
	}
	setRequest(ev, req)
	rest = strings.TrimLeft(rest, " ")
	status, rest, _ := strings.Cut(rest, " ")
	if n, ok := atoi(status); ok {
		ev["http.response.status_code"] = n
	} else {
		return ErrNoMatch
	}
	rest = strings.TrimLeft(rest, " ")
	size, rest, _ := strings.Cut(rest, " ")
	setInt(ev, "http.response.body.bytes", size)
	rest = strings.TrimLeft(rest, " ")
	if ref, r, ok := quotedField(rest); ok {
		set(ev, "http.request.referrer", ref)
		rest = strings.TrimLeft(r, " ")
		if ua, _, ok := quotedField(rest); ok {
			set(ev, "user_agent.original", ua)
		}
	}
	return nil
}

// setRequest splits "GET /path?q HTTP/1.1". A request line that is not
// method, target and version (a scanner's garbage) is kept whole in
// url.original.
func setRequest(ev event.Event, req string) {
	if req == "" || req == "-" {
		return
	}
	method, rest, ok1 := strings.Cut(req, " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if ok1 && ok2 && isMethod(method) && strings.HasPrefix(proto, "HTTP/") && !strings.Contains(target, " ") {
		ev["http.request.method"] = method
		ev["http.version"] = proto[5:]
		setURL(ev, target)
		return
	}
	if ok1 && !ok2 && isMethod(method) && strings.HasPrefix(rest, "/") {
		// HTTP/0.9: "GET /path"
		ev["http.request.method"] = method
		setURL(ev, rest)
		return
	}
	ev["url.original"] = req
}

func setURL(ev event.Event, target string) {
	ev["url.original"] = target
	p, q, hasQ := strings.Cut(target, "?")
	if strings.HasPrefix(p, "http://") || strings.HasPrefix(p, "https://") {
		// Absolute form (proxy requests).
		_, hp, _ := strings.Cut(p, "://")
		host, path, _ := strings.Cut(hp, "/")
		set(ev, "url.domain", host)
		p = "/" + path
	}
	ev["url.path"] = p
	if hasQ {
		ev["url.query"] = q
	}
}

func isMethod(m string) bool {
	if m == "" || len(m) > 20 {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if (c < 'A' || c > 'Z') && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

// parseAccessJSON maps a JSON access log with nginx variable names (and a
// few common aliases) to ECS.
func parseAccessJSON(line string, ev event.Event, opts *Options) error {
	dec := json.NewDecoder(bytes.NewReader([]byte(line)))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return ErrNoMatch
	}
	str := func(keys ...string) string {
		for _, k := range keys {
			switch v := m[k].(type) {
			case string:
				if v != "" && v != "-" {
					return v
				}
			case json.Number:
				return v.String()
			}
		}
		return ""
	}
	client := str("remote_addr", "client_ip", "clientip", "client", "remote_ip", "ip")
	if client == "" {
		return ErrNoMatch
	}
	setIP(ev, "source.ip", "source.domain", client)
	ev["source.address"] = client
	set(ev, "user.name", str("remote_user", "user"))
	if ts := str("time_iso8601", "@timestamp", "timestamp", "time"); ts != "" {
		if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
			ev["@timestamp"] = t.UTC()
		}
	}
	if ts := str("time_local"); ts != "" {
		if t, err := time.Parse(clfTime, ts); err == nil {
			ev["@timestamp"] = t.UTC()
		}
	}
	if ts := str("msec"); ts != "" {
		sec, frac, _ := strings.Cut(ts, ".")
		if n, ok := atoi(sec); ok && n > 0 {
			frac = (frac + "000000000")[:9]
			ns, _ := atoi(frac)
			ev["@timestamp"] = time.Unix(n, ns).UTC()
		}
	}
	if req := str("request"); req != "" {
		setRequest(ev, req)
	}
	if m := str("request_method", "method"); m != "" {
		ev["http.request.method"] = m
	}
	if u := str("request_uri", "uri", "url"); u != "" {
		setURL(ev, u)
	}
	if p := str("server_protocol", "protocol"); strings.HasPrefix(p, "HTTP/") {
		ev["http.version"] = p[5:]
	}
	setInt(ev, "http.response.status_code", str("status", "status_code"))
	setInt(ev, "http.response.body.bytes", str("body_bytes_sent", "bytes_sent", "bytes"))
	set(ev, "http.request.referrer", str("http_referer", "http_referrer", "referer", "referrer"))
	set(ev, "user_agent.original", str("http_user_agent", "user_agent", "agent"))
	set(ev, "url.domain", str("host", "server_name", "http_host", "vhost"))
	if _, ok := ev["http.response.status_code"]; !ok {
		return ErrNoMatch
	}
	return nil
}
