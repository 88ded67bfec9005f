package parse

import (
	"strings"

	"github.com/csirt-toscana/platform/internal/event"
)

// Postfix parses Postfix's SMTP authentication lines: SASL failures
// ("warning: unknown[1.2.3.4]: SASL LOGIN authentication failed: ..."),
// successes ("client=x[1.2.3.4], sasl_method=PLAIN, sasl_username=bob"),
// and rejected recipients (NOQUEUE: reject).
type Postfix struct{ opts *Options }

var _ messageParser = (*Postfix)(nil)

func (*Postfix) Name() string { return "postfix" }

func (p *Postfix) Parse(rec Record) (event.Event, error) { return runMessage(p, rec, p.opts) }

// hostBracket parses "name[1.2.3.4]" (and "name[1.2.3.4]:port").
func hostBracket(ev event.Event, s string) {
	open := strings.IndexByte(s, '[')
	closeIdx := strings.IndexByte(s, ']')
	if open < 0 || closeIdx < open {
		return
	}
	name, ip := s[:open], s[open+1:closeIdx]
	setIP(ev, "source.ip", "", ip)
	if name != "unknown" {
		set(ev, "source.domain", name)
	}
}

func (*Postfix) parseMessage(in *input, ev event.Event) error {
	ev["event.module"] = "postfix"
	ev["network.protocol"] = "smtp"
	msg := strings.TrimSpace(in.msg)
	msg = strings.TrimPrefix(msg, "warning: ")
	switch {
	case strings.Contains(msg, "SASL") && strings.Contains(msg, "authentication failed"):
		host, _, _ := strings.Cut(msg, ": ")
		hostBracket(ev, host)
		categorize(ev, "", []string{"authentication", "email"}, []string{"info"})
		ev["event.action"] = "smtp_auth"
		ev["event.outcome"] = "failure"
		if i := strings.Index(msg, "sasl_username="); i >= 0 {
			set(ev, "user.name", firstField(msg[i+14:]))
		}
	case strings.Contains(msg, "sasl_username="):
		_, rest, _ := strings.Cut(msg, "client=")
		host, _, _ := strings.Cut(rest, ",")
		hostBracket(ev, host)
		i := strings.Index(msg, "sasl_username=")
		u, _, _ := strings.Cut(msg[i+14:], ",")
		set(ev, "user.name", strings.TrimSpace(u))
		categorize(ev, "", []string{"authentication", "email"}, []string{"info"})
		ev["event.action"] = "smtp_auth"
		ev["event.outcome"] = "success"
	case strings.Contains(msg, "NOQUEUE: reject: "), strings.Contains(msg, ": reject: "):
		if i := strings.Index(msg, " from "); i >= 0 {
			host, _, _ := strings.Cut(msg[i+6:], ":")
			hostBracket(ev, host)
		}
		categorize(ev, "", []string{"email", "network"}, []string{"denied"})
		ev["event.action"] = "smtp_reject"
		ev["event.outcome"] = "failure"
		if i := strings.Index(msg, ": reject: "); i >= 0 {
			ev["event.reason"] = msg[i+10:]
		}
	case strings.HasPrefix(msg, "connect from "), strings.HasPrefix(msg, "disconnect from "), strings.HasPrefix(msg, "lost connection after "):
		if i := strings.Index(msg, "from "); i >= 0 {
			hostBracket(ev, firstField(msg[i+5:]))
		}
		categorize(ev, "", []string{"email", "network"}, []string{"connection"})
		ev["event.action"] = "smtp_" + firstField(msg)
	default:
		categorize(ev, "", []string{"email"}, []string{"info"})
	}
	return nil
}

// Dovecot parses Dovecot's login and authentication lines: "imap-login:
// Login: user=<bob>, method=PLAIN, rip=1.2.3.4, lip=...", "imap-login:
// Disconnected (auth failed, 1 attempts in 2 secs): user=<bob>, ...",
// "auth: pam_unix(dovecot:auth): authentication failure; ...",
// "auth-worker(1): pam(bob,1.2.3.4): pam_authenticate() failed: ...".
type Dovecot struct{ opts *Options }

var _ messageParser = (*Dovecot)(nil)

func (*Dovecot) Name() string { return "dovecot" }

func (p *Dovecot) Parse(rec Record) (event.Event, error) { return runMessage(p, rec, p.opts) }

// dovecotKV parses "user=<bob>, method=PLAIN, rip=1.2.3.4, lip=..., TLS".
func dovecotKV(s string) map[string]string {
	kv := map[string]string{}
	for _, part := range strings.Split(s, ", ") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if ok {
			kv[k] = strings.Trim(v, "<>")
		}
	}
	return kv
}

func (*Dovecot) parseMessage(in *input, ev event.Event) error {
	ev["event.module"] = "dovecot"
	msg := strings.TrimSpace(in.msg)
	svc, rest, _ := strings.Cut(msg, ": ")
	if strings.HasSuffix(svc, "-login") {
		ev["network.protocol"] = strings.TrimSuffix(svc, "-login")
	}
	switch {
	case strings.HasPrefix(rest, "pam_") || strings.HasPrefix(rest, "PAM "):
		parsePAM(rest, ev)
	case strings.HasPrefix(rest, "Login: "):
		kv := dovecotKV(rest[7:])
		set(ev, "user.name", kv["user"])
		setIP(ev, "source.ip", "", kv["rip"])
		setIP(ev, "destination.ip", "", kv["lip"])
		categorize(ev, "", []string{"authentication", "email"}, []string{"info", "start"})
		ev["event.action"] = "mail_login"
		ev["event.outcome"] = "success"
	case strings.Contains(rest, "auth failed") || strings.Contains(rest, "Authentication failure") ||
		strings.Contains(rest, "password mismatch") || strings.Contains(rest, "unknown user"):
		if i := strings.Index(rest, "): "); i >= 0 && strings.Contains(rest[:i], "auth failed") {
			kv := dovecotKV(rest[i+3:])
			set(ev, "user.name", kv["user"])
			setIP(ev, "source.ip", "", kv["rip"])
			setIP(ev, "destination.ip", "", kv["lip"])
		} else if i := strings.Index(rest, "("); i >= 0 {
			// "pam(bob,1.2.3.4): ..." / "passwd-file(bob,1.2.3.4,<sess>): ..."
			inner, _, _ := strings.Cut(rest[i+1:], ")")
			parts := strings.Split(inner, ",")
			if len(parts) >= 2 {
				set(ev, "user.name", parts[0])
				setIP(ev, "source.ip", "", parts[1])
			}
		}
		categorize(ev, "", []string{"authentication", "email"}, []string{"info"})
		ev["event.action"] = "mail_login"
		ev["event.outcome"] = "failure"
	default:
		categorize(ev, "", []string{"email"}, []string{"info"})
	}
	return nil
}
