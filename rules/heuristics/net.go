package heuristics

import (
	"net/netip"
	"strings"

	"github.com/csirt-toscana/platform/internal/event"
)

// cgnat is the shared address space of RFC 6598 (carrier-grade NAT).
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// isInternal reports whether an address is not routable on the Internet
// (private, ULA (and so the agent's pseudonyms), loopback, link-local,
// CGNAT, unspecified) or is in the extra internal networks.
func isInternal(a netip.Addr, extra []netip.Prefix) bool {
	a = a.Unmap()
	return a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsUnspecified() ||
		cgnat.Contains(a) || inPrefixes(a, extra)
}

// isGroup reports whether an address is multicast or broadcast (not one
// host: no scan, no beacon, no upload).
func isGroup(a netip.Addr) bool {
	a = a.Unmap()
	if a.IsMulticast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() {
		return true
	}
	if a.Is4() {
		b := a.As4()
		return b == [4]byte{255, 255, 255, 255} || b[3] == 255
	}
	return false
}

func addrField(ev event.Event, name string) (netip.Addr, bool) {
	s, _ := ev[name].(string)
	if s == "" {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

func intField(ev event.Event, name string) (int64, bool) {
	switch v := ev[name].(type) {
	case int64:
		return v, true
	case float64:
		return int64(v), true
	case int:
		return int64(v), true
	}
	return 0, false
}

// Flow field names of the agent's summaries (agents/internal/netsum) that
// are not ECS; read when present.
const (
	fieldConnState   = "connection.state"
	fieldOrigPayload = "connection.orig_bytes"
	fieldRespPayload = "connection.resp_bytes"
)

// connFailed classifies a flow as a failed or short connection attempt: a
// Zeek-like connection state that says the responder refused or never
// answered, or (without a state) no packet back, or no payload either way.
// ok is false when the event says nothing usable.
func connFailed(ev event.Event) (failed, ok bool) {
	if st, _ := ev[fieldConnState].(string); st != "" {
		switch strings.ToUpper(st) {
		case "S0", "REJ", "RSTOS0", "RSTRH", "SH", "SHR", "OTH", "S1":
			// S1 (established, never closed) counts as failed only when
			// nothing was exchanged: checked below.
			if strings.EqualFold(st, "S1") {
				return noPayload(ev), true
			}
			return true, true
		case "RSTO", "RSTR":
			// Established then reset: a connect() scan of an open port
			// (nothing sent) or a real, aborted session.
			return noPayload(ev), true
		default: // SF, S2, S3
			return false, true
		}
	}
	if dp, ok := intField(ev, "destination.packets"); ok && dp == 0 {
		return true, true
	}
	if _, has := ev[fieldOrigPayload]; has {
		return noPayload(ev), true
	}
	if db, ok := intField(ev, "destination.bytes"); ok {
		// Without payload counters: a reply that is at most two bare TCP
		// segments (SYN-ACK and RST, ~40-60 bytes of headers each).
		return db <= 120, true
	}
	return false, false
}

func noPayload(ev event.Event) bool {
	ob, ok1 := intField(ev, fieldOrigPayload)
	rb, ok2 := intField(ev, fieldRespPayload)
	if !ok1 && !ok2 {
		sb, _ := intField(ev, "source.bytes")
		db, _ := intField(ev, "destination.bytes")
		return sb+db <= 240
	}
	return ob == 0 && rb == 0
}
