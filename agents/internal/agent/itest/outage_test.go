package itest

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"golang.org/x/sys/unix"

	"github.com/csirt-toscana/platform/agents/internal/agent/agenttest"
	"github.com/csirt-toscana/platform/agents/internal/heartbeat"
	"github.com/csirt-toscana/platform/agents/internal/identity"
	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/envelope"
	"github.com/csirt-toscana/platform/internal/policy"
	"github.com/csirt-toscana/platform/internal/testenv"
)

// buildAgent builds the real cmd/csirt-agent binary.
func buildAgent(t testing.TB) string { return testenv.Build(t, "csirt-agent") }

// agentProc runs the built binary.
type agentProc struct {
	t        testing.TB
	bin, cfg string
	log      *os.File
	cmd      *exec.Cmd
	env      []string // extra environment
	// timerSlack, when set, is the agent's timer slack, as systemd's
	// TimerSlackNSec= sets it: the agent is started from a thread with this
	// slack, which it inherits (prctl(2), PR_SET_TIMERSLACK).
	timerSlack time.Duration
}

func (a *agentProc) start() {
	a.t.Helper()
	a.cmd = exec.Command(a.bin, "run", "--config", a.cfg)
	a.cmd.Env = append(os.Environ(), a.env...)
	a.cmd.Stdout, a.cmd.Stderr = a.log, a.log
	if a.timerSlack > 0 {
		// The child is forked from this goroutine's thread, locked to it.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(a.timerSlack.Nanoseconds()), 0, 0, 0); err != nil {
			a.t.Fatalf("prctl(PR_SET_TIMERSLACK): %v", err)
		}
		defer func() { _ = unix.Prctl(unix.PR_SET_TIMERSLACK, 0, 0, 0, 0) }() // 0: back to the thread's default
	}
	if err := a.cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
}

func (a *agentProc) kill() {
	_ = a.cmd.Process.Signal(syscall.SIGKILL)
	_ = a.cmd.Wait()
}

func (a *agentProc) term() error {
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	return a.cmd.Wait()
}

// arrival is what the consumer saw.
type arrival struct {
	mu         sync.Mutex
	messages   int
	records    int                       // log records before de-duplication
	bySeq      map[string]string         // agent/stream/seq -> line
	lines      map[string]map[string]int // line -> set of seq keys
	heartbeats []heartbeat.Report
	seen       map[string]time.Time // line -> first arrival (for latency probes)
	badSig     int
}

func consume(ctx context.Context, t testing.TB, broker string, partitions int, pub *ecdsa.PublicKey, a *arrival) {
	verifier, err := envelope.NewVerifier(pub)
	if err != nil {
		t.Error(err)
		return
	}
	// One reader per partition, without a consumer group: nothing to
	// rebalance when the broker restarts.
	var wg sync.WaitGroup
	for part := range partitions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := kafka.NewReader(kafka.ReaderConfig{
				Brokers: []string{broker}, Topic: bus.TopicRaw, Partition: part,
				MaxWait: 10 * time.Millisecond, MinBytes: 1, MaxBytes: 10 << 20,
			})
			defer r.Close()
			for ctx.Err() == nil {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					time.Sleep(100 * time.Millisecond) // broker down: retry until ctx ends
					continue
				}
				a.add(t, m.Value, verifier)
			}
		}()
	}
	wg.Wait()
}

func (a *arrival) add(t testing.TB, value []byte, verifier envelope.Verifier) {
	now := time.Now()
	b, err := envelope.Open(value, func(string, string) (envelope.Verifier, error) { return verifier, nil })
	a.mu.Lock()
	defer a.mu.Unlock()
	a.messages++
	if err != nil {
		a.badSig++
		return
	}
	for i, rec := range b.Records {
		if b.StreamID == heartbeat.Stream {
			var hb heartbeat.Report
			if json.Unmarshal(rec.Data, &hb) == nil {
				a.heartbeats = append(a.heartbeats, hb)
			}
			continue
		}
		a.records++
		key := fmt.Sprintf("%s/%s/%d", b.AgentID, b.StreamID, b.Seq(i))
		line := string(rec.Data)
		if prev, ok := a.bySeq[key]; ok {
			if prev != line {
				t.Errorf("sequence %s carried two different lines: %q and %q", key, prev, line)
			}
			continue // a duplicate batch: dropped by (agent, stream, sequence)
		}
		a.bySeq[key] = line
		if a.lines[line] == nil {
			a.lines[line] = map[string]int{}
			a.seen[line] = now
		}
		a.lines[line][key]++
	}
}

func (a *arrival) unique() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.lines)
}

// TestOutage200k is the acceptance test of issue 4 on a real Kafka with a
// mutual-TLS listener: 200,000 lines across 3 files, one rotation by
// rename and one by copytruncate, Kafka stopped for 30 s and restarted, the
// agent killed with SIGKILL once and restarted. After de-duplication by
// (agent, stream, sequence) every line must have arrived exactly once.
func TestOutage200k(t *testing.T) {
	if testing.Short() {
		t.Skip("the outage test takes about two minutes")
	}
	ca := agenttest.DevCA(t) // skips (or fails in CI) without the dev services
	k := testenv.StartPrivateKafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	plain := k.PlainAddr()
	if err := bus.EnsureTopics(ctx, bus.Options{Brokers: []string{plain}}, []bus.TopicSpec{{Name: bus.TopicRaw, Partitions: 3}}); err != nil {
		t.Fatal(err)
	}
	bin := buildAgent(t)
	work := t.TempDir()
	state, logs := filepath.Join(work, "state"), filepath.Join(work, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	info := identity.Info{AgentID: "it-outage-agent", EntityID: "comune-di-prova", KafkaBootstrap: []string{k.TLSAddr()}}
	ca.Mint(t, state, info, time.Now().Add(-time.Hour), time.Now().Add(30*24*time.Hour))
	pol := policy.Policy{HeartbeatInterval: policy.Duration(5 * time.Second)}
	for f := range 3 {
		cfg, _ := json.Marshal(map[string]any{"paths": []string{filepath.Join(logs, fmt.Sprintf("app%d.log*", f))}})
		pol.Sources = append(pol.Sources, policy.Source{Name: fmt.Sprintf("app%d", f), Kind: "file", Config: cfg})
	}
	pol.Normalize()
	if err := identity.SavePolicy(state, pol); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(work, "agent.yml")
	if err := os.WriteFile(cfgPath, []byte("state_dir: "+state+"\nlog:\n  level: info\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	id, err := identity.Load(state)
	if err != nil {
		t.Fatal(err)
	}
	agentLog, err := os.Create(filepath.Join(work, "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer agentLog.Close()
	ag := &agentProc{t: t, bin: bin, cfg: cfgPath, log: agentLog}
	ag.start()
	defer func() {
		if ag.cmd.ProcessState == nil {
			ag.kill()
		}
		if t.Failed() {
			b, _ := os.ReadFile(agentLog.Name())
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			t.Logf("agent log (end):\n%s", b)
		}
	}()

	arr := &arrival{bySeq: map[string]string{}, lines: map[string]map[string]int{}, seen: map[string]time.Time{}}
	cctx, stopConsumer := context.WithCancel(ctx)
	var cwg sync.WaitGroup
	cwg.Add(1)
	go func() { defer cwg.Done(); consume(cctx, t, plain, 3, id.Cert.PublicKey.(*ecdsa.PublicKey), arr) }()
	defer func() { stopConsumer(); cwg.Wait() }()

	// The writer: 200,000 lines round-robin over 3 files in 50 s.
	const total = 200_000
	pad := strings.Repeat("x", 90)
	written, start := writeRotating(t, logs, total, 50*time.Second, []timedAction{
		{8 * time.Second, "stop Kafka", k.Stop},
		{20 * time.Second, "SIGKILL the agent", ag.kill},
		{23 * time.Second, "restart the agent", ag.start},
		{38 * time.Second, "restart Kafka", k.Start},
	})
	t.Logf("%6.1fs all %d lines written; waiting for them in Kafka", time.Since(start).Seconds(), total)
	deadline := time.Now().Add(4 * time.Minute)
	for arr.unique() < total && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("%6.1fs %d distinct lines arrived", time.Since(start).Seconds(), arr.unique())

	// Latency of single lines with the link up (reported, not asserted).
	var lat []time.Duration
	probe, err := os.OpenFile(filepath.Join(logs, "app2.log"), os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	for p := range 20 {
		line := fmt.Sprintf("probe %d %s", p, pad)
		t0 := time.Now()
		if _, err := probe.WriteString(line + "\n"); err != nil {
			t.Fatal(err)
		}
		written[line] = true
		for time.Since(t0) < 10*time.Second {
			arr.mu.Lock()
			at, ok := arr.seen[line]
			arr.mu.Unlock()
			if ok {
				lat = append(lat, at.Sub(t0))
				break
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond) // past poll_interval, so probes start at random phases
	}
	probe.Close()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) > 0 {
		t.Logf("latency line written -> consumed from Kafka (%d probes, inotify wake-up, at most 70 ms apart while the file grows, + produce + fetch): min %s median %s max %s",
			len(lat), lat[0].Round(time.Millisecond), lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	}
	if err := ag.term(); err != nil {
		t.Errorf("agent exit after SIGTERM: %v", err)
	}
	time.Sleep(time.Second)
	stopConsumer()
	cwg.Wait()

	arr.mu.Lock()
	defer arr.mu.Unlock()
	missing, twice, unexpected := 0, 0, 0
	for line := range written {
		switch n := len(arr.lines[line]); {
		case n == 0:
			missing++
			if missing <= 5 {
				t.Errorf("line never arrived: %.40q", line)
			}
		case n > 1:
			twice++
			if twice <= 5 {
				t.Errorf("line arrived under %d different sequence numbers: %.40q", n, line)
			}
		}
	}
	for line := range arr.lines {
		if !written[line] {
			unexpected++
		}
	}
	dups := arr.records - len(arr.bySeq)
	fmt.Printf("outage test: lines written %d, arrived %d (distinct after de-duplication by agent/stream/sequence), duplicates before de-duplication %d, records received %d in %d Kafka messages, heartbeats %d\n",
		len(written), len(arr.lines)-unexpected, dups, arr.records, arr.messages, len(arr.heartbeats))
	if missing > 0 || twice > 0 || unexpected > 0 || arr.badSig > 0 {
		t.Fatalf("missing %d, arrived twice under new numbers %d, unexpected %d, bad signatures %d", missing, twice, unexpected, arr.badSig)
	}
	if len(arr.heartbeats) == 0 {
		t.Fatal("no heartbeat arrived")
	}
	last := arr.heartbeats[len(arr.heartbeats)-1]
	if last.AgentID != info.AgentID || last.Counters.LinesRead == 0 || len(last.Sources) == 0 {
		t.Errorf("last heartbeat lacks content: %+v", last)
	}
}

// timedAction is done once the writer is that far into the test.
type timedAction struct {
	at   time.Duration
	name string
	do   func()
}

// writeRotating writes total lines round-robin over app0.log, app1.log and
// app2.log in logs over about span, rotating app0.log by rename at 35% and
// app1.log by copytruncate at 70%, and runs the actions at their times. It
// returns the lines written and when it started.
func writeRotating(t *testing.T, logs string, total int, span time.Duration, actions []timedAction) (map[string]bool, time.Time) {
	t.Helper()
	pad := strings.Repeat("x", 90)
	files := make([]*os.File, 3)
	open := func(f int) {
		var err error
		files[f], err = os.OpenFile(filepath.Join(logs, fmt.Sprintf("app%d.log", f)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
	}
	for f := range 3 {
		open(f)
	}
	written := map[string]bool{}
	start := time.Now()
	next := 0
	for i := range total {
		f := i % 3
		switch i {
		case total * 35 / 100: // rotation by rename of app0.log
			files[0].Close()
			if err := os.Rename(filepath.Join(logs, "app0.log"), filepath.Join(logs, "app0.log.1")); err != nil {
				t.Fatal(err)
			}
			open(0)
			t.Logf("%6.1fs rotated app0.log by rename", time.Since(start).Seconds())
		case total * 70 / 100: // rotation by copytruncate of app1.log
			src := filepath.Join(logs, "app1.log")
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(logs, "app1.log.1"), b, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := files[1].Truncate(0); err != nil {
				t.Fatal(err)
			}
			t.Logf("%6.1fs rotated app1.log by copytruncate (%d bytes copied)", time.Since(start).Seconds(), len(b))
		}
		line := fmt.Sprintf("f%d n%07d t%s %s", f, i, time.Now().UTC().Format(time.RFC3339Nano), pad)
		if _, err := files[f].WriteString(line + "\n"); err != nil {
			t.Fatal(err)
		}
		written[line] = true
		if i%1000 == 999 {
			due := time.Duration(float64(i+1) / float64(total) * float64(span))
			for next < len(actions) && time.Since(start) >= actions[next].at {
				t.Logf("%6.1fs %s (%d lines written)", time.Since(start).Seconds(), actions[next].name, i+1)
				actions[next].do()
				next++
			}
			if d := due - time.Since(start); d > 0 {
				time.Sleep(d)
			}
		}
	}
	for next < len(actions) {
		if d := actions[next].at - time.Since(start); d > 0 {
			time.Sleep(d)
		}
		t.Logf("%6.1fs %s", time.Since(start).Seconds(), actions[next].name)
		actions[next].do()
		next++
	}
	for _, f := range files {
		f.Close()
	}
	return written, start
}
