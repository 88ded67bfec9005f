package correlator_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/csirt-toscana/platform/correlator"
	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/finding"
	"github.com/csirt-toscana/platform/internal/store/elastic"
	"github.com/csirt-toscana/platform/internal/testenv"
	"github.com/csirt-toscana/platform/rules/intel"
)

// The load run is not part of ordinary test runs: it needs the real Kafka
// and Elasticsearch and takes minutes. Run it with
//
//	go test ./correlator -run TestLoadRun -v -timeout 30m -args -loadrun
var (
	loadRun         = flag.Bool("loadrun", false, "run TestLoadRun: csirt loadgen against the correlator on real Kafka and Elasticsearch")
	loadRunRates    = flag.String("loadrun.rates", "5000,10000,20000", "comma-separated input rates (events/s), one phase each")
	loadRunDuration = flag.Duration("loadrun.duration", time.Minute, "how long loadgen sends at each rate")
	loadRunEntities = flag.Int("loadrun.entities", 200, "loadgen entities")
	loadRunIntel    = flag.Int("loadrun.indicators", 100_000, "synthetic indicators in the matcher")
	loadRunDrain    = flag.Duration("loadrun.drain", 2*time.Minute, "how long to wait after a phase for the lag to reach 0")
	loadRunProfile  = flag.String("loadrun.cpuprofile", "", "write a CPU profile of the test process (the correlator and the test's lag sampling) to this file")
)

// synthLoadIndicators makes n reproducible indicators of mixed types
// (addresses, prefixes, domains, URLs, hashes).
func synthLoadIndicators(t *testing.T, n int) []intel.Indicator {
	t.Helper()
	r := rand.New(rand.NewPCG(42, 4242)) //nolint:gosec // reproducible test data, not security
	const digits = "0123456789abcdef"
	hex := func(k int) string {
		b := make([]byte, k)
		for i := range b {
			b[i] = digits[r.IntN(16)]
		}
		return string(b)
	}
	out := make([]intel.Indicator, 0, n)
	for i := 0; i < n; i++ {
		var typ intel.Type
		var val string
		switch p := i % 20; {
		case p < 9:
			typ, val = intel.IPv4, netip.AddrFrom4([4]byte{byte(2 + r.IntN(220)), byte(r.IntN(256)), byte(r.IntN(256)), byte(1 + r.IntN(254))}).String()
		case p < 10:
			pf, err := netip.AddrFrom4([4]byte{byte(2 + r.IntN(220)), byte(r.IntN(256)), byte(r.IntN(256)), 0}).Prefix(24 + r.IntN(6))
			require.NoError(t, err)
			typ, val = intel.CIDR, pf.String()
		case p < 15:
			typ, val = intel.Domain, fmt.Sprintf("%s%d.%s.example", hex(6), i, hex(4))
		case p < 17:
			typ, val = intel.URL, fmt.Sprintf("http://%s.example/%s/%d.exe", hex(8), hex(6), i)
		default:
			typ, val = intel.SHA256, hex(64)
		}
		ind, err := intel.New(typ, val, "loadrun")
		require.NoError(t, err)
		out = append(out, ind)
	}
	return out
}

type loadPhase struct {
	rate                 float64
	sent                 int64
	sendTime             time.Duration
	processed            int64
	processTime          time.Duration
	maxLag               int64 // events in the topic not yet handled
	maxCommitLag         int64 // events in the topic past the committed offsets
	drained              bool
	latencies            []time.Duration
	findings, lateFinder int
	cpu, loadgenCPU      time.Duration // of the test process (the correlator), of the loadgen process
}

// TestLoadRun drives the correlator (rule library + SigmaHQ rules +
// synthetic indicators) with loadgen at fixed rates on the real Kafka and
// Elasticsearch and prints, per rate, the achieved input rate, the
// correlator's rate, the maximum consumer lag, the latency from event
// write to finding stored, and the CPU time of the correlator's process per
// event. loadgen is the real `csirt loadgen`, in its own process.
func TestLoadRun(t *testing.T) {
	if !*loadRun {
		t.Skip("load run not requested: pass -args -loadrun (needs real Kafka and Elasticsearch, takes minutes)")
	}
	kafka := testenv.Kafka(t)
	esURL := testenv.Elasticsearch(t)
	sigma := filepath.Join(testenv.SharedData(t), "sigma")
	var rates []float64
	for _, s := range strings.Split(*loadRunRates, ",") {
		r, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		require.NoError(t, err, "-loadrun.rates: want numbers such as 5000,10000")
		rates = append(rates, r)
	}
	ctx := context.Background()
	stamp := strconv.FormatInt(time.Now().UnixNano(), 36)

	zero := 0
	st, err := elastic.Open(ctx, elastic.Options{Addresses: []string{esURL}, IndexPrefix: "loadrun-" + stamp, Replicas: &zero, Logger: quiet()})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := st.Drop(ctx); err != nil {
			t.Errorf("dropping the load-run indices: %v", err)
		}
		_ = st.Close()
	})

	opts := bus.Options{Brokers: []string{kafka}}
	suffix := ".loadrun-" + stamp
	e := struct{ events, findings, dlq, group string }{events: bus.TopicEvents + suffix, findings: bus.TopicFindings + suffix,
		dlq: bus.TopicDLQ + suffix, group: correlator.DefaultGroup + suffix}
	tctx, cancel := context.WithTimeout(ctx, time.Minute)
	require.NoError(t, bus.EnsureTopics(tctx, opts, []bus.TopicSpec{{Name: e.events, Partitions: 4}, {Name: e.findings, Partitions: 1},
		{Name: e.dlq, Partitions: 1}}))
	cancel()

	if *loadRunProfile != "" {
		f, err := os.Create(*loadRunProfile)
		require.NoError(t, err)
		require.NoError(t, pprof.StartCPUProfile(f))
		t.Cleanup(func() { pprof.StopCPUProfile(); _ = f.Close() })
	}
	t0 := time.Now()
	c, err := correlator.New(correlator.Options{Bus: opts, Store: st, Group: e.group, Topic: e.events, FindingsTopic: e.findings, DLQTopic: e.dlq,
		Logger:    quiet(),
		RulesDirs: []string{filepath.Join(sigma, "rules"), filepath.Join(sigma, "rules-emerging-threats"), filepath.Join(sigma, "rules-threat-hunting")}})
	require.NoError(t, err)
	sum := c.Program().Summary()
	t.Logf("program loaded in %s: %v", time.Since(t0).Round(time.Millisecond), sum)

	// The correlator reports each batch of findings once stored: the delay
	// is from the triggering event's @timestamp (loadgen's send time) to
	// the store's acknowledgement. (An earlier version polled the store
	// for new findings, and the polling cost a quarter of the process's
	// CPU.)
	var mu sync.Mutex
	stored := map[string]time.Time{}
	var seenFindings []*finding.Finding
	correlator.SetOnStored(c, func(fs []*finding.Finding, at time.Time) {
		mu.Lock()
		defer mu.Unlock()
		for _, f := range fs {
			if _, dup := stored[f.ID]; dup {
				continue
			}
			stored[f.ID] = at
			seenFindings = append(seenFindings, f)
		}
	})

	runCtx, stopRun := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	go func() { runDone <- c.Run(runCtx) }()
	defer func() { stopRun(); require.NoError(t, <-runDone) }()
	// The intel manager loads the (empty) intel collection first; the
	// synthetic matcher replaces it afterwards and stays, as the
	// collection does not change.
	for deadline := time.Now().Add(time.Minute); c.Intel().Holder().Load() == nil; time.Sleep(50 * time.Millisecond) {
		require.True(t, time.Now().Before(deadline), "timed out waiting for the first intel load")
	}
	t0 = time.Now()
	m, err := intel.Build(synthLoadIndicators(t, *loadRunIntel), intel.MatcherOptions{})
	require.NoError(t, err)
	c.Intel().Holder().Store(m)
	t.Logf("matcher of %d indicators built in %s", m.Len(), time.Since(t0).Round(time.Millisecond))

	// lag reads the events in the topic (end offsets), those the
	// correlator has handled (its counters: the processing lag is end -
	// handled) and the committed offsets (committed only at checkpoints,
	// after the state covering them is saved: the commit lag is larger).
	lag := func() (end, handled, committed int64) {
		handled = correlator.Handled(c)
		ends, err := bus.EndOffsets(ctx, opts, e.events)
		if err != nil {
			return -1, handled, -1
		}
		for _, o := range ends {
			end += o
		}
		offs, err := bus.CommittedOffsets(ctx, opts, e.group, e.events)
		if err != nil { // the group has not committed yet
			return end, handled, 0
		}
		for _, o := range offs {
			if o > 0 {
				committed += o
			}
		}
		return end, handled, committed
	}

	// loadgen runs as its own process, the real `csirt loadgen`, as an
	// operator would run it: its CPU and garbage are not the correlator's.
	csirt := testenv.Build(t, "csirt")
	var phases []*loadPhase
	for i, rate := range rates {
		ph := &loadPhase{rate: rate}
		phases = append(phases, ph)
		_, before, _ := lag()
		mu.Lock()
		nBefore := len(seenFindings)
		mu.Unlock()
		start := time.Now()
		sampleCtx, stopSample := context.WithCancel(ctx)
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			for sampleCtx.Err() == nil {
				end, handled, com := lag()
				if end >= 0 && end-handled > ph.maxLag {
					ph.maxLag = end - handled
				}
				if end >= 0 && end-com > ph.maxCommitLag {
					ph.maxCommitLag = end - com
				}
				time.Sleep(500 * time.Millisecond)
			}
		}()
		cpu0 := processCPU(t)
		lg := exec.CommandContext(ctx, csirt, "loadgen", "--brokers", kafka, "--topic", e.events, //nolint:gosec // the repository's own binary
			"--rate", strconv.FormatFloat(rate, 'f', 0, 64)+"/s", "--duration", loadRunDuration.String(),
			"--entities", strconv.Itoa(*loadRunEntities), "--seed", strconv.Itoa(i+1))
		out, err := lg.Output()
		require.NoError(t, err, "csirt loadgen: %s", out)
		ph.sendTime = time.Since(start)
		ph.loadgenCPU = lg.ProcessState.UserTime() + lg.ProcessState.SystemTime()
		done := regexp.MustCompile(`loadgen done: sent=(\d+) rate=\S+ errors=(\d+)`).FindStringSubmatch(string(out))
		require.NotNil(t, done, "no final line from csirt loadgen: %s", out)
		ph.sent, _ = strconv.ParseInt(done[1], 10, 64)
		require.Equal(t, "0", done[2], "produce calls failed")
		// Drain: wait for the correlator to handle everything sent.
		deadline := time.Now().Add(*loadRunDrain)
		for time.Now().Before(deadline) {
			end, handled, _ := lag()
			if end >= 0 && handled >= end {
				ph.drained = true
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		stopSample()
		<-sampled
		_, after, _ := lag()
		ph.processed, ph.processTime = after-before, time.Since(start)
		ph.cpu = processCPU(t) - cpu0
		time.Sleep(time.Second) // the last flush of findings
		mu.Lock()
		for _, f := range seenFindings[nBefore:] {
			if f.Time.Before(start) {
				ph.lateFinder++ // raised from an earlier phase's events
				continue
			}
			ph.latencies = append(ph.latencies, stored[f.ID].Sub(f.Time))
		}
		ph.findings = len(seenFindings) - nBefore
		byRule := map[string]int{}
		for _, f := range seenFindings[nBefore:] {
			byRule[string(f.Kind)+" "+f.RuleName]++
		}
		t.Logf("findings by rule at %.0f/s: %v", rate, byRule)
		mu.Unlock()
		slices.Sort(ph.latencies)
		t.Logf("rate %.0f/s: sent %d in %s (%.0f/s); correlator %d events in %s (%.0f/s, drained=%v, %s after the send); max lag %d events handled behind the topic (%d behind in committed offsets); findings %d (%d from earlier events); latency p50 %s p99 %s max %s",
			rate, ph.sent, ph.sendTime.Round(time.Millisecond), float64(ph.sent)/ph.sendTime.Seconds(),
			ph.processed, ph.processTime.Round(time.Millisecond), float64(ph.processed)/ph.processTime.Seconds(), ph.drained,
			(ph.processTime - ph.sendTime).Round(time.Millisecond), ph.maxLag, ph.maxCommitLag, ph.findings, ph.lateFinder, pct(ph.latencies, 0.50), pct(ph.latencies, 0.99), pct(ph.latencies, 1))
		var ru syscall.Rusage
		require.NoError(t, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
		live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		metrics.Read(live)
		t.Logf("rate %.0f/s: CPU of the correlator's process %s = %.1f µs per event (%.0f events per CPU-second), %.2f cores over the phase; loadgen process %s; heap live after the last GC %.0f MB, peak RSS so far %.0f MB",
			rate, ph.cpu.Round(time.Millisecond), float64(ph.cpu.Microseconds())/float64(ph.processed), float64(ph.processed)/ph.cpu.Seconds(),
			ph.cpu.Seconds()/ph.processTime.Seconds(), ph.loadgenCPU.Round(time.Millisecond), float64(live[0].Value.Uint64())/1e6, float64(ru.Maxrss)/1e3)
	}
	fmt.Println("rate/s  sent/s  correlator/s  drained  max_lag  findings  p50  p99")
	for _, ph := range phases {
		fmt.Printf("%.0f  %.0f  %.0f  %v  %d  %d  %s  %s\n", ph.rate, float64(ph.sent)/ph.sendTime.Seconds(),
			float64(ph.processed)/ph.processTime.Seconds(), ph.drained, ph.maxLag, len(ph.latencies),
			pct(ph.latencies, 0.50), pct(ph.latencies, 0.99))
	}
	for _, ph := range phases {
		require.Positive(t, ph.processed, "the correlator consumed nothing at %.0f/s", ph.rate)
	}
}

func quiet() logrus.FieldLogger {
	l := logrus.New()
	l.SetLevel(logrus.WarnLevel)
	return l
}

// pct returns the q quantile of sorted durations (0 when empty).
func pct(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)-1))
	return sorted[i].Round(time.Millisecond)
}

// processCPU is the CPU time (user + system) of this process so far.
func processCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	require.NoError(t, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
