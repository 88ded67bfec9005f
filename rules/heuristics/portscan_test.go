package heuristics

import (
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
)

func newPS() *PortScan { return NewPortScan(NewLayered(DefaultPortScanParams()), Options{}) }

// nmapSS is `nmap -sS -p 1-1000` against one host: SYN to each port in a
// shuffled order within a couple of seconds; closed ports answer RST (REJ),
// a few open ones SYN-ACK then the scanner's RST (RSTOS0-like, no payload).
func nmapSS(entity, src, dst string, at time.Time, ports int, open map[int64]bool) []event.Event {
	r := rand.New(rand.NewPCG(1, 2))
	order := r.Perm(ports)
	var evs []event.Event
	for i, p := range order {
		port := int64(p + 1)
		state := "REJ"
		if open[port] {
			state = "RSTO"
		}
		ev := flowEv(entity, at.Add(time.Duration(i)*2*time.Millisecond), src, dst, port, state, 44, 40)
		ev["source.packets"], ev["destination.packets"] = int64(1), int64(1)
		ev["connection.orig_bytes"], ev["connection.resp_bytes"] = int64(0), int64(0)
		evs = append(evs, ev)
	}
	return evs
}

func TestPortScanNmapSYN(t *testing.T) {
	d := newPS()
	evs := nmapSS("comune-a", "10.1.1.66", "10.1.1.10", t0, 1000, map[int64]bool{22: true, 80: true, 443: true})
	alerts := runAll(d, evs)
	if len(alerts) != 1 {
		t.Fatalf("nmap -sS -p 1-1000 in 2 s gave %d alerts, want 1 (one per key per window): %+v", len(alerts), alerts)
	}
	a := alerts[0]
	if a.Detector != PortScanID || a.Entity != "comune-a" || a.SourceIP != "10.1.1.66" || a.Name != "Port scan (vertical)" {
		t.Errorf("alert = %+v", a)
	}
	if a.Metrics["distinct_ports"] < 20 || len(a.EventIDs) == 0 || len(a.EventIDs) > 8 {
		t.Errorf("metrics %v, %d event ids", a.Metrics, len(a.EventIDs))
	}
	if a.Observables[1].Value != "10.1.1.10" {
		t.Errorf("observables %v", a.Observables)
	}
	// The same scan a minute later (next window) alerts again, with a new id.
	more := runAll(d, nmapSS("comune-a", "10.1.1.66", "10.1.1.10", t0.Add(2*time.Minute), 1000, nil))
	if len(more) != 1 || more[0].ID == a.ID {
		t.Fatalf("second scan gave %d alerts (id %v, first %s)", len(more), more, a.ID)
	}
}

func TestPortScanConnectTopPorts(t *testing.T) {
	// nmap -sT --top-ports 100: full connections to open ports (closed
	// with the scanner's RST, no payload), REJ elsewhere.
	top := []int64{7, 9, 13, 21, 22, 23, 25, 26, 37, 53, 79, 80, 81, 88, 106, 110, 111, 113, 119, 135, 139, 143, 144, 179, 199, 389, 427, 443, 444, 445, 465, 513, 514, 515, 543, 544, 548, 554, 587, 631, 646, 873, 990, 993, 995, 1025, 1026, 1027, 1028, 1029, 1110, 1433, 1720, 1723, 1755, 1900, 2000, 2001, 2049, 2121, 2717, 3000, 3128, 3306, 3389, 3986, 4899, 5000, 5009, 5051, 5060, 5101, 5190, 5357, 5432, 5631, 5666, 5800, 5900, 6000, 6001, 6646, 7070, 8000, 8008, 8009, 8080, 8081, 8443, 8888, 9100, 9999, 10000, 32768, 49152, 49153, 49154, 49155, 49156, 49157}
	var evs []event.Event
	for i, p := range top {
		state := "REJ"
		if p == 22 || p == 443 || p == 3306 {
			state = "RSTO"
		}
		evs = append(evs, flowEv("comune-a", t0.Add(time.Duration(i)*10*time.Millisecond), "192.168.5.9", "192.168.5.20", p, state, 180, 120))
	}
	alerts := runAll(newPS(), evs)
	if len(alerts) != 1 {
		t.Fatalf("nmap -sT --top-ports 100 gave %d alerts, want 1", len(alerts))
	}
}

func TestPortScanBrowserIsNotAScan(t *testing.T) {
	// A browser opening 20 connections to one web server (80 and 443), all
	// successful, plus a page pulling from 40 CDNs/ad servers on 443.
	var evs []event.Event
	for i := range 20 {
		port := int64(443)
		if i%5 == 0 {
			port = 80
		}
		evs = append(evs, flowEv("comune-a", t0.Add(time.Duration(i)*100*time.Millisecond), "10.1.1.30", "93.184.216.34", port, "SF", 2000, 90000))
	}
	for i := range 40 {
		evs = append(evs, flowEv("comune-a", t0.Add(time.Duration(i)*300*time.Millisecond), "10.1.1.30",
			"151.101."+itoa(i)+".1", 443, "SF", 3000, 50000))
	}
	d := newPS()
	if alerts := runAll(d, evs); len(alerts) != 0 {
		t.Fatalf("browsing gave %d alerts: %+v", len(alerts), alerts[0])
	}
	if st := d.Stats(); st.Ignored != 0 || st.Keys != 1 {
		t.Fatalf("stats %+v: every flow should count", st)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestPortScanHorizontalSweep(t *testing.T) {
	// SMB sweep: port 445 on 30 hosts of a /24, most with no answer.
	var evs []event.Event
	for i := range 30 {
		evs = append(evs, flowEv("comune-b", t0.Add(time.Duration(i)*50*time.Millisecond), "10.2.0.7", "10.2.1."+itoa(i+1), 445, "S0", 60, 0))
	}
	alerts := runAll(newPS(), evs)
	if len(alerts) != 1 || alerts[0].Name != "Port scan (horizontal)" || alerts[0].Observables[1] != (Observable{Type: "port", Value: "445"}) {
		t.Fatalf("sweep gave %+v", alerts)
	}
	// The same sweep on an ignored port (DNS) gives nothing.
	var dns []event.Event
	for i := range 30 {
		dns = append(dns, flowEv("comune-b", t0.Add(time.Duration(i)*50*time.Millisecond), "10.2.0.8", "10.2.1."+itoa(i+1), 53, "S0", 60, 0))
	}
	if alerts := runAll(newPS(), dns); len(alerts) != 0 {
		t.Fatalf("resolver traffic gave %+v", alerts)
	}
}

func TestPortScanSlowScanOutsideWindow(t *testing.T) {
	// 30 ports, one every 5 s: never 20 within 60 s.
	var evs []event.Event
	for i := range 30 {
		evs = append(evs, flowEv("comune-a", t0.Add(time.Duration(i)*5*time.Second), "10.1.1.66", "10.1.1.10", int64(100+i), "REJ", 40, 40))
	}
	if alerts := runAll(newPS(), evs); len(alerts) != 0 {
		t.Fatalf("slow probes gave %+v", alerts)
	}
	// With a per-entity longer window it is a scan.
	l := NewLayered(DefaultPortScanParams())
	if err := l.SetEntity("comune-a", []byte("window: 10m\n")); err != nil {
		t.Fatal(err)
	}
	if alerts := runAll(NewPortScan(l, Options{}), evs); len(alerts) != 1 {
		t.Fatalf("with a 10m window for the entity: %d alerts", len(alerts))
	}
}

func TestPortScanAllowSourceAndConnState(t *testing.T) {
	evs := nmapSS("comune-a", "10.9.9.9", "10.1.1.10", t0, 200, nil)
	l := NewLayered(DefaultPortScanParams())
	if err := l.SetEntity("comune-a", []byte("allow_sources: [10.9.9.0/24]\n")); err != nil {
		t.Fatal(err)
	}
	if alerts := runAll(NewPortScan(l, Options{}), evs); len(alerts) != 0 {
		t.Fatalf("allow-listed scanner gave %d alerts", len(alerts))
	}
	// Successful connections with payload weigh 0.1: 150 of them to
	// distinct ports (passive FTP data) make 15 < 20.
	var ftp []event.Event
	for i := range 150 {
		ftp = append(ftp, flowEv("comune-a", t0.Add(time.Duration(i)*100*time.Millisecond), "10.1.1.5", "10.1.1.6", int64(50000+i), "SF", 500, 200000))
	}
	if alerts := runAll(newPS(), ftp); len(alerts) != 0 {
		t.Fatalf("passive FTP gave %d alerts", len(alerts))
	}
}

func TestConnFailed(t *testing.T) {
	cases := []struct {
		ev           event.Event
		failed, isOK bool
	}{
		{event.Event{"connection.state": "REJ"}, true, true},
		{event.Event{"connection.state": "SF"}, false, true},
		{event.Event{"connection.state": "RSTO", "connection.orig_bytes": int64(0), "connection.resp_bytes": int64(0)}, true, true},
		{event.Event{"connection.state": "RSTO", "connection.orig_bytes": int64(10), "connection.resp_bytes": int64(0)}, false, true},
		{event.Event{"destination.packets": int64(0)}, true, true},
		{event.Event{"destination.bytes": int64(40)}, true, true},
		{event.Event{"destination.bytes": int64(4000)}, false, true},
		{event.Event{}, false, false},
	}
	for i, c := range cases {
		f, ok := connFailed(c.ev)
		if f != c.failed || ok != c.isOK {
			t.Errorf("case %d %v: got %v %v", i, c.ev, f, ok)
		}
	}
}

func TestPortScanExternalSources(t *testing.T) {
	evs := nmapSS("comune-a", "45.33.32.156", "10.1.1.10", t0, 100, nil)
	alerts := runAll(newPS(), evs)
	if len(alerts) != 1 || alerts[0].Severity != SeverityLow {
		t.Fatalf("Internet scanner: %+v", alerts)
	}
	l := NewLayered(DefaultPortScanParams())
	if err := l.SetEntity("comune-a", []byte("external_sources: false\n")); err != nil {
		t.Fatal(err)
	}
	if alerts := runAll(NewPortScan(l, Options{}), evs); len(alerts) != 0 {
		t.Fatalf("external_sources false: %d alerts", len(alerts))
	}
	// Internal scanners keep their severity: 100 refused ports is 5x.
	if alerts := runAll(newPS(), nmapSS("comune-a", "10.1.1.66", "10.1.1.10", t0, 100, nil)); len(alerts) != 1 || alerts[0].Severity != SeverityMedium {
		t.Fatalf("internal scanner: %+v", alerts)
	}
}
