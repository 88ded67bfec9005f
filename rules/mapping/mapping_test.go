package mapping

import (
	"reflect"
	"testing"

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
