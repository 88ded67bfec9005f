package itest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/csirt-toscana/platform/agents/internal/identity"
	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/policy"
	"github.com/csirt-toscana/platform/internal/testenv"
)

// buildCsirt builds the real cmd/csirt binary.
func buildCsirt(t testing.TB) string { return testenv.Build(t, "csirt") }

// serveNode is a `csirt serve` single node on free ports and its own data
// directory; it can be stopped and started again on the same data.
type serveNode struct {
	t                    testing.TB
	bin, cfg, data       string
	http, intake, broker string
	cmd                  *exec.Cmd
	log                  *os.File
	done                 chan error
	healthyTook          time.Duration
}

func startServe(t testing.TB, bin string) *serveNode {
	t.Helper()
	dir := t.TempDir()
	p := testenv.FreePorts(t, 3)
	n := &serveNode{t: t, bin: bin, cfg: filepath.Join(dir, "csirt.yml"), data: filepath.Join(dir, "data"),
		http: fmt.Sprintf("127.0.0.1:%d", p[0]), intake: fmt.Sprintf("127.0.0.1:%d", p[1]), broker: fmt.Sprintf("127.0.0.1:%d", p[2])}
	cfg := fmt.Sprintf("data_dir: %s\nhttp:\n  listen: %s\nintake:\n  listen: %s\nbus:\n  embedded:\n    listen: %s\nlog:\n  level: warn\n", n.data, n.http, n.intake, n.broker)
	if err := os.WriteFile(n.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	if n.log, err = os.Create(filepath.Join(dir, "serve.log")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if n.cmd != nil && n.cmd.ProcessState == nil {
			_ = n.cmd.Process.Kill()
			<-n.done
		}
		if t.Failed() {
			b, _ := os.ReadFile(n.log.Name())
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			t.Logf("csirt serve log (end):\n%s", b)
		}
		n.log.Close()
	})
	n.start()
	return n
}

// start runs csirt serve and waits until /healthz answers 200.
func (n *serveNode) start() {
	n.t.Helper()
	n.cmd = exec.Command(n.bin, "serve", "--config", n.cfg)
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.done = make(chan error, 1)
	go func(c *exec.Cmd, done chan error) { done <- c.Wait() }(n.cmd, n.done)
	began := time.Now()
	for {
		res, err := http.Get("http://" + n.http + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-n.done:
			n.t.Fatalf("csirt serve exited before it was healthy: %v", err)
		default:
		}
		if time.Since(began) > 2*time.Minute {
			n.t.Fatal("csirt serve was not healthy within 2 minutes")
		}
		time.Sleep(50 * time.Millisecond)
	}
	n.healthyTook = time.Since(began)
}

// stop sends SIGTERM and waits for the exit.
func (n *serveNode) stop() {
	n.t.Helper()
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-n.done:
		if err != nil {
			n.t.Errorf("csirt serve exit after SIGTERM: %v", err)
		}
	case <-time.After(time.Minute):
		n.t.Fatal("csirt serve did not stop within a minute of SIGTERM")
	}
}

// admin runs `csirt admin ARGS` against the node's configuration.
func (n *serveNode) admin(args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(n.bin, append(append([]string{"admin"}, args...), "--config", n.cfg)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

func (n *serveNode) mustAdmin(args ...string) string {
	n.t.Helper()
	out, errs, err := n.admin(args...)
	if err != nil {
		n.t.Fatalf("csirt admin %s: %v\n%s%s", strings.Join(args, " "), err, out, errs)
	}
	return out
}

// token creates an enrolment token and returns it (stdout holds it alone).
func (n *serveNode) token(entity string, extra ...string) string {
	n.t.Helper()
	tok := strings.TrimSpace(n.mustAdmin(append([]string{"token", "create", "--entity", entity}, extra...)...))
	if !strings.HasPrefix(tok, "cse1.") || strings.Contains(tok, "\n") {
		n.t.Fatalf("token create printed %q, want the token alone", tok)
	}
	return tok
}

// enrol runs `csirt-agent enroll` and returns its exit code and output.
func enrol(t testing.TB, agentBin, server, tok, cfg string) (int, string) {
	t.Helper()
	cmd := exec.Command(agentBin, "enroll", "--server", server, "--token", tok, "--config", cfg)
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), string(out)
		}
		t.Fatal(err)
	}
	return 0, string(out)
}

func partitions(t testing.TB, broker, topic string) int {
	t.Helper()
	conn, err := kafka.Dial("tcp", broker)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ps, err := conn.ReadPartitions(topic)
	if err != nil {
		t.Fatalf("partitions of %s: %v", topic, err)
	}
	return len(ps)
}

// eventLines counts the distinct event.original values among want that
// the collector published to csirt.events.v1.
type eventLines struct {
	mu   sync.Mutex
	seen map[string]bool
	msgs int
}

func consumeEvents(ctx context.Context, broker string, parts int, agentID string, want map[string]bool, ev *eventLines) {
	var wg sync.WaitGroup
	for part := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{broker}, Topic: bus.TopicEvents, Partition: part,
				MaxWait: 50 * time.Millisecond, MinBytes: 1, MaxBytes: 10 << 20})
			defer r.Close()
			for ctx.Err() == nil {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				var e struct {
					Event struct{ Original string } `json:"event"`
					Agent struct{ ID string }       `json:"agent"`
				}
				if json.Unmarshal(m.Value, &e) != nil {
					continue
				}
				ev.mu.Lock()
				ev.msgs++
				if want[e.Event.Original] {
					ev.seen[e.Event.Original] = true
				}
				ev.mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

func (ev *eventLines) count() int {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	return len(ev.seen)
}

// TestOutage200kServe is the second acceptance variant of issue 4: the
// same 200,000 lines, rotations and SIGKILL as TestOutage200k, against
// the embedded broker of a real `csirt serve` node. The agent enrols with
// a token from `csirt admin token create` and, the single node giving no
// Kafka bootstrap, ships over the HTTPS intake; "Kafka stopped for 30 s"
// is the whole node stopped (SIGTERM) for 30 s and started again on the
// same data directory. After de-duplication by (agent, stream, sequence)
// every line must have arrived exactly once in csirt.raw.v1, and the
// collector must have turned every line into an event.
func TestOutage200kServe(t *testing.T) {
	if testing.Short() {
		t.Skip("the outage test takes about two minutes")
	}
	csirt, agentBin := buildCsirt(t), buildAgent(t)
	n := startServe(t, csirt)
	t.Logf("csirt serve healthy after %s", n.healthyTook.Round(time.Millisecond))
	work := t.TempDir()
	state, logs := filepath.Join(work, "state"), filepath.Join(work, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	const entity = "comune-di-serve"
	n.mustAdmin("entity", "add", entity, "--name", "Comune di Serve")
	pol := policy.Policy{HeartbeatInterval: policy.Duration(5 * time.Second)}
	for f := range 3 {
		cfg, _ := json.Marshal(map[string]any{"paths": []string{filepath.Join(logs, fmt.Sprintf("app%d.log*", f))}})
		pol.Sources = append(pol.Sources, policy.Source{Name: fmt.Sprintf("app%d", f), Kind: "file", Config: cfg})
	}
	polFile := filepath.Join(work, "policy.json")
	b, _ := json.Marshal(pol)
	if err := os.WriteFile(polFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	n.mustAdmin("policy", "set", "--entity", entity, polFile)
	tok := n.token(entity)
	cfgPath := filepath.Join(work, "agent.yml")
	if err := os.WriteFile(cfgPath, []byte("state_dir: "+state+"\nlog:\n  level: info\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out := enrol(t, agentBin, "https://"+n.intake, tok, cfgPath); code != 0 || !strings.Contains(out, "HTTPS intake") {
		t.Fatalf("enroll: exit %d\n%s", code, out)
	}
	id, err := identity.Load(state)
	if err != nil {
		t.Fatal(err)
	}
	if len(id.KafkaBootstrap) != 0 || id.IntakeURL == "" {
		t.Fatalf("a single node must give no Kafka bootstrap and an intake URL: %+v", id.Info)
	}
	agentLog, err := os.Create(filepath.Join(work, "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer agentLog.Close()
	ag := &agentProc{t: t, bin: agentBin, cfg: cfgPath, log: agentLog}
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

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	rawParts := partitions(t, n.broker, bus.TopicRaw)
	arr := &arrival{bySeq: map[string]string{}, lines: map[string]map[string]int{}, seen: map[string]time.Time{}}
	cctx, stopConsumer := context.WithCancel(ctx)
	var cwg sync.WaitGroup
	cwg.Add(1)
	go func() {
		defer cwg.Done()
		consume(cctx, t, n.broker, rawParts, id.Cert.PublicKey.(*ecdsa.PublicKey), arr)
	}()
	defer func() { stopConsumer(); cwg.Wait() }()

	const total = 200_000
	var down time.Time
	written, start := writeRotating(t, logs, total, 50*time.Second, []timedAction{
		{8 * time.Second, "stop csirt serve (SIGTERM)", func() { n.stop(); down = time.Now() }},
		{20 * time.Second, "SIGKILL the agent", ag.kill},
		{23 * time.Second, "restart the agent", ag.start},
		{38 * time.Second, "start csirt serve again on the same data directory", func() {
			if d := 30*time.Second - time.Since(down); d > 0 {
				time.Sleep(d) // the stop itself took a moment: keep the node down 30 s
			}
			t.Logf("csirt serve was down for %s", time.Since(down).Round(100*time.Millisecond))
			n.start()
		}},
	})
	t.Logf("%6.1fs all %d lines written; waiting for them in csirt.raw.v1", time.Since(start).Seconds(), total)
	deadline := time.Now().Add(4 * time.Minute)
	for arr.unique() < total && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("%6.1fs %d distinct lines arrived", time.Since(start).Seconds(), arr.unique())

	// The collector role of the node turned them into events.
	ev := &eventLines{seen: map[string]bool{}}
	ectx, stopEvents := context.WithCancel(ctx)
	var ewg sync.WaitGroup
	ewg.Add(1)
	go func() {
		defer ewg.Done()
		consumeEvents(ectx, n.broker, partitions(t, n.broker, bus.TopicEvents), id.AgentID, written, ev)
	}()
	deadline = time.Now().Add(3 * time.Minute)
	for ev.count() < len(written) && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
	}
	stopEvents()
	ewg.Wait()

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
		switch k := len(arr.lines[line]); {
		case k == 0:
			missing++
			if missing <= 5 {
				t.Errorf("line never arrived: %.40q", line)
			}
		case k > 1:
			twice++
			if twice <= 5 {
				t.Errorf("line arrived under %d different sequence numbers: %.40q", k, line)
			}
		}
	}
	for line := range arr.lines {
		if !written[line] {
			unexpected++
		}
	}
	dups := arr.records - len(arr.bySeq)
	fmt.Printf("outage test on csirt serve: lines written %d, arrived %d (distinct after de-duplication by agent/stream/sequence), duplicates before de-duplication %d, records received %d in %d messages of csirt.raw.v1, heartbeats %d; collector events for %d of the lines (%d messages in csirt.events.v1)\n",
		len(written), len(arr.lines)-unexpected, dups, arr.records, arr.messages, len(arr.heartbeats), ev.count(), ev.msgs)
	if missing > 0 || twice > 0 || unexpected > 0 || arr.badSig > 0 {
		t.Fatalf("missing %d, arrived twice under new numbers %d, unexpected %d, bad signatures %d", missing, twice, unexpected, arr.badSig)
	}
	if len(arr.heartbeats) == 0 {
		t.Fatal("no heartbeat arrived")
	}
	if ev.count() != len(written) {
		t.Fatalf("the collector made events of %d of the %d lines", ev.count(), len(written))
	}
}
