package intel

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/testenv"
)

func TestSTIXPatterns(t *testing.T) {
	cases := []struct {
		pattern string
		want    []string // "type value"
		dropped int      // number of dropped-part reasons
	}{
		{`[ipv4-addr:value = '192.0.2.1']`, []string{"ip 192.0.2.1"}, 0},
		{`[ ipv4-addr:value = '10.0.0.0' ]`, []string{"ip 10.0.0.0"}, 0},
		{`[ipv4-addr:value ISSUBSET '10.0.0.0/8']`, []string{"ip 10.0.0.0/8"}, 0},
		{`[ipv6-addr:value = '2001:db8::1']`, []string{"ip 2001:db8::1"}, 0},
		{`[domain-name:value = 'evil.com']`, []string{"domain evil.com"}, 0},
		{`[url:value = 'http://x.example/a\'b']`, []string{"url http://x.example/a'b"}, 0},
		{`[file:hashes.'SHA-256' = 'aa']`, []string{"sha256 aa"}, 0},
		{`[file:hashes.MD5 = 'bb' OR file:hashes.'SHA-1' = 'cc']`, []string{"md5 bb", "sha1 cc"}, 0},
		{`[email-message:from_ref.value = 'a@example.com']`, []string{"email a@example.com"}, 0},
		{`[domain-name:value = 'a.example' OR ipv4-addr:value = '192.0.2.2'] OR [url:value = 'http://b.example/']`,
			[]string{"domain a.example", "ip 192.0.2.2", "url http://b.example/"}, 0},
		{`[domain-name:value IN ('a.example', 'b.example')]`, []string{"domain a.example", "domain b.example"}, 0},
		{`([ipv4-addr:value = '192.0.2.3'])`, []string{"ip 192.0.2.3"}, 0},
		// Conjunctions, qualifiers, negations and other operators are dropped.
		{`[x509-certificate:issuer = 'CN=WEBMAIL' AND x509-certificate:serial_number = '4c']`, nil, 2},
		{`[ipv4-addr:value = '192.0.2.1' AND domain-name:value = 'a.example']`, nil, 1},
		{`[ipv4-addr:value = '192.0.2.1'] AND [domain-name:value = 'a.example']`, nil, 1},
		{`[ipv4-addr:value = '192.0.2.1'] FOLLOWEDBY [domain-name:value = 'a.example']`, nil, 1},
		{`[ipv4-addr:value = '192.0.2.1'] REPEATS 5 TIMES WITHIN 300 SECONDS`, nil, 1},
		{`[ipv4-addr:value = '192.0.2.1'] START t'2016-06-01T00:00:00Z' STOP t'2016-07-01T00:00:00Z'`, nil, 1},
		{`[ipv4-addr:value NOT = '192.0.2.1']`, nil, 1},
		{`[ipv4-addr:value != '192.0.2.1']`, nil, 1},
		{`[domain-name:value LIKE '%.example']`, nil, 1},
		{`[domain-name:value ISSUBSET 'example']`, nil, 1},
		{`[email-message:subject MATCHES '^x']`, nil, 1},
		{`[file:name = 'CBricksDoc']`, nil, 1},
		{`[windows-registry-key:key = 'HKLM\\foo' OR domain-name:value = 'k.example']`, []string{"domain k.example"}, 1},
		{`[file:size > 10]`, nil, 1},
		{`[EXISTS windows-registry-key:values]`, nil, 1},
		{`[email-message:body_multipart[*].body_raw_ref.name MATCHES '^Final']`, nil, 1},
	}
	for _, c := range cases {
		r, err := parsePattern(c.pattern)
		if err != nil {
			t.Errorf("%s: %v", c.pattern, err)
			continue
		}
		var got []string
		for _, a := range r.atoms {
			got = append(got, string(a.typ)+" "+a.value)
		}
		if !slices.Equal(got, c.want) || len(r.dropped) != c.dropped {
			t.Errorf("%s:\n got %v dropped %v\nwant %v and %d dropped", c.pattern, got, r.dropped, c.want, c.dropped)
		}
	}
	for _, bad := range []string{``, `ipv4-addr:value = '1'`, `[ipv4-addr:value = '1'`, `[ipv4-addr:value = ]`, `[ipv4-addr:value '1']`,
		`[ipv4-addr:value = 'unterminated]`, `[ipv4-addr:value = '1'] OR`, `[= '1']`, `[ipv4-addr: = '1']`, `[a:b IN ('x' 'y')]`,
		`[ipv4-addr:value = '1'] WITHIN x SECONDS`, `[ipv4-addr:value = '1'] extra`, strings.Repeat("(", 200) + `[a:b = '1']` + strings.Repeat(")", 200),
		`[a:b = '1' ! '2']`, `[a:b = '1'] §`} {
		if r, err := parsePattern(bad); err == nil {
			t.Errorf("parsePattern(%q) = %+v, want a syntax error", bad, r)
		} else if _, ok := err.(*PatternError); !ok { //nolint:errorlint // the parser returns it unwrapped
			t.Errorf("parsePattern(%q) error %T is not a *PatternError", bad, err)
		}
	}
}

func TestSTIXSharedBundles(t *testing.T) {
	dir := filepath.Join(testenv.SharedData(t), "intel", "stix21", "examples")
	read := func(name string) ([]Indicator, []Warning) {
		t.Helper()
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		inds, warns, err := ParseSTIX(f, Options{Source: "oasis-examples"})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		checkValid(t, inds)
		return inds, warns
	}
	apt1, warns := read("threat-reports/apt1.json")
	counts := map[Type]int{}
	for _, ind := range apt1 {
		counts[ind.Type]++
	}
	if counts[CIDR] != 4 || counts[Domain] != 3 || counts[MD5] != 3 || len(apt1) != 10 {
		t.Errorf("APT1: %v", values(apt1))
	}
	c := byValue(apt1, "223.166.0.0/15")
	if c == nil || c.Refs[0].ID == "" || !strings.HasPrefix(c.Refs[0].ID, "indicator--") || !strings.HasPrefix(c.Refs[0].Parent, "bundle--") ||
		!c.FirstSeen.Equal(time.Date(2015, 5, 15, 9, 12, 16, 432678000, time.UTC)) || c.TLP != TLPAmber || c.Confidence != 50 {
		t.Errorf("APT1 CIDR = %+v", c)
	}
	if w := warningsText(warns); strings.Count(w, "skipped: object path x509-certificate:issuer is not an observable") != 2 {
		t.Errorf("APT1 warnings (the two x509 AND patterns):\n%s", w)
	}

	pivy, warns := read("threat-reports/poisonivy.json")
	for _, v := range []string{"www.webserver.dynssl.com", "113.10.246.30", "219.90.112.203", "microsoftb.byinter.net", "60.10.1.115"} {
		if byValue(pivy, v) == nil {
			t.Errorf("Poison Ivy OR pattern value %s not read", v)
		}
	}
	// 113.10.246.30 is in four indicators: merged, with their references.
	if ip := byValue(pivy, "113.10.246.30"); ip == nil || len(ip.Refs) != 4 {
		t.Errorf("113.10.246.30 refs = %+v", ip)
	}
	w := warningsText(warns)
	if !strings.Contains(w, "domain autuo.xicp.net") || !strings.Contains(w, "object path file:name") {
		t.Errorf("Poison Ivy warnings:\n%s", w)
	}

	single, _ := read("indicator-for-c2-ip-address.json")
	if len(single) != 1 || single[0].Value != "10.0.0.0" || single[0].Type != IPv4 {
		t.Errorf("c2 indicator: %v", values(single))
	}
	hashes, _ := read("indicators-for-C2-with-COA.json")
	if byValue(hashes, "ef537f25c895bfa782526529a9b63d97aa631564d5d789c2b765448c8635fb6c") == nil {
		t.Errorf("SHA-256 indicator not read: %v", values(hashes))
	}
	mail, warns := read("malicious-email-indicator-with-attachment.json")
	if len(mail) != 0 || len(warns) != 2 {
		t.Errorf("MATCHES patterns must be skipped with a warning each: %v %v", values(mail), warns)
	}
	// A single non-indicator object is accepted and gives nothing.
	none, _ := read("interop-objectmarking-test.json")
	if len(none) != 0 {
		t.Errorf("campaign object gave %v", values(none))
	}
}

func TestSTIXMarkingsAndFields(t *testing.T) {
	bundle := `{"type":"bundle","id":"bundle--1","objects":[
	 {"type":"marking-definition","id":"marking-definition--custom-amber","definition_type":"tlp","definition":{"tlp":"amber"}},
	 {"type":"marking-definition","id":"marking-definition--custom-strict","name":"TLP:AMBER+STRICT","extensions":{"extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d":{"extension_type":"property-extension","tlp_2_0":"amber+strict"}}},
	 {"type":"indicator","spec_version":"2.1","id":"indicator--a","name":"green one","pattern_type":"stix","pattern":"[domain-name:value = 'green.example']",
	  "valid_from":"2026-01-01T00:00:00Z","valid_until":"2026-06-01T00:00:00Z","confidence":85,"indicator_types":["malicious-activity"],"labels":["c2"],
	  "object_marking_refs":["marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"]},
	 {"type":"indicator","id":"indicator--b","pattern_type":"stix","pattern":"[ipv4-addr:value = '192.0.2.9']","valid_from":"2026-01-01T00:00:00Z",
	  "object_marking_refs":["marking-definition--custom-amber","marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487"]},
	 {"type":"indicator","id":"indicator--c","pattern_type":"stix","pattern":"[ipv4-addr:value = '192.0.2.10']","valid_from":"2026-01-01T00:00:00Z",
	  "object_marking_refs":["marking-definition--custom-strict"]},
	 {"type":"indicator","id":"indicator--d","pattern_type":"sigma","pattern":"title: x","valid_from":"2026-01-01T00:00:00Z"},
	 {"type":"indicator","id":"indicator--e","pattern_type":"stix","pattern":"[ipv4-addr:value = '192.0.2.11']","revoked":true},
	 {"type":"indicator","id":"indicator--f","pattern":"[ipv4-addr:value = '192.0.2.12'","valid_from":"2026-01-01T00:00:00Z"},
	 {"type":"indicator","id":"indicator--g","pattern":"[ipv4-addr:value = '0.0.0.0/0']","valid_from":"2026-01-01T00:00:00Z"},
	 "not an object"
	]}`
	inds, warns, err := ParseSTIX(strings.NewReader(bundle), Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkValid(t, inds)
	if got := values(inds); !slices.Equal(got, []string{"domain green.example", "ipv4 192.0.2.9", "ipv4 192.0.2.10"}) {
		t.Fatalf("indicators = %v", got)
	}
	g := inds[0]
	if g.TLP != TLPGreen || g.Confidence != 85 || !g.Expires.Equal(time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)) ||
		!slices.Equal(g.Tags, []string{"malicious-activity", "c2"}) || g.Description != "green one" || g.Refs[0].Parent != "bundle--1" {
		t.Errorf("green = %+v", g)
	}
	if inds[1].TLP != TLPAmber || inds[2].TLP != TLPAmberStrict {
		t.Errorf("TLPs %q %q", inds[1].TLP, inds[2].TLP)
	}
	w := warningsText(warns)
	for _, want := range []string{`pattern_type "sigma"`, "1 revoked", "objects[7] indicator--f: skipped: pattern column", "objects[8] indicator--g: skipped: CIDR",
		"objects[9]: skipped"} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings lack %q:\n%s", want, w)
		}
	}
}

func TestTAXIIEnvelope(t *testing.T) {
	env := `{"more": true, "next": "page-2", "objects": [
	  {"type":"indicator","spec_version":"2.1","id":"indicator--t1","pattern_type":"stix","pattern":"[url:value = 'https://t.example/x']","valid_from":"2026-01-01T00:00:00Z"}]}`
	p, err := ParseTAXIIEnvelope(strings.NewReader(env), Options{Source: "taxii-demo"})
	if err != nil {
		t.Fatal(err)
	}
	if !p.More || p.Next != "page-2" || len(p.Indicators) != 1 || p.Indicators[0].Value != "https://t.example/x" || p.Indicators[0].Source != "taxii-demo" {
		t.Errorf("page = %+v", p)
	}
	p, err = ParseTAXIIEnvelope(strings.NewReader(`{}`), Options{})
	if err != nil || p.More || len(p.Indicators) != 0 {
		t.Errorf("empty envelope: %+v %v", p, err)
	}
	if _, err := ParseTAXIIEnvelope(strings.NewReader(`{"objects": 5}`), Options{}); err == nil {
		t.Error("objects must be a list")
	}
}
