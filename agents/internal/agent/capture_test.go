package agent

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/agents/internal/netsum"
	"github.com/csirt-toscana/platform/internal/policy"
	"github.com/csirt-toscana/platform/internal/testenv"
)

// dnsQuery builds a DNS message for name, type A: a query, or the
// NXDOMAIN answer to it.
func dnsQuery(id uint16, name string, response bool) []byte {
	b := make([]byte, 12, 64)
	binary.BigEndian.PutUint16(b[0:], id)
	flags := uint16(0x0100) // RD
	if response {
		flags = 0x8183 // QR, RD, RA, NXDOMAIN
	}
	binary.BigEndian.PutUint16(b[2:], flags)
	binary.BigEndian.PutUint16(b[4:], 1)
	for _, label := range strings.Split(name, ".") {
		b = append(b, byte(len(label)))
		b = append(b, label...)
	}
	return append(b, 0, 0, 1, 0, 1)
}

func capturePolicy(base policy.Policy, on bool, addr string) policy.Policy {
	p := base
	p.Capture = policy.Capture{Enabled: on, Interface: "lo", BPF: "udp and host " + addr}
	p.Normalize()
	return p
}

// TestCaptureFromPolicy turns capture on and off by policy while the agent
// runs: the capture source starts on lo, its DNS summaries arrive in the
// "capture" stream, status and heartbeats carry its counters, and turning
// it off removes it without a restart. It needs CAP_NET_RAW and libpcap.
func TestCaptureFromPolicy(t *testing.T) {
	if !netsum.LiveCaptureAvailable {
		testenv.Unavailable(t, "built without cgo: no live capture")
	}
	if mask, err := procCapEff(); err != nil || mask&capNetRaw == 0 {
		testenv.Unavailable(t, "needs CAP_NET_RAW (run the tests as root)")
	}
	// A DNS server on a loopback address of its own, so the capture
	// filter sees only this test's packets.
	const addr = "127.0.0.77"
	srv, err := net.ListenPacket("udp", addr+":53")
	if err != nil {
		testenv.Unavailable(t, fmt.Sprintf("cannot listen on %s:53: %v", addr, err))
	}
	defer srv.Close()
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := srv.ReadFrom(buf)
			if err != nil {
				return
			}
			if n >= 12 {
				_, _ = srv.WriteTo(dnsQuery(binary.BigEndian.Uint16(buf), "probe.example.org", true), from)
			}
		}
	}()

	f := newFixture(t, time.Now().Add(-time.Hour), time.Now().Add(90*24*time.Hour))
	base := policy.Policy{HeartbeatInterval: policy.Duration(time.Second)}
	off := capturePolicy(base, false, addr)
	a := f.agent(nil)
	stop := run(t, a)
	defer stop()
	if err := a.ApplyPolicy(context.Background(), off); err != nil {
		t.Fatal(err)
	}
	if a.Status().Capture != nil {
		t.Fatal("capture counters while capture is off")
	}

	on := capturePolicy(base, true, addr)
	if err := a.ApplyPolicy(context.Background(), on); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the capture to start on lo", func() bool {
		for _, s := range a.Status().Sources {
			if s.Source == CaptureSource && s.State == "reading" {
				return true
			}
		}
		return false
	})
	cli, err := net.Dial("udp", addr+":53")
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	defer func() {
		if t.Failed() {
			st := a.Status()
			t.Logf("capture %+v sources %+v\nagent log:\n%s", st.Capture, st.Sources, f.logText())
		}
	}()
	sent := 0
	waitFor(t, "a DNS summary in the capture stream", func() bool {
		sent++
		if _, err := cli.Write(dnsQuery(uint16(sent), "probe.example.org", false)); err != nil { //nolint:gosec // G115: small counter
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		f.kafka.mu.Lock()
		defer f.kafka.mu.Unlock()
		for _, b := range f.kafka.batches {
			if b.StreamID != CaptureSource {
				continue
			}
			for _, r := range b.Records {
				var e struct {
					Event struct{ Dataset string } `json:"event"`
					DNS   struct {
						Question     struct{ Name string } `json:"question"`
						ResponseCode string                `json:"response_code"`
					} `json:"dns"`
				}
				if json.Unmarshal(r.Data, &e) == nil && e.Event.Dataset == "dns" && e.DNS.Question.Name == "probe.example.org" && e.DNS.ResponseCode == "NXDOMAIN" {
					return true
				}
			}
		}
		return false
	})
	waitFor(t, "capture counters in the status", func() bool {
		c := a.Status().Capture
		return c != nil && c.Interface == "lo" && c.Packets >= 2 && c.Summaries >= 1
	})
	waitFor(t, "capture counters in a heartbeat", func() bool {
		_, hbs := f.kafka.lines()
		for _, h := range hbs {
			if h.Capture != nil && h.Capture.Packets >= 2 {
				return true
			}
		}
		return false
	})

	if err := a.ApplyPolicy(context.Background(), off); err != nil {
		t.Fatal(err)
	}
	if a.Status().Capture != nil {
		t.Error("capture counters after the policy turned capture off")
	}
	for _, s := range a.Status().Sources {
		if s.Source == CaptureSource {
			t.Errorf("capture source still listed after capture was turned off: %+v", s)
		}
	}
	if a.Reloads() != 3 {
		t.Errorf("reloads %d, want 3", a.Reloads())
	}
}

func TestCaptureNameClash(t *testing.T) {
	f := newFixture(t, time.Now().Add(-time.Hour), time.Now().Add(90*24*time.Hour))
	a := f.agent(nil)
	p := policy.Policy{Sources: []policy.Source{fileSource(CaptureSource, "/var/log/x.log")}, Capture: policy.Capture{Enabled: true, Interface: "lo"}}
	p.Normalize()
	err := a.ApplyPolicy(context.Background(), p)
	if err == nil || !strings.Contains(err.Error(), "reserved for packet capture") {
		t.Fatalf("a policy with a source named capture and capture on: %v", err)
	}
}

func TestMemoryLimitFor(t *testing.T) {
	on, off := policy.Policy{Capture: policy.Capture{Enabled: true}}, policy.Policy{}
	c := DefaultConfig()
	if got := MemoryLimitFor(c, off); got != DefaultMemoryLimit {
		t.Errorf("default without capture: %d", got)
	}
	if got := MemoryLimitFor(c, on); got != DefaultCaptureMemoryLimit {
		t.Errorf("default with capture: %d", got)
	}
	for text, want := range map[string]int64{"memory_limit: 64MiB\n": 64 << 20, "memory_limit: off\n": 0} {
		c, err := ParseConfig([]byte(text))
		if err != nil {
			t.Fatal(err)
		}
		if got := MemoryLimitFor(c, on); got != want {
			t.Errorf("%q: %d, want %d", text, got, want)
		}
	}
	for _, bad := range []string{"memory_limit: 1MiB\n", "memory_limit: lots\n"} {
		if _, err := ParseConfig([]byte(bad)); err == nil || !strings.Contains(err.Error(), "memory_limit") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestMaxProcsFor(t *testing.T) {
	off, on := policy.Policy{}, policy.Policy{}
	on.Capture.Enabled = true
	var c Config
	if got := MaxProcsFor(c, off); got != 1 {
		t.Errorf("logs only: GOMAXPROCS %d, want 1", got)
	}
	if got := MaxProcsFor(c, on); got != runtime.NumCPU() {
		t.Errorf("capture on: GOMAXPROCS %d, want %d", got, runtime.NumCPU())
	}
	c, err := ParseConfig([]byte("max_procs: 3\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := MaxProcsFor(c, off); got != 3 {
		t.Errorf("max_procs 3: got %d", got)
	}
	if _, err := ParseConfig([]byte("max_procs: -1\n")); err == nil || !strings.Contains(err.Error(), "max_procs") {
		t.Errorf("max_procs -1: %v, want an error naming max_procs", err)
	}
}
