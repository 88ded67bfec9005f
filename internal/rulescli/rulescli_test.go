package rulescli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/testenv"
)

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// SigmaHQ rules, Detection Rule License 1.1 (authors credited in each rule).
func TestLintSharedSigmaHQ(t *testing.T) {
	dir := testenv.SharedData(t)
	code, out, errs := run(t, "lint", filepath.Join(dir, "sigma/rules"), filepath.Join(dir, "sigma/rules-emerging-threats"), filepath.Join(dir, "sigma/rules-threat-hunting"))
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, lastLine(out), errs)
	}
	if got := lastLine(out); got != "rules: 503 supported: 503 unsupported: 0 errors: 0" {
		t.Errorf("last line %q", got)
	}
	t.Logf("SigmaHQ (DRL 1.1): %s", lastLine(out))

	// With the default mapping, rules testing fields our network summaries
	// never carry are named.
	code, out, errs = run(t, "lint", "-q", "--mapping", "default", filepath.Join(dir, "sigma/rules/network/zeek"))
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, lastLine(out), errs)
	}
	if !strings.Contains(out, `field "Z" (mapped to "Z") is not produced by dataset dns: the rule could never test it`) {
		t.Errorf("the Zeek DNS Z-flag rule is not reported as never evaluated:\n%s", out)
	}
	if !strings.Contains(out, "note: 3 supported rules are routed but never evaluated by mapping default") {
		t.Errorf("summary of never evaluated rules missing:\n%s", out)
	}
}

func TestLintSpecSchemaDocuments(t *testing.T) {
	dir := testenv.SharedData(t)
	code, out, _ := run(t, "lint", filepath.Join(dir, "sigma-spec/tests/schema"))
	if code != 0 || lastLine(out) != "rules: 12 supported: 12 unsupported: 0 errors: 0" {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

func TestLintReportsErrorsAndUnsupported(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("ok.yml", "title: ok\nid: ok\ndetection:\n  s: {a: x}\n  condition: s\n")
	write("bad.yml", "title: bad\ndetection:\n  s: {a: x}\n  condition: s or missing\n")
	write("unsup.yml", "title: u\nid: u\ndetection:\n  s: {a|expand: '%Admins%'}\n  condition: s\n")
	code, out, _ := run(t, "lint", dir)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if !strings.Contains(out, "bad.yml:4:19: ") {
		t.Errorf("error without position:\n%s", out)
	}
	if !strings.Contains(out, "unsupported ") || !strings.Contains(out, "%Admins%") {
		t.Errorf("unsupported without reason:\n%s", out)
	}
	if got := lastLine(out); got != "rules: 3 supported: 1 unsupported: 1 errors: 1" {
		t.Errorf("last line %q", got)
	}
}

func TestHuntJSONL(t *testing.T) {
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules")
	if err := os.Mkdir(rules, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rules, "r.yml"), []byte("title: Shadow read\nid: r1\nlogsource: {product: linux}\ndetection:\n  k: ['cat /etc/shadow']\n  condition: k\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	events := filepath.Join(dir, "events.jsonl")
	if err := os.WriteFile(events, []byte(`{"cmd":"ls"}`+"\n"+`{"cmd":"sudo bash -c \"cat /etc/shadow\""}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := run(t, "hunt", "--rules", rules, "--mapping", "none", "--format", "jsonl", events)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 {
		t.Fatalf("output:\n%s", out)
	}
	var rec struct {
		Rule  struct{ ID, Title string }
		File  string
		Line  int
		Event map[string]any
	}
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Rule.ID != "r1" || rec.Rule.Title != "Shadow read" || rec.File != events || rec.Line != 2 || rec.Event["cmd"] == nil {
		t.Errorf("record %+v", rec)
	}
}

func TestHuntCorrelation(t *testing.T) {
	rules, err := filepath.Abs("../../rules/ruletest/testdata/rules")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	events := filepath.Join(dir, "auth.jsonl")
	var b strings.Builder
	for i := 0; i < 4; i++ {
		b.WriteString(`{"@timestamp":"2026-01-01T10:0` + string(rune('0'+i)) + `:00Z","event":{"dataset":"sshd"},"source":{"ip":"203.0.113.9"},"message":"Failed password for root from 203.0.113.9"}` + "\n")
	}
	if err := os.WriteFile(events, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := run(t, "hunt", "--rules", rules, "--format", "text", events)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	// The base rule only feeds the correlation (no generate: true).
	if strings.Count(out, "5b7d9a1e") != 0 || !strings.Contains(out, "event_count 0b8ee5a8") || !strings.Contains(out, "203.0.113.9") {
		t.Errorf("output:\n%s\n%s", out, errs)
	}
	code, out, errs = run(t, "hunt", "--rules", rules, "--format", "text", "--all-matches", events)
	if code != 0 || strings.Count(out, "5b7d9a1e") != 4 || !strings.Contains(out, "event_count 0b8ee5a8") {
		t.Errorf("--all-matches output:\n%s\n%s", out, errs)
	}
}

func TestTestCommand(t *testing.T) {
	code, out, errs := run(t, "test", "-v", "../../rules/ruletest/testdata")
	if code != 0 || !strings.Contains(lastLine(out), "passed: 3 failed: 0") {
		t.Fatalf("exit %d:\n%s%s", code, out, errs)
	}
}

// The whole shared sigma folder holds test metadata (regression info.yml)
// and a pySigma pipeline beside the rules: lint skips those with a reason
// and still counts every rule.
func TestLintWholeSharedSigmaFolder(t *testing.T) {
	dir := testenv.SharedData(t)
	code, out, errs := run(t, "lint", "-q", filepath.Join(dir, "sigma"))
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, lastLine(out), errs)
	}
	if got := lastLine(out); got != "rules: 503 supported: 503 unsupported: 0 errors: 0" {
		t.Errorf("last line %q", got)
	}
	if n := strings.Count("\n"+out, "\nskipped "); n != 52 {
		t.Errorf("%d documents skipped, want 52 (49 regression info.yml, thor.yml and other non-rule files):\n%s", n, out)
	}
	if !strings.Contains(out, "tests-config/thor.yml:1:1: not a Sigma document") {
		t.Errorf("the pySigma pipeline is not reported as skipped:\n%s", out)
	}
}

func TestLintSkipsNonSigmaButNotBrokenRules(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pipeline.yml"), []byte("name: p\npriority: 10\ntransformations: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nodetect.yml"), []byte("title: t\nlogsource: {product: linux}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := run(t, "lint", dir)
	if code != 1 || lastLine(out) != "rules: 1 supported: 0 unsupported: 0 errors: 1" {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if !strings.Contains(out, "skipped "+filepath.Join(dir, "pipeline.yml")) || !strings.Contains(out, "no detection section") {
		t.Fatalf("want the pipeline skipped and the rule without detection an error:\n%s", out)
	}
}

// The temporal_ordered example of the Sigma specification, run through the
// real detection engine and correlation engine: ten failed logins then a
// success for the same user within ten minutes give one alert; failures
// alone give none. The referenced rules have no `generate: true`, so their
// own matches are not reported.
func TestHuntSpecTemporalOrdered(t *testing.T) {
	rule := filepath.Join(testenv.SharedData(t), "sigma-spec", "correlation-examples", "15_temporal_ordered.yml")
	dir := t.TempDir()
	base := time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC)
	write := func(name, user string, success bool) string {
		var b strings.Builder
		for i := 0; i < 10; i++ {
			fmt.Fprintf(&b, `{"@timestamp":%q,"EventID":4625,"User":%q}`+"\n", base.Add(time.Duration(i)*30*time.Second).Format(time.RFC3339), user)
		}
		if success {
			fmt.Fprintf(&b, `{"@timestamp":%q,"EventID":4624,"User":%q}`+"\n", base.Add(320*time.Second).Format(time.RFC3339), user)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	type rec struct {
		Rule        struct{ ID, Type string } `json:"rule"`
		Line        int                       `json:"line"`
		Correlation struct {
			GroupBy map[string]string `json:"group_by"`
		} `json:"correlation"`
	}
	hunt := func(file string, extra ...string) []rec {
		args := append([]string{"hunt", "--rules", rule, "--mapping", "none", "--format", "jsonl"}, extra...)
		code, out, errs := run(t, append(args, file)...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		var recs []rec
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if l == "" {
				continue
			}
			var r rec
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatalf("%v: %s", err, l)
			}
			recs = append(recs, r)
		}
		return recs
	}
	got := hunt(write("fail_then_ok.jsonl", "alice", true))
	if len(got) != 1 || got[0].Rule.ID != "b180ead8-d58f-40b2-ae54-c8940995b9b6" || got[0].Rule.Type != "temporal_ordered" ||
		got[0].Line != 11 || got[0].Correlation.GroupBy["User"] != "alice" {
		t.Fatalf("want one temporal_ordered alert for alice at line 11, got %+v", got)
	}
	if got := hunt(write("fail_only.jsonl", "bob", false)); len(got) != 0 {
		t.Fatalf("failures alone gave %+v", got)
	}
	if got := hunt(filepath.Join(dir, "fail_then_ok.jsonl"), "--all-matches"); len(got) != 12 {
		t.Fatalf("--all-matches: want 11 detection matches and 1 alert, got %d", len(got))
	}
}

// The project's rule library over CrowdSec's raw test logs (MIT), parsed by
// the collector's own parsers: the brute-force and multi-port-scan
// correlations flag the addresses CrowdSec's scenarios flag
// (scenario.assert), and no other.
func TestHuntRawCrowdsecLogs(t *testing.T) {
	dir := filepath.Join(testenv.SharedData(t), "crowdsec-hub-tests", ".tests")
	cases := []struct {
		test, rule string
		want       []string
	}{
		{"ssh-bf", "SSH brute force from one address", []string{"35.188.49.176"}},
		{"ssh-slow-bf", "SSH slow brute force from one address", []string{"103.100.210.198"}},
		{"iptables-scan-multi-port", "Multi-port scan from one address", []string{"127.0.0.2", "62.34.17.168"}},
	}
	for _, c := range cases {
		logs, err := filepath.Glob(filepath.Join(dir, c.test, "*.log"))
		if err != nil || len(logs) == 0 {
			t.Fatalf("%s: no log file (%v)", c.test, err)
		}
		code, out, errs := run(t, append([]string{"hunt", "--rules", "../../rules/library", "--format", "jsonl"}, logs...)...)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", c.test, code, errs)
		}
		flagged := map[string]bool{}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			var rec struct {
				Rule        struct{ Title string } `json:"rule"`
				Correlation struct {
					GroupBy map[string]string `json:"group_by"`
				} `json:"correlation"`
			}
			if l == "" {
				continue
			}
			if err := json.Unmarshal([]byte(l), &rec); err != nil {
				t.Fatal(err)
			}
			if rec.Rule.Title == c.rule {
				flagged[rec.Correlation.GroupBy["source.ip"]] = true
			}
		}
		var got []string
		for ip := range flagged {
			got = append(got, ip)
		}
		sort.Strings(got)
		t.Logf("%s: CrowdSec flags %v, %q flags %v", c.test, c.want, c.rule, got)
		if strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("%s: flagged %v, want %v", c.test, got, c.want)
		}
		for _, ip := range c.want {
			if !strings.Contains(mustRead(t, filepath.Join(dir, c.test, "scenario.assert")), `"`+ip+`" in results`) {
				t.Errorf("%s: %s is not in CrowdSec's scenario.assert", c.test, ip)
			}
		}
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
