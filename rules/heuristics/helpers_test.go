package heuristics

import (
	"fmt"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
)

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

var idSeq int

func nextID() string {
	idSeq++
	return fmt.Sprintf("ev-%06d", idSeq)
}

// flowEv is a flow summary as the agent emits it.
func flowEv(entity string, at time.Time, src, dst string, dport int64, state string, srcBytes, dstBytes int64) event.Event {
	ev := event.Event{
		"@timestamp":        at,
		"event.start":       at,
		"event.id":          nextID(),
		"event.dataset":     "flow",
		"event.kind":        "event",
		"event.type":        []string{"connection", "end"},
		"organization.id":   entity,
		"host.name":         "srv01",
		"agent.id":          "agent-1",
		"source.ip":         src,
		"source.port":       int64(40000 + idSeq%20000),
		"destination.ip":    dst,
		"destination.port":  dport,
		"network.transport": "tcp",
		"source.bytes":      srcBytes,
		"destination.bytes": dstBytes,
	}
	if state != "" {
		ev["connection.state"] = state
	}
	return ev
}

func dnsEv(entity string, at time.Time, src, name, qtype string) event.Event {
	return event.Event{
		"@timestamp":        at,
		"event.id":          nextID(),
		"event.dataset":     "dns",
		"organization.id":   entity,
		"host.name":         "srv01",
		"agent.id":          "agent-1",
		"source.ip":         src,
		"source.port":       int64(50000),
		"destination.ip":    "10.0.0.53",
		"destination.port":  int64(53),
		"network.transport": "udp",
		"dns.question.name": name,
		"dns.question.type": qtype,
		"dns.response_code": "NOERROR",
	}
}

func runAll(d Detector, evs []event.Event) []Alert {
	var out []Alert
	for _, ev := range evs {
		out = append(out, d.Observe(ev)...)
	}
	return out
}
