//go:build linux

package netsum

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/agents/internal/source"
	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/testenv"
	"github.com/csirt-toscana/platform/internal/testenv/netns"
	"github.com/csirt-toscana/platform/rules/heuristics"
)

// TestHeuristicsOnLiveCapture is the acceptance test of the network
// heuristics (issue 7) on traffic captured by the agent's own capture code:
// a veth pair joins the root network namespace (hostIP) to a test namespace
// (peerIP); LiveSource captures on the root side; every summary it emits is
// decoded into an event.Event, given an organization.id, ordered by event
// time and fed to heuristics.NewSet. Three real behaviours must each give
// their alert:
//
//   - port scan: nmap -sS -p 1-1000 -T4 (with -n: no reverse look-ups) from
//     the root namespace against peerIP -> port_scan for hostIP;
//   - beaconing: a client in the namespace opens a new HTTP connection to a
//     Go server on hostIP every 5 s ± 0.2 s, 11 intervals, with the default
//     parameters. With -short the time is scaled by 1/10 (0.5 s ± 0.02 s),
//     which needs a per-test override of beaconing.min_period (200ms, default
//     2s) and burst_merge (100ms, default 1s); the other beaconing
//     parameters are relative to the period and keep their defaults;
//   - DNS tunnelling: 60 TXT queries for 52-character random base32 labels
//     under tunnel.example from the namespace to a Go DNS responder on
//     hostIP -> dns_tunnel for tunnel.example and peerIP.
//
// The three run at the same time; the test takes about a minute (about 10 s
// with -short). It needs root, nmap and a cgo build: it fails under CI=true
// when one is missing and skips otherwise.
func TestHeuristicsOnLiveCapture(t *testing.T) {
	var missingReq []string
	if os.Geteuid() != 0 {
		missingReq = append(missingReq, "root (network namespaces, raw sockets)")
	}
	if !LiveCaptureAvailable {
		missingReq = append(missingReq, "a cgo build (live capture)")
	}
	for _, tool := range []string{"nmap", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			missingReq = append(missingReq, "the "+tool+" tool")
		}
	}
	if len(missingReq) > 0 {
		msg := "the heuristics acceptance test needs " + strings.Join(missingReq, ", ") + ": run it as root with nmap installed"
		testenv.Unavailable(t, msg)
	}

	period, jitter := 5*time.Second, 200*time.Millisecond
	paramsYAML := ""
	if testing.Short() {
		period, jitter = 500*time.Millisecond, 20*time.Millisecond
		paramsYAML = "beaconing:\n  min_period: 200ms\n  burst_merge: 100ms\n"
		t.Logf("-short: beacon scaled to %s ± %s with beaconing.min_period 200ms and burst_merge 100ms (defaults 2s and 1s)", period, jitter)
	}
	cfg, err := heuristics.LoadConfig([]byte(paramsYAML))
	if err != nil {
		t.Fatal(err)
	}
	const beats = 11 // intervals; the detector judges from the 10th on
	const queries = 60
	const parent = "tunnel.example"

	lab := newNetnsLab(t)
	netns.ServeDNS(t, lab.HostIP+":53")
	srv := &http.Server{Addr: lab.HostIP + ":8080", ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })}
	ln, err := net.Listen("tcp4", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	src, err := source.Default.New("capture", "netsum-heuristics", source.StrictYAML([]byte("interface: "+lab.HostIf+"\nsnaplen: 1600\n")), source.Deps{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan source.Record, 256)
	var records []source.Record
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for r := range out {
			records = append(records, r)
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, out) }()
	stopCapture := func() error {
		cancel()
		err := <-done
		close(out)
		<-drained
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for src.Status()[0].State != source.StateReading {
		if time.Now().After(deadline) {
			_ = stopCapture()
			t.Fatalf("capture did not start: %+v", src.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}

	var wg sync.WaitGroup
	var beaconErr, dnsErr, nmapErr error
	var sentNames []string
	var nmapOut []byte
	wg.Add(3)
	go func() {
		defer wg.Done()
		beaconErr = netns.Beacon(lab.NS, lab.HostIP+":8080", beats, period, jitter)
	}()
	go func() {
		defer wg.Done()
		sentNames, dnsErr = netns.TunnelQueries(lab.NS, lab.HostIP+":53", parent, queries)
	}()
	go func() {
		defer wg.Done()
		nmapOut, nmapErr = exec.Command("nmap", "-n", "-sS", "-p", "1-1000", "-T4", lab.PeerIP).CombinedOutput() //nolint:gosec // test command
	}()
	wg.Wait()
	// Summaries still open when the capture stops are not delivered, so
	// wait until the scan's rejected connections (closed TCP) have timed
	// out and been emitted.
	time.Sleep(DefaultTimeouts.Closed + time.Second)
	if err := stopCapture(); err != nil {
		t.Fatal(err)
	}
	if beaconErr != nil || dnsErr != nil || nmapErr != nil {
		t.Fatalf("traffic generation failed: beacon: %v; dns: %v; nmap: %v: %s", beaconErr, dnsErr, nmapErr, nmapOut)
	}
	st := src.(StatsReporter).CaptureStats()
	t.Logf("capture: received %d dropped %d ifdropped %d flows %d summaries %d", st.Received, st.Dropped, st.IfDropped, st.Summary.Flows, st.Summary.Summaries)

	const org = "acceptance-netsum"
	evs := make([]event.Event, 0, len(records))
	for _, r := range records {
		e, err := event.Decode(r.Data)
		if err != nil {
			t.Fatalf("summary is not an event: %v: %s", err, r.Data)
		}
		e["organization.id"] = org
		evs = append(evs, e)
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Time().Before(evs[j].Time()) })
	seen := map[string]bool{}
	for _, e := range byDataset(evs, "dns") {
		seen[e.String("dns.question.name")] = true
	}
	for _, n := range sentNames {
		if !seen[n] {
			t.Errorf("no dns summary for the query %s", n)
		}
	}
	var starts []string
	var prev time.Time
	for _, e := range byDataset(evs, "flow") {
		if e.String("destination.port") == "8080" && e.String("source.ip") == lab.PeerIP {
			if !prev.IsZero() {
				starts = append(starts, e.Time().Sub(prev).Round(time.Millisecond).String())
			}
			prev = e.Time()
		}
	}
	t.Logf("beacon intervals seen by the capture: %s", strings.Join(starts, " "))
	set := heuristics.NewSet(cfg, heuristics.Options{})
	var alerts []heuristics.Alert
	for _, e := range evs {
		alerts = append(alerts, set.Observe(e)...)
	}
	for _, a := range alerts {
		t.Logf("alert %s key=%s source=%s severity=%s metrics=%v: %s", a.Detector, a.Key, a.SourceIP, a.Severity, a.Metrics, a.Message)
	}
	t.Logf("%d summaries (%d flow, %d dns, %d http) gave %d alerts", len(evs), len(byDataset(evs, "flow")), len(byDataset(evs, "dns")), len(byDataset(evs, "http")), len(alerts))

	has := func(detector, sourceIP, keyPart string) bool {
		for _, a := range alerts {
			if a.Detector == detector && a.SourceIP == sourceIP && a.Entity == org && strings.Contains(a.Key, keyPart) {
				return true
			}
		}
		return false
	}
	if !has(heuristics.PortScanID, lab.HostIP, lab.HostIP) {
		t.Errorf("no port_scan alert for the scanner %s", lab.HostIP)
	}
	if !has(heuristics.BeaconingID, lab.PeerIP, lab.HostIP) {
		t.Errorf("no beaconing alert for %s -> %s:8080", lab.PeerIP, lab.HostIP)
	}
	if !has(heuristics.DNSTunnelID, lab.PeerIP, parent) {
		t.Errorf("no dns_tunnel alert for %s from %s", parent, lab.PeerIP)
	}
	// The traffic is nothing else: no detector may accuse the DNS
	// responder or the web server of anything.
	for _, a := range alerts {
		if a.Detector == heuristics.PortScanID && a.SourceIP != lab.HostIP {
			t.Errorf("unexpected port_scan alert: %+v", a)
		}
	}
}
