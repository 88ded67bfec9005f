package l7

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/csirt-toscana/platform/internal/testenv"
)

// TestDNSAgainstSuricataVerify decodes the pcaps of suricata-verify's DNS
// tests and checks every expected eve "dns" record (test.yaml checks) against
// a decoded message: id, direction, query name and type, rcode, flags and
// each answer's name, type, TTL and data.
func TestDNSAgainstSuricataVerify(t *testing.T) {
	for _, dir := range []string{"dns/dns-udp-eve-txt", "dns/dns-udp-eve-log-srv", "dns/v2/dns-udp-eve-dig"} {
		t.Run(dir, func(t *testing.T) {
			base := filepath.Join(testenv.SharedData(t), "pcaps", "suricata-verify", "tests", filepath.FromSlash(dir))
			raw, err := os.ReadFile(filepath.Join(base, "test.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			var spec struct {
				Pcap   string `yaml:"pcap"`
				Checks []struct {
					Filter struct {
						Count int            `yaml:"count"`
						Match map[string]any `yaml:"match"`
					} `yaml:"filter"`
				} `yaml:"checks"`
			}
			if err := yaml.Unmarshal(raw, &spec); err != nil {
				t.Fatal(err)
			}
			pcap := filepath.Join(base, "input.pcap")
			if spec.Pcap != "" {
				pcap = filepath.Join(base, filepath.FromSlash(spec.Pcap))
			}
			c := readPcap(t, pcap)
			var msgs []DNSMessage
			for _, d := range c.udp {
				if m, err := ParseDNS(d.payload); err == nil {
					msgs = append(msgs, m)
				} else {
					t.Errorf("ParseDNS %v -> %v: %v", d.src, d.dst, err)
				}
			}
			checked := 0
			for _, chk := range spec.Checks {
				m := chk.Filter.Match
				if m["event_type"] != "dns" || chk.Filter.Count == 0 || len(m) <= 2 {
					continue
				}
				var closest []string
				found := false
				for _, msg := range msgs {
					errs := suricataDiff(m, msg)
					if len(errs) == 0 {
						found = true
						break
					}
					if closest == nil || len(errs) < len(closest) {
						closest = errs
					}
				}
				if !found {
					t.Errorf("no decoded message matches eve record %v; closest differs in %v", m, closest)
				}
				checked++
			}
			if checked == 0 {
				t.Fatal("no dns checks found in test.yaml")
			}
			t.Logf("%s: %d eve dns records matched", dir, checked)
		})
	}
}

// suricataDiff lists the differences between an expected eve dns record
// (flattened keys) and a decoded message; empty means it matches.
func suricataDiff(want map[string]any, m DNSMessage) []string {
	var diffs []string
	add := func(k string, got, exp any) {
		if fmt.Sprint(got) != fmt.Sprint(exp) {
			diffs = append(diffs, fmt.Sprintf("%s: got %v want %v", k, got, exp))
		}
	}
	for k, v := range want {
		switch k {
		case "dns.id":
			add(k, m.ID, v)
		case "dns.type":
			add(k, m.Response, v == "response" || v == "answer")
		case "dns.qr":
			add(k, m.Response, v)
		case "dns.rd":
			add(k, m.RecursionDesired, v)
		case "dns.ra":
			add(k, m.RecursionAvailable, v)
		case "dns.aa":
			add(k, m.Authoritative, v)
		case "dns.rcode":
			add(k, DNSRCodeName(m.RCode), v)
		case "dns.queries[0].rrname", "dns.rrname":
			add(k, queryName(m), v)
		case "dns.queries[0].rrtype", "dns.rrtype":
			if len(m.Questions) == 0 {
				diffs = append(diffs, k+": no question")
			} else {
				add(k, DNSTypeName(m.Questions[0].Type), v)
			}
		default:
			rest, ok := strings.CutPrefix(k, "dns.answers[")
			if !ok {
				continue // flow, addressing, grouped and version keys
			}
			idxText, field, _ := strings.Cut(rest, "].")
			i, _ := strconv.Atoi(idxText)
			if i >= len(m.Answers) {
				diffs = append(diffs, k+": no such answer")
				continue
			}
			a := m.Answers[i]
			switch field {
			case "rrname":
				add(k, a.Name, v)
			case "rrtype":
				add(k, DNSTypeName(a.Type), v)
			case "ttl":
				add(k, a.TTL, v)
			case "rdata":
				data := a.Data
				if a.Type == dnsTypeTXT { // Zeek-style "TXT <len> <text>"
					parts := strings.SplitN(data, " ", 3)
					if len(parts) == 3 {
						data = parts[2]
					}
				}
				add(k, data, v)
			case "srv.name":
				add(k, a.Data, v)
			}
		}
	}
	return diffs
}
