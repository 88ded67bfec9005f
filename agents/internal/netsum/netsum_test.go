package netsum

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/layers"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/policy"
)

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func feed(s *Summarizer, frames []timedFrame) {
	for _, f := range frames {
		s.Packet(f.ts, layers.LinkTypeEthernet, f.data)
	}
}

func collect(cfg Config) (*Summarizer, *[]event.Event) {
	var evs []event.Event
	cfg.Emit = func(e event.Event) { evs = append(evs, e) }
	return New(cfg), &evs
}

func TestHTTPSessionSummaries(t *testing.T) {
	b := newFrameBuilder()
	s, evs := collect(Config{})
	client, server := net.IPv4(192, 0, 2, 10), net.IPv4(198, 51, 100, 20)
	feed(s, httpSession(t, b, client, server, 40000, t0))
	s.Flush()
	if len(*evs) != 2 {
		t.Fatalf("want http and flow events, got %v", *evs)
	}
	h, f := (*evs)[0], (*evs)[1]
	for k, want := range map[string]string{
		"event.dataset": "http", "http.request.method": "GET", "url.original": "/index.html?q=1", "url.path": "/index.html",
		"url.domain": "www.example.test", "user_agent.original": "test-agent/1", "http.response.status_code": "200",
		"source.ip": "192.0.2.10", "destination.port": "80",
	} {
		if got := h.String(k); got != want {
			t.Errorf("http %s = %q, want %q", k, got, want)
		}
	}
	for k, want := range map[string]string{
		"event.dataset": "flow", FieldConnState: "SF", FieldHistory: "ShADdFf", "source.packets": "5", "destination.packets": "3",
		FieldOrigPayload: "82", FieldRespPayload: "43", "network.protocol": "http", "event.duration": "7000000",
	} {
		if got := f.String(k); got != want {
			t.Errorf("flow %s = %q, want %q", k, got, want)
		}
	}
	for _, e := range *evs {
		if err := checkEvent(e); err != nil {
			t.Error(err)
		}
		js, _ := e.MarshalJSON()
		if bytes.Contains(js, []byte("hello")) {
			t.Errorf("payload leaked into a summary: %s", js)
		}
	}
}

func TestCommunityIDSpecVectors(t *testing.T) {
	// Vectors of the Community ID specification's baseline (seed 0).
	a := netip.MustParseAddr("128.232.110.120").AsSlice()
	b := netip.MustParseAddr("66.35.250.204").AsSlice()
	want := "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
	if got := CommunityID(a, b, protoTCP, 34855, 80); got != want {
		t.Errorf("tcp: %s, want %s", got, want)
	}
	if got := CommunityID(b, a, protoTCP, 80, 34855); got != want {
		t.Errorf("tcp reversed: %s, want %s", got, want)
	}
	// ICMP echo request and reply give the same id; a one-way type keeps its direction.
	x, y := netip.MustParseAddr("192.168.0.89").AsSlice(), netip.MustParseAddr("192.168.0.1").AsSlice()
	req, rep := CommunityID(x, y, protoICMP, 8, 0), CommunityID(y, x, protoICMP, 0, 0)
	if req != rep {
		t.Errorf("echo request %s and reply %s differ", req, rep)
	}
	if u1, u2 := CommunityID(x, y, protoICMP, 3, 1), CommunityID(y, x, protoICMP, 3, 1); u1 == u2 {
		t.Errorf("one-way ICMP ids should depend on direction: %s", u1)
	}
}

func TestPrivacyExclusionAndPseudonyms(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	pv, err := NewPrivacy(policy.Capture{HashInternal: true, Exclude: policy.Exclude{Networks: []string{"203.0.113.0/24"}, Ports: []int{22}}}, key)
	if err != nil {
		t.Fatal(err)
	}
	b := newFrameBuilder()
	s, evs := collect(Config{Privacy: pv})
	internal, external := net.IPv4(10, 1, 2, 3), net.IPv4(198, 51, 100, 20)
	feed(s, httpSession(t, b, internal, external, 40001, t0))
	feed(s, httpSession(t, b, internal, net.IPv4(203, 0, 113, 5), 40002, t0))
	s.Packet(t0, layers.LinkTypeEthernet, b.tcp(t, internal, external, 50000, 22, flagSYN, 1, 0, nil))
	s.Flush()
	if st := s.Stats(); st.Excluded != 9 {
		t.Errorf("excluded %d packets, want 9 (8 to an excluded network, 1 to an excluded port)", st.Excluded)
	}
	if len(*evs) != 2 {
		t.Fatalf("want 2 events, got %d: %v", len(*evs), *evs)
	}
	pseudo := Pseudonym(key, netip.MustParseAddr("10.1.2.3")).String()
	for _, e := range *evs {
		if got := e.String("source.ip"); got != pseudo || !strings.HasPrefix(got, "fd") {
			t.Errorf("source.ip %q, want the pseudonym %q", got, pseudo)
		}
		if got := e.String("destination.ip"); got != "198.51.100.20" {
			t.Errorf("external address changed: %q", got)
		}
		js, _ := e.MarshalJSON()
		if bytes.Contains(js, []byte("10.1.2.3")) {
			t.Errorf("internal address leaked: %s", js)
		}
	}
	if Pseudonym(bytes.Repeat([]byte{8}, 32), netip.MustParseAddr("10.1.2.3")).String() == pseudo {
		t.Error("pseudonym does not depend on the key")
	}
	if _, err := NewPrivacy(policy.Capture{HashInternal: true}, nil); err == nil {
		t.Error("hash_internal without a key accepted")
	}
	if _, err := NewPrivacy(policy.Capture{Exclude: policy.Exclude{Networks: []string{"10.0.0.0/33"}}}, nil); err == nil {
		t.Error("bad CIDR accepted")
	}
}

func TestCaptureFilter(t *testing.T) {
	f, err := CaptureFilter(policy.Capture{BPF: "tcp or udp", Exclude: policy.Exclude{Networks: []string{"10.9.0.0/16"}, Ports: []int{22, 3389}}})
	if err != nil {
		t.Fatal(err)
	}
	if want := "(tcp or udp) and not (net 10.9.0.0/16 or port 22 or port 3389)"; f != want {
		t.Errorf("filter %q, want %q", f, want)
	}
	if f, _ := CaptureFilter(policy.Capture{}); f != "" {
		t.Errorf("empty policy gave filter %q", f)
	}
	if _, err := CaptureFilter(policy.Capture{Exclude: policy.Exclude{Ports: []int{70000}}}); err == nil {
		t.Error("port 70000 accepted")
	}
}

func TestFlowTableCapEvictsOldest(t *testing.T) {
	b := newFrameBuilder()
	s, evs := collect(Config{MaxFlows: 10})
	for i := range 25 {
		s.Packet(t0.Add(time.Duration(i)*time.Millisecond), layers.LinkTypeEthernet,
			b.udp(t, net.IPv4(192, 0, 2, 1), net.IPv4(198, 51, 100, 1), uint16(10000+i), 9999, []byte("x"))) //nolint:gosec // small
	}
	st := s.Stats()
	if st.ActiveFlows != 10 || st.Evicted != 15 {
		t.Fatalf("active %d evicted %d, want 10 and 15", st.ActiveFlows, st.Evicted)
	}
	if len(*evs) != 15 || (*evs)[0].String("source.port") != "10000" || (*evs)[14].String("source.port") != "10014" {
		t.Fatalf("evicted flows not reported oldest first: %d events", len(*evs))
	}
}

func TestIdleAndActiveTimeouts(t *testing.T) {
	b := newFrameBuilder()
	s, evs := collect(Config{Timeouts: Timeouts{Short: 30 * time.Second, Active: time.Minute}})
	a, c := net.IPv4(192, 0, 2, 1), net.IPv4(198, 51, 100, 1)
	// a flow that goes idle
	s.Packet(t0, layers.LinkTypeEthernet, b.udp(t, a, c, 1001, 2000, []byte("x")))
	// one packet every 10 s for 3 minutes: reported by the active timeout
	for i := range 19 {
		s.Packet(t0.Add(time.Duration(i)*10*time.Second), layers.LinkTypeEthernet, b.udp(t, a, c, 1000, 2000, []byte("x")))
	}
	var idle, active int
	for _, e := range *evs {
		switch e.Strings("event.type")[1] {
		case "end":
			idle++
		case "info":
			active++
		}
	}
	if idle != 1 || active < 2 {
		t.Fatalf("idle-ended %d (want 1), active reports %d (want >= 2)", idle, active)
	}
}

func TestTCPReuseAfterClose(t *testing.T) {
	b := newFrameBuilder()
	s, evs := collect(Config{})
	c, sv := net.IPv4(192, 0, 2, 1), net.IPv4(198, 51, 100, 1)
	feed(s, httpSession(t, b, c, sv, 40000, t0))
	feed(s, httpSession(t, b, c, sv, 40000, t0.Add(3*time.Second)))
	s.Flush()
	if flows := byDataset(*evs, "flow"); len(flows) != 2 {
		t.Fatalf("a new SYN after a close should start a new flow: %d flows", len(flows))
	}
}

func TestPcapMain(t *testing.T) {
	dir := zeekDir(t)
	var out, errb bytes.Buffer
	if code := PcapMain([]string{"--stats", dir + "/Traces/http/get.pcap"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) < 2 {
		t.Fatalf("want flow and http lines, got %q", out.String())
	}
	for _, l := range lines {
		e, err := event.Decode([]byte(l))
		if err != nil {
			t.Fatalf("line is not an event: %v: %s", err, l)
		}
		if e.Dataset() == "" || e.String("network.community_id") == "" {
			t.Errorf("event without dataset or community id: %s", l)
		}
	}
	if !strings.Contains(errb.String(), `"Packets"`) {
		t.Errorf("--stats printed %q", errb.String())
	}
	errb.Reset()
	if code := PcapMain([]string{"/nonexistent.pcap"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "opening capture file") {
		t.Errorf("missing file: exit %d, %q", code, errb.String())
	}
	if code := PcapMain(nil, &out, &errb); code != 2 {
		t.Errorf("no file: exit %d", code)
	}
	if code := PcapMain([]string{"--format", "xml", "x"}, &out, &errb); code != 2 {
		t.Errorf("bad format: exit %d", code)
	}
}

func TestDNSOverTCPAndUDP(t *testing.T) {
	b := newFrameBuilder()
	s, evs := collect(Config{})
	c, sv := net.IPv4(192, 0, 2, 1), net.IPv4(198, 51, 100, 53)
	s.Packet(t0, layers.LinkTypeEthernet, b.udp(t, c, sv, 33333, 53, dnsMessage(77, "a.example.test", false)))
	s.Packet(t0.Add(time.Millisecond), layers.LinkTypeEthernet, b.udp(t, sv, c, 53, 33333, dnsMessage(77, "a.example.test", true)))
	q, r := dnsMessage(78, "b.example.test", false), dnsMessage(78, "b.example.test", true)
	tq := append([]byte{byte(len(q) >> 8), byte(len(q))}, q...)
	tr := append([]byte{byte(len(r) >> 8), byte(len(r))}, r...)
	feed(s, []timedFrame{
		{t0, b.tcp(t, c, sv, 40000, 53, flagSYN, 100, 0, nil)},
		{t0, b.tcp(t, sv, c, 53, 40000, flagSYN|flagACK, 900, 101, nil)},
		{t0, b.tcp(t, c, sv, 40000, 53, flagACK, 101, 901, nil)},
		{t0, b.tcp(t, c, sv, 40000, 53, flagACK|flagPSH, 101, 901, tq[:5])}, // split across segments
		{t0, b.tcp(t, c, sv, 40000, 53, flagACK|flagPSH, 106, 901, tq[5:])},
		{t0, b.tcp(t, sv, c, 53, 40000, flagACK|flagPSH, 901, 101+uint32(len(tq)), tr)},
	})
	s.Flush()
	names := map[string]string{}
	for _, e := range byDataset(*evs, "dns") {
		names[e.String("network.transport")+" "+e.String("dns.question.name")] = e.String("dns.response_code") + " " + strings.Join(e.Strings("dns.answers.data"), ",")
	}
	for _, k := range []string{"udp a.example.test", "tcp b.example.test"} {
		if names[k] != "NOERROR 192.0.2.9" {
			t.Errorf("%s: %q (all: %v)", k, names[k], names)
		}
	}
}
