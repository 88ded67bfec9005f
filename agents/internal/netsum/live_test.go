package netsum

import (
	"context"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/agents/internal/source"
	"github.com/csirt-toscana/platform/internal/envelope"
	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/testenv"
	"github.com/csirt-toscana/platform/internal/testenv/netns"
)

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput() //nolint:gosec // test commands
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newNetnsLab is a network namespace lab (internal/testenv/netns) for a
// test that captures on its root side: it needs root, the ip tool and a
// build with live capture.
func newNetnsLab(t testing.TB) *netns.Lab {
	t.Helper()
	if !LiveCaptureAvailable {
		testenv.Unavailable(t, "this build has no live capture (built without cgo)")
	}
	return netns.New(t, "nsm")
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
	netns.ServeDNS(t, lab.HostIP+":53")
	srv := &http.Server{Addr: lab.HostIP + ":8080", ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("hello\n")) })}
	ln, err := net.Listen("tcp4", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	src, err := source.Default.New("capture", "netsum-live", source.StrictYAML([]byte("interface: "+lab.HostIf+"\nsnaplen: 1600\n")), source.Deps{StateDir: t.TempDir()})
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
	run(t, "ip", "netns", "exec", lab.NS, "dig", "+tries=1", "+time=3", "+noedns", "@"+lab.HostIP, "www.example.test", "A")
	body := run(t, "ip", "netns", "exec", lab.NS, "curl", "-sS", "--max-time", "5", "-A", "netsum-live-test/1.0", "http://"+lab.HostIP+":8080/hello/world?x=1")
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
	for k, want := range map[string]string{"dns.question.type": "A", "dns.response_code": "NOERROR", "source.ip": lab.PeerIP, "destination.ip": lab.HostIP, "destination.port": "53", "network.transport": "udp"} {
		if got := dns.String(k); got != want {
			t.Errorf("dns %s = %q, want %q", k, got, want)
		}
	}
	if a := dns.Strings("dns.answers.data"); len(a) != 1 || a[0] != "192.0.2.7" {
		t.Errorf("dns answers %v", a)
	}
	h := find("http", func(e event.Event) bool { return e.String("url.path") == "/hello/world" })
	for k, want := range map[string]string{"http.request.method": "GET", "url.original": "/hello/world?x=1", "url.query": "x=1",
		"url.domain": lab.HostIP, "user_agent.original": "netsum-live-test/1.0", "http.response.status_code": "200", "destination.port": "8080"} {
		if got := h.String(k); got != want {
			t.Errorf("http %s = %q, want %q", k, got, want)
		}
	}
	fl := find("flow", func(e event.Event) bool {
		return e.String("destination.port") == "8080" && e.String("network.transport") == "tcp"
	})
	for k, want := range map[string]string{"source.ip": lab.PeerIP, "network.protocol": "http", FieldConnState: "SF"} {
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
