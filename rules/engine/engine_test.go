package engine_test

import (
	"errors"
	"testing"
	"testing/fstest"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/rules/engine"
	"github.com/csirt-toscana/platform/rules/mapping"
	"github.com/csirt-toscana/platform/rules/sigma"
)

func compile(t *testing.T, m *mapping.Mapping, docs ...string) *engine.Bundle {
	t.Helper()
	c := &sigma.Collection{}
	for i, d := range docs {
		f, err := sigma.ParseFile("r"+string(rune('0'+i))+".yml", []byte(d), nil)
		if err != nil {
			t.Fatal(err)
		}
		c.Add(f)
	}
	b, err := engine.Compile(c, engine.Options{Mapping: m, Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSemantics(t *testing.T) {
	rule := func(det string) string {
		return "title: t\nid: r\nlogsource: {product: test}\ndetection:\n" + det
	}
	ts := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	for _, tc := range []struct {
		name string
		det  string
		ev   event.Event
		want bool
	}{
		{"case-insensitive", "  s: {a: 'HeLLo'}\n  condition: s\n", event.Event{"a": "hello"}, true},
		{"cased", "  s: {a|cased: 'HeLLo'}\n  condition: s\n", event.Event{"a": "hello"}, false},
		{"wildcard ?", "  s: {a: 'h?llo'}\n  condition: s\n", event.Event{"a": "hällo"}, true},
		{"escaped star", "  s: {a: 'a\\*b'}\n  condition: s\n", event.Event{"a": "axb"}, false},
		{"escaped star literal", "  s: {a: 'a\\*b'}\n  condition: s\n", event.Event{"a": "a*b"}, true},
		{"list OR", "  s: {a: [x, y]}\n  condition: s\n", event.Event{"a": "y"}, true},
		{"contains all", "  s: {a|contains|all: [x, y]}\n  condition: s\n", event.Event{"a": "..y..x"}, true},
		{"contains all miss", "  s: {a|contains|all: [x, y]}\n  condition: s\n", event.Event{"a": "..y.."}, false},
		{"list of maps", "  s:\n    - {a: x}\n    - {b: y}\n  condition: s\n", event.Event{"b": "y"}, true},
		{"map AND", "  s: {a: x, b: y}\n  condition: s\n", event.Event{"b": "y"}, false},
		{"null absent", "  s: {a: null}\n  condition: s\n", event.Event{"b": "y"}, true},
		{"null present", "  s: {a: null}\n  condition: s\n", event.Event{"a": "y"}, false},
		{"empty value", "  s: {a: ''}\n  condition: s\n", event.Event{"a": ""}, true},
		{"exists", "  s: {a|exists: true}\n  condition: s\n", event.Event{"a": "y"}, true},
		{"not exists", "  s: {a|exists: false}\n  condition: s\n", event.Event{"a": "y"}, false},
		{"number", "  s: {a: 4625}\n  condition: s\n", event.Event{"a": int64(4625)}, true},
		{"gt", "  s: {a|gt: 10}\n  condition: s\n", event.Event{"a": int64(11)}, true},
		{"lte", "  s: {a|lte: 10}\n  condition: s\n", event.Event{"a": "11"}, false},
		{"cidr", "  s: {a|cidr: 10.0.0.0/8}\n  condition: s\n", event.Event{"a": "10.2.3.4"}, true},
		{"cidr v6", "  s: {a|cidr: '2001:db8::/32'}\n  condition: s\n", event.Event{"a": "2001:db9::1"}, false},
		{"re", "  s: {a|re: '^ab+c$'}\n  condition: s\n", event.Event{"a": "ABBC"}, false},
		{"re i", "  s: {a|re|i: '^ab+c$'}\n  condition: s\n", event.Event{"a": "ABBC"}, true},
		{"re m", "  s: {a|re|m: '^b$'}\n  condition: s\n", event.Event{"a": "a\nb\nc"}, true},
		{"re s", "  s: {a|re|s: 'a.b'}\n  condition: s\n", event.Event{"a": "a\nb"}, true},
		{"windash", "  s: {a|windash|contains: ' -enc '}\n  condition: s\n", event.Event{"a": "powershell /enc AAA"}, true},
		{"windash en dash", "  s: {a|windash|contains: ' -enc '}\n  condition: s\n", event.Event{"a": "powershell –enc AAA"}, true},
		{"base64offset", "  s: {a|base64offset|contains: '/bin/bash'}\n  condition: s\n", event.Event{"a": "echo IyEvYmluL2Jhc2g= | base64 -d"}, true},
		{"wide base64offset", "  s: {a|wide|base64offset|contains: 'ping'}\n  condition: s\n", event.Event{"a": "powershell -enc cABpAG4AZwAgADEAMgA3AC4AMAAuADAALgAxAA=="}, true},
		{"fieldref", "  s: {a|fieldref: b}\n  condition: s\n", event.Event{"a": "X", "b": "x"}, true},
		{"fieldref neq", "  s: {a|fieldref|neq: b}\n  condition: s\n", event.Event{"a": "x", "b": "y"}, true},
		{"neq", "  s: {a|neq: x}\n  condition: s\n", event.Event{"a": "x"}, false},
		{"hour", "  s: {'@timestamp|hour': 5}\n  condition: s\n", event.Event{"@timestamp": ts}, true},
		{"minute", "  s: {'@timestamp|minute': 7}\n  condition: s\n", event.Event{"@timestamp": ts}, false},
		{"keywords", "  k: [evil, 'bad*thing']\n  condition: k\n", event.Event{"message": "a BAD little thing"}, true},
		{"keywords miss", "  k: [evil]\n  condition: k\n", event.Event{"message": "fine"}, false},
		{"list values field", "  s: {a: x}\n  condition: s\n", event.Event{"a": []string{"w", "X"}}, true},
		{"not missing field", "  s: {a: x}\n  f: {b: y}\n  condition: s and not f\n", event.Event{"a": "x"}, true},
		{"1 of them", "  s1: {a: x}\n  s2: {a: y}\n  _h: {a: z}\n  condition: 1 of them\n", event.Event{"a": "z"}, false},
		{"condition list", "  s1: {a: x}\n  s2: {a: y}\n  condition: [s1, s2]\n", event.Event{"a": "y"}, true},
	} {
		b := compile(t, mapping.None(), rule(tc.det))
		got := len(b.NewEvaluator().Eval(tc.ev, nil)) == 1
		if got != tc.want {
			t.Errorf("%s: match = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRoutingAndMapping(t *testing.T) {
	b := compile(t, mapping.Default(),
		"title: ssh\nid: ssh\nlogsource: {product: linux, service: sshd}\ndetection:\n  k: ['Failed password']\n  condition: k\n",
		"title: web\nid: web\nlogsource: {category: webserver}\ndetection:\n  s: {cs-uri-query|contains: 'union select'}\n  condition: s\n",
		"title: proc\nid: proc\nlogsource: {product: windows, category: process_creation}\ndetection:\n  s: {Image|endswith: '\\whoami.exe'}\n  condition: s\n",
	)
	ev := b.NewEvaluator()
	for _, tc := range []struct {
		ev   event.Event
		want string
	}{
		{event.Event{"event.dataset": "sshd", "message": "Failed password for root"}, "ssh"},
		{event.Event{"event.dataset": "nginx.access", "message": "Failed password for root"}, ""},
		{event.Event{"event.dataset": "nginx.access", "url.query": "id=1 UNION SELECT x"}, "web"},
		{event.Event{"event.dataset": "windows.sysmon_operational", "event.code": "1", "process.executable": `C:\Windows\System32\whoami.exe`}, "proc"},
		{event.Event{"event.dataset": "windows.sysmon_operational", "event.code": "3", "process.executable": `C:\Windows\System32\whoami.exe`}, ""},
		{event.Event{"event.dataset": "windows.security", "event.code": "4688", "process.executable": `C:\Windows\System32\whoami.exe`}, "proc"},
	} {
		ms := ev.Eval(tc.ev, nil)
		got := ""
		if len(ms) > 0 {
			got = ms[0].RuleID
		}
		if got != tc.want || len(ms) > 1 {
			t.Errorf("%v: matched %v, want %q", tc.ev, ms, tc.want)
		}
	}
}

func TestFilterSuppresses(t *testing.T) {
	b := compile(t, mapping.None(),
		"title: rar\nid: 6f3e2987-db24-4c78-a860-b4f4095a7095\nname: rar\nlogsource: {product: windows, category: process_creation}\ndetection:\n  s: {Image|endswith: '\\rar.exe'}\n  condition: s\n",
		"title: Filter Administrator account\nlogsource: {category: process_creation, product: windows}\nfilter:\n  rules: [6f3e2987-db24-4c78-a860-b4f4095a7095]\n  selection: {User|startswith: 'adm_'}\n  condition: selection\n",
	)
	ev := b.NewEvaluator()
	if n := len(ev.Eval(event.Event{"Image": `C:\rar.exe`, "User": "adm_x"}, nil)); n != 0 {
		t.Errorf("filtered event matched")
	}
	if n := len(ev.Eval(event.Event{"Image": `C:\rar.exe`, "User": "bob"}, nil)); n != 1 {
		t.Errorf("unfiltered event did not match")
	}
	if ev.Suppressed != 1 {
		t.Errorf("suppressed = %d", ev.Suppressed)
	}
}

func TestMatchCarriesMetadata(t *testing.T) {
	b := compile(t, mapping.None(), "title: T\nid: I\nname: N\nlevel: high\ntags: [attack.t1110]\ndetection:\n  s: {a: x}\n  condition: s\n")
	ms := b.NewEvaluator().Eval(event.Event{"a": "x"}, nil)
	if len(ms) != 1 || ms[0].RuleID != "I" || ms[0].Name != "N" || ms[0].Title != "T" || ms[0].Level != "high" || ms[0].Tags[0] != "attack.t1110" || ms[0].Event["a"] != "x" {
		t.Errorf("%+v", ms)
	}
}

func TestHotReloadKeepsOldBundle(t *testing.T) {
	good := fstest.MapFS{"r.yml": {Data: []byte("title: a\nid: a\ndetection:\n  s: {a: x}\n  condition: s\n")}}
	bad := fstest.MapFS{"r.yml": {Data: []byte("title: a\nid: a\ndetection:\n  s: {a: x}\n  condition: s and nope\n")}}
	build := func(fsys fstest.MapFS) func() (*engine.Bundle, error) {
		return func() (*engine.Bundle, error) {
			c, err := sigma.LoadFS(fsys, ".", nil)
			if err != nil {
				return nil, err
			}
			return engine.Compile(c, engine.Options{Mapping: mapping.None()})
		}
	}
	h := engine.NewHolder(nil)
	if err := h.Reload(build(good)); err != nil {
		t.Fatal(err)
	}
	old := h.Load()
	err := h.Reload(build(bad))
	var pe *sigma.ParseError
	if !errors.As(err, &pe) || pe.File != "r.yml" || pe.Line != 5 || pe.Col != 20 {
		t.Fatalf("reload error = %v, want a ParseError at r.yml:5:20", err)
	}
	if h.Load() != old {
		t.Fatal("bundle replaced by a failing reload")
	}
	ev := h.Evaluator(nil)
	if len(ev.Eval(event.Event{"a": "x"}, nil)) != 1 || h.Evaluator(ev) != ev {
		t.Fatal("old bundle does not evaluate")
	}
}

func TestEvalDoesNotAllocatePerRule(t *testing.T) {
	var docs []string
	for i := 0; i < 50; i++ {
		docs = append(docs, "title: t\ndetection:\n  s: {a|contains: 'needle"+string(rune('a'+i%26))+"'}\n  f: {b: y}\n  condition: s and not f\n")
	}
	b := compile(t, mapping.None(), docs...)
	ev := b.NewEvaluator()
	e := event.Event{"a": "haystack needlea needleb", "b": "z"}
	dst := make([]engine.Match, 0, 64)
	allocs := testing.AllocsPerRun(100, func() { dst = ev.Eval(e, dst[:0]) })
	if len(dst) == 0 || allocs > 2 {
		t.Errorf("%d matches, %.1f allocations per event", len(dst), allocs)
	}
}
