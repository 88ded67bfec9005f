package parse

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/csirt-toscana/platform/internal/event"
)

// Dispatcher picks the parser for each record and never loses one: a
// record no parser understands becomes a "<source>.unparsed" event.
type Dispatcher struct {
	opts     *Options
	reg      Registry
	syslog   *Syslog
	sshd     *SSHD
	sudo     *Sudo
	su       *Su
	pam      *PAM
	accounts *Accounts
	fw       *Iptables
	vsftpd   *Vsftpd
	postfix  *Postfix
	dovecot  *Dovecot
	nginxA   *Access
	apacheA  *Access
	nginxE   *NginxError
	apacheE  *ApacheError
	auditd   *Auditd
	suricata *Suricata
}

// New returns a Dispatcher with every built-in parser registered.
func New(opts Options) *Dispatcher {
	opts.fill()
	o := &opts
	d := &Dispatcher{
		opts:     o,
		syslog:   &Syslog{o},
		sshd:     &SSHD{o},
		sudo:     &Sudo{o},
		su:       &Su{o},
		pam:      &PAM{o},
		accounts: &Accounts{o},
		fw:       &Iptables{o},
		vsftpd:   &Vsftpd{o},
		postfix:  &Postfix{o},
		dovecot:  &Dovecot{o},
		nginxA:   &Access{opts: o, dataset: "nginx.access"},
		apacheA:  &Access{opts: o, dataset: "apache.access"},
		nginxE:   &NginxError{o},
		apacheE:  &ApacheError{o},
		auditd:   &Auditd{o},
		suricata: &Suricata{o},
	}
	for _, p := range []Parser{d.syslog, d.sshd, d.sudo, d.su, d.pam, d.accounts, d.fw, d.vsftpd,
		d.postfix, d.dovecot, d.nginxA, d.apacheA, d.nginxE, d.apacheE, d.auditd, d.suricata} {
		if err := d.reg.Register(p); err != nil {
			panic(err) // a programming error in the list above
		}
	}
	return d
}

// Registry returns the parsers by dataset name.
func (d *Dispatcher) Registry() *Registry { return &d.reg }

// forProgram returns the message parser for a syslog program (app-name,
// journal identifier), or nil.
func (d *Dispatcher) forProgram(prog, msg string) messageParser {
	switch prog {
	case "sshd", "sshd-session":
		return d.sshd
	case "sudo":
		return d.sudo
	case "su":
		return d.su
	case "vsftpd":
		return d.vsftpd
	case "dovecot":
		return d.dovecot
	case "kernel", "ufw":
		if isNetfilter(msg) {
			return d.fw
		}
	}
	if strings.HasPrefix(prog, "postfix") {
		return d.postfix
	}
	for _, a := range accountPrograms {
		if prog == a {
			return d.accounts
		}
	}
	m := strings.TrimLeft(msg, " ")
	if strings.HasPrefix(m, "pam_") || strings.HasPrefix(m, "PAM ") {
		return d.pam
	}
	return nil
}

// lineFor returns the line parser that a program name or dataset family
// designates for this content, or nil.
func (d *Dispatcher) lineFor(name, line string) lineParser {
	switch name {
	case "nginx", "nginx.access", "nginx.error":
		if isNginxError(line) {
			return d.nginxE
		}
		return d.nginxA
	case "apache", "apache2", "httpd", "apache.access", "apache.error":
		if strings.HasPrefix(line, "[") {
			return d.apacheE
		}
		return d.apacheA
	case "audit", "auditd", "audispd":
		return d.auditd
	case "suricata", "eve":
		return d.suricata
	}
	return nil
}

func isNginxError(s string) bool {
	return len(s) > 21 && s[4] == '/' && s[7] == '/' && s[10] == ' ' && s[13] == ':' && s[19] == ' ' && s[20] == '['
}

// hint reduces a source hint to a program or dataset name: file paths by
// their well-known names, journal units without ".service".
func (d *Dispatcher) hint(src string) string {
	if src == "" {
		return ""
	}
	if _, ok := d.reg.Get(src); ok {
		return src
	}
	if src == "syslog" {
		return "" // the framing only: the program decides
	}
	if !strings.ContainsAny(src, "/\\") {
		return strings.TrimSuffix(src, ".service")
	}
	p := strings.ToLower(strings.ReplaceAll(src, "\\", "/"))
	base := path.Base(p)
	family := ""
	switch {
	case strings.Contains(p, "nginx"):
		family = "nginx"
	case strings.Contains(p, "apache") || strings.Contains(p, "httpd"):
		family = "apache"
	}
	switch {
	case strings.HasPrefix(base, "eve") && strings.Contains(base, ".json") || strings.Contains(p, "suricata"):
		return "suricata"
	case strings.HasPrefix(base, "audit.log"):
		return "auditd"
	case strings.Contains(base, "vsftpd"):
		return "vsftpd"
	case strings.Contains(base, "access"):
		if family == "apache" {
			return "apache.access"
		}
		return "nginx.access"
	case strings.Contains(base, "error"):
		if family == "" {
			return "http.error"
		}
		return family + ".error"
	case family != "":
		return family
	}
	return "" // auth.log, syslog, messages, ...: sniff the content
}

// Parse parses one record. It always returns an event; a record nobody
// understands gives dataset "<source>.unparsed" and event.kind
// "pipeline_error".
func (d *Dispatcher) Parse(rec Record) event.Event {
	in := newInput(rec, d.opts)
	h := d.hint(rec.Source)
	if h != "" {
		if ev, err := d.byName(h, in, false); err == nil {
			return ev
		}
		in = newInput(rec, d.opts)
	}
	if ev, err := d.sniff(in); err == nil {
		return ev
	}
	src := h
	if src == "" {
		src = sourceName(rec.Source)
	}
	return d.unparsed(newInput(rec, d.opts), src, errors.New("no parser understood the record"))
}

// ParseAs parses a record with the parser of a dataset (or a program
// name). When it does not understand the record, the event is
// "<dataset>.unparsed" and the error says why.
func (d *Dispatcher) ParseAs(dataset string, rec Record) (event.Event, error) {
	in := newInput(rec, d.opts)
	ev, err := d.byName(dataset, in, true)
	if err == nil {
		return ev, nil
	}
	return d.unparsed(newInput(rec, d.opts), dataset, err), err
}

// byName parses with the parser a dataset or program name designates.
// Unless strict, a message from a program without a parser (a journal
// identifier such as "systemd") gives a generic "syslog" event.
func (d *Dispatcher) byName(name string, in *input, strict bool) (event.Event, error) {
	if lp := d.lineFor(name, in.line); lp != nil {
		ev, err := lp.parseLine(in)
		if err != nil {
			return nil, err
		}
		return finish(in, ev), nil
	}
	if name == "http.error" {
		// An error log of an unknown server: the format says which.
		if isNginxError(in.line) {
			return d.byLine(d.nginxE, in)
		}
		return d.byLine(d.apacheE, in)
	}
	var mp messageParser
	if p, ok := d.reg.Get(name); ok {
		switch p := p.(type) {
		case messageParser:
			mp = p
		case lineParser:
			return d.byLine(p, in)
		}
	}
	splitSyslog(in)
	if mp == nil {
		mp = d.forProgram(name, in.msg)
		if mp == nil {
			switch {
			case in.hdr != nil:
				mp = d.syslog
			case !strict && isProgramName(name):
				mp = d.syslog
			default:
				return nil, fmt.Errorf("no parser for source %q: %w", name, ErrNoMatch)
			}
		}
	}
	if mp == messageParser(d.syslog) && in.hdr != nil {
		// "syslog" is the framing: the program in the header may have a
		// parser of its own.
		if p := d.forProgram(in.hdr.appname, in.msg); p != nil {
			mp = p
		}
	}
	if mp == d.vsftpd && in.hdr == nil {
		return d.vsftpd.Parse(in.rec)
	}
	ev := in.base(mp.Name())
	if in.hdr == nil {
		// A journal message: the transport named the program.
		if _, ok := ev["process.name"]; !ok && name != mp.Name() {
			ev["process.name"] = name
			ev["event.provider"] = name
		}
		ev["message"] = in.msg
	}
	if err := mp.parseMessage(in, ev); err != nil {
		return nil, err
	}
	return finish(in, ev), nil
}

// isProgramName reports whether a hint looks like a program name (a journal
// identifier), not a dataset or a path.
func isProgramName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == '/' || c == '\\' || c == '.' || c == ':' {
			return false
		}
	}
	return true
}

func (d *Dispatcher) byLine(p lineParser, in *input) (event.Event, error) {
	ev, err := p.parseLine(in)
	if err != nil {
		return nil, err
	}
	return finish(in, ev), nil
}

// sniff picks a parser from the content alone.
func (d *Dispatcher) sniff(in *input) (event.Event, error) {
	line := in.line
	s := strings.TrimLeft(line, " \t")
	switch {
	case s == "":
		return nil, ErrNoMatch
	case s[0] == '{':
		if strings.Contains(s, "\"event_type\"") {
			return d.byLine(d.suricata, in)
		}
		return d.byLine(d.nginxA, in)
	case isAudit(s) && (strings.HasPrefix(s, "type=") || strings.HasPrefix(s, "node=")):
		return d.byLine(d.auditd, in)
	case s[0] == '[':
		return d.byLine(d.apacheE, in)
	case isNginxError(s):
		return d.byLine(d.nginxE, in)
	}
	if splitSyslog(in) {
		if in.hdr.appname != "" {
			if lp := d.lineFor(in.hdr.appname, strings.TrimLeft(in.msg, " ")); lp != nil {
				if ev, err := d.byLine(lp, newInput(in.rec, d.opts)); err == nil {
					return ev, nil
				}
			}
			if isAudit(in.msg) {
				if ev, err := d.byLine(d.auditd, newInput(in.rec, d.opts)); err == nil {
					return ev, nil
				}
			}
		}
		mp := d.forProgram(in.hdr.appname, in.msg)
		if mp == nil {
			mp = d.syslog
		}
		ev := in.base(mp.Name())
		if err := mp.parseMessage(in, ev); err != nil {
			ev = in.base(d.syslog.Name())
			_ = d.syslog.parseMessage(in, ev)
		}
		return finish(in, ev), nil
	}
	in = newInput(in.rec, d.opts)
	if _, _, ok := vsftpdTime(line, d.opts); ok && strings.Contains(line, "[pid ") {
		return d.vsftpd.Parse(in.rec)
	}
	return d.byLine(d.nginxA, in)
}

// unparsed is the event of a record no parser understood.
func (d *Dispatcher) unparsed(in *input, source string, cause error) event.Event {
	ev := in.base(sourceName(source) + ".unparsed")
	ev["event.kind"] = "pipeline_error"
	ev["message"] = in.line
	ev["error.message"] = cause.Error()
	categorize(ev, "", []string{"host"}, []string{"info"})
	return finish(in, ev)
}

// Stream parses a sequence of records from one source, joining multi-record
// auditd events. It is not safe for concurrent use.
type Stream struct {
	d       *Dispatcher
	dataset string
	audit   *AuditJoiner
}

// NewStream returns a Stream; dataset forces a parser ("" detects it).
func (d *Dispatcher) NewStream(dataset string) *Stream {
	return &Stream{d: d, dataset: dataset, audit: NewAuditJoiner(d.opts)}
}

// Add parses a record and returns the events it completes, in order. An
// auditd record may complete none (its event waits for the rest); every
// record ends up in exactly one event by the time Flush returns. The error
// is non-nil when a forced dataset did not understand the record (the
// event is then "<dataset>.unparsed").
func (s *Stream) Add(rec Record) ([]event.Event, error) {
	if s.dataset == "" || s.dataset == "auditd" {
		if isAudit(string(rec.Raw)) {
			if evs, ok := s.audit.Add(rec); ok {
				return evs, nil
			}
		}
	}
	if s.dataset != "" {
		ev, err := s.d.ParseAs(s.dataset, rec)
		return []event.Event{ev}, err
	}
	return []event.Event{s.d.Parse(rec)}, nil
}

// Flush returns the events still waiting (open auditd groups).
func (s *Stream) Flush() []event.Event { return s.audit.Flush() }
