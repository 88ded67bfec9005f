package correlation

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/testenv"
)

// TestSpecExamplesParse parses every correlation example of the Sigma
// specification (sigma-spec/correlation-examples, public domain) and every
// correlation schema test document. Fragments (parts of a rule quoted by the
// specification) are checked for what they are.
func TestSpecExamplesParse(t *testing.T) {
	dir := filepath.Join(testenv.SharedData(t), "sigma-spec")
	type want struct {
		typ      Type
		n        int // correlations in the file
		groupBy  []string
		timespan time.Duration
		cond     string
	}
	wants := map[string]want{
		"05_event_count.yml":      {EventCount, 1, []string{"ComputerName"}, time.Hour, "gte 100"},
		"06_value_count.yml":      {ValueCount, 1, []string{"ComputerName", "WorkstationName"}, 24 * time.Hour, "field User and gte 100"},
		"07_temporal.yml":         {Temporal, 1, []string{"ComputerName", "User"}, 5 * time.Minute, ""},
		"08_temporal_ordered.yml": {TemporalOrdered, 1, []string{"User"}, time.Hour, ""},
		"09_value_sum.yml":        {ValueSum, 1, []string{"SourceIP", "User"}, time.Hour, "field bytes_sent and gt 1000000"},
		"10_value_avg.yml":        {ValueAvg, 1, []string{"SourceIP", "User"}, 24 * time.Hour, "field BytesOut and gt 500"},
		"11_value_percentile.yml": {ValuePercentile, 1, []string{"ComputerName"}, 24 * time.Hour, "field image and lte 1"},
		"14_temporal.yml":         {Temporal, 1, []string{"internal_ip", "remote_ip"}, 10 * time.Second, ""},
		"15_temporal_ordered.yml": {TemporalOrdered, 2, []string{"User"}, 10 * time.Minute, ""},
		"event_count.yml":         {EventCount, 1, []string{"ComputerName"}, time.Hour, "gte 100"},
		"event_count_ecs.yml":     {EventCount, 1, []string{"dns.question.name"}, time.Hour, "gte 100"},
		"value_count.yml":         {ValueCount, 1, []string{"ComputerName", "WorkstationName"}, 24 * time.Hour, "field User and gte 100"},
		"temporal.yml":            {Temporal, 1, []string{"ComputerName", "User"}, 5 * time.Minute, ""},
		"temporal_ordered.yml":    {TemporalOrdered, 1, []string{"ComputerName", "User"}, 5 * time.Minute, ""},
		"value_sum.yml":           {ValueSum, 1, []string{"SourceIP", "User"}, time.Hour, "field bytes_sent and gt 1000000"},
		"value_avg.yml":           {ValueAvg, 1, []string{"SourceIP", "User"}, 24 * time.Hour, "field BytesOut and gt 500"},
		"value_percentile.yml":    {ValuePercentile, 1, []string{"ComputerName"}, 24 * time.Hour, "field Image and lte 1"},
	}
	files, _ := filepath.Glob(filepath.Join(dir, "correlation-examples", "*.yml"))
	schema, _ := filepath.Glob(filepath.Join(dir, "tests", "schema", "correlation", "*.yml"))
	files = append(files, schema...)
	if len(files) < 20 {
		t.Fatalf("found %d correlation documents under %s, want the 16 examples and 8 schema tests", len(files), dir)
	}
	seen := map[Type]bool{}
	for _, f := range files {
		base := filepath.Base(f)
		t.Run(base, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			rules, err := ParseBytes(data, f)
			if strings.Contains(base, "fragment") {
				checkFragment(t, base, data, rules, err)
				return
			}
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			w, ok := wants[base]
			if !ok {
				t.Fatalf("no expectation for %s", base)
			}
			if len(rules) != w.n {
				t.Fatalf("got %d correlations, want %d", len(rules), w.n)
			}
			r := rules[0]
			seen[r.Type] = true
			if r.Type != w.typ || strings.Join(r.GroupBy, ",") != strings.Join(w.groupBy, ",") || r.Timespan != w.timespan || r.Condition.String() != w.cond {
				t.Errorf("got type %s group-by %v timespan %v condition %q; want %s %v %v %q", r.Type, r.GroupBy, r.Timespan, r.Condition, w.typ, w.groupBy, w.timespan, w.cond)
			}
			if r.TypePos.Line == 0 || len(r.RulesPos) != len(r.Rules) {
				t.Errorf("positions missing: type at %v, rules at %v", r.TypePos, r.RulesPos)
			}
		})
	}
	for _, typ := range Types {
		if !seen[typ] {
			t.Errorf("no example of type %s was parsed", typ)
		}
	}
}

// checkFragment: the specification quotes parts of correlation rules.
// 00 has metadata only and 12, 13 are detection rules: no correlation in
// them. 01 is a correlation section without type/timespan: an error with a
// position. 02-04 are section bodies: they parse once placed in a rule.
func checkFragment(t *testing.T, base string, data []byte, rules []*Rule, err error) {
	t.Helper()
	switch base {
	case "00_fragment.yml", "12_fragment.yml", "13_fragment.yml":
		if err != nil || len(rules) != 0 {
			t.Fatalf("got %d rules, err %v; want none (not a correlation document)", len(rules), err)
		}
	case "01_fragment.yml":
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Line != 4 || !strings.Contains(pe.Msg, "missing type") {
			t.Fatalf("got %v; want a ParseError at line 4 saying type is missing", err)
		}
		// Completed with a type, group-by and timespan it is a valid rule.
		full := strings.Replace(string(data), "correlation:\n", "correlation:\n  type: event_count\n  group-by: [source.ip]\n  timespan: 1h\n  condition: {gte: 5}\n", 1)
		rs, err := ParseBytes([]byte(full), base)
		if err != nil || len(rs) != 1 || len(rs[0].Rules) != 2 || rs[0].Rules[1] != "firewall_block" {
			t.Fatalf("completed fragment: %v %+v", err, rs)
		}
	case "02_fragment.yml", "03_fragment.yml", "04_fragment.yml":
		if err != nil || len(rules) != 0 {
			t.Fatalf("got %d rules, err %v; want none", len(rules), err)
		}
		body := "    " + strings.ReplaceAll(strings.TrimSpace(string(data)), "\n", "\n    ")
		doc := "title: t\ncorrelation:\n    type: event_count\n    rules: [a_rule]\n    timespan: 1h\n" + body + "\n"
		if !strings.Contains(body, "group-by") {
			doc += "    group-by: [host.name]\n"
		}
		if !strings.Contains(body, "condition") {
			doc += "    condition: {gte: 1}\n"
		}
		rs, err := ParseBytes([]byte(doc), base)
		if err != nil || len(rs) != 1 {
			t.Fatalf("fragment in a rule: %v\n%s", err, doc)
		}
		r := rs[0]
		switch base {
		case "02_fragment.yml":
			if strings.Join(r.GroupBy, ",") != "TargetUserName,TargetDomainName" {
				t.Errorf("group-by %v", r.GroupBy)
			}
		case "03_fragment.yml":
			if !r.Condition.Holds(100) || r.Condition.Holds(99) {
				t.Errorf("condition %v", r.Condition)
			}
		case "04_fragment.yml":
			if !r.Condition.Holds(101) || !r.Condition.Holds(200) || r.Condition.Holds(100) || r.Condition.Holds(201) {
				t.Errorf("range condition %v", r.Condition)
			}
		}
	default:
		t.Fatalf("unknown fragment %s", base)
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name, doc string
		line      int
		msg       string
	}{
		{"unknown type", "title: x\ncorrelation:\n  type: event_sum\n  rules: [a]\n  group-by: [u]\n  timespan: 1h\n  condition: {gte: 1}\n", 3, `unknown type "event_sum"`},
		{"bad timespan", "title: x\ncorrelation:\n  type: event_count\n  rules: [a]\n  group-by: [u]\n  timespan: 1H\n  condition: {gte: 1}\n", 6, "timespan"},
		{"no condition", "title: x\ncorrelation:\n  type: event_count\n  rules: [a]\n  group-by: [u]\n  timespan: 1h\n", 3, "needs a condition"},
		{"no field", "title: x\ncorrelation:\n  type: value_count\n  rules: [a]\n  group-by: [u]\n  timespan: 1h\n  condition: {gte: 1}\n", 7, "condition.field"},
		{"bad op", "title: x\ncorrelation:\n  type: event_count\n  rules: [a]\n  group-by: [u]\n  timespan: 1h\n  condition: {ge: 1}\n", 7, `unknown key "ge"`},
		{"unknown key", "title: x\ncorrelation:\n  type: event_count\n  rule: [a]\n", 4, `unknown key "rule"`},
		{"dup rule", "title: x\ncorrelation:\n  type: temporal\n  rules: [a, b, a]\n  group-by: [u]\n  timespan: 1h\n", 4, `"a" listed twice`},
		{"temporal lt", "title: x\ncorrelation:\n  type: temporal\n  rules: [a, b]\n  group-by: [u]\n  timespan: 1h\n  condition: {lt: 2}\n", 7, "only use gt or gte"},
		{"alias unused", "title: x\ncorrelation:\n  type: temporal\n  rules: [a, b]\n  group-by: [u]\n  timespan: 1h\n  aliases:\n    ip: {a: source.ip, b: destination.ip}\n", 3, `alias "ip" is not used`},
		{"no group-by", "title: x\ncorrelation:\n  type: temporal\n  rules: [a, b]\n  timespan: 1h\n", 3, "missing group-by"},
		{"bad level", "title: x\nlevel: severe\ncorrelation:\n  type: temporal\n  rules: [a, b]\n  group-by: [u]\n  timespan: 1h\n", 2, "level"},
		{"bad yaml", "title: x\ncorrelation: [\n", 2, "invalid YAML"},
		{"non-number", "title: x\ncorrelation:\n  type: event_count\n  rules: [a]\n  group-by: [u]\n  timespan: 1h\n  condition: {gte: many}\n", 7, "not a number"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseBytes([]byte(c.doc), "x.yml")
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("got %v, want a *ParseError", err)
			}
			if pe.File != "x.yml" || pe.Line != c.line || !strings.Contains(pe.Msg, c.msg) {
				t.Fatalf("got %q at line %d, want %q at line %d", pe.Msg, pe.Line, c.msg, c.line)
			}
		})
	}
}

func TestParseFull(t *testing.T) {
	doc := `title: Brute force then success
id: 11111111-2222-4333-8444-555555555555
name: bf_then_success
status: test
author: CSIRT Toscana
level: high
tags: [attack.t1110]
falsepositives: [a user who forgot the password]
fields: [source.ip]
generate: true
correlation:
  type: temporal_ordered
  rules: [bf, ok]
  group-by: [ip]
  timespan: 10m
  condition: {gte: 2}
  aliases:
    ip:
      bf: source.ip
      ok: client.ip
`
	rs, err := ParseBytes([]byte(doc), "f.yml")
	if err != nil {
		t.Fatal(err)
	}
	r := rs[0]
	if r.ID != "11111111-2222-4333-8444-555555555555" || r.Name != "bf_then_success" || r.Level != "high" || !r.Generate ||
		r.Aliases["ip"]["ok"] != "client.ip" || r.Tags[0] != "attack.t1110" || r.Fields[0] != "source.ip" || r.Falsepositives[0] == "" {
		t.Fatalf("%+v", r)
	}
	if r.Pos.Line != 1 || r.TypePos.Line != 12 || r.RulesPos[1].Line != 13 {
		t.Fatalf("positions: %v %v %v", r.Pos, r.TypePos, r.RulesPos)
	}
}

func TestParseTimespan(t *testing.T) {
	for s, want := range map[string]time.Duration{"30s": 30 * time.Second, "90m": 90 * time.Minute, "2h": 2 * time.Hour, "1d": 24 * time.Hour} {
		if got, err := ParseTimespan(s); err != nil || got != want {
			t.Errorf("%s: %v %v", s, got, err)
		}
	}
	for _, s := range []string{"", "m", "0m", "-1m", "1w", "1.5h", "10M", "1 h"} {
		if _, err := ParseTimespan(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}
