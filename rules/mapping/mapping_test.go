package mapping

import (
	"reflect"
	"strings"
	"testing"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/rules/sigma"
)

func TestDefaultTargets(t *testing.T) {
	m := Default()
	datasets := func(ls sigma.LogSource) []string {
		var out []string
		for _, t := range m.Targets(ls) {
			out = append(out, t.Dataset)
		}
		return out
	}
	for _, tc := range []struct {
		ls   sigma.LogSource
		want []string
	}{
		{sigma.LogSource{Product: "linux", Service: "sshd"}, []string{"sshd"}},
		{sigma.LogSource{Category: "webserver"}, []string{"nginx.access", "apache.access", "http"}},
		{sigma.LogSource{Category: "dns"}, []string{"dns"}},
		{sigma.LogSource{Category: "firewall"}, []string{"firewall", "iptables"}},
		{sigma.LogSource{Product: "windows", Category: "process_creation"}, []string{"windows.sysmon_operational", "windows.security"}},
		{sigma.LogSource{Product: "windows", Service: "security"}, nil},
	} {
		if got := datasets(tc.ls); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%+v: %v, want %v", tc.ls, got, tc.want)
		}
	}
}

func TestFields(t *testing.T) {
	m := Default()
	for sigmaName, ecs := range map[string]string{
		"c-ip": "source.ip", "cs-method": "http.request.method", "cs-uri-query": "url.query", "query": "dns.question.name",
		"Image": "process.executable", "CommandLine": "process.command_line", "ParentImage": "process.parent.executable",
		"User": "user.name", "source.ip": "source.ip",
	} {
		if got := m.Field(nil, sigmaName); got != ecs {
			t.Errorf("%s -> %s, want %s", sigmaName, got, ecs)
		}
	}
	if got := None().Field(nil, "Image"); got != "Image" {
		t.Errorf("none mapping renamed Image to %s", got)
	}
}

func TestParseRejectsUnknownKeys(t *testing.T) {
	if _, err := Parse([]byte("name: x\nfeilds: {}\n")); err == nil {
		t.Error("unknown key accepted")
	}
	if _, err := Parse([]byte("name: x\nlogsources:\n  - product: linux\n")); err == nil {
		t.Error("logsource without datasets accepted")
	}
}

func TestClosedTargets(t *testing.T) {
	m := Default()
	closed := func(ls sigma.LogSource) map[string]bool {
		out := map[string]bool{}
		for _, t := range m.Targets(ls) {
			out[t.Dataset] = t.Closed
		}
		return out
	}
	for _, tc := range []struct {
		ls   sigma.LogSource
		want map[string]bool
	}{
		{sigma.LogSource{Product: "zeek", Service: "dns"}, map[string]bool{"dns": true}},
		{sigma.LogSource{Product: "zeek", Service: "http"}, map[string]bool{"http": true}},
		{sigma.LogSource{Product: "zeek", Service: "conn"}, map[string]bool{"flow": true}},
		{sigma.LogSource{Product: "zeek", Service: "x509"}, map[string]bool{"tls": true}},
		{sigma.LogSource{Category: "dns"}, map[string]bool{"dns": true}},
		{sigma.LogSource{Product: "windows", Category: "network_connection"}, map[string]bool{"flow": true}},
		{sigma.LogSource{Category: "webserver"}, map[string]bool{"nginx.access": false, "apache.access": false, "http": true}},
		{sigma.LogSource{Category: "proxy"}, map[string]bool{"http": true, "proxy": false}},
		{sigma.LogSource{Product: "linux", Service: "sshd"}, map[string]bool{"sshd": false}},
		{sigma.LogSource{Product: "windows", Category: "process_creation"}, map[string]bool{"windows.sysmon_operational": false, "windows.security": false}},
	} {
		if got := closed(tc.ls); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%+v: closed %v, want %v", tc.ls, got, tc.want)
		}
	}
}

// Only the agent's packet summaries have a field set fixed by our schema;
// marking another dataset closed would silently drop rules on it.
func TestClosedDatasetsAreSummaries(t *testing.T) {
	summaries := map[string]bool{"flow": true, "dns": true, "http": true, "tls": true}
	seen := map[string]bool{}
	for i, e := range Default().LogSources {
		for _, d := range e.Datasets {
			if e.Closed && !summaries[d] {
				t.Errorf("logsources[%d]: dataset %s is marked closed but is not a packet summary", i, d)
			}
			if !e.Closed && summaries[d] {
				t.Errorf("logsources[%d]: summary dataset %s is not marked closed", i, d)
			}
			seen[d] = seen[d] || e.Closed
		}
	}
	for d := range summaries {
		if !seen[d] {
			t.Errorf("no entry routes rules to summary dataset %s", d)
		}
	}
}

// The zeek entries map Zeek log columns to fields the summaries carry:
// each must name a schema field, or the mapping would hide a column the
// engine then reports as "not produced".
func TestZeekFieldsAreSchemaFields(t *testing.T) {
	m := Default()
	n := 0
	for _, e := range m.LogSources {
		if e.Product != "zeek" {
			continue
		}
		for col, f := range e.Fields {
			n++
			if _, ok := event.Lookup(f); !ok {
				t.Errorf("zeek %s: column %s maps to %s, which the event schema does not define", e.Service, col, f)
			}
		}
	}
	ts := m.Targets(sigma.LogSource{Product: "zeek", Service: "dns"})
	if len(ts) != 1 || m.Field(&ts[0], "answers") != "dns.answers.data" || m.Field(&ts[0], "query") != "dns.question.name" || m.Field(&ts[0], "Z") != "Z" {
		t.Errorf("zeek dns fields: answers -> %s, query -> %s, Z -> %s", m.Field(&ts[0], "answers"), m.Field(&ts[0], "query"), m.Field(&ts[0], "Z"))
	}
	if n == 0 {
		t.Error("no zeek field mappings")
	}
}

func TestParseClosed(t *testing.T) {
	m, err := Parse([]byte("name: x\nlogsources:\n  - product: p\n    datasets: [a]\n    closed: true\n  - product: q\n    datasets: [b]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if ts := m.Targets(sigma.LogSource{Product: "p"}); len(ts) != 1 || !ts[0].Closed {
		t.Errorf("p: %+v, want one closed target", ts)
	}
	if ts := m.Targets(sigma.LogSource{Product: "q"}); len(ts) != 1 || ts[0].Closed {
		t.Errorf("q: %+v, want one open target", ts)
	}
	_, err = Parse([]byte("name: x\nlogsources:\n  - product: p\n    datasets: [a, b]\n    closed: true\n  - product: q\n    datasets: [b]\n"))
	if err == nil || !strings.Contains(err.Error(), `dataset "b" is closed in logsources[0] but not in logsources[1]`) {
		t.Errorf("a dataset closed in one entry and open in another: err = %v", err)
	}
	if _, err := Parse([]byte("name: x\nlogsources:\n  - product: p\n    datasets: [a]\n    close: true\n")); err == nil {
		t.Error("misspelt closed key accepted")
	}
}
