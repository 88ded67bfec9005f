package parse

import (
	"net/netip"
	"strings"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
)

// ApacheError parses Apache httpd's error log (2.2 and 2.4 formats):
// "[Thu Oct 13 12:24:49.880562 2022] [auth_basic:error] [pid 10:tid 14]
// [client 1.2.3.4:50229] AH01618: user sss not found: /".
type ApacheError struct{ opts *Options }

var _ lineParser = (*ApacheError)(nil)

func (*ApacheError) Name() string { return "apache.error" }

func (p *ApacheError) Parse(rec Record) (event.Event, error) { return runLine(p, rec, p.opts) }

var apacheTimeLayouts = []string{"Mon Jan _2 15:04:05.000000 2006", "Mon Jan _2 15:04:05 2006"}

// bracket returns the content of a leading "[...]" (brackets may nest, as
// in "[client [2001:db8::1]:443]") and the rest.
func bracket(s string) (string, string, bool) {
	s = strings.TrimLeft(s, " ")
	if !strings.HasPrefix(s, "[") {
		return "", s, false
	}
	depth := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '[':
			depth++
		case ']':
			depth--
			if depth == 0 {
				return s[1:i], s[i+1:], true
			}
		}
	}
	return "", s, false
}

func (p *ApacheError) parseLine(in *input) (event.Event, error) {
	ts, rest, ok := bracket(in.line)
	if !ok {
		return nil, ErrNoMatch
	}
	var t time.Time
	var err error
	for _, l := range apacheTimeLayouts {
		if t, err = time.ParseInLocation(l, ts, in.opts.Location); err == nil {
			break
		}
	}
	if err != nil {
		return nil, ErrNoMatch
	}
	ev := in.base(p.Name())
	ev["@timestamp"] = t.UTC()
	ev["event.module"] = "apache"
	categorize(ev, "", []string{"web"}, []string{"error"})
	ev["network.protocol"] = "http"
	// [module:level] or [level]
	if lv, r, ok := bracket(rest); ok {
		if mod, level, hasMod := strings.Cut(lv, ":"); hasMod {
			set(ev, "log.logger", mod)
			set(ev, "log.level", level)
		} else {
			set(ev, "log.level", lv)
		}
		rest = r
	}
	for {
		b, r, ok := bracket(rest)
		if !ok {
			// "(70014)End of file found: [client ...] ..." : an APR error
			// before the client.
			s := strings.TrimLeft(rest, " ")
			if strings.HasPrefix(s, "(") {
				if j := strings.Index(s, ": ["); j > 0 {
					rest = s[j+1:]
					continue
				}
			}
			break
		}
		switch {
		case strings.HasPrefix(b, "pid "):
			pid, tid, _ := strings.Cut(b[4:], ":")
			setInt(ev, "process.pid", pid)
			setInt(ev, "process.thread.id", strings.TrimPrefix(tid, "tid "))
		case strings.HasPrefix(b, "client "):
			addr := b[7:]
			if ap, err := netip.ParseAddrPort(addr); err == nil {
				ev["source.ip"] = ap.Addr().Unmap().WithZone("").String()
				ev["source.port"] = int64(ap.Port())
			} else {
				setIP(ev, "source.ip", "source.domain", addr)
			}
		}
		// Other groups ("[remote ...]", the peer when a proxy is in
		// between) are skipped: the client stays the source.
		rest = r
	}
	msg := strings.TrimLeft(rest, " ")
	if len(msg) > 8 && strings.HasPrefix(msg, "AH") && msg[7] == ':' {
		ev["error.code"] = msg[:7]
		msg = strings.TrimLeft(msg[8:], " ")
	}
	ev["message"] = msg
	set(ev, "error.message", msg)
	// Authentication failures: "user sss not found: /",
	// "user bob: authentication failure for "/": Password Mismatch".
	if strings.HasPrefix(msg, "user ") {
		u := msg[5:]
		switch {
		case strings.Contains(u, " not found: "):
			name, uri, _ := strings.Cut(u, " not found: ")
			set(ev, "user.name", name)
			set(ev, "url.original", uri)
			apacheAuthFail(ev)
		case strings.Contains(u, ": authentication failure for "):
			name, r, _ := strings.Cut(u, ": authentication failure for ")
			set(ev, "user.name", name)
			if uri, _, ok := quotedField(r); ok {
				set(ev, "url.original", uri)
			} else if uri, _, ok := strings.Cut(strings.Trim(r, "\""), "\":"); ok {
				set(ev, "url.original", uri)
			}
			apacheAuthFail(ev)
		}
	} else if uri, ok := strings.CutPrefix(msg, "client denied by server configuration: "); ok {
		set(ev, "file.path", uri)
		ev["event.type"] = []string{"error", "denied"}
		ev["event.outcome"] = "failure"
	}
	return ev, nil
}

func apacheAuthFail(ev event.Event) {
	categorize(ev, "", []string{"web", "authentication"}, []string{"error", "info"})
	ev["event.outcome"] = "failure"
	ev["event.action"] = "http_auth_failure"
}

// NginxError parses nginx's error log: "2021/12/01 13:53:33 [error] 31#31:
// *46 message, client: 1.2.3.4, server: x, request: "GET / HTTP/1.1",
// host: "x"".
type NginxError struct{ opts *Options }

var _ lineParser = (*NginxError)(nil)

func (*NginxError) Name() string { return "nginx.error" }

func (p *NginxError) Parse(rec Record) (event.Event, error) { return runLine(p, rec, p.opts) }

func (p *NginxError) parseLine(in *input) (event.Event, error) {
	line := in.line
	if len(line) < 21 || line[4] != '/' || line[19] != ' ' {
		return nil, ErrNoMatch
	}
	t, err := time.ParseInLocation("2006/01/02 15:04:05", line[:19], in.opts.Location)
	if err != nil {
		return nil, ErrNoMatch
	}
	level, rest, ok := bracket(line[20:])
	if !ok {
		return nil, ErrNoMatch
	}
	ev := in.base(p.Name())
	ev["@timestamp"] = t.UTC()
	ev["event.module"] = "nginx"
	categorize(ev, "", []string{"web"}, []string{"error"})
	ev["network.protocol"] = "http"
	set(ev, "log.level", level)
	rest = strings.TrimLeft(rest, " ")
	// "31#31: "
	if pt, r, ok := strings.Cut(rest, ": "); ok && strings.Contains(pt, "#") && !strings.Contains(pt, " ") {
		pid, tid, _ := strings.Cut(pt, "#")
		setInt(ev, "process.pid", pid)
		setInt(ev, "process.thread.id", tid)
		rest = r
	}
	// "*46 " connection number
	if strings.HasPrefix(rest, "*") {
		if _, r, ok := strings.Cut(rest, " "); ok {
			rest = r
		}
	}
	msg := rest
	if i := strings.Index(rest, ", client: "); i >= 0 {
		msg = rest[:i]
		for _, part := range splitNginxKV(rest[i+2:]) {
			k, v, _ := strings.Cut(part, ": ")
			v = strings.Trim(v, "\"")
			switch k {
			case "client":
				setIP(ev, "source.ip", "source.domain", v)
			case "request":
				setRequest(ev, v)
			case "host":
				set(ev, "url.domain", v)
			case "server":
				set(ev, "destination.domain", v)
			}
		}
	}
	ev["message"] = msg
	set(ev, "error.message", msg)
	return ev, nil
}

// splitNginxKV splits "client: a, server: b, request: "GET / HTTP/1.1"" at
// the ", " separators that are not inside quotes.
func splitNginxKV(s string) []string {
	var out []string
	inQ := false
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			inQ = !inQ
		case ',':
			if !inQ && i+1 < len(s) && s[i+1] == ' ' {
				out = append(out, s[start:i])
				start = i + 2
			}
		}
	}
	return append(out, s[start:])
}
