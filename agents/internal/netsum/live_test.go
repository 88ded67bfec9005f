package netsum

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/agents/internal/source"
	"github.com/csirt-toscana/platform/internal/envelope"
	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/testenv"
)

// netnsLab is a network namespace joined to the root namespace by a veth
// pair: hostIP on the root side (hostIf), peerIP inside the namespace.
type netnsLab struct {
	ns, hostIf, peerIf string
	hostIP, peerIP     string
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput() //nolint:gosec // test commands
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newNetnsLab needs root and the ip tool; it skips otherwise.
func newNetnsLab(t testing.TB) *netnsLab {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "the live capture test needs root (network namespaces)")
	}
	if !LiveCaptureAvailable {
		testenv.Unavailable(t, "this build has no live capture (built without cgo)")
	}
	for _, tool := range []string{"ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Unavailable(t, "the live capture test needs "+tool+" (deploy/dev/packages installs it)")
		}
	}
	n := os.Getpid()%200 + 20
	l := &netnsLab{
		ns:     fmt.Sprintf("netsum-%d", os.Getpid()),
		hostIf: fmt.Sprintf("nsm%da", os.Getpid()%100000),
		peerIf: fmt.Sprintf("nsm%db", os.Getpid()%100000),
		hostIP: fmt.Sprintf("10.213.%d.1", n),
		peerIP: fmt.Sprintf("10.213.%d.2", n),
	}
	_ = exec.Command("ip", "netns", "del", l.ns).Run() //nolint:gosec // leftovers of an earlier run
	run(t, "ip", "netns", "add", l.ns)
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", l.hostIf).Run() //nolint:gosec // test cleanup
		_ = exec.Command("ip", "netns", "del", l.ns).Run()    //nolint:gosec // test cleanup
	})
	run(t, "ip", "link", "add", l.hostIf, "type", "veth", "peer", "name", l.peerIf)
	run(t, "ip", "link", "set", l.peerIf, "netns", l.ns)
	run(t, "ip", "addr", "add", l.hostIP+"/24", "dev", l.hostIf)
	run(t, "ip", "link", "set", l.hostIf, "up")
	run(t, "ip", "netns", "exec", l.ns, "ip", "addr", "add", l.peerIP+"/24", "dev", l.peerIf)
	run(t, "ip", "netns", "exec", l.ns, "ip", "link", "set", l.peerIf, "up")
	run(t, "ip", "netns", "exec", l.ns, "ip", "link", "set", "lo", "up")
	return l
}

// serveDNS answers every A query with 192.0.2.7 (a documentation address).
func serveDNS(t *testing.T, addr string) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n < 12 {
				continue
			}
			q := buf[:n]
			// the question ends after the name and 4 bytes of type and class
			end := 12
			for end < n && q[end] != 0 {
				end += int(q[end]) + 1
			}
			end += 5
			if end > n {
				continue
			}
			resp := append([]byte(nil), q[:end]...)
			binary.BigEndian.PutUint16(resp[2:], 0x8180)
			binary.BigEndian.PutUint16(resp[6:], 1)  // ancount
			binary.BigEndian.PutUint16(resp[8:], 0)  // nscount
			binary.BigEndian.PutUint16(resp[10:], 0) // arcount (drop EDNS)
			resp = append(resp, 0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 7)
			_, _ = pc.WriteTo(resp, from)
		}
	}()
}

// TestLiveCapture captures real curl and dig traffic on a veth pair and
// checks the flow, dns and http summaries that reach the record channel.
func TestLiveCapture(t *testing.T) {
	for _, tool := range []string{"curl", "dig"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Unavailable(t, "the live capture test needs "+tool+" (deploy/dev/packages installs it)")
		}
	}
	lab := newNetnsLab(t)
	serveDNS(t, lab.hostIP+":53")
	srv := &http.Server{Addr: lab.hostIP + ":8080", ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("hello\n")) })}
	ln, err := net.Listen("tcp4", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	src, err := source.Default.New("capture", "netsum-live", source.StrictYAML([]byte("interface: "+lab.hostIf+"\nsnaplen: 1600\n")), source.Deps{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan source.Record, 1000)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, out) }()
	deadline := time.Now().Add(10 * time.Second)
	for src.Status()[0].State != source.StateReading {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("capture did not start: %+v", src.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	run(t, "ip", "netns", "exec", lab.ns, "dig", "+tries=1", "+time=3", "+noedns", "@"+lab.hostIP, "www.example.test", "A")
	body := run(t, "ip", "netns", "exec", lab.ns, "curl", "-sS", "--max-time", "5", "-A", "netsum-live-test/1.0", "http://"+lab.hostIP+":8080/hello/world?x=1")
	if body != "hello\n" {
		t.Fatalf("curl got %q", body)
	}
	time.Sleep(300 * time.Millisecond) // let the last packets reach the ring
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	close(out)
	var evs []event.Event
	for r := range out {
		if r.Kind != envelope.KindSummary || r.Stream != "netsum-live" {
			t.Errorf("record of kind %v stream %q", r.Kind, r.Stream)
		}
		e, err := event.Decode(r.Data)
		if err != nil {
			t.Fatalf("record is not an event: %v: %s", err, r.Data)
		}
		evs = append(evs, e)
	}
	find := func(ds string, match func(event.Event) bool) event.Event {
		for _, e := range byDataset(evs, ds) {
			if match(e) {
				return e
			}
		}
		t.Fatalf("no %s summary among %d events: %v", ds, len(evs), evs)
		return nil
	}
	dns := find("dns", func(e event.Event) bool { return e.String("dns.question.name") == "www.example.test" })
	for k, want := range map[string]string{"dns.question.type": "A", "dns.response_code": "NOERROR", "source.ip": lab.peerIP, "destination.ip": lab.hostIP, "destination.port": "53", "network.transport": "udp"} {
		if got := dns.String(k); got != want {
			t.Errorf("dns %s = %q, want %q", k, got, want)
		}
	}
	if a := dns.Strings("dns.answers.data"); len(a) != 1 || a[0] != "192.0.2.7" {
		t.Errorf("dns answers %v", a)
	}
	h := find("http", func(e event.Event) bool { return e.String("url.path") == "/hello/world" })
	for k, want := range map[string]string{"http.request.method": "GET", "url.original": "/hello/world?x=1", "url.query": "x=1",
		"url.domain": lab.hostIP, "user_agent.original": "netsum-live-test/1.0", "http.response.status_code": "200", "destination.port": "8080"} {
		if got := h.String(k); got != want {
			t.Errorf("http %s = %q, want %q", k, got, want)
		}
	}
	fl := find("flow", func(e event.Event) bool {
		return e.String("destination.port") == "8080" && e.String("network.transport") == "tcp"
	})
	for k, want := range map[string]string{"source.ip": lab.peerIP, "network.protocol": "http", FieldConnState: "SF"} {
		if got := fl.String(k); got != want {
			t.Errorf("flow %s = %q, want %q (history %s)", k, got, want, fl.String(FieldHistory))
		}
	}
	if fl.String("network.community_id") != h.String("network.community_id") || fl.String("network.community_id") == "" {
		t.Errorf("flow and http community ids differ: %q %q", fl.String("network.community_id"), h.String("network.community_id"))
	}
	st := src.(StatsReporter).CaptureStats()
	if st.Received == 0 || st.Summary.Flows < 2 {
		t.Errorf("capture stats %+v", st)
	}
	t.Logf("capture stats: received %d dropped %d ifdropped %d flows %d summaries %d", st.Received, st.Dropped, st.IfDropped, st.Summary.Flows, st.Summary.Summaries)
}
