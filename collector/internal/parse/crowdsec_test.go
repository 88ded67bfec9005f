package parse

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/testenv"
)

// Acceptance against CrowdSec's hub tests (../shared/data/crowdsec-hub-tests,
// MIT licence, (c) CrowdSec): for each log line, CrowdSec's parser.assert
// lists the fields its parsers extract. We run our parsers on the same
// lines and compare every asserted field that has an ECS equivalent.
//
// Which assertions are compared:
//   - stages s00-raw (syslog-logs, non-syslog) and s01-parse (sshd-logs,
//     sshd-success-logs, pam-logs, nginx-logs, apache2-logs, iptables-logs);
//     s02-enrich repeats s01 plus GeoIP/time enrichment and is not compared;
//   - only results with Success == true (a CrowdSec parser that does not
//     apply to a line says nothing about it);
//   - an assertion given identically by several stages counts once.
//
// Mapping of CrowdSec names to ECS (csMapping below), values compared as
// strings, "-" meaning "absent":
//
//	CrowdSec                               ECS
//	program (syslog stage, sshd, pam,      process.name
//	  iptables)
//	pid                                    process.pid
//	tid                                    process.thread.id
//	timestamp, time_local, time,           @timestamp (same instant; for
//	  timestamp8601                          yearless syslog stamps, same
//	                                         month, day and time of day)
//	message                                message, or event.original when
//	                                         CrowdSec's message is the whole
//	                                         line (non-syslog sources)
//	machine                                host.hostname
//	sshd_client_ip, source_ip, remote_addr, source.ip
//	  clientip, client, src_ip
//	sshd_client_port, sshd_port,           source.port
//	  clientport, src_port
//	sshd_invalid_user, sshd_auth_user,     user.name
//	  target_user, user, username,
//	  remote_user, auth
//	dst_ip / dst_port                      destination.ip / destination.port
//	proto                                  network.transport (case-insensitive)
//	int_eth, iptables.IN                   observer.ingress.interface.name
//	iptables.OUT                           observer.egress.interface.name
//	iptables.SRC/DST/SPT/DPT/PROTO         as src_ip, dst_ip, ...
//	verb, http_verb                        http.request.method
//	request, http_path, target_uri         url.original
//	http_version, httpversion              http.version
//	status, response, http_status          http.response.status_code
//	body_bytes_sent, bytes                 http.response.body.bytes
//	http_referer, referrer                 http.request.referrer
//	http_user_agent                        user_agent.original
//	target_fqdn / port                     url.domain / url.port
//	loglevel                               log.level
//	module                                 log.logger
//	errorcode                              error.code
//	service tcp|udp / other                network.transport / network.protocol
//	                                         (service "pam" has none)
//	log_type, sub_type                     ECS categorisation:
//	  ssh_failed-auth, pam_failed_auth,      event.outcome failure
//	    sub_type auth_fail
//	  auth_success                           event.outcome success
//	  pam_user_lock                          event.action account_locked
//	  ssh_auth_timeout                       event.action ssh_auth_timeout
//	  ssh_bad_keyexchange                    event.action ssh_negotiation_failed
//	  ssh_dispatch_fatal                     event.action ssh_fatal
//	  ssh_refused_conn                       event.action ssh_connection_refused
//	  http_access-log / http_error-log       event.dataset *.access / *.error
//	  iptables_drop                          event.dataset iptables
//
// Not compared (no ECS equivalent): logsource, datasource_*, program of
// non-syslog sources (CrowdSec's acquisition label, not read from the
// line), ident, euid, uid, logname, ruser, tty, pam_type, sshd_protocol,
// sshd_trail, cid, length and the other netfilter header fields (LEN, TTL,
// TOS, PREC, ID, WINDOW, RES, URGP, MAC, flags), proxy_errorcode,
// proxy_errormessage, Whitelisted, sub_type ssl_handshake_stopped,
// service pam.

var csTests = []string{
	"CVE-2021-4034", "apache2-logs", "iptables-logs", "nginx-http-malformed", "nginx-http-sensitive-files",
	"nginx_http-logs", "pam-logs", "sshd-invalid-bf", "sshd-logs", "sshd-success-logs", "syslog-logs",
}

var csParsers = map[string]bool{
	"crowdsecurity/syslog-logs": true, "crowdsecurity/non-syslog": true, "crowdsecurity/sshd-logs": true,
	"crowdsecurity/sshd-success-logs": true, "crowdsecurity/pam-logs": true, "crowdsecurity/nginx-logs": true,
	"crowdsecurity/apache2-logs": true, "crowdsecurity/iptables-logs": true,
}

// labelPrograms are CrowdSec parsers whose "program" is the acquisition
// label rather than a value read from the line.
var labelPrograms = map[string]bool{"crowdsecurity/non-syslog": true, "crowdsecurity/nginx-logs": true, "crowdsecurity/apache2-logs": true}

var assertRE = regexp.MustCompile(`^(?:basename\()?results\["([^"]+)"\]\["([^"]+)"\]\[(\d+)\]\.(Success|Evt\.(Parsed|Meta|Unmarshaled|Enriched)\["([^"]+)"\](?:\["([^"]+)"\])?)\)? == (.*)$`)

type csAssert struct {
	stage, parser string
	idx           int
	key           string // "Parsed.message", "Unmarshaled.iptables.SRC", "Success"
	value         string
}

type csGroup struct {
	stage, parser string
	idx           int
	success       bool
	fields        []csAssert
}

func readCrowdsec(t *testing.T, dir string) (lines []string, logType string, groups []*csGroup) {
	t.Helper()
	cfg, err := os.ReadFile(filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var logFile string
	for _, l := range strings.Split(string(cfg), "\n") {
		if v, ok := strings.CutPrefix(l, "log_file: "); ok {
			logFile = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(l, "log_type: "); ok {
			logType = strings.TrimSpace(v)
		}
	}
	raw, err := os.ReadFile(filepath.Join(dir, logFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, strings.TrimRight(l, "\r"))
		}
	}
	f, err := os.Open(filepath.Join(dir, "parser.assert"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	byKey := map[string]*csGroup{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := assertRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		idx, _ := strconv.Atoi(m[3])
		gk := m[1] + "|" + m[2] + "|" + m[3]
		g := byKey[gk]
		if g == nil {
			g = &csGroup{stage: m[1], parser: m[2], idx: idx}
			byKey[gk] = g
			groups = append(groups, g)
		}
		if m[4] == "Success" {
			g.success = m[8] == "true"
			continue
		}
		key := m[5] + "." + m[6]
		if m[7] != "" {
			key += "." + m[7]
		}
		v := m[8]
		if uq, err := strconv.Unquote(v); err == nil {
			v = uq
		}
		g.fields = append(g.fields, csAssert{stage: m[1], parser: m[2], idx: idx, key: key, value: v})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	sort.SliceStable(groups, func(i, j int) bool {
		if groups[i].stage != groups[j].stage {
			return groups[i].stage < groups[j].stage
		}
		if groups[i].parser != groups[j].parser {
			return groups[i].parser < groups[j].parser
		}
		return groups[i].idx < groups[j].idx
	})
	return lines, logType, groups
}

// csCompare says whether ev agrees with one CrowdSec assertion; ok=false
// means the assertion has no ECS equivalent.
func csCompare(a csAssert, ev event.Event) (agree, ok bool, want string) {
	name := a.key[strings.IndexByte(a.key, '.')+1:]
	v := a.value
	eq := func(field string) (bool, bool, string) {
		got := ev.String(field)
		if v == "-" || v == "" {
			return got == "" || got == "-", true, field + " absent"
		}
		return got == v, true, field + "=" + v
	}
	ip := func(field string) (bool, bool, string) {
		c, isIP := cleanIP(v)
		if !isIP {
			c = v
		}
		return ev.String(field) == c, true, field + "=" + c
	}
	switch name {
	case "program":
		if labelPrograms[a.parser] {
			return false, false, ""
		}
		return eq("process.name")
	case "pid":
		return eq("process.pid")
	case "tid":
		return eq("process.thread.id")
	case "timestamp", "time_local", "time", "timestamp8601":
		return csTime(v, ev), true, "@timestamp~" + v
	case "message":
		return ev.String("message") == v || ev.String("event.original") == v, true, "message=" + v
	case "machine":
		return eq("host.hostname")
	case "sshd_client_ip", "source_ip", "remote_addr", "clientip", "client", "src_ip", "iptables.SRC":
		return ip("source.ip")
	case "sshd_client_port", "sshd_port", "clientport", "src_port", "iptables.SPT":
		return eq("source.port")
	case "sshd_invalid_user", "sshd_auth_user", "target_user", "user", "username", "remote_user", "auth":
		return eq("user.name")
	case "dst_ip", "iptables.DST":
		return ip("destination.ip")
	case "dst_port", "iptables.DPT":
		return eq("destination.port")
	case "proto", "iptables.PROTO":
		return strings.EqualFold(ev.String("network.transport"), v), true, "network.transport=" + v
	case "int_eth", "iptables.IN":
		return eq("observer.ingress.interface.name")
	case "iptables.OUT":
		return eq("observer.egress.interface.name")
	case "verb", "http_verb":
		return eq("http.request.method")
	case "request", "http_path", "target_uri":
		return eq("url.original")
	case "http_version", "httpversion":
		return eq("http.version")
	case "status", "response", "http_status":
		return eq("http.response.status_code")
	case "body_bytes_sent", "bytes":
		return eq("http.response.body.bytes")
	case "http_referer", "referrer":
		return eq("http.request.referrer")
	case "http_user_agent":
		return eq("user_agent.original")
	case "target_fqdn":
		return eq("url.domain")
	case "port":
		return eq("url.port")
	case "loglevel":
		return eq("log.level")
	case "module":
		return eq("log.logger")
	case "errorcode":
		return eq("error.code")
	case "service":
		switch v {
		case "tcp", "udp":
			return eq("network.transport")
		case "pam":
			return false, false, ""
		}
		return eq("network.protocol")
	case "log_type", "sub_type":
		return csLogType(v, ev)
	}
	return false, false, ""
}

func csLogType(v string, ev event.Event) (bool, bool, string) {
	has := func(field, want string) bool {
		for _, s := range ev.Strings(field) {
			if s == want {
				return true
			}
		}
		return false
	}
	switch v {
	case "ssh_failed-auth", "pam_failed_auth", "auth_fail":
		return ev.String("event.outcome") == "failure" && has("event.category", "authentication"), true, "authentication failure"
	case "auth_success":
		return ev.String("event.outcome") == "success" && has("event.category", "authentication"), true, "authentication success"
	case "pam_user_lock":
		return ev.String("event.action") == "account_locked", true, "event.action=account_locked"
	case "ssh_auth_timeout":
		return ev.String("event.action") == "ssh_auth_timeout", true, "event.action=ssh_auth_timeout"
	case "ssh_bad_keyexchange":
		return ev.String("event.action") == "ssh_negotiation_failed", true, "event.action=ssh_negotiation_failed"
	case "ssh_dispatch_fatal":
		return ev.String("event.action") == "ssh_fatal", true, "event.action=ssh_fatal"
	case "ssh_refused_conn":
		return ev.String("event.action") == "ssh_connection_refused", true, "event.action=ssh_connection_refused"
	case "http_access-log":
		return strings.HasSuffix(ev.Dataset(), ".access"), true, "event.dataset=*.access"
	case "http_error-log":
		return strings.HasSuffix(ev.Dataset(), ".error"), true, "event.dataset=*.error"
	case "iptables_drop":
		return ev.Dataset() == "iptables", true, "event.dataset=iptables"
	}
	return false, false, ""
}

// csTime compares a CrowdSec time string with @timestamp.
func csTime(v string, ev event.Event) bool {
	got := ev.Time().UTC()
	if got.IsZero() {
		return false
	}
	for _, l := range []string{clfTime, time.RFC3339Nano, "Mon Jan _2 15:04:05.000000 2006", "Mon Jan _2 15:04:05 2006"} {
		if t, err := time.Parse(l, v); err == nil {
			return t.Equal(got)
		}
	}
	for _, l := range []string{"2006/01/02 15:04:05"} {
		if t, err := time.ParseInLocation(l, v, time.UTC); err == nil {
			return t.Equal(got)
		}
	}
	for _, l := range []string{"Jan _2 15:04:05", "Jan 2 15:04:05", "Jan 02 15:04:05"} {
		if t, err := time.Parse(l, v); err == nil {
			return t.Month() == got.Month() && t.Day() == got.Day() && t.Hour() == got.Hour() &&
				t.Minute() == got.Minute() && t.Second() == got.Second()
		}
	}
	return false
}

func csHint(logType string) string {
	switch logType {
	case "nginx", "apache2":
		return logType
	}
	return ""
}

func TestCrowdsecAgreement(t *testing.T) {
	root := filepath.Join(testenv.SharedData(t), "crowdsec-hub-tests", ".tests")
	d := New(Options{Now: func() time.Time { return time.Date(2024, 12, 31, 0, 0, 0, 0, time.UTC) }})
	total, agreed := 0, 0
	perTest := map[string][2]int{}
	for _, name := range csTests {
		lines, logType, groups := readCrowdsec(t, filepath.Join(root, name))
		events := make([]event.Event, len(lines))
		for i, l := range lines {
			events[i] = d.Parse(Record{Raw: []byte(l), Source: csHint(logType)})
		}
		seen := map[string]bool{}
		cursor := map[string]int{}
		for _, g := range groups {
			if !g.success || !csParsers[g.parser] || (g.stage != "s00-raw" && g.stage != "s01-parse") {
				continue
			}
			// Align the result with its line: by the asserted message when
			// there is one, else by index.
			ck := g.stage + "|" + g.parser
			li := -1
			for _, f := range g.fields {
				if f.key == "Parsed.message" {
					for j := cursor[ck]; j < len(lines); j++ {
						if strings.Contains(lines[j], f.value) {
							li = j
							break
						}
					}
				}
			}
			if li < 0 {
				li = g.idx
			}
			if li >= len(lines) {
				t.Errorf("%s: %s[%d] has no line", name, g.parser, g.idx)
				continue
			}
			cursor[ck] = li + 1
			ev := events[li]
			for _, f := range g.fields {
				dk := fmt.Sprintf("%d|%s|%s", li, f.key[strings.IndexByte(f.key, '.')+1:], f.value)
				if seen[dk] {
					continue
				}
				agree, ok, want := csCompare(f, ev)
				if !ok {
					continue
				}
				seen[dk] = true
				total++
				pt := perTest[name]
				pt[0]++
				if agree {
					agreed++
					pt[1]++
				} else {
					t.Logf("MISS %s line %d %s[%s]: crowdsec %s=%q, want %s; got event %s", name, li+1, g.parser, g.stage, f.key, f.value, want, compact(ev))
				}
				perTest[name] = pt
			}
		}
	}
	for _, name := range csTests {
		pt := perTest[name]
		t.Logf("%-28s %4d/%4d", name, pt[1], pt[0])
	}
	if total == 0 {
		t.Fatal("no assertion compared")
	}
	pct := 100 * float64(agreed) / float64(total)
	t.Logf("crowdsec agreement: %d/%d asserted fields with an ECS equivalent = %.1f%% (data: CrowdSec hub tests, MIT)", agreed, total, pct)
	if pct < 95 {
		t.Fatalf("agreement %.1f%% is below 95%%", pct)
	}
}

func compact(ev event.Event) string {
	keys := make([]string, 0, len(ev))
	for k := range ev {
		if k == "event.original" || k == "message" {
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s ", k, ev.String(k))
	}
	return b.String()
}
