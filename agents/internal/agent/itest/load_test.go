package itest

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/agents/internal/agent"
	"github.com/csirt-toscana/platform/agents/internal/agent/agenttest"
	"github.com/csirt-toscana/platform/agents/internal/heartbeat"
	"github.com/csirt-toscana/platform/agents/internal/identity"
	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/envelope"
	"github.com/csirt-toscana/platform/internal/policy"
	"github.com/csirt-toscana/platform/internal/testenv"
	"github.com/segmentio/kafka-go"
)

var (
	loadRun    = flag.Bool("load", false, "run the load report (agent CPU and RSS per 1k lines/s, maximum lines/s on one core)")
	loadOnly   = flag.Int("load.rate", 0, "measure only this rate (lines/s) and skip the backlog; -1: only the backlog")
	cpuProfile = flag.String("load.cpuprofile", "", "write a CPU profile of the agent at the first rate to this file")
	loadComp   = flag.String("load.compression", "", "transport.compression of the agent (default: the agent's default); a comma-separated list measures each in turn")
	loadSlack  = flag.String("load.timerslack", "", "timer slack of the agent, as systemd's TimerSlackNSec= sets it (default: the packaged unit's; 0: inherited, 50µs by default); a comma-separated list measures each in turn")
	loadPoll   = flag.String("load.poll", "", "poll_interval of the file source (default: the source's default); a comma-separated list measures each in turn")
	loadSecs   = flag.Int("load.secs", 20, "seconds each rate is measured")
	loadRepeat = flag.Int("load.repeat", 1, "measure each rate (and binary) this many times")
	loadBins   = flag.String("load.bin", "", "comma-separated csirt-agent binaries to measure in turn at each rate instead of the tree's (to compare builds on the same machine state); skips the backlog")
	loadLogs   = flag.String("load.logs", "", "copy each agent's log (its stderr: GODEBUG=gctrace=1 output too) into this directory")
	loadAttach = flag.String("load.attach", "", `a diagnostic command run during the measurement of the first rate with the agent's pid appended and interrupted at its end, e.g. "strace -f -tt -o /tmp/st.txt -p" or "perf record -g -o /tmp/perf.data -p" (the agent's CPU figures are then not comparable)`)
)

// procStats returns the CPU time (user+system) and the peak and current
// RSS of pid, from /proc.
func procStats(t *testing.T, pid int) (cpu time.Duration, hwm, rss int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	cpu = time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ = 100
	fh, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) >= 2 && (fs[0] == "VmHWM:" || fs[0] == "VmRSS:") {
			n, _ := strconv.ParseInt(fs[1], 10, 64)
			if fs[0] == "VmHWM:" {
				hwm = n << 10
			} else {
				rss = n << 10
			}
		}
	}
	return cpu, hwm, rss
}

// schedCPU sums the scheduler's exact run time (ns, /proc/PID/task/*/schedstat)
// of pid's threads. /proc/PID/stat is sampled at the clock tick, which
// over-charges a process whose timer wake-ups coincide with ticks.
func schedCPU(pid int) time.Duration {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var sum time.Duration
	for _, p := range tasks {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			sum += time.Duration(ns)
		}
	}
	return sum
}

// ctxSwitches sums the voluntary context switches of pid's threads (a
// thread going to sleep: each is a wake-up later) and the involuntary ones
// (preempted: a busy machine).
func ctxSwitches(pid int) (vol, invol int64) {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	for _, p := range tasks {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) != 2 {
				continue
			}
			n, _ := strconv.ParseInt(f[1], 10, 64)
			switch f[0] {
			case "voluntary_ctxt_switches:":
				vol += n
			case "nonvoluntary_ctxt_switches:":
				invol += n
			}
		}
	}
	return vol, invol
}

func shipped(t *testing.T, state string) uint64 {
	st, err := agent.ReadStatus(state)
	if err != nil {
		return 0
	}
	return st.Counters.LinesShipped
}

// accessLine returns line n of the load: a web server access log line of
// exactly 250 bytes with its newline, whose client, path, status, size,
// time and user agent vary as in a municipality's web log, so that the
// batches compress as real logs do (a repeated byte compresses far better
// and flatters zstd's CPU time).
func accessLine(n int) []byte {
	paths := [...]string{"/servizi/anagrafe/certificati", "/albo-pretorio/atti", "/amministrazione-trasparente/bandi", "/tributi/imu/calcolo", "/wp-login.php", "/modulistica/edilizia/scia", "/api/v1/prenotazioni"}
	agents := [...]string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
		"Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
		"python-requests/2.32.3",
	}
	statuses := [...]int{200, 200, 200, 304, 404, 302, 500}
	h := uint32(n)*2654435761 + 12345 // a cheap mix of n
	ts := time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC).Add(time.Duration(n) * time.Millisecond)
	s := fmt.Sprintf("%d.%d.%d.%d - - [%s] \"GET %s?id=%d&req=%d HTTP/1.1\" %d %d \"https://www.comune.example.it%s\" \"%s\" rt=0.%03d urt=\"0.%03d\"",
		10+h%200, (h>>8)%256, (h>>16)%256, 1+(h>>24)%254, ts.Format("02/Jan/2006:15:04:05 -0700"),
		paths[h%uint32(len(paths))], h%100000, n, statuses[(h>>3)%uint32(len(statuses))], 200+h%90000,
		paths[(h>>7)%uint32(len(paths))], agents[(h>>5)%uint32(len(agents))], h%1000, (h>>10)%1000)
	for i := uint32(0); len(s) < 249; i++ {
		s += fmt.Sprintf(" x-req-%d=%x", i, h>>(i%24))
	}
	return []byte(s[:249] + "\n")
}

// unitSlack returns the TimerSlackNSec= of the packaged systemd unit: the
// load run measures the agent as the package runs it.
func unitSlack(t *testing.T) time.Duration {
	t.Helper()
	unit := filepath.Join(testenv.RepoRoot(), "deploy", "package", "files", "csirt-agent.service")
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "TimerSlackNSec="); ok {
			d, err := time.ParseDuration(v)
			if err != nil {
				t.Fatalf("%s: TimerSlackNSec=%s: want a duration with its unit (the load run reads it): %v", unit, v, err)
			}
			return d
		}
	}
	return 0
}

var reqField = regexp.MustCompile(`[?&]req=(\d+) `)

// latencies reads back the batches agentID sent to csirt.raw.v1 and returns,
// sorted, for every line found the time from its write (written, indexed by
// the line's req= number) to the broker's append time of its batch.
func latencies(t *testing.T, broker, agentID string, written []time.Time) []time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := kafka.DialContext(ctx, "tcp", broker)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := conn.ReadPartitions(bus.TopicRaw)
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	var out []time.Duration
	seen := make([]bool, len(written))
	for _, p := range parts {
		pc, err := kafka.DialLeader(ctx, "tcp", broker, bus.TopicRaw, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		end, err := pc.ReadLastOffset()
		pc.Close()
		if err != nil {
			t.Fatal(err)
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{broker}, Topic: bus.TopicRaw, Partition: p.ID, MaxBytes: 10 << 20})
		for off := int64(0); off < end; off++ {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				t.Fatalf("reading %s partition %d: %v", bus.TopicRaw, p.ID, err)
			}
			off = m.Offset
			b, err := envelope.Decode(m.Value)
			if err != nil || b.AgentID != agentID || b.StreamID == heartbeat.Stream {
				continue
			}
			for _, rec := range b.Records {
				sm := reqField.FindSubmatch(rec.Data)
				if sm == nil {
					continue
				}
				n, _ := strconv.Atoi(string(sm[1]))
				if n < len(written) && !seen[n] {
					seen[n] = true
					out = append(out, m.Time.Sub(written[n]))
				}
			}
		}
		r.Close()
	}
	slices.Sort(out)
	return out
}

// TestLoadReport measures the real binary against a private Kafka over
// mutual TLS: CPU and RSS at fixed rates of 250-byte access log lines (signing and
// zstd included), and the most lines/s per CPU second on a backlog. Run
// with -load; it reports, it does not assert timings.
func TestLoadReport(t *testing.T) {
	if !*loadRun {
		t.Skip("run with -load")
	}
	ca := agenttest.DevCA(t)
	k := testenv.StartPrivateKafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// The broker stamps each batch when it appends it: the latency below
	// is from the write of a line to that stamp.
	raw := bus.TopicSpec{Name: bus.TopicRaw, Partitions: 3, Configs: map[string]string{"message.timestamp.type": "LogAppendTime"}}
	if err := bus.EnsureTopics(ctx, bus.Options{Brokers: []string{k.PlainAddr()}}, []bus.TopicSpec{raw}); err != nil {
		t.Fatal(err)
	}
	bins := strings.Split(*loadBins, ",")
	if *loadBins == "" {
		bins = []string{buildAgent(t)}
	}
	// A variant is one binary with one compression and poll interval; with
	// several, each rate measures them in turn (-load.repeat times), so
	// that they meet the same machine state.
	type variant struct {
		bin, comp, poll string
		slack           time.Duration
	}
	var variants []variant
	defaultSlack := unitSlack(t)
	for _, b := range bins {
		for _, c := range strings.Split(*loadComp, ",") {
			for _, p := range strings.Split(*loadPoll, ",") {
				for _, sl := range strings.Split(*loadSlack, ",") {
					d := defaultSlack
					if sl != "" {
						var err error
						if d, err = time.ParseDuration(sl); err != nil {
							t.Fatalf("-load.timerslack %q: %v", sl, err)
						}
					}
					variants = append(variants, variant{b, c, p, d})
				}
			}
		}
	}
	setup := func(name string, v variant) (state, logFile string, ag *agentProc) {
		work := filepath.Join(t.TempDir(), name)
		state, logFile = filepath.Join(work, "state"), filepath.Join(work, "app.log")
		ca.Mint(t, state, identity.Info{AgentID: "load-" + name, EntityID: "comune-load", KafkaBootstrap: []string{k.TLSAddr()}}, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
		src := map[string]any{"paths": []string{logFile}}
		if v.poll != "" {
			src["poll_interval"] = v.poll
		}
		cfg, _ := json.Marshal(src)
		pol := policy.Policy{Sources: []policy.Source{{Name: "app", Kind: "file", Config: cfg}}}
		pol.Normalize()
		if err := identity.SavePolicy(state, pol); err != nil {
			t.Fatal(err)
		}
		cfgPath := filepath.Join(work, "agent.yml")
		agentCfg := "state_dir: " + state + "\nlog:\n  level: warn\n"
		if v.comp != "" {
			agentCfg += "transport:\n  compression: " + v.comp + "\n"
		}
		if err := os.WriteFile(cfgPath, []byte(agentCfg), 0o644); err != nil {
			t.Fatal(err)
		}
		lf, err := os.Create(filepath.Join(work, "agent.log"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			lf.Close()
			if *loadLogs != "" {
				b, _ := os.ReadFile(lf.Name())
				_ = os.WriteFile(filepath.Join(*loadLogs, name+".log"), b, 0o644)
			}
		})
		return state, logFile, &agentProc{t: t, bin: v.bin, cfg: cfgPath, log: lf, timerSlack: v.slack}
	}
	rates := []int{1000, 5000}
	switch {
	case *loadOnly > 0:
		rates = []int{*loadOnly}
	case *loadOnly < 0:
		rates = nil
	}
	type run struct {
		rate int
		v    variant
	}
	var runs []run
	for _, rate := range rates {
		for range *loadRepeat {
			for _, v := range variants {
				runs = append(runs, run{rate, v})
			}
		}
	}
	for i, r := range runs {
		rate := r.rate
		state, logFile, ag := setup(fmt.Sprintf("run%d-rate%d", i, rate), r.v)
		if len(variants) > 1 {
			fmt.Printf("load: run %d: binary %s, compression %q, poll_interval %q, timer slack %s\n", i, r.v.bin, r.v.comp, r.v.poll, r.v.slack)
		}
		if i == 0 && *cpuProfile != "" {
			ag.env = []string{"CSIRT_AGENT_CPUPROFILE=" + *cpuProfile}
		}
		fh, err := os.Create(logFile)
		if err != nil {
			t.Fatal(err)
		}
		ag.start()
		time.Sleep(2 * time.Second) // start-up out of the measurement
		secs := time.Duration(*loadSecs)
		pid := ag.cmd.Process.Pid
		cpu0, _, _ := procStats(t, pid)
		sched0 := schedCPU(pid)
		vol0, invol0 := ctxSwitches(pid)
		var trace *exec.Cmd
		if args := strings.Fields(*loadAttach); i == 0 && len(args) > 0 {
			trace = exec.Command(args[0], append(args[1:], strconv.Itoa(pid))...) //nolint:gosec // G204: a diagnostic command asked for with -load.attach
			trace.Stdout, trace.Stderr = os.Stderr, os.Stderr
			if err := trace.Start(); err != nil {
				t.Fatalf("strace: %v", err)
			}
		}
		t0 := time.Now()
		n := 0
		written := make([]time.Time, 0, int(secs)*rate+rate)
		for time.Since(t0) < secs*time.Second {
			due := int(time.Since(t0).Seconds() * float64(rate))
			for ; n < due; n++ {
				fh.Write(accessLine(n))
				written = append(written, time.Now())
			}
			time.Sleep(5 * time.Millisecond)
		}
		wall := time.Since(t0)
		if trace != nil {
			_ = trace.Process.Signal(os.Interrupt)
			_ = trace.Wait()
		}
		cpu1, hwm, rss := procStats(t, pid)
		sched1 := schedCPU(pid)
		vol1, invol1 := ctxSwitches(pid)
		deadline := time.Now().Add(30 * time.Second)
		for shipped(t, state) < uint64(n) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if got := shipped(t, state); got < uint64(n) {
			b, _ := os.ReadFile(ag.log.Name())
			t.Errorf("%d lines/s: %d of %d lines shipped 30 s after the last write; end of the agent's log:\n%s", rate, got, n, b[max(0, len(b)-2000):])
		}
		lat := latencies(t, k.PlainAddr(), "load-"+fmt.Sprintf("run%d-rate%d", i, rate), written)
		cpuPct := float64(cpu1-cpu0) / float64(wall) * 100
		load, _ := os.ReadFile("/proc/loadavg")
		fmt.Printf("load: machine load average %s", load)
		fmt.Printf("load: %d lines/s of 250 B for %s: agent CPU %.2f%% of one core (%.2f%% per 1k lines/s), RSS %.1f MB (peak %.1f MB), shipped %d of %d\n",
			rate, wall.Round(time.Second), cpuPct, cpuPct/(float64(rate)/1000), float64(rss)/1e6, float64(hwm)/1e6, shipped(t, state), n)
		if len(lat) > 0 {
			fmt.Printf("load: %d lines/s: line written to appended in Kafka (broker's LogAppendTime), %d lines: median %s, p99 %s, max %s\n",
				rate, len(lat), lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)*99/100].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
		}
		if st, err := agent.ReadStatus(state); err == nil {
			fmt.Printf("load: %d lines/s: agent GOMAXPROCS %d (0: Go's default), timer slack %s (status.json)\n", rate, st.MaxProcs, time.Duration(st.TimerSlackNS))
			if r.v.slack > 0 && time.Duration(st.TimerSlackNS) != r.v.slack {
				t.Errorf("the agent reports a timer slack of %s, started with %s", time.Duration(st.TimerSlackNS), r.v.slack)
			}
		}
		fmt.Printf("load: %d lines/s: scheduler run time of the agent's threads %.2f%% of one core (/proc/PID/task/*/schedstat), context switches/s %.0f voluntary, %.0f involuntary\n",
			rate, float64(sched1-sched0)/float64(wall)*100, float64(vol1-vol0)/wall.Seconds(), float64(invol1-invol0)/wall.Seconds())
		fh.Close()
		if err := ag.term(); err != nil {
			t.Errorf("agent exit: %v", err)
		}
	}
	if *loadOnly > 0 || len(variants) > 1 {
		return
	}
	// Backlog: 500,000 lines already written; lines shipped per CPU second.
	state, logFile, ag := setup("max", variants[0])
	fh, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(fh, 1<<20)
	const backlog = 500_000
	for i := range backlog {
		w.Write(accessLine(i))
	}
	w.Flush()
	fh.Close()
	ag.start()
	t0 := time.Now()
	deadline := t0.Add(5 * time.Minute)
	for shipped(t, state) < backlog && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	wall := time.Since(t0)
	cpu, hwm, _ := procStats(t, ag.cmd.Process.Pid)
	got := shipped(t, state)
	fmt.Printf("load: backlog of %d lines shipped in %s wall, agent CPU %s: %.0f lines per CPU second (max lines/s one core can ship), %.0f lines/s wall; peak RSS %.1f MB\n",
		got, wall.Round(time.Millisecond), cpu.Round(time.Millisecond), float64(got)/cpu.Seconds(), float64(got)/wall.Seconds(), float64(hwm)/1e6)
	if err := ag.term(); err != nil {
		t.Errorf("agent exit: %v", err)
	}
}
