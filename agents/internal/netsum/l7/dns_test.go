package l7

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

func mustName(t testing.TB, s string) dnsmessage.Name {
	t.Helper()
	n, err := dnsmessage.NewName(s)
	if err != nil {
		t.Fatalf("dnsmessage.NewName(%q): %v", s, err)
	}
	return n
}

// buildResponse builds a compressed response with one record of many types.
func buildResponse(t testing.TB) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{
		ID: 0xbeef, Response: true, Authoritative: true, RecursionDesired: true,
		RecursionAvailable: true, RCode: dnsmessage.RCodeSuccess,
	})
	b.EnableCompression()
	check := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	check(b.StartQuestions())
	check(b.Question(dnsmessage.Question{Name: mustName(t, "WWW.Example.COM."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}))
	check(b.StartAnswers())
	hdr := func(name string, ttl uint32) dnsmessage.ResourceHeader {
		return dnsmessage.ResourceHeader{Name: mustName(t, name), Class: dnsmessage.ClassINET, TTL: ttl}
	}
	check(b.CNAMEResource(hdr("www.example.com.", 300), dnsmessage.CNAMEResource{CNAME: mustName(t, "web.example.com.")}))
	check(b.AResource(hdr("web.example.com.", 60), dnsmessage.AResource{A: [4]byte{192, 0, 2, 7}}))
	check(b.AAAAResource(hdr("web.example.com.", 61), dnsmessage.AAAAResource{AAAA: netip.MustParseAddr("2001:db8::7").As16()}))
	check(b.MXResource(hdr("example.com.", 62), dnsmessage.MXResource{Pref: 10, MX: mustName(t, "mail.example.com.")}))
	check(b.NSResource(hdr("example.com.", 63), dnsmessage.NSResource{NS: mustName(t, "ns1.example.com.")}))
	check(b.PTRResource(hdr("7.2.0.192.in-addr.arpa.", 64), dnsmessage.PTRResource{PTR: mustName(t, "web.example.com.")}))
	check(b.TXTResource(hdr("example.com.", 65), dnsmessage.TXTResource{TXT: []string{"v=spf1 -all", "tab\there"}}))
	check(b.SRVResource(hdr("_sip._udp.example.com.", 66), dnsmessage.SRVResource{Priority: 1, Weight: 2, Port: 5060, Target: mustName(t, "sip.example.com.")}))
	check(b.SOAResource(hdr("example.com.", 67), dnsmessage.SOAResource{NS: mustName(t, "ns1.example.com."), MBox: mustName(t, "hostmaster.example.com."), Serial: 1}))
	check(b.UnknownResource(dnsmessage.ResourceHeader{Name: mustName(t, "example.com."), Type: dnsmessage.Type(46), Class: dnsmessage.ClassINET, TTL: 68}, dnsmessage.UnknownResource{Type: dnsmessage.Type(46), Data: []byte{1, 2, 3}}))
	msg, err := b.Finish()
	check(err)
	return msg
}

func TestParseDNSResponseAllTypes(t *testing.T) {
	msg := buildResponse(t)
	m, err := ParseDNS(msg)
	if err != nil {
		t.Fatalf("ParseDNS: %v", err)
	}
	if m.ID != 0xbeef || !m.Response || !m.Authoritative || !m.RecursionDesired || !m.RecursionAvailable || m.Truncated || m.RCode != 0 || m.Opcode != 0 {
		t.Errorf("header = %+v", m)
	}
	if len(m.Questions) != 1 || m.Questions[0] != (DNSQuestion{Name: "www.example.com", Type: 1, Class: 1}) {
		t.Errorf("questions = %+v (names are lowercased like Zeek)", m.Questions)
	}
	want := []DNSAnswer{
		{"www.example.com", 5, 300, "web.example.com"},
		{"web.example.com", 1, 60, "192.0.2.7"},
		{"web.example.com", 28, 61, "2001:db8::7"},
		{"example.com", 15, 62, "10 mail.example.com"},
		{"example.com", 2, 63, "ns1.example.com"},
		{"7.2.0.192.in-addr.arpa", 12, 64, "web.example.com"},
		{"example.com", 16, 65, `TXT 11 v=spf1 -all TXT 8 tab\x09here`},
		{"_sip._udp.example.com", 33, 66, "sip.example.com"},
		{"example.com", 6, 67, "ns1.example.com"},
		{"example.com", 46, 68, "<RRSIG 3 bytes>"},
	}
	if len(m.Answers) != len(want) {
		t.Fatalf("got %d answers, want %d: %+v", len(m.Answers), len(want), m.Answers)
	}
	for i := range want {
		if m.Answers[i] != want[i] {
			t.Errorf("answer %d = %+v, want %+v", i, m.Answers[i], want[i])
		}
	}
	if m.QDCount != 1 || m.ANCount != len(want) {
		t.Errorf("counts = %d/%d", m.QDCount, m.ANCount)
	}
}

func TestParseDNSQuery(t *testing.T) {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 7, RecursionDesired: true, OpCode: 0})
	_ = b.StartQuestions()
	_ = b.Question(dnsmessage.Question{Name: mustName(t, "example.org."), Type: dnsmessage.TypeAAAA, Class: dnsmessage.ClassINET})
	msg, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseDNS(msg)
	if err != nil {
		t.Fatal(err)
	}
	if m.Response || m.ID != 7 || len(m.Questions) != 1 || m.Questions[0].Name != "example.org" || m.Questions[0].Type != 28 || len(m.Answers) != 0 {
		t.Errorf("query = %+v", m)
	}
	if !LooksLikeDNS(msg) {
		t.Error("LooksLikeDNS(query) = false")
	}
}

// rawHeader returns a 12-byte DNS header.
func rawHeader(id, flags, qd, an uint16) []byte {
	return []byte{byte(id >> 8), byte(id), byte(flags >> 8), byte(flags), byte(qd >> 8), byte(qd), byte(an >> 8), byte(an), 0, 0, 0, 0}
}

func TestParseDNSMalformedNames(t *testing.T) {
	long := rawHeader(1, 0, 1, 0)
	for range 128 { // 128 two-byte labels: 257 wire bytes with the root
		long = append(long, 1, 'a')
	}
	long = append(long, 0, 0, 1, 0, 1)
	label64 := append(rawHeader(1, 0, 1, 0), 64)
	label64 = append(label64, strings.Repeat("a", 64)...)
	label64 = append(label64, 0, 0, 1, 0, 1)
	tests := []struct {
		name string
		msg  []byte
		want error
	}{
		{"short header", []byte{1, 2, 3}, errDNSShortHeader},
		{"pointer to itself", append(rawHeader(1, 0, 1, 0), 0xc0, 12, 0, 1, 0, 1), errDNSPointerLoop},
		{"pointer ping-pong", append(rawHeader(1, 0, 1, 0), 0xc0, 14, 0xc0, 12, 0, 1, 0, 1), errDNSPointerLoop},
		{"pointer beyond message", append(rawHeader(1, 0, 1, 0), 0xc0, 200, 0, 1, 0, 1), errDNSPointerRange},
		{"reserved label type", append(rawHeader(1, 0, 1, 0), 0x80, 0, 0, 1, 0, 1), errDNSLabelType},
		{"label of 64 bytes", label64, errDNSLabelType},
		{"name over 255 bytes", long, errDNSNameTooLong},
		{"name cut", append(rawHeader(1, 0, 1, 0), 5, 'a', 'b'), errDNSTruncatedName},
		{"question cut", append(rawHeader(1, 0, 1, 0), 1, 'a', 0, 0), errDNSTruncatedRR},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseDNS(tc.msg)
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrMalformed) {
				t.Errorf("err = %v, want %v (wrapping ErrMalformed)", err, tc.want)
			}
		})
	}
}

func TestParseDNSNameRendering(t *testing.T) {
	msg := append(rawHeader(1, 0, 1, 0), 5, 'A', '.', 'b', '\\', 0, 3, 'C', ' ', 0xff, 0, 0, 16, 0, 1)
	m, err := ParseDNS(msg)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.Questions[0].Name, `a\046b\092\000.c\032\255`; got != want {
		t.Errorf("name = %q, want %q", got, want)
	}
	root := append(rawHeader(1, 0, 1, 0), 0, 0, 2, 0, 1)
	if m, err := ParseDNS(root); err != nil || m.Questions[0].Name != "" {
		t.Errorf("root: %+v, %v", m, err)
	}
}

func TestParseDNSTruncatedKeepsQuestion(t *testing.T) {
	msg := buildResponse(t)
	for n := range len(msg) {
		m, err := ParseDNS(msg[:n])
		if err == nil {
			t.Fatalf("ParseDNS of %d/%d bytes: no error", n, len(msg))
		}
		if n >= 12+17+4 && (len(m.Questions) != 1 || m.Questions[0].Name != "www.example.com") {
			t.Fatalf("ParseDNS of %d bytes lost the question: %+v", n, m)
		}
	}
}

func TestParseDNSRecordCap(t *testing.T) {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{Response: true})
	b.EnableCompression()
	_ = b.StartQuestions()
	_ = b.Question(dnsmessage.Question{Name: mustName(t, "many.example."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	_ = b.StartAnswers()
	for i := range MaxDNSAnswers + 10 {
		_ = b.AResource(dnsmessage.ResourceHeader{Name: mustName(t, "many.example."), Class: dnsmessage.ClassINET}, dnsmessage.AResource{A: [4]byte{10, 0, byte(i >> 8), byte(i)}})
	}
	msg, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseDNS(msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Answers) != MaxDNSAnswers || m.ANCount != MaxDNSAnswers+10 {
		t.Errorf("answers = %d (count %d), want the cap %d", len(m.Answers), m.ANCount, MaxDNSAnswers)
	}
}

func TestSplitTCPDNS(t *testing.T) {
	a := buildResponse(t)
	q := append(rawHeader(9, 0x0100, 1, 0), 1, 'x', 0, 0, 1, 0, 1)
	frame := func(m []byte) []byte { return append([]byte{byte(len(m) >> 8), byte(len(m))}, m...) }
	stream := append(frame(q), 0, 0) // a zero-length frame is skipped
	stream = append(stream, frame(a)...)
	partial := frame(q)[:7]
	stream = append(stream, partial...)
	msgs, rest := SplitTCPDNS(stream)
	if len(msgs) != 2 || string(msgs[0]) != string(q) || string(msgs[1]) != string(a) {
		t.Fatalf("msgs = %d", len(msgs))
	}
	if string(rest) != string(partial) {
		t.Errorf("rest = %x, want %x", rest, partial)
	}
	if msgs, rest := SplitTCPDNS([]byte{0}); len(msgs) != 0 || len(rest) != 1 {
		t.Errorf("one byte: %v %v", msgs, rest)
	}
	// Every split point of the stream gives the same messages in total.
	for cut := range len(stream) {
		first, rest := SplitTCPDNS(stream[:cut])
		second, _ := SplitTCPDNS(append(append([]byte(nil), rest...), stream[cut:]...))
		if len(first)+len(second) != 2 {
			t.Fatalf("cut %d: %d+%d messages", cut, len(first), len(second))
		}
	}
}

func TestLooksLikeDNS(t *testing.T) {
	if !LooksLikeDNS(buildResponse(t)) {
		t.Error("response not detected")
	}
	for _, b := range [][]byte{
		nil,
		[]byte("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"),
		{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0, 0, 0, 0, 0, 0, 0},
		append(rawHeader(1, 0, 0, 0), 0, 0, 1, 0, 1),      // no question
		append(rawHeader(1, 0x7800, 1, 0), 0, 0, 1, 0, 1), // opcode 15
		append(rawHeader(1, 0, 1, 0), 0, 0, 1, 0, 9),      // class 9
	} {
		if LooksLikeDNS(b) {
			t.Errorf("LooksLikeDNS(%q) = true", b)
		}
	}
}

func TestDNSNames(t *testing.T) {
	for _, tc := range []struct {
		typ  uint16
		want string
	}{{1, "A"}, {28, "AAAA"}, {12, "PTR"}, {16, "TXT"}, {255, "*"}, {65, "HTTPS"}, {54, "query-54"}, {65535, "query-65535"}} {
		if got := DNSTypeName(tc.typ); got != tc.want {
			t.Errorf("DNSTypeName(%d) = %q, want %q", tc.typ, got, tc.want)
		}
	}
	for _, tc := range []struct {
		rc   int
		want string
	}{{0, "NOERROR"}, {3, "NXDOMAIN"}, {8, "NXRRSet"}, {3842, "BADSIG"}, {4000, "rcode-4000"}} {
		if got := DNSRCodeName(tc.rc); got != tc.want {
			t.Errorf("DNSRCodeName(%d) = %q, want %q", tc.rc, got, tc.want)
		}
	}
	for c, want := range map[uint16]string{1: "IN", 0x8001: "IN", 3: "CH", 255: "ANY", 42: "CLASS42"} {
		if got := DNSClassName(c); got != want {
			t.Errorf("DNSClassName(%d) = %q, want %q", c, got, want)
		}
	}
}

// dnsFromPcap decodes every UDP DNS message of a trace (port 53, 5353, 5355).
type pcapDNS struct {
	src, dst netip.AddrPort
	msg      DNSMessage
	raw      []byte
}

func dnsFromPcap(t *testing.T, rel string) []pcapDNS {
	t.Helper()
	c := readPcap(t, sharedFile(t, rel))
	var out []pcapDNS
	for _, d := range c.udp {
		if !LooksLikeDNS(d.payload) {
			continue
		}
		m, err := ParseDNS(d.payload)
		if err != nil {
			t.Errorf("%s: %v -> %v: ParseDNS: %v", rel, d.src, d.dst, err)
			continue
		}
		out = append(out, pcapDNS{d.src, d.dst, m, d.payload})
	}
	return out
}

func queryName(m DNSMessage) string {
	if len(m.Questions) > 0 {
		return m.Questions[0].Name
	}
	if len(m.Answers) > 0 {
		return m.Answers[0].Name
	}
	return ""
}

func boolField(b bool) string {
	if b {
		return "T"
	}
	return "F"
}

// TestDNSAgainstZeek compares every dns.log row of the Zeek baselines with
// the decoded messages of the same trace: query name, qtype/qclass, rcode
// and its name, flags, answers and TTLs.
func TestDNSAgainstZeek(t *testing.T) {
	cases := []struct{ trace, log string }{
		{"pcaps/zeek/Traces/wikipedia.pcap", "pcaps/zeek/Baseline/opt.basic/dns.log"},
		{"pcaps/zeek/Traces/dns53.pcap", "pcaps/zeek/Baseline/scripts.base.protocols.dns.flip/dns.log"},
		{"pcaps/zeek/Traces/dns-txt-multiple.pcap", "pcaps/zeek/Baseline/scripts.base.protocols.dns.multiple-txt-strings/dns.log"},
	}
	for _, tc := range cases {
		t.Run(tc.trace, func(t *testing.T) {
			msgs := dnsFromPcap(t, tc.trace)
			rows := zeekLog(t, sharedFile(t, tc.log))
			matched, skipped := 0, 0
			for _, row := range rows {
				if row["id.resp_p"] == "137" { // NetBIOS name service: not decoded (out of scope)
					skipped++
					continue
				}
				orig := netip.MustParseAddrPort(joinHostPort(row["id.orig_h"], row["id.orig_p"]))
				resp := netip.MustParseAddrPort(joinHostPort(row["id.resp_h"], row["id.resp_p"]))
				id, _ := strconv.Atoi(row["trans_id"])
				var query, response *DNSMessage
				for i := range msgs {
					p := &msgs[i]
					onTuple := (p.src == orig && p.dst == resp) || (p.src == resp && p.dst == orig) ||
						(p.src == orig && p.dst.Addr() == resp.Addr()) // multicast replies come from elsewhere
					if !onTuple || int(p.msg.ID) != id || queryName(p.msg) != row["query"] {
						continue
					}
					if p.msg.Response && response == nil {
						response = &p.msg
					} else if !p.msg.Response && query == nil {
						query = &p.msg
					}
				}
				if query == nil && response == nil {
					t.Errorf("no decoded message for Zeek row %v:%v id %d query %q", orig, resp, id, row["query"])
					continue
				}
				matched++
				// Zeek logs qtype/qclass/RD from the query message only.
				if row["qtype"] != "-" {
					if query == nil || len(query.Questions) == 0 {
						t.Errorf("%q: Zeek saw the query, we did not", row["query"])
					} else {
						q := query.Questions[0]
						if got := strconv.Itoa(int(q.Type)); got != row["qtype"] || DNSTypeName(q.Type) != row["qtype_name"] {
							t.Errorf("%q: qtype %s %s, Zeek %s %s", row["query"], got, DNSTypeName(q.Type), row["qtype"], row["qtype_name"])
						}
						if got := strconv.Itoa(int(q.Class)); got != row["qclass"] {
							t.Errorf("%q: qclass %s, Zeek %s", row["query"], got, row["qclass"])
						}
						if got := boolField(query.RecursionDesired); got != row["RD"] {
							t.Errorf("%q: RD %s, Zeek %s", row["query"], got, row["RD"])
						}
					}
				}
				if response == nil {
					if row["rcode"] != "-" {
						t.Errorf("%q: Zeek saw a response (rcode %s), we did not", row["query"], row["rcode"])
					}
					continue
				}
				if strconv.Itoa(response.RCode) != row["rcode"] || DNSRCodeName(response.RCode) != row["rcode_name"] {
					t.Errorf("%q: rcode %d %s, Zeek %s %s", row["query"], response.RCode, DNSRCodeName(response.RCode), row["rcode"], row["rcode_name"])
				}
				// Zeek sets AA/TC/RA while handling answers: compare them
				// only for responses that have answers.
				if len(response.Answers) > 0 {
					flags := boolField(response.Authoritative) + boolField(response.Truncated) + boolField(response.RecursionAvailable)
					if want := row["AA"] + row["TC"] + row["RA"]; flags != want {
						t.Errorf("%q: AA/TC/RA %s, Zeek %s", row["query"], flags, want)
					}
				}
				var answers, ttls []string
				for _, a := range response.Answers {
					answers = append(answers, a.Data)
					ttls = append(ttls, fmt.Sprintf("%d.000000", a.TTL))
				}
				if got := joinOrUnset(answers); got != row["answers"] {
					t.Errorf("%q: answers\n got %q\nZeek %q", row["query"], got, row["answers"])
				}
				if got := joinOrUnset(ttls); got != row["TTLs"] {
					t.Errorf("%q: TTLs %s, Zeek %s", row["query"], got, row["TTLs"])
				}
			}
			t.Logf("%s: %d Zeek dns.log rows, %d matched decoded messages, %d NetBIOS rows skipped", tc.trace, len(rows), matched, skipped)
		})
	}
}

func joinHostPort(h, p string) string {
	if strings.Contains(h, ":") {
		return "[" + h + "]:" + p
	}
	return h + ":" + p
}

func joinOrUnset(v []string) string {
	if len(v) == 0 {
		return "-"
	}
	return strings.Join(v, ",")
}
