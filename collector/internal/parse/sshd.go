package parse

import (
	"strings"

	"github.com/csirt-toscana/platform/internal/event"
)

// SSHD parses OpenSSH server messages: accepted and failed logins
// (password, publickey, keyboard-interactive), invalid users, pre-auth
// disconnects, negotiation failures, "maximum authentication attempts", and
// the PAM lines sshd logs.
type SSHD struct{ opts *Options }

var _ messageParser = (*SSHD)(nil)

func (*SSHD) Name() string { return "sshd" }

func (p *SSHD) Parse(rec Record) (event.Event, error) { return runMessage(p, rec, p.opts) }

func (*SSHD) parseMessage(in *input, ev event.Event) error {
	ev["event.module"] = "system"
	if _, ok := ev["process.name"]; !ok {
		ev["process.name"] = "sshd"
	}
	parseSSHD(in.msg, ev)
	if _, ok := ev["source.address"]; ok {
		ev["network.protocol"] = "ssh"
	} else if _, ok := ev["source.ip"]; ok {
		ev["network.protocol"] = "ssh"
	}
	return nil
}

// sshFrom parses "IP port N" or "IP" at the start of s, returning the rest.
func sshFrom(ev event.Event, s string) string {
	s = strings.TrimLeft(s, " ")
	addr, rest, _ := strings.Cut(s, " ")
	addr = strings.TrimSuffix(addr, ":")
	if addr == "" {
		return rest
	}
	setIP(ev, "source.ip", "source.domain", addr)
	ev["source.address"] = addr
	if strings.HasPrefix(rest, "port ") {
		port, r, _ := strings.Cut(rest[5:], " ")
		port = strings.TrimSuffix(port, ":")
		setInt(ev, "source.port", port)
		rest = r
	}
	return rest
}

func sshLogin(ev event.Event, outcome string) {
	categorize(ev, "", []string{"authentication"}, []string{"info"})
	if outcome == "success" {
		ev["event.category"] = []string{"authentication", "session"}
	}
	ev["event.action"] = "ssh_login"
	ev["event.outcome"] = outcome
}

func sshNetwork(ev event.Event, action string, typ []string, outcome string) {
	categorize(ev, "", []string{"network"}, typ)
	ev["event.action"] = action
	if outcome != "" {
		ev["event.outcome"] = outcome
	}
	ev["network.protocol"] = "ssh"
}

func parseSSHD(msg string, ev event.Event) {
	msg = strings.TrimSpace(msg)
	preauth := strings.HasSuffix(msg, " [preauth]")
	msg = strings.TrimSuffix(msg, " [preauth]")
	for _, p := range []string{"fatal: ", "error: ", "Fatal: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	switch {
	case strings.HasPrefix(msg, "Accepted ") || strings.HasPrefix(msg, "Failed ") || strings.HasPrefix(msg, "Postponed "):
		// "Accepted publickey for vagrant from 10.0.2.2 port 63673 ssh2: RSA SHA256:..."
		// "Failed password for invalid user admin from 1.2.3.4 port 22 ssh2"
		verb, rest, _ := strings.Cut(msg, " ")
		method, rest, _ := strings.Cut(rest, " ")
		rest = strings.TrimPrefix(rest, "for ")
		invalid := strings.HasPrefix(rest, "invalid user ")
		rest = strings.TrimPrefix(rest, "invalid user ")
		i := strings.LastIndex(rest, " from ")
		if i < 0 {
			sshLogin(ev, "unknown")
			return
		}
		set(ev, "user.name", rest[:i])
		sshFrom(ev, rest[i+6:])
		switch verb {
		case "Accepted":
			sshLogin(ev, "success")
		case "Failed":
			sshLogin(ev, "failure")
		default:
			sshLogin(ev, "unknown")
		}
		ev["event.reason"] = verb + " " + method
		if invalid {
			addTag(ev, "invalid_user")
		}
	case strings.HasPrefix(msg, "Invalid user ") || strings.HasPrefix(msg, "Illegal user "):
		// "Invalid user pascal from 35.188.49.176 port 53502"
		rest := msg[13:]
		i := strings.LastIndex(rest, " from ")
		if i >= 0 {
			set(ev, "user.name", rest[:i])
			sshFrom(ev, rest[i+6:])
		} else {
			set(ev, "user.name", rest)
		}
		sshLogin(ev, "failure")
		ev["event.reason"] = "invalid user"
		addTag(ev, "invalid_user")
	case strings.HasPrefix(msg, "User ") && strings.Contains(msg, " not allowed because "):
		// "User root from 192.168.1.1 not allowed because not listed in AllowUsers"
		rest := msg[5:]
		user, rest, _ := strings.Cut(rest, " from ")
		set(ev, "user.name", user)
		addr, reason, _ := strings.Cut(rest, " not allowed because ")
		setIP(ev, "source.ip", "source.domain", addr)
		sshLogin(ev, "failure")
		ev["event.reason"] = "not allowed because " + reason
	case strings.HasPrefix(msg, "maximum authentication attempts exceeded for "):
		// "maximum authentication attempts exceeded for invalid user x from IP port N ssh2"
		rest := strings.TrimPrefix(msg[len("maximum authentication attempts exceeded for "):], "invalid user ")
		i := strings.LastIndex(rest, " from ")
		if i >= 0 {
			set(ev, "user.name", rest[:i])
			sshFrom(ev, rest[i+6:])
		}
		sshLogin(ev, "failure")
		ev["event.action"] = "ssh_max_auth_attempts"
		ev["event.reason"] = "maximum authentication attempts exceeded"
	case strings.HasPrefix(msg, "Disconnecting ") && strings.Contains(msg, "Too many authentication failures"):
		// "Disconnecting authenticating user root 1.2.3.4 port 1: Too many authentication failures"
		sshUserAddr(ev, strings.TrimPrefix(msg, "Disconnecting "))
		sshLogin(ev, "failure")
		ev["event.action"] = "ssh_max_auth_attempts"
		ev["event.reason"] = "too many authentication failures"
	case strings.HasPrefix(msg, "Connection closed by "), strings.HasPrefix(msg, "Disconnected from "),
		strings.HasPrefix(msg, "Connection reset by "), strings.HasPrefix(msg, "Received disconnect from "),
		strings.HasPrefix(msg, "Disconnecting "):
		// "Connection closed by authenticating user root 206.81.24.125 port 45362"
		// "Disconnected from invalid user ftp 92.255.85.135 port 26138"
		// "Received disconnect from 1.2.3.4 port 5: 11: Bye Bye"
		var rest string
		for _, p := range []string{"Connection closed by ", "Disconnected from ", "Connection reset by ", "Received disconnect from ", "Disconnecting "} {
			if strings.HasPrefix(msg, p) {
				rest = msg[len(p):]
				break
			}
		}
		reason := sshUserAddr(ev, rest)
		sshNetwork(ev, "ssh_disconnect", []string{"connection", "end"}, "")
		if preauth {
			// The client left before authenticating: for detection this is
			// a failed authentication attempt (brute forcers do this).
			categorize(ev, "", []string{"authentication", "network"}, []string{"info", "end"})
			ev["event.action"] = "ssh_preauth_disconnect"
			ev["event.outcome"] = "failure"
		}
		set(ev, "event.reason", strings.TrimSpace(strings.TrimPrefix(reason, ":")))
	case strings.HasPrefix(msg, "Unable to negotiate with "):
		// "Unable to negotiate with 1.2.3.4 port 45626: no matching key exchange method found. ..."
		rest := sshFrom(ev, msg[len("Unable to negotiate with "):])
		sshNetwork(ev, "ssh_negotiation_failed", []string{"connection", "denied"}, "failure")
		set(ev, "event.reason", strings.TrimSpace(rest))
	case strings.HasPrefix(msg, "Timeout before authentication for "):
		sshFrom(ev, msg[len("Timeout before authentication for "):])
		sshNetwork(ev, "ssh_auth_timeout", []string{"connection", "end"}, "failure")
		ev["event.reason"] = "timeout before authentication"
	case strings.HasPrefix(msg, "Did not receive identification string from "):
		// ECS category network, like Filebeat's ssh dropped connection.
		sshFrom(ev, msg[len("Did not receive identification string from "):])
		sshNetwork(ev, "ssh_dropped_connection", []string{"connection", "denied"}, "failure")
		ev["event.reason"] = "did not receive identification string"
	case strings.HasPrefix(msg, "ssh_dispatch_run_fatal: Connection from "):
		rest := sshFrom(ev, msg[len("ssh_dispatch_run_fatal: Connection from "):])
		sshNetwork(ev, "ssh_fatal", []string{"connection", "end"}, "failure")
		set(ev, "event.reason", strings.TrimSpace(rest))
	case strings.HasPrefix(msg, "Magic value check failed"):
		// "Magic value check failed (4289475479) on obfuscated handshake from IP port N"
		if i := strings.Index(msg, " from "); i >= 0 {
			sshFrom(ev, msg[i+6:])
		}
		sshNetwork(ev, "ssh_bad_handshake", []string{"connection", "denied"}, "failure")
		ev["event.reason"] = "magic value check failed"
	case strings.HasPrefix(msg, "Bad protocol version identification "), strings.HasPrefix(msg, "banner exchange: Connection from "),
		strings.HasPrefix(msg, "kex_exchange_identification: "), strings.HasPrefix(msg, "Protocol major versions differ"):
		if i := strings.LastIndex(msg, " from "); i >= 0 {
			sshFrom(ev, msg[i+6:])
		}
		sshNetwork(ev, "ssh_bad_handshake", []string{"connection", "denied"}, "failure")
		ev["event.reason"] = msg
	case strings.HasPrefix(msg, "refused connect from "):
		// "refused connect from example.com (192.168.1.1)" (tcp wrappers)
		rest := msg[len("refused connect from "):]
		name, ip, _ := strings.Cut(rest, " (")
		ip = strings.TrimSuffix(ip, ")")
		if ip != "" {
			setIP(ev, "source.ip", "", ip)
			if name != ip {
				set(ev, "source.domain", name)
			}
		} else {
			setIP(ev, "source.ip", "source.domain", name)
		}
		sshNetwork(ev, "ssh_connection_refused", []string{"connection", "denied"}, "failure")
	case strings.HasPrefix(msg, "Connection from "):
		// "Connection from 1.2.3.4 port 5 on 10.0.0.1 port 22"
		rest := sshFrom(ev, msg[len("Connection from "):])
		if strings.HasPrefix(rest, "on ") {
			addr, r, _ := strings.Cut(rest[3:], " ")
			setIP(ev, "destination.ip", "", addr)
			if strings.HasPrefix(r, "port ") {
				setInt(ev, "destination.port", firstField(r[5:]))
			}
		}
		sshNetwork(ev, "ssh_connection", []string{"connection", "start"}, "")
	case strings.HasPrefix(msg, "pam_") || strings.HasPrefix(msg, "PAM "):
		parsePAM(msg, ev)
	default:
		categorize(ev, "", []string{"host"}, []string{"info"})
	}
}

// sshUserAddr parses "[authenticating|invalid user ]USER IP port N..." or
// "IP port N..." and returns what follows.
func sshUserAddr(ev event.Event, s string) string {
	s = strings.TrimSpace(s)
	invalid := false
	for _, p := range []string{"authenticating user ", "invalid user ", "user "} {
		if strings.HasPrefix(s, p) {
			invalid = p == "invalid user "
			s = s[len(p):]
			// The user name may contain spaces: the address is the word
			// before " port ".
			if i := strings.Index(s, " port "); i > 0 {
				head := s[:i]
				if j := strings.LastIndexByte(head, ' '); j > 0 {
					set(ev, "user.name", head[:j])
					s = s[j+1:]
				}
			} else if j := strings.LastIndexByte(s, ' '); j > 0 {
				set(ev, "user.name", s[:j])
				s = s[j+1:]
			}
			break
		}
	}
	if invalid {
		addTag(ev, "invalid_user")
	}
	return sshFrom(ev, s)
}
