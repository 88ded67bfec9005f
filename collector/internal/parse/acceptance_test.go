package parse

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/testenv"
)

// withPipelineFields adds what the collector's pipeline owns, so that an
// event can be validated against the schema.
func withPipelineFields(ev event.Event) event.Event {
	ev = ev.Clone()
	ev["event.id"] = event.IDFromRaw([]byte(ev.String("event.original")))
	ev["event.ingested"] = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	ev["organization.id"] = "test"
	ev["agent.id"] = "test"
	if _, ok := ev["host.name"]; !ok {
		ev["host.name"] = "test"
	}
	return ev
}

// TestElasticBeatsAuth checks ../shared/data/logs/elastic-beats-auth/test.log
// (Elastic Beats, Apache-2.0): each line gives the ECS fields Filebeat's
// system/auth module documents for it (user.name, source.ip/port,
// process.name/pid, group.*, event.category/type/outcome/action per the ECS
// categorisation guide).
func TestElasticBeatsAuth(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testenv.SharedData(t), "logs", "elastic-beats-auth", "test.log"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	type exp map[string]string // field -> value; lists joined with ","
	want := []exp{
		{"event.dataset": "sshd", "event.action": "ssh_login", "event.outcome": "success", "event.category": "authentication,session", "event.type": "info",
			"user.name": "vagrant", "source.ip": "10.0.2.2", "source.port": "63673", "process.name": "sshd", "process.pid": "3402",
			"host.hostname": "localhost", "related.ip": "10.0.2.2", "related.user": "vagrant", "@timestamp": "02-21T21:54:44"},
		{"event.dataset": "sshd", "event.action": "ssh_login", "event.outcome": "success", "event.category": "authentication,session",
			"user.name": "vagrant", "source.ip": "192.168.33.1", "source.port": "58803", "process.pid": "7483", "@timestamp": "02-23T00:13:35"},
		{"event.dataset": "sshd", "event.action": "ssh_login", "event.outcome": "failure", "event.category": "authentication",
			"user.name": "test", "source.ip": "10.0.2.2", "process.pid": "3430"},
		{"event.dataset": "sshd", "event.action": "ssh_login", "event.outcome": "failure", "event.category": "authentication",
			"user.name": "root", "source.ip": "216.160.83.57", "source.port": "29160", "host.hostname": "slave22"},
		{"event.dataset": "sudo", "process.name": "sudo", "user.name": "vagrant", "user.effective.name": "root", "user.target.name": "root",
			"process.working_directory": "/home/vagrant", "process.command_line": "/bin/ls", "event.category": "process", "event.outcome": "success",
			"related.user": "vagrant,root"},
		{"event.dataset": "sshd", "source.ip": "2.125.160.217", "event.category": "network", "event.action": "ssh_dropped_connection", "process.pid": "18406"},
		{"event.dataset": "sudo", "user.name": "vagrant", "user.effective.name": "root", "process.command_line": "/bin/cat /var/log/secure",
			"process.args": "/bin/cat,/var/log/secure", "process.working_directory": "/home/vagrant"},
		{"event.dataset": "sudo", "user.name": "tsg", "user.effective.name": "root", "process.command_line": "/bin/ls",
			"event.outcome": "failure", "event.reason": "user NOT in sudoers", "host.hostname": "precise32"},
		{"event.dataset": "accounts", "process.name": "groupadd", "process.pid": "6991", "group.name": "apache", "group.id": "48",
			"event.category": "iam", "event.type": "group,creation", "event.outcome": "success"},
		{"event.dataset": "accounts", "process.name": "useradd", "process.pid": "6995", "user.name": "apache", "user.id": "48", "group.id": "48",
			"event.category": "iam", "event.type": "user,creation", "event.outcome": "success"},
	}
	if len(lines) != len(want) {
		t.Fatalf("test.log has %d lines, the table %d", len(lines), len(want))
	}
	d := New(Options{Now: func() time.Time { return time.Date(2018, 3, 1, 0, 0, 0, 0, time.UTC) }})
	for i, l := range lines {
		ev := d.Parse(Record{Raw: []byte(l), Source: "/var/log/auth.log"})
		for f, v := range want[i] {
			got := strings.Join(ev.Strings(f), ",")
			if f == "@timestamp" {
				got = ev.Time().Format("01-02T15:04:05")
			}
			if got != v {
				t.Errorf("line %d: %s = %q, want %q\n%s", i+1, f, got, v, l)
			}
		}
		if err := withPipelineFields(ev).Validate(); err != nil {
			t.Errorf("line %d: %v", i+1, err)
		}
	}
}

// TestCrowdsecScenarioSources runs the log files of CrowdSec's scenario tests
// for our datasets and checks that no line is left unparsed and that every
// address CrowdSec's scenarios flag appears as source.ip of our events.
func TestCrowdsecScenarioSources(t *testing.T) {
	root := filepath.Join(testenv.SharedData(t), "crowdsec-hub-tests")
	raw, err := os.ReadFile(filepath.Join(root, "SUMMARY.json"))
	if err != nil {
		t.Fatal(err)
	}
	var summary map[string]struct {
		LogFile        string `json:"log_file"`
		LogType        string `json:"log_type"`
		ExpectedAlerts []struct {
			Source string `json:"source"`
		} `json:"expected_alerts"`
	}
	if err := json.Unmarshal(raw, &summary); err != nil {
		t.Fatal(err)
	}
	d := New(Options{})
	checked := 0
	for name, s := range summary {
		switch s.LogType {
		case "syslog", "nginx", "apache2", "vsftpd":
		default:
			continue
		}
		if name == "bind9-syslog" || name == "CVE-2021-4034" {
			continue // bind9 and pkexec: no parser of ours
		}
		data, err := os.ReadFile(filepath.Join(root, ".tests", name, s.LogFile))
		if err != nil {
			t.Fatal(err)
		}
		sources := map[string]bool{}
		for i, l := range strings.Split(string(data), "\n") {
			if strings.TrimSpace(l) == "" {
				continue
			}
			ev := d.Parse(Record{Raw: []byte(l), Source: csHint(s.LogType)})
			if strings.HasSuffix(ev.Dataset(), ".unparsed") {
				t.Errorf("%s line %d: unparsed: %s", name, i+1, l)
			}
			if err := withPipelineFields(ev).Validate(); err != nil {
				t.Errorf("%s line %d: %v", name, i+1, err)
			}
			sources[ev.String("source.ip")] = true
			sources[ev.String("user.name")] = true
		}
		for _, a := range s.ExpectedAlerts {
			checked++
			if !sources[a.Source] {
				t.Errorf("%s: CrowdSec flags %s, no event of ours has it as source.ip", name, a.Source)
			}
		}
	}
	t.Logf("%d flagged sources found in our events", checked)
}
