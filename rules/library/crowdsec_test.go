package library_test

import (
	"bufio"
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/testenv"
	"github.com/csirt-toscana/platform/rules/library"
	"github.com/csirt-toscana/platform/rules/ruleset"
)

// ourRule maps a CrowdSec scenario to the library correlation that detects
// the same behaviour.
var ourRule = map[string]string{
	"crowdsecurity/ssh-bf":                    "ssh_bruteforce",
	"crowdsecurity/ssh-bf_user-enum":          "ssh_user_enumeration",
	"crowdsecurity/ssh-slow-bf":               "ssh_slow_bruteforce",
	"crowdsecurity/iptables-scan-multi_ports": "firewall_multi_port_scan",
	"crowdsecurity/vsftpd-bf":                 "ftp_bruteforce",
}

// TestCrowdSecComparison runs the real log lines of three CrowdSec hub
// scenario tests (crowdsec-hub-tests, MIT, CrowdSec) through the library's
// detection rules and correlations and checks that the same source
// addresses are flagged as in CrowdSec's expected alerts (scenario.assert).
// Their engine is a leaky bucket and ours Sigma correlation: who is
// flagged is compared, not counts.
//
// The collector's parsers do not exist yet: parseLine below is a small
// local stand-in that turns each line into the ECS event the sshd and
// netfilter parsers are to produce (the fields CrowdSec's parsers extract:
// source_ip -> source.ip, target_user -> user.name, dst_port ->
// destination.port, PROTO -> network.transport, and CrowdSec's drop filter
// -- not ACCEPT, not "[UFW AUDIT]", OUT empty -- -> event.type denied,
// network.direction inbound).
func TestCrowdSecComparison(t *testing.T) {
	root := filepath.Join(testenv.SharedData(t), "crowdsec-hub-tests")
	set, err := ruleset.Load(library.FS, library.RuleDirs, ruleset.Options{})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{} // correlation id -> name
	for _, c := range set.Correlations {
		names[c.ID] = c.Name
	}
	for _, test := range []string{"ssh-bf", "ssh-slow-bf", "sshd-invalid-bf", "ssh-time-based-bf", "iptables-scan-multi-port", "vsftpd-bf"} {
		t.Run(test, func(t *testing.T) {
			dir := filepath.Join(root, ".tests", test)
			loaded, logFile := loadedScenarios(t, root, dir)
			theirs := expectedAlerts(t, filepath.Join(dir, "scenario.assert"))

			run, err := set.NewRunner()
			if err != nil {
				t.Fatal(err)
			}
			ours := map[string]map[string]bool{} // our rule -> flagged addresses
			data, err := os.ReadFile(filepath.Join(dir, logFile))
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			sc := bufio.NewScanner(bytes.NewReader(data))
			for sc.Scan() {
				ev, ok := parseLine(t, sc.Text(), n)
				if !ok {
					continue
				}
				n++
				_, alerts := run.Process(ev)
				for _, a := range alerts {
					name := names[a.Rule.ID]
					if ours[name] == nil {
						ours[name] = map[string]bool{}
					}
					ours[name][a.GroupBy[0]] = true
				}
			}
			if n == 0 {
				t.Fatalf("no event parsed from %s", logFile)
			}
			compared := 0
			for _, scen := range loaded {
				rule, ok := ourRule[scen]
				if !ok {
					continue
				}
				compared++
				want, got := keys(theirs[scen]), keys(ours[rule])
				t.Logf("%-42s flags %v; library %-24s flags %v", scen, want, rule, got)
				if strings.Join(want, ",") != strings.Join(got, ",") {
					t.Errorf("%s: CrowdSec %s flags %v, our %s flags %v", test, scen, want, rule, got)
				}
			}
			if compared == 0 {
				t.Fatalf("no loaded scenario (%v) has a library counterpart", loaded)
			}
		})
	}
}

// loadedScenarios reads config.yaml: the scenario names its scenario files
// define, and the log file.
func loadedScenarios(t *testing.T, root, dir string) ([]string, string) {
	t.Helper()
	var cfg struct {
		Scenarios []string `yaml:"scenarios"`
		LogFile   string   `yaml:"log_file"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range cfg.Scenarios {
		path := filepath.Join(root, "scenarios", s+".yaml")
		if strings.HasSuffix(s, ".yaml") { // "./scenarios/<author>/<name>.yaml"
			path = filepath.Join(root, s)
		}
		f, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("scenario %s: %v", s, err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(f))
		for {
			var doc struct {
				Name string `yaml:"name"`
			}
			if dec.Decode(&doc) != nil {
				break
			}
			if doc.Name != "" {
				out = append(out, doc.Name)
			}
		}
	}
	return out, cfg.LogFile
}

var (
	reSource   = regexp.MustCompile(`^"([^"]+)" in results\[(\d+)\]\.Overflow\.GetSources\(\)$`)
	reScenario = regexp.MustCompile(`^results\[(\d+)\]\.Overflow\.Alert\.GetScenario\(\) == "([^"]+)"$`)
)

// expectedAlerts reads scenario.assert: scenario -> flagged addresses.
func expectedAlerts(t *testing.T, file string) map[string]map[string]bool {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	sources, scenarios := map[string][]string{}, map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if m := reSource.FindStringSubmatch(line); m != nil {
			sources[m[2]] = append(sources[m[2]], m[1])
		}
		if m := reScenario.FindStringSubmatch(line); m != nil {
			scenarios[m[1]] = m[2]
		}
	}
	out := map[string]map[string]bool{}
	for idx, scen := range scenarios {
		if out[scen] == nil {
			out[scen] = map[string]bool{}
		}
		for _, s := range sources[idx] {
			out[scen][s] = true
		}
	}
	if len(out) == 0 {
		t.Fatalf("no expected alert in %s", file)
	}
	return out
}

var (
	reSyslog = regexp.MustCompile(`^([A-Z][a-z]{2} +\d+ \d\d:\d\d:\d\d) (\S+) ([^:\[]+)(?:\[\d+\])?: (.*)$`)
	reSSHD   = regexp.MustCompile(`^(?:Invalid user (\S*) from (\S+) port \d+|Failed \S+ for (?:invalid user )?(\S*) from (\S+) port \d+|Disconnected from authenticating user (\S+) (\S+) port \d+ \[preauth\])`)
	reVsftpd = regexp.MustCompile(`^\w{3} (\w{3} +\d+ \d\d:\d\d:\d\d \d{4}) \[pid \d+\] \[([^\]]*)\] FAIL LOGIN: Client "([^"]+)"`)
	reKV     = regexp.MustCompile(`([A-Z]+)=(\S*)`)
)

// parseLine is the local stand-in for the collector's sshd and netfilter
// parsers (see TestCrowdSecComparison). Syslog timestamps carry no year:
// 2026, as CrowdSec's dateparse assertions use.
func parseLine(t *testing.T, line string, n int) (event.Event, bool) {
	if v := reVsftpd.FindStringSubmatch(line); v != nil {
		ts, err := time.Parse("Jan _2 15:04:05 2006", v[1])
		if err != nil {
			t.Fatalf("timestamp %q: %v", v[1], err)
		}
		return event.Event{"@timestamp": ts.UTC(), "event.id": "line-" + strconv.Itoa(n), "event.original": line,
			"event.dataset": "vsftpd", "event.category": []string{"authentication"}, "event.outcome": "failure",
			"user.name": v[2], "source.ip": unmap(v[3])}, true
	}
	m := reSyslog.FindStringSubmatch(line)
	if m == nil {
		return nil, false
	}
	ts, err := time.Parse("2006 Jan _2 15:04:05", "2026 "+m[1])
	if err != nil {
		t.Fatalf("timestamp %q: %v", m[1], err)
	}
	ev := event.Event{"@timestamp": ts.UTC(), "host.name": m[2], "event.id": "line-" + strconv.Itoa(n), "event.original": line}
	prog, msg := m[3], m[4]
	switch {
	case prog == "sshd" || prog == "sshd-session":
		s := reSSHD.FindStringSubmatch(msg)
		if s == nil {
			return nil, false
		}
		ev["event.dataset"] = "sshd"
		ev["event.category"] = []string{"authentication"}
		ev["event.outcome"] = "failure"
		ev["user.name"], ev["source.ip"] = s[1]+s[3]+s[5], s[2]+s[4]+s[6]
		return ev, true
	case prog == "kernel" && strings.Contains(msg, "IN="):
		kv := map[string]string{}
		for _, p := range reKV.FindAllStringSubmatch(msg, -1) {
			if _, dup := kv[p[1]]; !dup {
				kv[p[1]] = p[2]
			}
		}
		ev["event.dataset"] = "iptables"
		ev["source.ip"], ev["destination.ip"] = kv["SRC"], kv["DST"]
		ev["network.transport"] = strings.ToLower(kv["PROTO"])
		if p, err := strconv.ParseInt(kv["DPT"], 10, 64); err == nil {
			ev["destination.port"] = p
		}
		drop := !strings.Contains(msg, "ACCEPT") && !strings.Contains(msg, "[UFW AUDIT]") && !strings.Contains(msg, "[UFW ALLOW]")
		if drop {
			ev["event.type"] = []string{"connection", "denied"}
		} else {
			ev["event.type"] = []string{"connection", "allowed"}
		}
		if kv["OUT"] == "" {
			ev["network.direction"] = "inbound"
		} else {
			ev["network.direction"] = "outbound"
		}
		return ev, true
	}
	return nil, false
}

// unmap writes an IPv4-mapped IPv6 address (vsftpd's "::ffff:a.b.c.d") as
// the IPv4 address, as the collector's parsers normalise addresses.
func unmap(s string) string {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().String()
	}
	return s
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
