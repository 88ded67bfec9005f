package intel

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
)

// Fuzz limits keep each input's work small.
var fuzzOpts = Options{MaxBytes: 1 << 20, MaxIndicators: 10000, MaxWarnings: 50, Now: time.Unix(1767225600, 0), TTL: time.Hour}

// checkParsed asserts what every parser promises: valid, normalised
// indicators without duplicate ids, each surviving a store round trip.
func checkParsed(t *testing.T, inds []Indicator, warns []Warning) {
	t.Helper()
	ids := map[string]bool{}
	for i := range inds {
		ind := &inds[i]
		if err := ind.Validate(); err != nil {
			t.Fatalf("invalid indicator: %v", err)
		}
		id := ind.ID()
		if ids[id] {
			t.Fatalf("duplicate indicator %s %q", ind.Type, ind.Value)
		}
		ids[id] = true
		d, err := ind.Doc()
		if err != nil {
			t.Fatalf("Doc: %v", err)
		}
		back, err := FromDoc(d)
		if err != nil || back.ID() != id {
			t.Fatalf("store round trip of %s %q: %v", ind.Type, ind.Value, err)
		}
	}
	if len(warns) > fuzzOpts.MaxWarnings+1 {
		t.Fatalf("%d warnings over the limit of %d", len(warns), fuzzOpts.MaxWarnings)
	}
	// Whatever was parsed builds a matcher.
	if _, err := Build(inds, MatcherOptions{}); err != nil {
		t.Fatalf("Build: %v", err)
	}
}

// addFiles seeds a fuzzer with test fixtures.
func addFiles(f *testing.F, names ...string) {
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join("testdata", n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
}

func FuzzParseMISP(f *testing.F) {
	addFiles(f, "misp_restsearch.json", "misp-feed/22222222-2222-4333-8444-555555555555.json")
	f.Add([]byte(`{"Event":{"uuid":"u","Attribute":[{"type":"domain|ip","value":"a.example|192.0.2.1","to_ids":"1","Tag":[{"name":"tlp:red"}]}]}}`))
	f.Add([]byte(`[{"Event":{"Object":[{"Attribute":[{"type":"url","value":"http://x.example","to_ids":true}]}]}}]`))
	f.Add([]byte(`{"response":{"Event":{"Attribute":[{"type":"ip-dst|port","value":"2001:db8::1|443","to_ids":1}]}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		inds, warns, err := ParseMISP(bytes.NewReader(data), fuzzOpts)
		if err == nil {
			checkParsed(t, inds, warns)
		}
	})
}

func FuzzParseMISPManifest(f *testing.F) {
	addFiles(f, "misp-feed/manifest.json")
	f.Add([]byte(`{"22222222-2222-4333-8444-555555555555":{"info":"x","timestamp":"1","Tag":[{"name":"a"}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, _, err := ParseMISPManifest(bytes.NewReader(data), fuzzOpts)
		if err != nil {
			return
		}
		for _, e := range entries {
			if !isUUID(e.UUID) {
				t.Fatalf("manifest entry %q is not a uuid", e.UUID)
			}
		}
	})
}

func FuzzParseFeodo(f *testing.F) {
	addFiles(f, "feodo_ipblocklist.csv")
	f.Add([]byte("first_seen_utc,dst_ip,dst_port,c2_status,last_online,malware\n2026-01-01 00:00:00,192.0.2.1,443,online,2026-01-02,X\n"))
	f.Add([]byte("\"a\"\"b\",\"192.0.2.1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		inds, warns, err := ParseFeodo(bytes.NewReader(data), fuzzOpts)
		if err == nil {
			checkParsed(t, inds, warns)
		}
	})
}

func FuzzParseURLhaus(f *testing.F) {
	addFiles(f, "urlhaus.csv")
	f.Add([]byte("# id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter\n\"1\",\"2026-01-01 00:00:00\",\"http://x.example/a\",\"online\",\"\",\"malware_download\",\"a,b\",\"https://urlhaus.abuse.ch/url/1/\",\"r\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		inds, warns, err := ParseURLhaus(bytes.NewReader(data), fuzzOpts)
		if err == nil {
			checkParsed(t, inds, warns)
		}
	})
}

func FuzzParseThreatFox(f *testing.F) {
	addFiles(f, "threatfox.json")
	f.Add([]byte(`{"query_status":"ok","data":[{"id":1,"ioc":"[2001:db8::1]:80","ioc_type":"ip:port","confidence_level":"75","tags":["a"]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		inds, warns, err := ParseThreatFox(bytes.NewReader(data), fuzzOpts)
		if err == nil {
			checkParsed(t, inds, warns)
		}
	})
}

const stixSeed = `{"type":"bundle","id":"bundle--1","objects":[
 {"type":"marking-definition","id":"marking-definition--m","definition_type":"tlp","definition":{"tlp":"red"}},
 {"type":"indicator","id":"indicator--1","pattern_type":"stix","pattern":"[ipv4-addr:value ISSUBSET '198.51.100.0/24' OR domain-name:value = 'a.example'] OR [file:hashes.'SHA-256' = '` +
	`e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855']","valid_from":"2026-01-01T00:00:00Z","valid_until":"2026-02-01T00:00:00Z",` +
	`"confidence":70,"object_marking_refs":["marking-definition--m"]}]}`

func FuzzParseSTIX(f *testing.F) {
	f.Add([]byte(stixSeed))
	f.Add([]byte(`[{"type":"indicator","pattern":"[url:value = 'http://x.example/']"}]`))
	f.Add([]byte(`{"type":"indicator","id":"indicator--2","pattern":"[email-addr:value = 'a@example.com'] REPEATS 2 TIMES"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		inds, warns, err := ParseSTIX(bytes.NewReader(data), fuzzOpts)
		if err == nil {
			checkParsed(t, inds, warns)
		}
	})
}

func FuzzParseTAXII(f *testing.F) {
	f.Add([]byte(`{"more":true,"next":"2","objects":[{"type":"indicator","id":"indicator--t","pattern":"[ipv6-addr:value = '2001:db8::1']"}]}`))
	f.Add([]byte(`{"more":"false","objects":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseTAXIIEnvelope(bytes.NewReader(data), fuzzOpts)
		if err == nil {
			checkParsed(t, p.Indicators, p.Warnings)
		}
	})
}

func FuzzParseCSV(f *testing.F) {
	addFiles(f, "local.csv", "plain.txt")
	f.Add([]byte("type;value;tlp\nhash;44d88612fea8a8f36de82e1278abb02f;amber+strict\n"))
	f.Add([]byte("hxxp://evil[.]example/x\n203.0.113.0/24\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		inds, warns, err := ParseCSV(bytes.NewReader(data), fuzzOpts)
		if err == nil {
			checkParsed(t, inds, warns)
		}
	})
}

func FuzzParseAny(f *testing.F) {
	addFiles(f, "threatfox.json", "feodo_ipblocklist.csv", "urlhaus.csv")
	f.Add([]byte(stixSeed))
	f.Add([]byte(`{"Event":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, inds, warns, err := ParseAny(bytes.NewReader(data), fuzzOpts)
		if err == nil {
			checkParsed(t, inds, warns)
		}
	})
}

func FuzzSTIXPattern(f *testing.F) {
	for _, s := range []string{
		`[ipv4-addr:value = '192.0.2.1']`,
		`[domain-name:value = 'a.example' OR ipv4-addr:value ISSUBSET '10.0.0.0/8'] OR ([url:value IN ('http://x.example/', 'http://y.example/')])`,
		`[file:hashes.'SHA-256' = 'aa' AND file:size > 3] FOLLOWEDBY [x:y MATCHES '^z'] WITHIN 5 SECONDS`,
		`[a:b[*].c NOT LIKE 'x%'] START t'2016-01-01T00:00:00Z' STOP t'2017-01-01T00:00:00Z'`,
		`[EXISTS a:b] REPEATS 3 TIMES`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parsePattern(s)
		if err != nil {
			if _, ok := err.(*PatternError); !ok { //nolint:errorlint // returned unwrapped
				t.Fatalf("error %T is not a *PatternError", err)
			}
			return
		}
		for _, a := range r.atoms {
			if !strings.Contains(s, a.value) && !strings.Contains(s, `\`) {
				t.Fatalf("atom %q is not in the pattern", a.value)
			}
		}
	})
}

func FuzzNormalize(f *testing.F) {
	for _, c := range [][2]string{{"domain", "Bücher.Example."}, {"url", "HTTP://[2001:DB8::1]:80/a%2fb#x"}, {"email", "<A@b.example>"},
		{"cidr", "::ffff:10.0.0.0/104"}, {"ipv4", "192.0.2.1"}, {"md5", "D41D8CD98F00B204E9800998ECF8427E"}, {"", "hxxp://x[.]example"}} {
		f.Add(c[0], c[1])
	}
	f.Fuzz(func(t *testing.T, typ, value string) {
		var n string
		var err error
		var got Type
		if typ == "" {
			got, n, err = Detect(value)
		} else {
			got = Type(typ)
			if got == IPv4 || got == IPv6 || got == CIDR {
				got, n, err = NormalizeIP(value)
			} else {
				n, err = Normalize(got, value)
			}
		}
		if err != nil {
			return
		}
		again, err := Normalize(got, n)
		if err != nil || again != n {
			t.Fatalf("Normalize(%s, %q) = %q, %v: not idempotent", got, n, again, err)
		}
	})
}

// FuzzMatchValue looks untrusted event values up in a fixed matcher: it
// must never panic, and a value that normalises to an indicator matches.
func FuzzMatchValue(f *testing.F) {
	inds := []Indicator{}
	for _, s := range []string{"evil.com", "192.0.2.1", "198.51.100.0/24", "2001:db8::/32", "http://x.example/a",
		"44d88612fea8a8f36de82e1278abb02f", "a@example.com", "xn--bcher-kva.example"} {
		typ, v, err := Detect(s)
		if err != nil {
			f.Fatal(err)
		}
		inds = append(inds, Indicator{Type: typ, Value: v, Source: "fuzz"})
	}
	m, err := Build(inds, MatcherOptions{URLHosts: true})
	if err != nil {
		f.Fatal(err)
	}
	for _, v := range []string{"mail.evil.com", "198.51.100.7", "HTTP://X.example:80/a", "2001:db8::5", "A@Example.com", "www.bücher.example"} {
		f.Add(v)
	}
	kinds := []Kind{KindIP, KindDomain, KindURL, KindHash, KindEmail}
	f.Fuzz(func(t *testing.T, v string) {
		// The allocation-free fast paths agree with full normalisation.
		if canonicalEmail(v) {
			if n, err := normalizeEmail(v); err != nil || n != v {
				t.Fatalf("canonicalEmail(%q) but normalizeEmail gives %q, %v", v, n, err)
			}
		}
		if isLowerHex(v) && hashType(v) != "" {
			if n, err := normalizeHash(hashType(v), v); err != nil || n != v {
				t.Fatalf("lower-case digest %q normalises to %q, %v", v, n, err)
			}
		}
		for _, k := range kinds {
			for _, mt := range m.AppendValue(nil, "f", k, v, time.Time{}) {
				if mt.Value != v {
					t.Fatalf("match value %q, want %q", mt.Value, v)
				}
			}
		}
		ev := event.Event{"source.ip": v, "dns.question.name": v, "url.full": v, "related.hash": []string{v}, "email.from.address": v}
		_ = m.MatchEvent(ev, time.Time{})
	})
}
