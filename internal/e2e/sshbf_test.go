package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/incident"
	"github.com/csirt-toscana/platform/internal/policy"
	"github.com/csirt-toscana/platform/internal/testenv"
)

const (
	entity   = "comune-e2e"
	attacker = "35.188.49.176" // the address of the shared crowdsec ssh-bf log
	rounds   = 12              // times the attack is replayed, 11 minutes apart
	killAt   = 6               // rounds written before the correlator is killed
)

// attackLines is the shared crowdsec ssh-bf log replayed n times, each
// replay 11 minutes after the previous one (so each is its own brute-force
// window), as an sshd would log it in /var/log/auth.log.
func attackLines(t *testing.T, n int) [][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.SharedData(t), "crowdsec-hub-tests", ".tests", "ssh-bf", "ssh-bf.log"))
	if err != nil {
		t.Fatal(err)
	}
	var base []string
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if strings.TrimSpace(l) != "" {
			base = append(base, l)
		}
	}
	const stamp = "Jan _2 15:04:05" // syslog's timestamp, 15 bytes
	var out [][]string
	for r := range n {
		var round []string
		for _, l := range base {
			ts, err := time.Parse(stamp, l[:len(stamp)])
			if err != nil {
				t.Fatalf("unexpected line in the shared log: %q: %v", l, err)
			}
			round = append(round, ts.Add(time.Duration(r)*11*time.Minute).Format(stamp)+l[len(stamp):])
		}
		out = append(out, round)
	}
	return out
}

func appendLines(t *testing.T, path string, lines ...string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lines {
		if _, err := f.WriteString(l + "\n"); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// expectedAlerts runs the same detection offline (`csirt rules hunt` with
// the built-in library) over the same lines: alerts per rule id.
func expectedAlerts(t *testing.T, bin, file string) map[string]int {
	t.Helper()
	cmd := exec.Command(bin, "rules", "hunt", "--rules", filepath.Join(testenv.RepoRoot(), "rules", "library"), "--format", "jsonl", file)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("csirt rules hunt: %v\n%s", err, errb.String())
	}
	want := map[string]int{}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var m struct {
			Rule struct {
				ID string `json:"id"`
			} `json:"rule"`
		}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("hunt output %q: %v", sc.Text(), err)
		}
		want[m.Rule.ID]++
	}
	return want
}

// TestSSHBruteForceEndToEnd is the correlator's acceptance on real Kafka and
// Elasticsearch: the shared crowdsec ssh-bf log, appended to a file that a
// real csirt-agent follows, goes over Kafka (the agent's mutual TLS) to a
// `csirt collector` process, over csirt.events.v1 to a `csirt correlator`
// process, which is killed with SIGKILL in the middle of the stream (one
// brute-force window half read) and started again. The findings must be
// exactly those the same detection gives offline (none lost, none twice)
// and form one incident for the attacking address with every finding
// attached.
func TestSSHBruteForceEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds the binaries and starts a private Kafka")
	}
	requireCentral(t)
	attack := attackLines(t, rounds)
	csirt, agentBin := testenv.Build(t, "csirt"), testenv.Build(t, "csirt-agent")
	k := testenv.StartPrivateKafka(t)

	// The centre: collector (with the intake) and correlator (with the
	// incident stage) as two processes.
	c := startCentral(t, csirt, k)
	st, work := c.st, c.work

	// A municipality with one server running the agent on its auth.log.
	logs := filepath.Join(work, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	authLog := filepath.Join(logs, "auth.log")
	src, _ := json.Marshal(map[string]any{"paths": []string{authLog}, "poll_interval": "100ms"})
	pol := policy.Policy{Sources: []policy.Source{{Name: "auth", Kind: "file", Config: src}}, HeartbeatInterval: policy.Duration(10 * time.Second)}
	agent, _ := c.enrolAgent(agentBin, entity, "Comune di Prova E2E", pol)

	// What the same detection gives offline over the same lines.
	all := filepath.Join(work, "expected.log")
	for _, r := range attack {
		appendLines(t, all, r...)
	}
	want := expectedAlerts(t, csirt, all)
	wantTotal := 0
	for _, n := range want {
		wantTotal += n
	}
	if wantTotal == 0 {
		t.Fatal("the offline detection found nothing: the test would prove nothing")
	}
	t.Logf("offline detection over %d lines: %v", rounds*len(attack[0]), want)

	count := func() int { return len(findingsOf(t, st, entity)) }

	// 1. The first rounds, then half of the next one: its window is open
	// in the correlator's state when the correlator is killed.
	for _, r := range attack[:killAt] {
		appendLines(t, authLog, r...)
	}
	half := len(attack[killAt]) / 2
	appendLines(t, authLog, attack[killAt][:half]...)
	perRound := wantTotal / rounds
	waitFor(t, "the findings of the first rounds", 3*time.Minute, func() bool { return count() >= killAt*perRound })
	time.Sleep(1500 * time.Millisecond) // a snapshot or two of the open window

	// 2. SIGKILL while lines keep coming; restart a little later.
	done := make(chan struct{})
	go func() {
		defer close(done)
		rest := attack[killAt][half:]
		for _, r := range attack[killAt+1:] {
			rest = append(rest, r...)
		}
		for _, l := range rest {
			appendLines(t, authLog, l)
			time.Sleep(40 * time.Millisecond)
		}
	}()
	time.Sleep(300 * time.Millisecond)
	before := count()
	c.correl.Kill()
	t.Logf("correlator killed with SIGKILL after %d findings were stored", before)
	time.Sleep(2 * time.Second)
	c.correl.Start()
	waitHealthy(t, c.correl, c.httpCorr)
	<-done

	// 3. Everything arrives exactly once.
	waitFor(t, "every finding", 3*time.Minute, func() bool { return count() >= wantTotal })
	time.Sleep(5 * time.Second) // late duplicates would show up now
	got := map[string]int{}
	byID := map[string]bool{}
	fs := findingsOf(t, st, entity)
	for _, f := range fs {
		got[f.RuleID]++
		byID[f.ID] = true
		if f.SourceIP != attacker || f.Entity != entity || len(f.EventIDs) == 0 {
			t.Errorf("finding %s (%s): source %q, entity %q, %d events", f.ID, f.RuleName, f.SourceIP, f.Entity, len(f.EventIDs))
		}
	}
	for rule, n := range want {
		if got[rule] != n {
			t.Errorf("rule %s: %d findings stored, the same detection offline gives %d", rule, got[rule], n)
		}
	}
	for rule, n := range got {
		if want[rule] == 0 {
			t.Errorf("rule %s: %d findings stored, none offline", rule, n)
		}
	}

	// 4. One incident for the attacking address, every finding attached.
	var mine []*incident.Incident
	for _, in := range incidentsOf(t, st, entity) {
		if strings.Contains(in.GroupKey, attacker) {
			mine = append(mine, in)
		}
	}
	if len(mine) != 1 {
		var keys []string
		for _, in := range mine {
			keys = append(keys, in.ID+" "+in.RuleGroup+" "+in.GroupKey)
		}
		t.Fatalf("%d incidents for %s, want 1: %v", len(mine), attacker, keys)
	}
	in := mine[0]
	attached := map[string]bool{}
	for _, id := range in.FindingIDs {
		attached[id] = true
	}
	var missing []string
	for id := range byID {
		if !attached[id] {
			missing = append(missing, id)
		}
	}
	sort.Strings(missing)
	if in.FindingCount != len(fs) || len(missing) > 0 || len(attached) != len(in.FindingIDs) {
		t.Errorf("incident %s: %d findings counted, %d ids (%d distinct), %d stored; not attached: %v",
			in.ID, in.FindingCount, len(in.FindingIDs), len(attached), len(fs), missing)
	}
	t.Logf("incident %s %q: %d findings (%v), severity %s, rule group %s; %d findings were stored before the SIGKILL",
		in.ID, in.Title, in.FindingCount, got, in.Severity, in.RuleGroup, before)

	// The operators' view agrees.
	var list struct {
		Total int64 `json:"total"`
	}
	if err := json.Unmarshal([]byte(c.cli("incidents", "list", "--entity", entity, "--format", "json")), &list); err != nil {
		t.Fatal(err)
	}
	if list.Total != int64(len(incidentsOf(t, st, entity))) {
		t.Errorf("csirt incidents list reports %d incidents, the store holds %d", list.Total, len(incidentsOf(t, st, entity)))
	}
	c.stop(agent)
}
