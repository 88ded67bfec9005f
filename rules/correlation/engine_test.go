package correlation

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/testenv"
)

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func mustParse(t testing.TB, doc string) []*Rule {
	t.Helper()
	rs, err := ParseBytes([]byte(doc), "test.yml")
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func mustNew(t testing.TB, rs []*Rule, o Options) *Engine {
	t.Helper()
	e, err := New(rs, o)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func ev(at time.Duration, id string, kv ...any) event.Event {
	e := event.Event{"@timestamp": t0.Add(at), "event.id": id}
	for i := 0; i+1 < len(kv); i += 2 {
		e[kv[i].(string)] = kv[i+1]
	}
	return e
}

// emitted keeps the alerts that become findings.
func emitted(as []Alert) []Alert {
	var out []Alert
	for _, a := range as {
		if a.Emit {
			out = append(out, a)
		}
	}
	return out
}

// specLogin is the spec's example 15 (sigma-spec/correlation-examples,
// public domain): multiple failed logins followed by a successful login.
type specLogin struct {
	rules []*Rule
	base  []RuleRef
}

func loadSpecLogin(t *testing.T) specLogin {
	t.Helper()
	path := filepath.Join(testenv.SharedData(t), "sigma-spec", "correlation-examples", "15_temporal_ordered.yml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := ParseBytes(data, path)
	if err != nil {
		t.Fatal(err)
	}
	// The file's two detection rules (parsed by rules/sigma, not here).
	return specLogin{rules: rs, base: []RuleRef{
		{ID: "53ba33fd-3a50-4468-a5ef-c583635cfa92", Name: "failed_login"},
		{ID: "4d0a2c83-c62c-4ed4-b475-c7e23a9269b8", Name: "successful_login"},
	}}
}

// loginMatch is a local stand-in for the detection engine, documented as
// such: it decides which of the example's two detection rules an event
// matches exactly as their detection sections say (EventID 529/4625 ->
// failed_login, 528/4624 -> successful_login). The Sigma field User is
// mapped to ECS user.name through Options.Field, as the real mapping does.
func loginMatch(e event.Event) (Match, bool) {
	switch e["winlog.event_id"] {
	case int64(529), int64(4625):
		return Match{RuleID: "53ba33fd-3a50-4468-a5ef-c583635cfa92", RuleName: "failed_login", Event: e}, true
	case int64(528), int64(4624):
		return Match{RuleID: "4d0a2c83-c62c-4ed4-b475-c7e23a9269b8", RuleName: "successful_login", Event: e}, true
	}
	return Match{}, false
}

func sigmaToECS(f string) string {
	if f == "User" {
		return "user.name"
	}
	return f
}

type login struct {
	at   time.Duration
	user string
	ok   bool
}

func failures(n int, user string, from, every time.Duration) []login {
	out := make([]login, n)
	for i := range out {
		out[i] = login{at: from + time.Duration(i)*every, user: user}
	}
	return out
}

func feedLogins(e *Engine, ls []login, idPrefix string) []Alert {
	var out []Alert
	for i, l := range ls {
		code := int64(4625)
		if l.ok {
			code = 4624
		}
		m, ok := loginMatch(ev(l.at, fmt.Sprintf("%s%d", idPrefix, i), "winlog.event_id", code, "user.name", l.user))
		if ok {
			out = append(out, e.Process(m)...)
		}
	}
	return out
}

func TestSpecTemporalOrdered(t *testing.T) {
	spec := loadSpecLogin(t)
	const top = "b180ead8-d58f-40b2-ae54-c8940995b9b6"
	cases := []struct {
		name   string
		logins []login
		alerts int
	}{
		{"failures alone", failures(30, "alice", 0, 10*time.Second), 0},
		{"ten failures then success", append(failures(10, "alice", 0, 20*time.Second), login{at: 5 * time.Minute, user: "alice", ok: true}), 1},
		{"nine failures then success", append(failures(9, "alice", 0, 20*time.Second), login{at: 5 * time.Minute, user: "alice", ok: true}), 0},
		{"success for another user", append(failures(10, "alice", 0, 20*time.Second), login{at: 5 * time.Minute, user: "bob", ok: true}), 0},
		{"success before failures", append([]login{{at: 0, user: "alice", ok: true}}, failures(10, "alice", time.Second, time.Second)...), 0},
		{"failures spread over more than 10 minutes", append(failures(10, "alice", 0, 2*time.Minute), login{at: 19 * time.Minute, user: "alice", ok: true}), 0},
		{"success 11 minutes after the 10th failure", append(failures(10, "alice", 0, time.Second), login{at: 11 * time.Minute, user: "alice", ok: true}), 0},
		{"25 failures then two successes", append(failures(25, "alice", 0, 5*time.Second), login{at: 3 * time.Minute, user: "alice", ok: true}, login{at: 4 * time.Minute, user: "alice", ok: true}), 1},
		{"two users, both compromised", append(append(failures(10, "alice", 0, time.Second), failures(10, "bob", 0, time.Second)...), login{at: time.Minute, user: "bob", ok: true}, login{at: time.Minute, user: "alice", ok: true}), 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := mustNew(t, spec.rules, Options{BaseRules: spec.base, Field: sigmaToECS})
			got := emitted(feedLogins(e, c.logins, "ev"))
			if len(got) != c.alerts {
				t.Fatalf("got %d alerts, want %d: %+v", len(got), c.alerts, got)
			}
			for _, a := range got {
				if a.Rule.ID != top || a.Rule.Level != "high" {
					t.Errorf("alert of %s (level %s), want %s", a.Rule.Ref(), a.Rule.Level, top)
				}
				if a.End.Sub(a.Start) > 10*time.Minute || len(a.EventIDs) != 2 || a.Count != 2 {
					t.Errorf("alert window %v..%v ids %v count %d", a.Start, a.End, a.EventIDs, a.Count)
				}
			}
			// The base rules and the intermediate correlation are not
			// generated on their own (generate is false).
			if e.Emit("53ba33fd-3a50-4468-a5ef-c583635cfa92", "failed_login") || e.Emit("", "multiple_failed_login") || !e.Emit(top, "") {
				t.Error("generate: base rules and the intermediate correlation should not emit; the outer one should")
			}
		})
	}
}

func TestSnapshotRestoreMidWindow(t *testing.T) {
	spec := loadSpecLogin(t)
	logins := append(failures(10, "alice", 0, 20*time.Second), login{at: 5 * time.Minute, user: "alice", ok: true})
	// Uninterrupted run: the reference.
	ref := emitted(feedLogins(mustNew(t, spec.rules, Options{BaseRules: spec.base, Field: sigmaToECS}), logins, "ev"))
	if len(ref) != 1 {
		t.Fatalf("reference run: %d alerts", len(ref))
	}
	for cut := 1; cut < len(logins); cut++ {
		e1 := mustNew(t, spec.rules, Options{BaseRules: spec.base, Field: sigmaToECS})
		got := emitted(feedLogins(e1, logins[:cut], "ev"))
		var buf bytes.Buffer
		if err := e1.Snapshot(&buf); err != nil {
			t.Fatal(err)
		}
		e2 := mustNew(t, spec.rules, Options{BaseRules: spec.base, Field: sigmaToECS})
		if err := e2.Restore(bytes.NewReader(buf.Bytes())); err != nil {
			t.Fatalf("restore: %v\n%s", err, buf.String())
		}
		// Continue with the remaining events (ids continue the sequence).
		rest := make([]Alert, 0)
		for i, l := range logins[cut:] {
			code := int64(4625)
			if l.ok {
				code = 4624
			}
			m, _ := loginMatch(ev(l.at, fmt.Sprintf("ev%d", cut+i), "winlog.event_id", code, "user.name", l.user))
			rest = append(rest, emitted(e2.Process(m))...)
		}
		got = append(got, rest...)
		if len(got) != 1 || got[0].ID != ref[0].ID {
			t.Fatalf("cut at %d: got %d alerts (%v), want the reference alert %s", cut, len(got), got, ref[0].ID)
		}
		// Snapshot after the alert and replay everything (at-least-once
		// delivery after a crash): no second alert.
		buf.Reset()
		if err := e2.Snapshot(&buf); err != nil {
			t.Fatal(err)
		}
		e3 := mustNew(t, spec.rules, Options{BaseRules: spec.base, Field: sigmaToECS})
		if err := e3.Restore(&buf); err != nil {
			t.Fatal(err)
		}
		if dup := emitted(feedLogins(e3, logins, "ev")); len(dup) != 0 {
			t.Fatalf("cut at %d: replay after restore fired again: %v", cut, dup)
		}
	}
}

func TestSnapshotDeterministicAndVersioned(t *testing.T) {
	spec := loadSpecLogin(t)
	e := mustNew(t, spec.rules, Options{BaseRules: spec.base, Field: sigmaToECS})
	feedLogins(e, append(failures(5, "alice", 0, time.Second), failures(3, "bob", 0, time.Second)...), "x")
	var a, b bytes.Buffer
	if err := e.Snapshot(&a); err != nil {
		t.Fatal(err)
	}
	if err := e.Snapshot(&b); err != nil {
		t.Fatal(err)
	}
	if a.String() != b.String() {
		t.Fatal("two snapshots of the same state differ")
	}
	bad := strings.Replace(a.String(), `"version":1`, `"version":9`, 1)
	if err := e.Restore(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "version 9") {
		t.Fatalf("restore of version 9: %v", err)
	}
	// A changed rule drops its state and says so.
	changed := mustParse(t, strings.Replace(string(mustRead(t, spec)), "gte: 10", "gte: 20", 1))
	e2 := mustNew(t, changed, Options{BaseRules: spec.base, Field: sigmaToECS})
	if err := e2.Restore(strings.NewReader(a.String())); err != nil {
		t.Fatal(err)
	}
	if d := e2.LastRestore().Dropped; len(d) != 1 || d[0] != "a8418a5a-5fc4-46b5-b23b-6c73beb19d41" {
		t.Fatalf("dropped %v", d)
	}
}

func mustRead(t *testing.T, _ specLogin) []byte {
	data, err := os.ReadFile(filepath.Join(testenv.SharedData(t), "sigma-spec", "correlation-examples", "15_temporal_ordered.yml"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

const bruteForce = `title: brute force
id: bf
correlation:
  type: event_count
  rules: [failed]
  group-by: [source.ip]
  timespan: 1m
  condition: {gte: 5}
`

func TestEventCountSliding(t *testing.T) {
	e := mustNew(t, mustParse(t, bruteForce), Options{BaseRules: []RuleRef{{Name: "failed"}}})
	m := func(at time.Duration, ip string) []Alert {
		return e.Process(Match{RuleName: "failed", Event: ev(at, "", "source.ip", ip)})
	}
	var got []Alert
	// 4 in the first minute, then one at 61s: the first dropped out.
	for _, at := range []time.Duration{0, 10 * time.Second, 20 * time.Second, 30 * time.Second, 61 * time.Second} {
		got = append(got, m(at, "10.0.0.1")...)
	}
	if len(got) != 0 {
		t.Fatalf("fired with only 4 events in the window: %+v", got)
	}
	got = append(got, m(62*time.Second, "10.0.0.1")...)
	if len(got) != 1 || got[0].Count != 5 || got[0].GroupBy[0] != "10.0.0.1" || got[0].Start != t0.Add(10*time.Second) {
		t.Fatalf("sliding window: %+v", got)
	}
	// The events are consumed: four more do not fire, a fifth does.
	for i := 0; i < 4; i++ {
		if a := m(63*time.Second, "10.0.0.1"); len(a) != 0 {
			t.Fatalf("fired again after %d events", i+1)
		}
	}
	if a := m(64*time.Second, "10.0.0.1"); len(a) != 1 {
		t.Fatal("did not fire on the next five")
	}
	// Missing group-by field: ignored and counted.
	e.Process(Match{RuleName: "failed", Event: ev(time.Minute, "")})
	if s := e.Stats()[0]; s.MissingGroupBy != 1 || s.Alerts != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestBounds(t *testing.T) {
	e := mustNew(t, mustParse(t, bruteForce), Options{BaseRules: []RuleRef{{Name: "failed"}}, MaxKeysPerRule: 100, MaxEventsPerKey: 8})
	for i := 0; i < 1000; i++ {
		e.Process(Match{RuleName: "failed", Event: ev(time.Duration(i)*time.Millisecond, "", "source.ip", fmt.Sprintf("10.0.%d.%d", i/256, i%256))})
	}
	s := e.Stats()[0]
	if s.Keys != 100 || s.KeysEvicted != 900 {
		t.Fatalf("keys %d evicted %d, want 100 and 900", s.Keys, s.KeysEvicted)
	}
	// Per-key bound: a value_count with more distinct values than allowed.
	vc := mustParse(t, "title: scan\nid: scan\ncorrelation:\n  type: value_count\n  rules: [conn]\n  group-by: [source.ip]\n  timespan: 1h\n  condition: {field: destination.port, gte: 8}\n")
	e = mustNew(t, vc, Options{BaseRules: []RuleRef{{Name: "conn"}}, MaxEventsPerKey: 8})
	var alerts []Alert
	for p := 1; p <= 7; p++ {
		for rep := 0; rep < 3; rep++ { // repeats of a port do not count twice
			alerts = append(alerts, e.Process(Match{RuleName: "conn", Event: ev(time.Duration(p)*time.Second, "", "source.ip", "192.0.2.1", "destination.port", int64(p))})...)
		}
	}
	if len(alerts) != 0 {
		t.Fatal("fired with 7 distinct ports")
	}
	alerts = e.Process(Match{RuleName: "conn", Event: ev(10*time.Second, "", "source.ip", "192.0.2.1", "destination.port", int64(443))})
	if len(alerts) != 1 || alerts[0].Value != 8 || len(alerts[0].Values) != 8 {
		t.Fatalf("value_count: %+v", alerts)
	}
	// A threshold above MaxEventsPerKey is refused.
	if _, err := New(mustParse(t, bruteForce), Options{BaseRules: []RuleRef{{Name: "failed"}}, MaxEventsPerKey: 4}); err == nil || !strings.Contains(err.Error(), "MaxEventsPerKey") {
		t.Fatalf("threshold above the per-key bound: %v", err)
	}
	// Per-key event bound on event_count in a window-close rule.
	lt := mustParse(t, "title: quiet\nid: quiet\ncorrelation:\n  type: event_count\n  rules: [failed]\n  group-by: [source.ip]\n  timespan: 1h\n  condition: {lt: 3}\n")
	e = mustNew(t, lt, Options{BaseRules: []RuleRef{{Name: "failed"}}, MaxEventsPerKey: 2})
	for i := 0; i < 5; i++ {
		e.Process(Match{RuleName: "failed", Event: ev(time.Duration(i)*time.Second, "", "source.ip", "192.0.2.9")})
	}
	if s := e.Stats()[0]; s.EventsEvicted != 3 {
		t.Fatalf("events evicted %d, want 3", s.EventsEvicted)
	}
}

func TestReferences(t *testing.T) {
	_, err := New(mustParse(t, bruteForce), Options{})
	if err == nil || !strings.Contains(err.Error(), `unknown referenced rule "failed"`) || !strings.Contains(err.Error(), "test.yml:5:") {
		t.Fatalf("unknown reference: %v", err)
	}
	cyc := mustParse(t, `title: a
name: a
correlation: {type: event_count, rules: [b], group-by: [x], timespan: 1m, condition: {gte: 1}}
---
title: b
name: b
correlation: {type: event_count, rules: [c], group-by: [x], timespan: 1m, condition: {gte: 1}}
---
title: c
name: c
correlation: {type: temporal, rules: [a, base], group-by: [x], timespan: 1m}
`)
	_, err = New(cyc, Options{BaseRules: []RuleRef{{Name: "base"}}})
	if err == nil || !strings.Contains(err.Error(), "references itself") || !strings.Contains(err.Error(), "a -> b -> c -> a") {
		t.Fatalf("cycle: %v", err)
	}
	_, err = New(mustParse(t, bruteForce+"---\n"+bruteForce), Options{BaseRules: []RuleRef{{Name: "failed"}}})
	if err == nil || !strings.Contains(err.Error(), "defined twice") {
		t.Fatalf("duplicate id: %v", err)
	}
}

// TestAliases runs the spec's alias example (14_temporal.yml): an HTTP 500
// on a server followed by a connection from that server back to the client.
func TestAliases(t *testing.T) {
	path := filepath.Join(testenv.SharedData(t), "sigma-spec", "correlation-examples", "14_temporal.yml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := ParseBytes(data, path)
	if err != nil {
		t.Fatal(err)
	}
	e := mustNew(t, rs, Options{BaseRules: []RuleRef{{Name: "internal_error"}, {Name: "new_network_connection"}}})
	httpErr := Match{RuleName: "internal_error", Event: ev(0, "h1", "source.ip", "198.51.100.5", "destination.ip", "10.1.1.1")}
	connOther := Match{RuleName: "new_network_connection", Event: ev(3*time.Second, "c1", "source.ip", "10.1.1.1", "destination.ip", "198.51.100.99")}
	connBack := Match{RuleName: "new_network_connection", Event: ev(4*time.Second, "c2", "source.ip", "10.1.1.1", "destination.ip", "198.51.100.5")}
	if a := e.Process(httpErr); len(a) != 0 {
		t.Fatal("fired on one rule")
	}
	if a := e.Process(connOther); len(a) != 0 {
		t.Fatal("fired for another remote address")
	}
	a := e.Process(connBack)
	if len(a) != 1 || a[0].GroupBy[0] != "10.1.1.1" || a[0].GroupBy[1] != "198.51.100.5" || strings.Join(a[0].EventIDs, ",") != "h1,c2" {
		t.Fatalf("alias correlation: %+v", a)
	}
	// Unordered: connection first, error second also fires (temporal).
	e = mustNew(t, rs, Options{BaseRules: []RuleRef{{Name: "internal_error"}, {Name: "new_network_connection"}}})
	e.Process(connBack)
	if a := e.Process(httpErr); len(a) != 1 {
		t.Fatal("temporal is unordered")
	}
	// Out of the 10 s window: nothing.
	e = mustNew(t, rs, Options{BaseRules: []RuleRef{{Name: "internal_error"}, {Name: "new_network_connection"}}})
	e.Process(httpErr)
	late := connBack
	late.Event = ev(11*time.Second, "c3", "source.ip", "10.1.1.1", "destination.ip", "198.51.100.5")
	if a := e.Process(late); len(a) != 0 {
		t.Fatal("fired outside the timespan")
	}
}

func TestWindowCloseConditions(t *testing.T) {
	doc := `title: sum
id: sum
correlation: {type: value_sum, rules: [web], group-by: [source.ip], timespan: 1h, condition: {field: http.response.bytes, gt: 1000}}
---
title: avg
id: avg
correlation: {type: value_avg, rules: [web], group-by: [source.ip], timespan: 1h, condition: {field: http.response.bytes, gt: 400}}
---
title: few
id: few
correlation: {type: event_count, rules: [web], group-by: [source.ip], timespan: 1h, condition: {gt: 1, lte: 3}}
---
title: rare
id: rare
correlation: {type: value_percentile, rules: [web], group-by: [host.name], timespan: 1h, condition: {field: url.path, lte: 10}}
`
	e := mustNew(t, mustParse(t, doc), Options{BaseRules: []RuleRef{{Name: "web"}}})
	var got []Alert
	for i, b := range []int64{500, 300, 600} {
		got = append(got, e.Process(Match{RuleName: "web", Event: ev(time.Duration(i)*time.Minute, fmt.Sprint(i), "source.ip", "192.0.2.1", "host.name", "www", "url.path", "/", "http.response.bytes", b)})...)
	}
	for i := 0; i < 20; i++ {
		got = append(got, e.Process(Match{RuleName: "web", Event: ev(time.Duration(i)*time.Second, "", "source.ip", "192.0.2.2", "host.name", "www", "url.path", "/", "http.response.bytes", int64(1))})...)
	}
	got = append(got, e.Process(Match{RuleName: "web", Event: ev(30*time.Minute, "", "source.ip", "192.0.2.3", "host.name", "www", "url.path", "/admin.php", "http.response.bytes", int64(1))})...)
	// value_sum with gt is monotone: fires as soon as the sum passes 1000.
	if len(got) != 1 || got[0].Rule.ID != "sum" || got[0].Value != 1400 {
		t.Fatalf("before flush: %+v", got)
	}
	got = e.Flush()
	byRule := map[string][]string{}
	for _, a := range got {
		byRule[a.Rule.ID] = append(byRule[a.Rule.ID], strings.Join(a.GroupBy, ",")+"="+fmt.Sprint(a.Value)+strings.Join(a.Values, ","))
	}
	if fmt.Sprint(byRule) != "map[avg:[192.0.2.1=466.6666666666667] few:[192.0.2.1=3] rare:[www=4.166666666666667/admin.php]]" {
		t.Fatalf("window-close alerts: %v", byRule)
	}
	// A later event closes the window of its key.
	e = mustNew(t, mustParse(t, doc), Options{BaseRules: []RuleRef{{Name: "web"}}})
	for _, at := range []time.Duration{0, time.Minute, 2 * time.Hour} {
		got = e.Process(Match{RuleName: "web", Event: ev(at, "", "source.ip", "192.0.2.1", "host.name", "www", "url.path", "/", "http.response.bytes", int64(1))})
	}
	if len(got) != 1 || got[0].Rule.ID != "few" || got[0].Count != 2 {
		t.Fatalf("closed by a later event: %+v", got)
	}
}

func TestExpire(t *testing.T) {
	now := t0
	clock := func() time.Time { return now }
	e := mustNew(t, mustParse(t, bruteForce), Options{BaseRules: []RuleRef{{Name: "failed"}}, Clock: clock, IdleTimeout: time.Minute})
	for i := 0; i < 10; i++ {
		e.Process(Match{RuleName: "failed", Event: ev(0, "", "source.ip", fmt.Sprint("10.0.0.", i))})
	}
	now = now.Add(90 * time.Second)
	e.Expire(now)
	if s := e.Stats()[0]; s.Keys != 10 {
		t.Fatalf("expired too early: %+v", s)
	}
	e.Process(Match{RuleName: "failed", Event: ev(0, "", "source.ip", "10.0.0.1")})
	now = now.Add(60 * time.Second)
	e.Expire(now)
	if s := e.Stats()[0]; s.Keys != 1 || s.KeysExpired != 9 {
		t.Fatalf("after expiry: %+v", s)
	}
}

// TestCorrelationOfCorrelations: a correlation fed by another's alerts
// with generate: true emits both.
func TestGenerate(t *testing.T) {
	doc := `title: outer
id: outer
generate: true
correlation: {type: event_count, rules: [inner], group-by: [source.ip], timespan: 1h, condition: {gte: 2}}
---
title: inner
id: inner
correlation: {type: event_count, rules: [failed], group-by: [source.ip], timespan: 1m, condition: {gte: 3}}
`
	e := mustNew(t, mustParse(t, doc), Options{BaseRules: []RuleRef{{Name: "failed"}}})
	var got []Alert
	for i := 0; i < 6; i++ {
		got = append(got, e.Process(Match{RuleName: "failed", Event: ev(time.Duration(i)*time.Second, "", "source.ip", "10.9.9.9")})...)
	}
	var ids []string
	for _, a := range got {
		ids = append(ids, fmt.Sprintf("%s:%v", a.Rule.ID, a.Emit))
	}
	if strings.Join(ids, " ") != "inner:true inner:true outer:true" {
		t.Fatalf("got %v", ids)
	}
	if e.Emit("", "failed") || !e.Emit("inner", "") || !e.Referenced("", "failed") || e.Referenced("", "other") {
		t.Fatal("Emit/Referenced")
	}
}

// TestExpireClosesWindows: an idle key of a window-close correlation is
// evaluated when it expires, and its alert feeds the correlations that
// reference it.
func TestExpireClosesWindows(t *testing.T) {
	doc := `title: quiet then loud
id: outer
correlation: {type: temporal_ordered, rules: [few, failed], group-by: [source.ip], timespan: 1h}
---
title: few
id: few
correlation: {type: event_count, rules: [failed], group-by: [source.ip], timespan: 1m, condition: {lte: 2}}
`
	now := t0
	e := mustNew(t, mustParse(t, doc), Options{BaseRules: []RuleRef{{Name: "failed"}}, Clock: func() time.Time { return now }, IdleTimeout: time.Minute})
	e.Process(Match{RuleName: "failed", Event: ev(0, "e1", "source.ip", "10.1.1.1")})
	now = now.Add(10 * time.Minute)
	got := e.Expire(now)
	if len(got) != 1 || got[0].Rule.ID != "few" || got[0].Count != 1 || got[0].Emit {
		t.Fatalf("expire: %+v", got)
	}
	// The "few" alert was fed to "outer": one more failure completes it.
	got = e.Process(Match{RuleName: "failed", Event: ev(5*time.Minute, "e2", "source.ip", "10.1.1.1")})
	var outer int
	for _, a := range got {
		if a.Rule.ID == "outer" {
			outer++
		}
	}
	if outer != 1 {
		t.Fatalf("outer alerts %d: %+v", outer, got)
	}
}

// TestTemporalStepLayouts: temporal and temporal_ordered keep their steps in
// a fixed array for 1 to 4 referenced rules and in a slice beyond; every
// size fires on the complete sequence, and survives a snapshot taken one
// step before the end.
func TestTemporalStepLayouts(t *testing.T) {
	names := []string{"r0", "r1", "r2", "r3", "r4", "r5"}
	var base []RuleRef
	for _, n := range names {
		base = append(base, RuleRef{Name: n})
	}
	for _, typ := range []Type{Temporal, TemporalOrdered} {
		for n := 1; n <= len(names); n++ {
			if typ == TemporalOrdered && n < 2 {
				continue
			}
			t.Run(fmt.Sprintf("%s_%d", typ, n), func(t *testing.T) {
				doc := fmt.Sprintf("title: seq\nid: seq\ncorrelation: {type: %s, rules: [%s], group-by: [source.ip], timespan: 1m}\n",
					typ, strings.Join(names[:n], ", "))
				rs := mustParse(t, doc)
				e := mustNew(t, rs, Options{BaseRules: base})
				m := func(e *Engine, i int) []Alert {
					return e.Process(Match{RuleName: names[i], Event: ev(time.Duration(i)*time.Second, fmt.Sprint("e", i), "source.ip", "10.0.0.1")})
				}
				for i := 0; i < n-1; i++ {
					if a := m(e, i); len(a) != 0 {
						t.Fatalf("fired after %d of %d rules", i+1, n)
					}
				}
				var snap bytes.Buffer
				if err := e.Snapshot(&snap); err != nil {
					t.Fatal(err)
				}
				e2 := mustNew(t, rs, Options{BaseRules: base})
				if err := e2.Restore(bytes.NewReader(snap.Bytes())); err != nil {
					t.Fatal(err)
				}
				var again bytes.Buffer
				if err := e2.Snapshot(&again); err != nil {
					t.Fatal(err)
				}
				if again.String() != snap.String() {
					t.Fatalf("snapshot after restore differs:\n%s\n%s", snap.String(), again.String())
				}
				for _, eng := range []*Engine{e, e2} {
					a := m(eng, n-1)
					if len(a) != 1 || a[0].Count != n || len(a[0].EventIDs) != n || a[0].EventIDs[n-1] != fmt.Sprint("e", n-1) ||
						a[0].Start != t0 || a[0].End != t0.Add(time.Duration(n-1)*time.Second) {
						t.Fatalf("alerts %+v", a)
					}
					// The steps were consumed: the last rule alone does not fire again.
					if n > 1 {
						if a := m(eng, n-1); len(a) != 0 {
							t.Fatalf("fired again: %+v", a)
						}
					}
				}
			})
		}
	}
}
