package parse

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/csirt-toscana/platform/internal/event"
)

// Fuzz targets: no input may panic, and every event must be a valid
// event of the schema (IP fields parse, types match) and encode as valid
// UTF-8 JSON. Seed corpora are committed under testdata/fuzz/<Target>.

var fuzzNow = func() time.Time { return time.Date(2024, 6, 15, 12, 0, 0, 0, time.UTC) }

func checkEvent(t *testing.T, ev event.Event, in []byte) {
	t.Helper()
	if ev == nil {
		t.Fatalf("nil event for %q", in)
	}
	if err := withPipelineFields(ev).Validate(); err != nil {
		t.Fatalf("invalid event for %q: %v", in, err)
	}
	b, err := ev.MarshalJSON()
	if err != nil {
		t.Fatalf("encoding event for %q: %v", in, err)
	}
	if !utf8.Valid(b) {
		t.Fatalf("event JSON is not UTF-8 for %q", in)
	}
}

func FuzzRFC3164(f *testing.F) {
	f.Add([]byte("<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8"))
	f.Add([]byte("Feb 12 14:10:21 sd-126005 sshd[16378]: Invalid user pascal from 35.188.49.176 port 53502"))
	ref := fuzzNow()
	d := New(Options{Now: fuzzNow})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, _ := toText(b)
		if h, ok := parseSyslog(s, ref, time.UTC); ok && !h.rfc5424 {
			if !strings.HasSuffix(s, h.message) {
				t.Fatalf("message %q is not the tail of %q", h.message, s)
			}
		}
		checkEvent(t, d.Parse(Record{Raw: b, Source: "/var/log/auth.log"}), b)
	})
}

func FuzzRFC5424(f *testing.F) {
	f.Add([]byte(`<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application"] An application event log entry`))
	f.Add([]byte(`<86>1 2024-05-01T10:00:00+02:00 fw1 sshd 4242 - [meta sequenceId="7"][x a="\]\""] Failed password for root from 198.51.100.23 port 50000 ssh2`))
	d := New(Options{Now: fuzzNow})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, _ := toText(b)
		parseSyslog(s, fuzzNow(), time.UTC)
		checkEvent(t, d.Parse(Record{Raw: b}), b)
	})
}

func FuzzAccessLog(f *testing.F) {
	f.Add([]byte(`192.168.1.1 - - [04/Jan/2020:07:25:02 +0000] "GET /x HTTP/1.1" 404 522 "-" "Go-http-client/1.1"`))
	f.Add([]byte(`www.x.net:80 1.2.3.4 - u [08/Jun/2020:08:04:43 +0000] "GET /a\"b HTTP/1.1" 301 0 "-" "M"`))
	f.Add([]byte(`{"remote_addr":"203.0.113.5","request":"GET / HTTP/1.1","status":"404","msec":"1709283600.123"}`))
	d := New(Options{Now: fuzzNow})
	f.Fuzz(func(t *testing.T, b []byte) {
		checkEvent(t, d.Parse(Record{Raw: b, Source: "/var/log/nginx/access.log"}), b)
		ev, _ := d.ParseAs("apache.access", Record{Raw: b})
		checkEvent(t, ev, b)
	})
}

func FuzzAuditd(f *testing.F) {
	f.Add([]byte("type=SYSCALL msg=audit(1364481363.243:24287): arch=c000003e syscall=59 success=yes exit=0 ppid=2686 pid=3538 auid=500 uid=0 comm=\"cat\" exe=\"/bin/cat\" key=\"k\"\ntype=EXECVE msg=audit(1364481363.243:24287): argc=2 a0=\"cat\" a1=2F657463\ntype=EOE msg=audit(1364481363.243:24287): "))
	f.Add([]byte("type=USER_AUTH msg=audit(1364481363.300:24290): pid=3600 uid=0 msg='op=PAM:authentication acct=\"root\" exe=\"/usr/sbin/sshd\" addr=203.0.113.77 res=failed'\x1dUID=\"root\""))
	f.Fuzz(func(t *testing.T, b []byte) {
		d := New(Options{Now: fuzzNow})
		st := d.NewStream("")
		lines := strings.Split(string(b), "\n")
		n := 0
		for _, l := range lines {
			evs, _ := st.Add(Record{Raw: []byte(l), Source: "/var/log/audit/audit.log"})
			for _, ev := range evs {
				checkEvent(t, ev, b)
			}
			n += len(evs)
		}
		for _, ev := range st.Flush() {
			checkEvent(t, ev, b)
			n++
		}
		if n == 0 && len(lines) > 0 {
			t.Fatalf("records of %q gave no event", b)
		}
	})
}

// FuzzDispatch feeds any line to content sniffing and to every parser.
func FuzzDispatch(f *testing.F) {
	f.Add([]byte(`Jun  8 14:34:33 h kernel: [5.0] IN=e OUT= SRC=1.2.3.4 DST=5.6.7.8 PROTO=TCP SPT=1 DPT=2`), "")
	f.Add([]byte(`{"timestamp":"2021-06-01T10:00:00.123456+0200","event_type":"alert","src_ip":"1.2.3.4","alert":{"signature_id":1}}`), "eve.json")
	f.Add([]byte(`Mon Jun 8 12:08:53 2020 [pid 27244] [user] FAIL LOGIN: Client "::ffff:93.24.101.89"`), "vsftpd")
	f.Add([]byte(`[Thu Oct 13 12:24:49.880562 2022] [auth_basic:error] [pid 10:tid 1] [client 31.33.58.75:50229] AH01618: user sss not found: /`), "")
	d := New(Options{Now: fuzzNow})
	names := d.Registry().Names()
	f.Fuzz(func(t *testing.T, b []byte, source string) {
		checkEvent(t, d.Parse(Record{Raw: b, Source: source}), b)
		for _, n := range names {
			ev, _ := d.ParseAs(n, Record{Raw: b, Source: source})
			checkEvent(t, ev, b)
			if p, ok := d.Registry().Get(n); ok {
				if ev, err := p.Parse(Record{Raw: b}); err == nil {
					checkEvent(t, ev, b)
				}
			}
		}
	})
}
