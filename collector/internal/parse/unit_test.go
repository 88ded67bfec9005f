package parse

import (
	"fmt"
	"testing"
	"time"
)

func TestRFC3164YearInference(t *testing.T) {
	for _, c := range []struct {
		ref  time.Time
		line string
		want string
	}{
		{time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC), "Dec 31 23:59:59 h p: m", "2024-12-31T23:59:59Z"},
		{time.Date(2024, 12, 31, 23, 0, 0, 0, time.UTC), "Jan  1 00:00:01 h p: m", "2025-01-01T00:00:01Z"},
		{time.Date(2024, 6, 15, 0, 0, 0, 0, time.UTC), "Jun 16 10:00:00 h p: m", "2024-06-16T10:00:00Z"},
		{time.Date(2024, 6, 15, 0, 0, 0, 0, time.UTC), "Aug  1 10:00:00 h p: m", "2023-08-01T10:00:00Z"},
		{time.Date(2024, 6, 15, 0, 0, 0, 0, time.UTC), "Feb 29 10:00:00 h p: m", "2024-02-29T10:00:00Z"},
	} {
		h, ok := parseSyslog(c.line, c.ref, time.UTC)
		if !ok {
			t.Fatalf("%q not parsed", c.line)
		}
		if got := h.ts.Format(time.RFC3339); got != c.want {
			t.Errorf("%q at %s: %s, want %s", c.line, c.ref, got, c.want)
		}
	}
}

func TestRecordTimeIsReference(t *testing.T) {
	d := New(Options{Now: func() time.Time { return time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC) }})
	ev := d.Parse(Record{Raw: []byte("Dec 31 23:59:59 h sshd[1]: Invalid user x from 1.2.3.4"), Time: time.Date(2021, 1, 1, 0, 0, 5, 0, time.UTC)})
	if got := ev.Time().Format(time.RFC3339); got != "2020-12-31T23:59:59Z" {
		t.Errorf("got %s", got)
	}
}

func TestAuditJoinerBounds(t *testing.T) {
	j := NewAuditJoiner(nil)
	j.MaxPending = 2
	rec := func(serial int, sec int, typ string) Record {
		return Record{Raw: []byte(fmt.Sprintf("type=%s msg=audit(%d.000:%d): pid=%d comm=\"x\"", typ, sec, serial, serial))}
	}
	var got int
	for s := 1; s <= 3; s++ {
		evs, ok := j.Add(rec(s, 100, "SYSCALL"))
		if !ok {
			t.Fatal("not an audit record")
		}
		got += len(evs)
	}
	if got != 1 {
		t.Errorf("bound 2, 3 open groups: %d emitted, want 1 (the oldest)", got)
	}
	// A record 10 s later closes the groups older than MaxSkew.
	evs, _ := j.Add(rec(9, 110, "SYSCALL"))
	if len(evs) != 2 {
		t.Errorf("skew: %d emitted, want 2", len(evs))
	}
	if n := len(j.Flush()); n != 1 {
		t.Errorf("flush: %d, want 1", n)
	}
	if n := len(j.Flush()); n != 0 {
		t.Errorf("second flush: %d, want 0", n)
	}
}

func TestSourceHints(t *testing.T) {
	d := New(Options{})
	for _, c := range []struct{ src, line, want string }{
		{"/var/log/nginx/access.log", `1.2.3.4 - - [04/Jan/2020:07:25:02 +0000] "GET / HTTP/1.1" 200 1 "-" "-"`, "nginx.access"},
		{"/var/log/httpd/access_log", `1.2.3.4 - - [04/Jan/2020:07:25:02 +0000] "GET / HTTP/1.1" 200 1 "-" "-"`, "apache.access"},
		{"/var/log/apache2/error.log", `[Wed Oct 11 14:32:52 2000] [error] [client 127.0.0.1] x`, "apache.error"},
		{"/var/log/nginx/error.log", `2021/12/01 13:53:33 [error] 31#31: *46 x, client: 1.2.3.4`, "nginx.error"},
		{"/var/log/suricata/eve.json", `{"event_type":"flow","src_ip":"1.2.3.4"}`, "suricata"},
		{"/var/log/audit/audit.log", `type=USER_AUTH msg=audit(1.000:2): acct="root" res=failed`, "auditd"},
		{"sshd.service", "Failed password for root from 1.2.3.4 port 1 ssh2", "sshd"},
		{"sudo", "alice : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/id", "sudo"},
		{"kernel", "[UFW BLOCK] IN=eth0 OUT= SRC=1.2.3.4 DST=5.6.7.8 PROTO=TCP SPT=1 DPT=2", "iptables"},
		{"systemd", "Started Session 1.", "syslog"},
		{"syslog", "<34>Oct 11 22:14:15 h sshd[1]: Invalid user x from 1.2.3.4", "sshd"},
		{"", "type=SYSCALL msg=audit(1.000:2): syscall=59", "auditd"},
		{"/srv/app/app.log", "\x00\x01binary", "app.unparsed"},
	} {
		if got := d.Parse(Record{Raw: []byte(c.line), Source: c.src}).Dataset(); got != c.want {
			t.Errorf("%s %q: dataset %s, want %s", c.src, c.line, got, c.want)
		}
	}
}

// TestConcurrentUse runs one Dispatcher from several goroutines (run with
// -race): parsers are stateless.
func TestConcurrentUse(t *testing.T) {
	d := New(Options{Now: func() time.Time { return goldenNow }})
	lines := []string{
		"Feb 12 14:10:21 sd-126005 sshd[16378]: Invalid user pascal from 35.188.49.176 port 53502",
		`192.168.1.1 - - [04/Jan/2020:07:25:02 +0000] "GET / HTTP/1.1" 404 522 "-" "Go"`,
		`{"timestamp":"2021-06-01T10:00:00.123456+0200","event_type":"alert","src_ip":"1.2.3.4","alert":{"signature_id":1}}`,
		"type=SYSCALL msg=audit(1364481363.243:24287): syscall=59 success=yes pid=1",
	}
	done := make(chan struct{})
	for g := 0; g < 4; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; i < 200; i++ {
				ev := d.Parse(Record{Raw: []byte(lines[i%len(lines)])})
				if ev.Dataset() == "" {
					t.Error("no dataset")
				}
			}
		}()
	}
	for g := 0; g < 4; g++ {
		<-done
	}
}

// TestFirewallDisposition: the log prefix decides event.action and whether
// the packet counts as denied.
func TestFirewallDisposition(t *testing.T) {
	d := New(Options{})
	for prefix, want := range map[string]struct {
		action string
		denied bool
	}{
		"[UFW BLOCK] ":       {"drop", true},
		"IPTables-Dropped: ": {"drop", true},
		"REJECT-IN ":         {"reject", true},
		"[UFW ALLOW] ":       {"accept", false},
		"[UFW AUDIT] ":       {"audit", false},
		"":                   {"log", false},
	} {
		ev := d.Parse(Record{Raw: []byte(prefix + "IN=eth0 OUT= SRC=1.2.3.4 DST=5.6.7.8 PROTO=TCP SPT=1 DPT=2"), Source: "kernel"})
		denied := false
		for _, ty := range ev.Strings("event.type") {
			denied = denied || ty == "denied"
		}
		if ev.String("event.action") != want.action || denied != want.denied {
			t.Errorf("prefix %q: action %q denied %v, want %q %v", prefix, ev.String("event.action"), denied, want.action, want.denied)
		}
	}
}

// Lines whose last field is missing once panicked (found by FuzzRFC3164).
func TestFieldMissingAtEnd(t *testing.T) {
	d := New(Options{Now: fuzzNow})
	for _, l := range []string{
		"Feb 1 00:00:00 host sudo: 0 : PWD=0 ; USER=0 ; COMMAND=  ; 000",
		"Feb 1 00:00:00 host postfix/smtpd[1]: warning: x[1.2.3.4]: SASL LOGIN authentication failed: sasl_username=",
		"Feb 1 00:00:00 host postfix/smtpd[1]: connect from",
		"Feb 1 00:00:00 host sshd[1]: Connection from 1.2.3.4 port 5 on 10.0.0.1 port ",
	} {
		ev := d.Parse(Record{Raw: []byte(l), Source: "/var/log/auth.log"})
		if ev["event.dataset"] == nil {
			t.Errorf("%q: no dataset in %v", l, ev)
		}
	}
}
