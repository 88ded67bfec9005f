package parse

import (
	"strings"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
)

// Vsftpd parses vsftpd's log, in its own format ("Mon Jun  8 12:08:53 2020
// [pid 27244] [user] FAIL LOGIN: Client "::ffff:1.2.3.4"") or through
// syslog ("vsftpd[27244]: [user] FAIL LOGIN: Client "1.2.3.4"").
type Vsftpd struct{ opts *Options }

var _ messageParser = (*Vsftpd)(nil)

func (*Vsftpd) Name() string { return "vsftpd" }

func (p *Vsftpd) Parse(rec Record) (event.Event, error) {
	in := newInput(rec, p.opts)
	if !splitSyslog(in) {
		// Own format: "Mon Jun  8 12:08:53 2020 [pid 27244] ..."
		t, rest, ok := vsftpdTime(in.line, p.opts)
		if !ok {
			return nil, ErrNoMatch
		}
		ev := in.base(p.Name())
		ev["@timestamp"] = t.UTC()
		ev["process.name"] = "vsftpd"
		if b, r, ok := bracket(rest); ok && strings.HasPrefix(b, "pid ") {
			setInt(ev, "process.pid", b[4:])
			rest = r
		}
		in.msg = strings.TrimLeft(rest, " ")
		ev["message"] = in.msg
		if err := p.parseMessage(in, ev); err != nil {
			return nil, err
		}
		return finish(in, ev), nil
	}
	ev := in.base(p.Name())
	if err := p.parseMessage(in, ev); err != nil {
		return nil, err
	}
	return finish(in, ev), nil
}

func vsftpdTime(s string, opts *Options) (time.Time, string, bool) {
	// "Mon Jun  8 12:08:53 2020" or "Mon Jun 8 12:08:53 2020"
	if len(s) < 24 {
		return time.Time{}, "", false
	}
	f := strings.Fields(s)
	if len(f) < 5 {
		return time.Time{}, "", false
	}
	ts := strings.Join(f[:5], " ")
	t, err := time.ParseInLocation("Mon Jan 2 15:04:05 2006", ts, opts.Location)
	if err != nil {
		return time.Time{}, "", false
	}
	i := strings.Index(s, f[4]) + len(f[4])
	return t, s[i:], true
}

func (*Vsftpd) parseMessage(in *input, ev event.Event) error {
	ev["event.module"] = "vsftpd"
	ev["network.protocol"] = "ftp"
	msg := strings.TrimLeft(in.msg, " ")
	if b, r, ok := bracket(msg); ok {
		set(ev, "user.name", b)
		msg = strings.TrimLeft(r, " ")
	}
	verb, rest, _ := strings.Cut(msg, ": ")
	if i := strings.Index(rest, "Client \""); i >= 0 {
		addr, _, _ := strings.Cut(rest[i+8:], "\"")
		setIP(ev, "source.ip", "source.domain", addr)
		ev["source.address"] = addr
	}
	switch verb {
	case "FAIL LOGIN":
		categorize(ev, "", []string{"authentication"}, []string{"info"})
		ev["event.action"] = "ftp_login"
		ev["event.outcome"] = "failure"
	case "OK LOGIN":
		categorize(ev, "", []string{"authentication", "session"}, []string{"info", "start"})
		ev["event.action"] = "ftp_login"
		ev["event.outcome"] = "success"
	case "CONNECT":
		categorize(ev, "", []string{"network"}, []string{"connection", "start"})
		ev["event.action"] = "ftp_connect"
	case "OK UPLOAD", "OK DOWNLOAD", "FAIL UPLOAD", "FAIL DOWNLOAD", "OK MKDIR", "OK DELETE", "OK RENAME", "FAIL DELETE", "FAIL MKDIR":
		ok := strings.HasPrefix(verb, "OK")
		op := strings.ToLower(strings.Fields(verb)[1])
		typ := map[string]string{"upload": "creation", "download": "access", "mkdir": "creation", "delete": "deletion", "rename": "change"}[op]
		categorize(ev, "", []string{"file"}, []string{typ})
		ev["event.action"] = "ftp_" + op
		ev["event.outcome"] = map[bool]string{true: "success", false: "failure"}[ok]
		// Client "1.2.3.4", "/path", 123 bytes, ...
		if i := strings.Index(rest, "\", \""); i >= 0 {
			p, _, _ := strings.Cut(rest[i+4:], "\"")
			set(ev, "file.path", p)
		}
	default:
		categorize(ev, "", []string{"network"}, []string{"info"})
	}
	return nil
}
