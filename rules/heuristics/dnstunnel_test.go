package heuristics

import (
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
)

func newDNS() *DNSTunnel { return NewDNSTunnel(NewLayered(DefaultDNSTunnelParams()), Options{}) }

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// chunked splits s into labels of at most n characters.
func chunked(s string, n int) string {
	var labels []string
	for len(s) > n {
		labels = append(labels, s[:n])
		s = s[n:]
	}
	return strings.Join(append(labels, s), ".")
}

// tunnelQueries encodes random data as base32 (or hex) chunks under one
// parent, as iodine- or dnscat2-like tools do.
func tunnelQueries(r *rand.Rand, n int, parent, qtype string, useHex bool) []event.Event {
	var evs []event.Event
	for i := range n {
		buf := make([]byte, 60)
		for j := range buf {
			buf[j] = byte(r.UintN(256))
		}
		var enc string
		if useHex {
			enc = hex.EncodeToString(buf[:50])
		} else {
			enc = strings.ToLower(b32.EncodeToString(buf))
		}
		name := chunked(enc, 63) + "." + parent
		evs = append(evs, dnsEv("comune-d", t0.Add(time.Duration(i)*300*time.Millisecond), "10.4.0.21", name, qtype))
	}
	return evs
}

func TestDNSTunnelBase32(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 11))
	alerts := runAll(newDNS(), tunnelQueries(r, 200, "t.exfil-example.com", "A", false))
	if len(alerts) != 1 {
		t.Fatalf("200 base32 queries gave %d alerts, want 1", len(alerts))
	}
	a := alerts[0]
	if a.Observables[1] != (Observable{Type: "domain", Value: "exfil-example.com"}) || a.SourceIP != "10.4.0.21" {
		t.Errorf("alert %+v", a)
	}
	if a.Metrics["score"] < 70 || len(a.EventIDs) == 0 {
		t.Errorf("metrics %v", a.Metrics)
	}
	t.Log(a.Message)
}

func TestDNSTunnelHexTXT(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 12))
	alerts := runAll(newDNS(), tunnelQueries(r, 60, "cmd.example.co.uk", "TXT", true))
	if len(alerts) != 1 || alerts[0].Observables[1].Value != "example.co.uk" {
		t.Fatalf("hex TXT tunnel: %+v", alerts)
	}
	if m := alerts[0].Metrics; m["typed_queries"] != m["queries"] || m["long_queries"] != m["queries"] {
		t.Errorf("metrics %v: every query is a long TXT query", m)
	}
}

func TestDNSTunnelBenign(t *testing.T) {
	names := []string{"www.google.com", "mail.google.com", "www.comune.firenze.it", "outlook.office365.com",
		"login.microsoftonline.com", "r3---sn-hpa7kn7s.googlevideo.com", "clientservices.googleapis.com",
		"fonts.gstatic.com", "d1a2b3c4d5e6f7.cloudfront.net", "e1234.dscb.akamaiedge.net", "api.github.com",
		"_ldap._tcp.dc._msdcs.comune.local", "wpad.comune.local", "time.windows.com", "ocsp.digicert.com"}
	r := rand.New(rand.NewPCG(13, 13))
	var evs []event.Event
	for i := range 2000 {
		evs = append(evs, dnsEv("comune-d", t0.Add(time.Duration(i)*200*time.Millisecond), "10.4.0.22", names[r.IntN(len(names))], "A"))
	}
	// A mail server checking every sender against blocklists: reversed
	// addresses under allow-listed and unlisted lists alike.
	for i := range 500 {
		ip := fmt.Sprintf("%d.%d.%d.%d", r.IntN(256), r.IntN(256), r.IntN(256), 1+r.IntN(254))
		evs = append(evs,
			dnsEv("comune-d", t0.Add(time.Duration(i)*time.Second), "10.4.0.25", ip+".zen.spamhaus.org", "A"),
			dnsEv("comune-d", t0.Add(time.Duration(i)*time.Second), "10.4.0.25", ip+".bl.dnsbl-example.org", "A"))
	}
	// An anti-virus looking up file hashes (allow-listed parent).
	for i := range 300 {
		h := make([]byte, 32)
		for j := range h {
			h[j] = byte(r.UintN(256))
		}
		evs = append(evs, dnsEv("comune-d", t0.Add(time.Duration(i)*time.Second), "10.4.0.23", hex.EncodeToString(h)+".a.sophosxl.net", "A"))
	}
	d := newDNS()
	if alerts := runAll(d, evs); len(alerts) != 0 {
		t.Fatalf("benign DNS gave %d alerts, first: %s", len(alerts), alerts[0].Message)
	}
	if st := d.Stats(); st.Keys < 10 {
		t.Fatalf("stats %+v: the queries were not scored", st)
	}
}

func TestDNSTunnelEntityAllowList(t *testing.T) {
	r := rand.New(rand.NewPCG(14, 14))
	evs := tunnelQueries(r, 100, "x.vendor-telemetry.example", "A", false)
	l := NewLayered(DefaultDNSTunnelParams())
	if err := l.SetEntity("comune-d", []byte("extra_allow_parents: [vendor-telemetry.example]\n")); err != nil {
		t.Fatal(err)
	}
	if alerts := runAll(NewDNSTunnel(l, Options{}), evs); len(alerts) != 0 {
		t.Fatalf("allow-listed parent gave %d alerts", len(alerts))
	}
	if p := l.For("comune-d"); len(p.allow) != len(DefaultAllowParents)+1 {
		t.Fatalf("entity allow list has %d entries, want the defaults plus one", len(p.allow))
	}
	if alerts := runAll(newDNS(), evs); len(alerts) != 1 {
		t.Fatalf("without the allow-list: %d alerts", len(alerts))
	}
}

func TestShannon(t *testing.T) {
	if b, n := shannon("aaaa"); b != 0 || n != 4 {
		t.Errorf("aaaa: %v %d", b, n)
	}
	if b, _ := shannon("ab.ab"); b != 1 {
		t.Errorf("abab: %v", b)
	}
	if b, _ := shannon("0123456789abcdef"); b != 4 {
		t.Errorf("hex alphabet: %v", b)
	}
}
