package parse

import (
	"strings"

	"github.com/csirt-toscana/platform/internal/event"
)

// PAM parses messages of PAM modules (pam_unix, pam_sss, pam_tally2,
// pam_faillock, ...) logged by programs without their own parser (login,
// cron, systemd-logind, polkit, ...). Programs with a parser (sshd, sudo,
// su, passwd) handle their PAM lines the same way under their own dataset.
type PAM struct{ opts *Options }

var _ messageParser = (*PAM)(nil)

func (*PAM) Name() string { return "pam" }

func (p *PAM) Parse(rec Record) (event.Event, error) { return runMessage(p, rec, p.opts) }

func (*PAM) parseMessage(in *input, ev event.Event) error {
	if !parsePAM(in.msg, ev) {
		return ErrNoMatch
	}
	return nil
}

// parsePAM fills ev from a PAM module message; false when msg is not one.
func parsePAM(msg string, ev event.Event) bool {
	msg = strings.TrimSpace(msg)
	if strings.HasPrefix(msg, "PAM ") {
		// "PAM 2 more authentication failures; logname= uid=0 ... user=root"
		if i := strings.Index(msg, "authentication failure"); i > 0 {
			kv := pamKV(msg[i:])
			pamAuthFailure(ev, kv)
			ev["event.action"] = "authentication_failure"
			return true
		}
		return false
	}
	if !strings.HasPrefix(msg, "pam_") {
		return false
	}
	open := strings.IndexByte(msg, '(')
	colon := strings.Index(msg, "): ")
	var module, service, rest string
	if open > 0 && colon > open {
		module = msg[:open]
		service, _, _ = strings.Cut(msg[open+1:colon], ":")
		rest = msg[colon+3:]
	} else {
		m, r, ok := strings.Cut(msg, ": ")
		if !ok {
			return false
		}
		module, rest = m, r
	}
	_ = service
	ev["event.module"] = "system"
	switch {
	case strings.HasPrefix(rest, "authentication failure"):
		pamAuthFailure(ev, pamKV(rest))
		ev["event.action"] = "authentication_failure"
	case strings.HasPrefix(rest, "session opened for user "):
		u := rest[len("session opened for user "):]
		name, by, _ := strings.Cut(u, " by ")
		set(ev, "user.name", stripUID(name, ev, "user.id"))
		if by = stripUID(strings.TrimSpace(by), nil, ""); by != "" {
			// The user who opened the session for the target (sudo, su).
			set(ev, "user.effective.name", ev.String("user.name"))
			ev["user.name"] = by
			ev["user.target.name"] = ev.String("user.effective.name")
			if id, ok := ev["user.id"]; ok {
				ev["user.effective.id"] = id
				delete(ev, "user.id")
			}
		}
		categorize(ev, "", []string{"session"}, []string{"start"})
		ev["event.action"] = "session_opened"
		ev["event.outcome"] = "success"
	case strings.HasPrefix(rest, "session closed for user "):
		set(ev, "user.name", stripUID(strings.TrimSpace(rest[len("session closed for user "):]), ev, "user.id"))
		categorize(ev, "", []string{"session"}, []string{"end"})
		ev["event.action"] = "session_closed"
		ev["event.outcome"] = "success"
	case strings.HasPrefix(rest, "check pass; user unknown"):
		categorize(ev, "", []string{"authentication"}, []string{"info"})
		ev["event.action"] = "authentication_failure"
		ev["event.outcome"] = "failure"
		ev["event.reason"] = "user unknown"
	case strings.HasPrefix(rest, "password changed for "):
		set(ev, "user.name", strings.TrimSpace(rest[len("password changed for "):]))
		categorize(ev, "", []string{"iam"}, []string{"user", "change"})
		ev["event.action"] = "password_changed"
		ev["event.outcome"] = "success"
	case module == "pam_tally2" && strings.HasPrefix(rest, "user "):
		// "user zbadguy (4001) tally 6, deny 5"
		f := strings.Fields(rest)
		if len(f) >= 2 {
			set(ev, "user.name", f[1])
		}
		if len(f) >= 3 {
			set(ev, "user.id", strings.Trim(f[2], "()"))
		}
		categorize(ev, "", []string{"authentication"}, []string{"info"})
		ev["event.action"] = "account_locked"
		ev["event.outcome"] = "failure"
		ev["event.reason"] = rest
	case strings.Contains(rest, "account temporarily locked") || strings.Contains(rest, "Consecutive login failures"):
		if i := strings.Index(rest, "user "); i >= 0 {
			f := strings.Fields(rest[i+5:])
			if len(f) > 0 {
				set(ev, "user.name", f[0])
			}
		}
		categorize(ev, "", []string{"authentication"}, []string{"info"})
		ev["event.action"] = "account_locked"
		ev["event.outcome"] = "failure"
		ev["event.reason"] = rest
	default:
		categorize(ev, "", []string{"authentication"}, []string{"info"})
		ev["event.action"] = "pam"
	}
	return true
}

// stripUID turns "root(uid=0)" into "root", storing the uid in field.
func stripUID(s string, ev event.Event, field string) string {
	s = strings.TrimSpace(s)
	if i := strings.Index(s, "(uid="); i >= 0 {
		if ev != nil && field != "" {
			set(ev, field, strings.TrimSuffix(s[i+5:], ")"))
		}
		s = s[:i]
	}
	return s
}

// pamKV parses "authentication failure; logname= uid=0 euid=0 tty=ssh
// ruser= rhost=1.2.3.4  user=root".
func pamKV(s string) map[string]string {
	_, s, _ = strings.Cut(s, ";")
	kv := make(map[string]string, 8)
	for _, f := range strings.Fields(s) {
		k, v, ok := strings.Cut(f, "=")
		if ok {
			kv[k] = v
		}
	}
	return kv
}

func pamAuthFailure(ev event.Event, kv map[string]string) {
	categorize(ev, "", []string{"authentication"}, []string{"info"})
	ev["event.outcome"] = "failure"
	user := kv["user"]
	if user == "" {
		user = kv["ruser"]
	}
	if user == "" {
		user = kv["logname"]
	}
	set(ev, "user.name", user)
	if rhost := kv["rhost"]; rhost != "" {
		setIP(ev, "source.ip", "source.domain", rhost)
		ev["source.address"] = rhost
	}
}
