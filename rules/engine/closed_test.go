package engine_test

// Rules on closed datasets (the agent's packet summaries): tests against
// SigmaHQ rules (Detection Rule License 1.1) and Zeek's own test logs
// (BSD-3, github.com/zeek/zeek testing/btest/Baseline) in ../shared/data.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/testenv"
	"github.com/csirt-toscana/platform/rules/engine"
	"github.com/csirt-toscana/platform/rules/mapping"
	"github.com/csirt-toscana/platform/rules/sigma"
)

var summaryTime = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// summary builds a packet summary event as the agent emits it
// (agents/internal/netsum/emit.go) and the collector completes it
// (collector/internal/parse/summary.go, then the ids and enrichment the
// pipeline stamps). fields are the dataset's own fields.
func summary(t testing.TB, dataset string, fields event.Event) event.Event {
	t.Helper()
	e := event.Event{
		"@timestamp":           summaryTime,
		"event.kind":           "event",
		"event.module":         "network",
		"event.dataset":        dataset,
		"event.category":       []string{"network"},
		"event.type":           []string{"protocol", "info"},
		"event.id":             event.IDFromSequence("agent-1", "capture", 7),
		"event.ingested":       summaryTime.Add(time.Second),
		"organization.id":      "comune-prato",
		"agent.id":             "agent-1",
		"host.name":            "srv-anagrafe",
		"labels.entity_kind":   "comune",
		"source.ip":            "10.1.2.3",
		"source.port":          int64(51514),
		"destination.ip":       "192.0.2.53",
		"destination.port":     int64(53),
		"network.transport":    "udp",
		"network.type":         "ipv4",
		"network.community_id": "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
	}
	for k, v := range fields {
		e[k] = v
	}
	if err := e.Validate(); err != nil {
		t.Fatalf("test event is not a valid platform event: %v", err)
	}
	return e
}

func dnsSummary(t testing.TB, name, qtype string, answers ...string) event.Event {
	f := event.Event{"dns.id": "4242", "dns.op_code": "QUERY", "dns.question.name": name, "dns.question.type": qtype,
		"network.protocol": "dns", "dns.type": "query"}
	if len(answers) > 0 {
		f["dns.type"] = "answer"
		f["dns.response_code"] = "NOERROR"
		f["dns.answers.data"] = answers
	}
	return summary(t, "dns", f)
}

func httpSummary(t testing.TB, method, host, uri, ua string) event.Event {
	path, query, _ := strings.Cut(uri, "?")
	f := event.Event{"event.category": []string{"network", "web"}, "event.type": []string{"protocol", "access"},
		"destination.port": int64(80), "network.transport": "tcp", "network.protocol": "http",
		"http.request.method": method, "url.original": uri, "url.path": path, "url.domain": host,
		"destination.domain": host, "user_agent.original": ua, "http.version": "1.1", "http.response.status_code": int64(200)}
	if query != "" {
		f["url.query"] = query
	}
	return summary(t, "http", f)
}

// zeekLog reads a Zeek TSV log: one map per row, column name to value
// ("-" and "(empty)" dropped).
func zeekLog(t testing.TB, path string) []map[string]string {
	t.Helper()
	rows := testenv.ZeekLog(t, path)
	for _, row := range rows {
		for k, v := range row {
			if v == "-" || v == "(empty)" {
				delete(row, k)
			}
		}
	}
	return rows
}

// zeekSummaries turns the rows of Zeek's dns.log and http.log baselines
// into the summaries the agent produces for the same traffic (the agent's
// fields, named as docs/network-summaries.md says; columns the agent has no
// counterpart for, such as Z, rejected or resp_mime_types, are left out).
func zeekSummaries(t testing.TB) []event.Event {
	base := filepath.Join(testenv.SharedData(t), "pcaps/zeek/Baseline")
	var out []event.Event
	dnsLogs, _ := filepath.Glob(filepath.Join(base, "*/dns.log"))
	for _, p := range dnsLogs {
		for _, r := range zeekLog(t, p) {
			if r["query"] == "" {
				continue
			}
			var answers []string
			if a := r["answers"]; a != "" {
				answers = strings.Split(a, ",")
			}
			e := dnsSummary(t, r["query"], r["qtype_name"], answers...)
			e["source.ip"], e["destination.ip"] = r["id.orig_h"], r["id.resp_h"]
			out = append(out, e)
		}
	}
	httpLogs, _ := filepath.Glob(filepath.Join(base, "*/http.log"))
	for _, p := range httpLogs {
		for _, r := range zeekLog(t, p) {
			if r["method"] == "" || r["uri"] == "" {
				continue
			}
			e := httpSummary(t, r["method"], r["host"], r["uri"], r["user_agent"])
			e["source.ip"], e["destination.ip"] = r["id.orig_h"], r["id.resp_h"]
			out = append(out, e)
		}
	}
	if len(out) < 40 {
		t.Fatalf("%d summaries from Zeek's baselines in %s, want at least 40", len(out), base)
	}
	return out
}

// openMapping is the default mapping with no dataset closed: the engine's
// behaviour before closed field sets.
func openMapping() *mapping.Mapping {
	m := mapping.Default()
	ls := append([]mapping.LogSource(nil), m.LogSources...)
	for i := range ls {
		ls[i].Closed = false
	}
	m.LogSources = ls
	m.Name = "default-open"
	return m
}

func sharedRule(t testing.TB, rel string) *sigma.Rule {
	t.Helper()
	p := filepath.Join(testenv.SharedData(t), "sigma", rel)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	r, err := sigma.ParseRule(p, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func countMatches(b *engine.Bundle, evs []event.Event) int {
	ev := b.NewEvaluator()
	n := 0
	for _, e := range evs {
		n += len(ev.Eval(e, nil))
	}
	return n
}

// The measured false positive: SigmaHQ's Z-flag rule tests `not Z: 0`, and
// our DNS summaries have no Z.
func TestClosedZeekZFlagRuleSkipped(t *testing.T) {
	r := sharedRule(t, "rules/network/zeek/zeek_dns_susp_zbit_flag.yml")
	evs := zeekSummaries(t)

	// Before: every summary of a name with a dot, outside the rule's
	// exclusions, matched.
	open, err := engine.CompileRules([]*sigma.Rule{r}, nil, engine.Options{Mapping: openMapping()})
	if err != nil {
		t.Fatal(err)
	}
	before := countMatches(open, evs)
	if before == 0 {
		t.Fatal("with the open mapping the Z-flag rule matches no summary: the test no longer shows the false positive")
	}
	// Zeek's own rows carry Z (0 in every baseline row): there the rule is
	// quiet, as its author intended.
	var rows []event.Event
	dnsLogs, _ := filepath.Glob(filepath.Join(testenv.SharedData(t), "pcaps/zeek/Baseline/*/dns.log"))
	for _, p := range dnsLogs {
		for _, row := range zeekLog(t, p) {
			e := event.Event{}
			for k, v := range row {
				e[k] = v
			}
			rows = append(rows, e)
		}
	}
	raw, err := engine.CompileRules([]*sigma.Rule{r}, nil, engine.Options{Mapping: mapping.None()})
	if err != nil {
		t.Fatal(err)
	}
	if n := countMatches(raw, rows); n != 0 {
		t.Errorf("on Zeek's dns.log rows (Z present) the rule matched %d times, want 0", n)
	}

	b, err := engine.CompileRules([]*sigma.Rule{r}, nil, engine.Options{Mapping: mapping.Default()})
	if err != nil {
		t.Fatal(err)
	}
	const want = `field "Z" (mapped to "Z") is not produced by dataset dns: the rule could never test it`
	if sk := b.Skipped(); len(sk) != 1 || sk[0].Rule != r || sk[0].Reason != want {
		t.Fatalf("skipped = %+v, want the rule with reason %q", sk, want)
	}
	if len(b.Rules()) != 0 {
		t.Errorf("rules evaluated: %d, want 0", len(b.Rules()))
	}
	if ns := b.ClosedNotes(); len(ns) != 1 || ns[0].Dataset != "dns" || ns[0].Evaluated || ns[0].Reason != want {
		t.Errorf("closed notes = %+v", ns)
	}
	if n := countMatches(b, append(evs, dnsSummary(t, "update.example.org", "A", "192.0.2.1"))); n != 0 {
		t.Errorf("the skipped rule matched %d summaries", n)
	}
	t.Logf("Z-flag rule: %d of %d summaries from Zeek's baselines matched before, 0 now", before, len(evs))

	_, err = engine.CompileRules([]*sigma.Rule{r}, nil, engine.Options{Mapping: mapping.Default(), Strict: true})
	var ce *engine.CompileError
	zPos := r.Detection.Searches["z_flag_unset"].Alts[0][0].Pos
	if !errors.As(err, &ce) || ce.Msg != want || ce.Line != zPos.Line || ce.Col != zPos.Col || ce.RuleID != r.ID {
		t.Errorf("strict: err = %v, want a CompileError at %d:%d: %s", err, zPos.Line, zPos.Col, want)
	}
}

// Zeek DNS rules on fields the summaries carry keep working.
func TestClosedZeekMappedFieldsMatch(t *testing.T) {
	tor := sharedRule(t, "rules/network/zeek/zeek_dns_torproxy.yml")
	nkn := sharedRule(t, "rules/network/zeek/zeek_dns_nkn.yml")
	b, err := engine.CompileRules([]*sigma.Rule{tor, nkn}, nil, engine.Options{Mapping: mapping.Default(), Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Rules()) != 2 || len(b.Skipped()) != 0 || len(b.ClosedNotes()) != 0 {
		t.Fatalf("rules %d, skipped %v, notes %v", len(b.Rules()), b.Skipped(), b.ClosedNotes())
	}
	ev := b.NewEvaluator()
	for _, tc := range []struct {
		name, want string
	}{
		{"abcdefghijklmnop.onion.to", tor.ID},
		{"seed.nkn.org", nkn.ID},
		{"www.comune.prato.it", ""},
	} {
		var got []string
		for _, m := range ev.Eval(dnsSummary(t, tc.name, "A"), nil) {
			got = append(got, m.RuleID)
		}
		if strings.Join(got, ",") != tc.want {
			t.Errorf("%s: matched %v, want %q", tc.name, got, tc.want)
		}
	}
}

// A rule that can be true without the absent field is evaluated on its
// other tests: SigmaHQ's WebDAV rule accepts `resp_mime_types` (which the
// summaries lack) or a URI ending in .exe.
func TestClosedRuleEvaluatedOnOtherTests(t *testing.T) {
	r := sharedRule(t, "rules/network/zeek/zeek_http_executable_download_from_webdav.yml")
	b, err := engine.CompileRules([]*sigma.Rule{r}, nil, engine.Options{Mapping: mapping.Default(), Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	ns := b.ClosedNotes()
	if len(b.Rules()) != 1 || len(ns) != 1 || !ns[0].Evaluated || ns[0].Dataset != "http" ||
		!strings.Contains(ns[0].Reason, `field "resp_mime_types" (mapped to "resp_mime_types") is not produced by dataset http`) ||
		!strings.Contains(ns[0].Reason, "evaluated on its other tests only") {
		t.Fatalf("rules %d, notes %+v", len(b.Rules()), ns)
	}
	ev := b.NewEvaluator()
	exe := httpSummary(t, "GET", "files.example.net", "/share/payload.exe", "Microsoft-WebDAV-MiniRedir/10.0.19045")
	txt := httpSummary(t, "GET", "files.example.net", "/share/notes.txt", "Microsoft-WebDAV-MiniRedir/10.0.19045")
	if n := len(ev.Eval(exe, nil)); n != 1 {
		t.Errorf("WebDAV download of an .exe: %d matches, want 1", n)
	}
	if n := len(ev.Eval(txt, nil)); n != 0 {
		t.Errorf("WebDAV download of a .txt: %d matches, want 0", n)
	}
	// A field outside the schema is never tested on a closed dataset, even
	// if an event carried it.
	txt["resp_mime_types"] = "application/x-dosexec"
	if n := len(ev.Eval(txt, nil)); n != 0 {
		t.Errorf("a non-schema field changed the result: %d matches", n)
	}
}

func TestClosedSemantics(t *testing.T) {
	const filterID = "5c8b1b2e-0d7e-4a53-9d0c-1f4f7d1a2b3c"
	rule := func(det string) string {
		return "title: t\nid: r\nlogsource: {product: zeek, service: dns}\ndetection:\n" + det
	}
	filter := func(det string) string {
		return "title: f\nid: " + filterID + "\nlogsource: {product: zeek, service: dns}\nfilter:\n  rules: [r]\n" + det
	}
	for _, tc := range []struct {
		name   string
		docs   []string
		skip   string // expected reason when skipped
		note   string // expected reason (substring) of an evaluated rule's note
		events map[string]bool
	}{
		{name: "schema fields only", docs: []string{rule("  s: {query|endswith: '.evil'}\n  condition: s\n")},
			events: map[string]bool{"a.evil": true, "a.good": false}},
		{name: "absent field under not", docs: []string{rule("  s: {query: x}\n  f: {Z: 1}\n  condition: s and not f\n")},
			skip: `field "Z" (mapped to "Z") is not produced by dataset dns: the rule could never test it`},
		{name: "absent field required", docs: []string{rule("  s: {rejected: 'T', query: x}\n  condition: s\n")},
			skip: `field "rejected" (mapped to "rejected") is not produced by dataset dns: the rule could never test it`},
		{name: "two absent fields", docs: []string{rule("  s: {Z: 1}\n  t: {rejected: 'T'}\n  condition: s or t\n")},
			skip: `fields "Z" (mapped to "Z"), "rejected" (mapped to "rejected") are not produced by dataset dns: the rule could never test them`},
		{name: "null test on absent field", docs: []string{rule("  s: {query: x}\n  z: {Z: null}\n  condition: s and z\n")},
			skip: `field "Z" (mapped to "Z") is not produced by dataset dns: the rule could never test it`},
		{name: "fieldref to absent field", docs: []string{rule("  s: {query|fieldref: Z}\n  condition: s\n")},
			skip: `field "Z" (mapped to "Z") is not produced by dataset dns: the rule could never test it`},
		{name: "absent field in one branch", docs: []string{rule("  s: {query: x}\n  z: {Z: 1}\n  condition: s or z\n")},
			note: "evaluated on its other tests only", events: map[string]bool{"x": true, "y": false}},
		{name: "not of a branch with an absent field", docs: []string{rule("  s: {query|endswith: '.x'}\n  f1: {query: a.x}\n  f2: {Z: 1}\n  condition: s and not (f1 and f2)\n")},
			note: "evaluated on its other tests only", events: map[string]bool{"b.x": true, "a.x": false}},
		{name: "unused search", docs: []string{rule("  s: {query: x}\n  unused: {Z: 1}\n  condition: s\n")},
			events: map[string]bool{"x": true}},
		{name: "keywords", docs: []string{rule("  k: [evil]\n  condition: k\n")},
			events: map[string]bool{"evil.example": true, "good.example": false}},
		{name: "labels are open", docs: []string{rule("  s: {query: x, labels.entity_kind: comune, labels.custom_tag: t}\n  condition: s or s\n")},
			events: map[string]bool{"x": false}},
		{name: "mapped zeek column", docs: []string{rule("  s: {answers: 192.0.2.9, qtype_name: A}\n  condition: s\n")},
			events: map[string]bool{"x": true}},
		{name: "filter on absent field", docs: []string{rule("  s: {query: x}\n  condition: s\n"), filter("  f: {Z: 1}\n  condition: f\n")},
			skip: `field "Z" (mapped to "Z", in filter ` + filterID + `) is not produced by dataset dns: the rule could never test it`},
		{name: "filter with absent field can be false", docs: []string{rule("  s: {query|endswith: '.x'}\n  condition: s\n"), filter("  f: {query|startswith: 'a', Z: 1}\n  condition: f\n")},
			note: "in filter " + filterID, events: map[string]bool{"b.x": true, "a.x": false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &sigma.Collection{}
			for i, d := range tc.docs {
				f, err := sigma.ParseFile(fmt.Sprintf("r%d.yml", i), []byte(d), nil)
				if err != nil {
					t.Fatal(err)
				}
				c.Add(f)
			}
			b, err := engine.Compile(c, engine.Options{Mapping: mapping.Default()})
			if err != nil {
				t.Fatal(err)
			}
			_, strictErr := engine.Compile(c, engine.Options{Mapping: mapping.Default(), Strict: true})
			if tc.skip != "" {
				if sk := b.Skipped(); len(sk) != 1 || sk[0].Reason != tc.skip {
					t.Errorf("skipped = %+v, want reason %q", sk, tc.skip)
				}
				var ce *engine.CompileError
				if !errors.As(strictErr, &ce) || ce.Msg != tc.skip || ce.Line == 0 {
					t.Errorf("strict: %v", strictErr)
				}
				return
			}
			if strictErr != nil {
				t.Errorf("strict: %v", strictErr)
			}
			if len(b.Skipped()) != 0 || len(b.Rules()) != 1 {
				t.Fatalf("skipped %+v, %d rules", b.Skipped(), len(b.Rules()))
			}
			ns := b.ClosedNotes()
			switch {
			case tc.note == "" && len(ns) != 0:
				t.Errorf("unexpected notes %+v", ns)
			case tc.note != "" && (len(ns) != 1 || !ns[0].Evaluated || !strings.Contains(ns[0].Reason, tc.note)):
				t.Errorf("notes = %+v, want one containing %q", ns, tc.note)
			}
			names := make([]string, 0, len(tc.events))
			for n := range tc.events {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, name := range names {
				for _, nopf := range []bool{false, true} {
					bb, err := engine.Compile(c, engine.Options{Mapping: mapping.Default(), NoPrefilter: nopf})
					if err != nil {
						t.Fatal(err)
					}
					e := dnsSummary(t, name, "A", "192.0.2.9")
					e["Z"], e["rejected"] = int64(1), "T" // never read on a closed dataset
					if got := len(bb.NewEvaluator().Eval(e, nil)) == 1; got != tc.events[name] {
						t.Errorf("query %s (prefilter off: %v): match = %v, want %v", name, nopf, got, tc.events[name])
					}
				}
			}
		})
	}
}

// A webserver rule on a field outside the schema is dropped on the http
// summaries only: the access logs (not closed) still evaluate it.
func TestClosedDropsOneDatasetOnly(t *testing.T) {
	doc := "title: ua\nid: ua\nlogsource: {category: webserver}\ndetection:\n  s: {cs-user-agent|contains: sqlmap}\n  condition: s\n"
	b := compile(t, mapping.Default(), doc)
	if len(b.Rules()) != 1 || len(b.Skipped()) != 0 {
		t.Fatalf("rules %d, skipped %+v", len(b.Rules()), b.Skipped())
	}
	ns := b.ClosedNotes()
	if len(ns) != 1 || ns[0].Dataset != "http" || ns[0].Evaluated {
		t.Errorf("notes = %+v, want http not evaluated", ns)
	}
	if ds := strings.Join(b.Datasets(), ","); ds != "apache.access,nginx.access" {
		t.Errorf("datasets %s", ds)
	}
	ev := b.NewEvaluator()
	if n := len(ev.Eval(event.Event{"event.dataset": "nginx.access", "cs-user-agent": "sqlmap/1.7"}, nil)); n != 1 {
		t.Errorf("nginx.access: %d matches, want 1", n)
	}
	if n := len(ev.Eval(event.Event{"event.dataset": "http", "cs-user-agent": "sqlmap/1.7"}, nil)); n != 0 {
		t.Errorf("http: %d matches, want 0", n)
	}
}

// Closed datasets change nothing for rules whose fields all exist: over
// every shared SigmaHQ rule and summaries of Zeek's test traffic (plus a
// few crafted to fire rules), each rule without a closed note on the
// event's dataset matches exactly as with the open mapping, and a rule
// dropped there never matches.
func TestClosedUnchangedForSchemaRules(t *testing.T) {
	dir := testenv.SharedData(t)
	evs := zeekSummaries(t)
	evs = append(evs,
		dnsSummary(t, "abcdefghijklmnop.onion.to", "A"),
		dnsSummary(t, "pool.minexmr.com", "A", "192.0.2.7"),
		dnsSummary(t, "c2.example.duckdns.org", "TXT", "TXT 12 hello"),
		httpSummary(t, "PUT", "files.example.net", "/dav/x.exe", "Microsoft-WebDAV-MiniRedir/10.0"),
		httpSummary(t, "GET", "x.example.net", "/index.php?id=1%20union%20select%201", "sqlmap/1.7"),
		summary(t, "flow", event.Event{"destination.port": int64(4444), "network.transport": "tcp", "connection.state": "SF"}),
		summary(t, "tls", event.Event{"tls.client.server_name": "evil.example.top", "tls.client.ja3": "72a589da586844d7f0818ce684948eea"}),
	)
	var rules []*sigma.Rule
	for _, sub := range []string{"sigma/rules", "sigma/rules-emerging-threats", "sigma/rules-threat-hunting"} {
		c, err := sigma.LoadFS(os.DirFS(filepath.Join(dir, sub)), ".", nil)
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, c.Rules...)
	}
	closed, err := engine.CompileRules(rules, nil, engine.Options{Mapping: mapping.Default()})
	if err != nil {
		t.Fatal(err)
	}
	open, err := engine.CompileRules(rules, nil, engine.Options{Mapping: openMapping()})
	if err != nil {
		t.Fatal(err)
	}
	noted := map[[2]string]bool{} // rule id, dataset
	dropped := map[[2]string]bool{}
	for _, n := range closed.ClosedNotes() {
		noted[[2]string{n.Rule.ID, n.Dataset}] = true
		dropped[[2]string{n.Rule.ID, n.Dataset}] = !n.Evaluated
	}
	ce, oe := closed.NewEvaluator(), open.NewEvaluator()
	same, removed := 0, 0
	for _, e := range evs {
		ds := e.Dataset()
		ids := func(ms []engine.Match) map[string]bool {
			out := map[string]bool{}
			for _, m := range ms {
				out[m.RuleID] = true
			}
			return out
		}
		got, was := ids(ce.Eval(e, nil)), ids(oe.Eval(e, nil))
		for id := range got {
			if dropped[[2]string{id, ds}] {
				t.Errorf("rule %s matched on %s, where it is not evaluated", id, ds)
			}
			if !noted[[2]string{id, ds}] && !was[id] {
				t.Errorf("rule %s matches %s %v now but did not before", id, ds, e)
			}
		}
		for id := range was {
			switch {
			case noted[[2]string{id, ds}]:
				if !got[id] {
					removed++
				}
			case got[id]:
				same++
			default:
				t.Errorf("rule %s no longer matches %s %v", id, ds, e)
			}
		}
	}
	if same == 0 || removed == 0 {
		t.Errorf("%d unchanged matches, %d removed: the corpus does not exercise both cases", same, removed)
	}
	t.Logf("%d rules, %d summaries: %d matches unchanged, %d removed (rules testing fields the summaries lack)", len(rules), len(evs), same, removed)
}
