package parse

import (
	"strings"

	"github.com/csirt-toscana/platform/internal/event"
)

// Iptables parses the kernel's netfilter log lines written by the iptables
// LOG target, nftables' log statement and ufw: "[UFW BLOCK] IN=eth0 OUT=
// MAC=... SRC=1.2.3.4 DST=5.6.7.8 ... PROTO=TCP SPT=1 DPT=22 ...". The log
// prefix is kept in rule.name; event.action and event.type come from it
// (drop/block/reject/deny: denied; accept/allow: allowed).
type Iptables struct{ opts *Options }

var _ messageParser = (*Iptables)(nil)

func (*Iptables) Name() string { return "iptables" }

func (p *Iptables) Parse(rec Record) (event.Event, error) { return runMessage(p, rec, p.opts) }

// isNetfilter reports whether a kernel message is a netfilter log line.
func isNetfilter(msg string) bool {
	return strings.Contains(msg, "SRC=") && strings.Contains(msg, " DST=") && strings.Contains(msg, "PROTO=")
}

func (*Iptables) parseMessage(in *input, ev event.Event) error {
	msg := in.msg
	if !isNetfilter(msg) {
		return ErrNoMatch
	}
	ev["event.module"] = "iptables"
	// Strip the kernel uptime "[12345.678] ".
	s := strings.TrimLeft(msg, " ")
	if strings.HasPrefix(s, "[") {
		if i := strings.IndexByte(s, ']'); i > 0 && strings.Trim(s[1:i], " .0123456789") == "" {
			s = strings.TrimLeft(s[i+1:], " ")
		}
	}
	// The prefix is what precedes the first KEY= field we know.
	start := strings.Index(s, "IN=")
	if start < 0 {
		start = strings.Index(s, "SRC=")
	}
	prefix := strings.TrimSpace(s[:start])
	kv := s[start:]
	set(ev, "rule.name", strings.TrimSuffix(prefix, ":"))
	var flags []string
	for _, f := range strings.Fields(kv) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			flags = append(flags, f)
			continue
		}
		switch k {
		case "IN":
			set(ev, "observer.ingress.interface.name", v)
		case "OUT":
			set(ev, "observer.egress.interface.name", v)
		case "SRC":
			setIP(ev, "source.ip", "", v)
		case "DST":
			setIP(ev, "destination.ip", "", v)
		case "SPT":
			setInt(ev, "source.port", v)
		case "DPT":
			setInt(ev, "destination.port", v)
		case "PROTO":
			if _, seen := ev["network.transport"]; !seen {
				ev["network.transport"] = strings.ToLower(v)
			}
		case "LEN":
			if _, seen := ev["network.bytes"]; !seen {
				setInt(ev, "network.bytes", v)
			}
		}
	}
	_ = flags
	if strings.Contains(ev.String("source.ip"), ":") {
		ev["network.type"] = "ipv6"
	} else if _, ok := ev["source.ip"]; ok {
		ev["network.type"] = "ipv4"
	}
	ev["network.packets"] = int64(1)
	lp := strings.ToLower(prefix)
	switch {
	case strings.Contains(lp, "drop"), strings.Contains(lp, "block"), strings.Contains(lp, "reject"), strings.Contains(lp, "deny"), strings.Contains(lp, "denied"):
		categorize(ev, "", []string{"network"}, []string{"connection", "denied"})
		ev["event.action"] = "drop"
		if strings.Contains(lp, "reject") {
			ev["event.action"] = "reject"
		}
	case strings.Contains(lp, "accept"), strings.Contains(lp, "allow"):
		categorize(ev, "", []string{"network"}, []string{"connection", "allowed"})
		ev["event.action"] = "accept"
	case strings.Contains(lp, "audit"):
		// UFW's audit rules log new connections whatever their fate.
		categorize(ev, "", []string{"network"}, []string{"connection"})
		ev["event.action"] = "audit"
	default:
		// A LOG rule without a recognisable prefix: usually the rule just
		// before a DROP, but the line does not say.
		categorize(ev, "", []string{"network"}, []string{"connection"})
		ev["event.action"] = "log"
	}
	return nil
}
