package intel

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/testenv"
)

// byValue finds the indicator of a value (any type).
func byValue(inds []Indicator, v string) *Indicator {
	for i := range inds {
		if inds[i].Value == v {
			return &inds[i]
		}
	}
	return nil
}

func values(inds []Indicator) []string {
	out := make([]string, len(inds))
	for i, ind := range inds {
		out[i] = string(ind.Type) + " " + ind.Value
	}
	return out
}

func openTestdata(t *testing.T, name string) *os.File {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func warningsText(ws []Warning) string {
	var b strings.Builder
	for _, w := range ws {
		b.WriteString(w.String())
		b.WriteByte('\n')
	}
	return b.String()
}

func checkValid(t *testing.T, inds []Indicator) {
	t.Helper()
	for i := range inds {
		if err := inds[i].Validate(); err != nil {
			t.Errorf("parser returned an invalid indicator: %v", err)
		}
	}
}

const sunorcal = "5a0a9aa9-23a4-4607-b6df-41a9950d210f"

func TestMISPSharedPyMISPEvents(t *testing.T) {
	dir := filepath.Join(testenv.SharedData(t), "intel", "pymisp")
	f, err := os.Open(filepath.Join(dir, sunorcal+".json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	inds, warns, err := ParseMISP(f, Options{Source: "circl-osint"})
	if err != nil {
		t.Fatal(err)
	}
	checkValid(t, inds)
	// 2 ip-dst, 4 hostnames, 16 sha256, 14 sha1, 14 md5 with to_ids=true.
	counts := map[Type]int{}
	for _, ind := range inds {
		counts[ind.Type]++
	}
	if counts[IPv4] != 2 || counts[Domain] != 4 || counts[SHA256] != 16 || counts[SHA1] != 14 || counts[MD5] != 14 {
		t.Errorf("type counts = %v\n%s", counts, strings.Join(values(inds), "\n"))
	}
	ip := byValue(inds, "98.126.156.210")
	if ip == nil {
		t.Fatal("98.126.156.210 not read")
	}
	if ip.Source != "circl-osint" || ip.TLP != TLPClear || len(ip.Refs) != 1 || ip.Refs[0].Parent != sunorcal ||
		ip.Refs[0].ID != "5a0a9e4c-bcf8-42ac-86dc-48b0950d210f" || !strings.Contains(ip.Refs[0].Title, "SunOrcal") {
		t.Errorf("98.126.156.210 = %+v", ip)
	}
	if !slices.Contains(ip.Tags, `circl:incident-classification="malware"`) || slices.ContainsFunc(ip.Tags, func(s string) bool { return strings.HasPrefix(s, "tlp:") }) {
		t.Errorf("tags = %v", ip.Tags)
	}
	if want := time.Date(2017, 11, 10, 0, 0, 0, 0, time.UTC); !ip.FirstSeen.Equal(want) {
		t.Errorf("first seen = %v, want the event date %v", ip.FirstSeen, want)
	}
	if want := time.Unix(1510922426, 0); !ip.LastSeen.Equal(want) {
		t.Errorf("last seen = %v, want the attribute timestamp %v", ip.LastSeen, want)
	}
	w := warningsText(warns)
	for _, want := range []string{`4 attributes of type "filename" skipped`, `5 attributes of type "regkey" skipped`, `15 attributes of type "link" skipped`} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings lack %q:\n%s", want, w)
		}
	}
	// With IncludeNonIDS the context attributes of matchable types come too
	// (links and comments are not matchable types).
	f2, _ := os.Open(filepath.Join(dir, sunorcal+".json"))
	defer f2.Close()
	all, _, err := ParseMISP(f2, Options{IncludeNonIDS: true})
	if err != nil || len(all) != len(inds) {
		t.Errorf("IncludeNonIDS: %d indicators, %v (want %d: no non-IDS attribute of a matchable type)", len(all), err, len(inds))
	}

	f3, _ := os.Open(filepath.Join(dir, "57c4445b-c548-4654-af0b-4be3950d210f.json"))
	defer f3.Close()
	xorist, _, err := ParseMISP(f3, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := values(xorist); !slices.Equal(got, []string{"md5 0749bae92ca336a02c83d126e04ec628",
		"sha1 77b0c41b7d340b8a3d903f21347bbf06aa766b5b", "sha256 b3c4ae251f8094fa15b510051835c657eaef2a6cea46075d3aec964b14a99f68"}) {
		t.Errorf("Xorist indicators = %v", got)
	}
}

func TestMISPRestSearchFixture(t *testing.T) {
	inds, warns, err := ParseMISP(openTestdata(t, "misp_restsearch.json"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkValid(t, inds)
	want := []string{"ipv4 198.51.100.44", "domain phish.example.com", "ipv4 203.0.113.80",
		"sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "email billing@example.net",
		"cidr 192.0.2.0/24", "url http://phish.example.com/kit/"}
	if got := values(inds); !slices.Equal(got, want) {
		t.Errorf("indicators:\n got %v\nwant %v", got, want)
	}
	dom := byValue(inds, "phish.example.com")
	if dom.TLP != TLPAmber || dom.Confidence != 90 || dom.Source != "misp" || dom.Refs[0].ID != "aaaaaaa2-2222-4333-8444-555555555555" {
		t.Errorf("domain = %+v", dom)
	}
	if e := byValue(inds, "billing@example.net"); e.TLP != TLPGreen {
		t.Errorf("attribute tlp:green should win over the event's amber: %+v", e)
	}
	u := byValue(inds, "http://phish.example.com/kit/")
	if !u.FirstSeen.Equal(time.Date(2026, 2, 19, 8, 0, 0, 0, time.UTC)) || !u.LastSeen.Equal(time.Date(2026, 2, 21, 18, 0, 0, 0, time.UTC)) ||
		!slices.Contains(u.Tags, "misp-object:url") {
		t.Errorf("object url = %+v", u)
	}
	if byValue(inds, "203.0.113.99") != nil {
		t.Error("an attribute of a deleted object was read")
	}
	w := warningsText(warns)
	for _, want := range []string{"Attribute[8] aaaaaaa9-2222-4333-8444-555555555555: skipped", "1 attributes with to_ids=false",
		"2 deleted attributes or objects", `1 attributes of type "regkey"`} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings lack %q:\n%s", want, w)
		}
	}
}

func TestMISPFeed(t *testing.T) {
	var loaded []string
	load := func(uuid string) (io.ReadCloser, error) {
		loaded = append(loaded, uuid)
		return os.Open(filepath.Join("testdata", "misp-feed", uuid+".json"))
	}
	inds, warns, err := ParseMISPFeed(openTestdata(t, "misp-feed/manifest.json"), load, Options{Source: "test-feed"})
	if err != nil {
		t.Fatal(err)
	}
	checkValid(t, inds)
	if !slices.Equal(loaded, []string{"22222222-2222-4333-8444-555555555555", "33333333-2222-4333-8444-555555555555", "44444444-2222-4333-8444-555555555555"}) {
		t.Errorf("loaded %v (the key that is not a uuid must never reach the loader)", loaded)
	}
	if got := values(inds); !slices.Equal(got, []string{"domain c2.example.net", "md5 d41d8cd98f00b204e9800998ecf8427e", "cidr 2001:db8:dead::/48"}) {
		t.Errorf("indicators = %v", got)
	}
	c2 := byValue(inds, "c2.example.net")
	if c2.TLP != TLPRed || len(c2.Refs) != 2 || c2.Refs[0].Parent != "22222222-2222-4333-8444-555555555555" || c2.Refs[1].Parent != "33333333-2222-4333-8444-555555555555" {
		t.Errorf("merged c2.example.net = %+v", c2)
	}
	w := warningsText(warns)
	for _, want := range []string{`manifest key "../../etc/passwd": skipped: not an event uuid`, "event 44444444-2222-4333-8444-555555555555: not loaded"} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings lack %q:\n%s", want, w)
		}
	}
	entries, _, err := ParseMISPManifest(openTestdata(t, "misp-feed/manifest.json"), Options{})
	if err != nil || len(entries) != 3 || entries[0].Timestamp.Unix() != 1769900000 || entries[0].Tags[0] != "tlp:clear" {
		t.Errorf("manifest entries = %+v, %v", entries, err)
	}
}

func TestMISPErrors(t *testing.T) {
	for in, want := range map[string]string{
		"":                         "empty input",
		"{\n  \"Event\": [1,2,,]}": "line 2 column",
		`{"foo": 1}`:               `no "Event" or "response" key`,
		`{"response": 3}`:          `"response" is not a list`,
		`"just a string"`:          "not a MISP event",
	} {
		_, _, err := ParseMISP(strings.NewReader(in), Options{})
		var pe *ParseError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseMISP(%q) error = %v, want a ParseError containing %q", in, err, want)
		}
	}
	big := `{"Event": {"info": "` + strings.Repeat("x", 2000) + `"}}`
	_, _, err := ParseMISP(strings.NewReader(big), Options{MaxBytes: 1000})
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("over the size limit: %v", err)
	}
	many := `{"Event": {"Attribute": [` + strings.Repeat(`{"type":"ip-dst","value":"192.0.2.1","to_ids":true},{"type":"ip-dst","value":"192.0.2.2","to_ids":true},`, 2) +
		`{"type":"ip-dst","value":"192.0.2.3","to_ids":true}]}}`
	if _, _, err := ParseMISP(strings.NewReader(many), Options{MaxIndicators: 2}); !errors.Is(err, ErrTooMany) {
		t.Errorf("over the indicator limit: %v", err)
	}
	if inds, _, err := ParseMISP(strings.NewReader(many), Options{MaxIndicators: 3}); err != nil || len(inds) != 3 {
		t.Errorf("duplicates count once against the limit: %d, %v", len(inds), err)
	}
}

func TestFeodo(t *testing.T) {
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	inds, warns, err := ParseFeodo(openTestdata(t, "feodo_ipblocklist.csv"), Options{TTL: 7 * 24 * time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	checkValid(t, inds)
	if got := values(inds); !slices.Equal(got, []string{"ipv4 192.0.2.10", "ipv4 198.51.100.77", "ipv4 203.0.113.5", "ipv6 2001:db8::c2"}) {
		t.Errorf("indicators = %v", got)
	}
	q := byValue(inds, "198.51.100.77")
	if q.Source != "feodotracker" || q.Confidence != 90 || q.TLP != TLPClear || !slices.Contains(q.Tags, "QakBot") ||
		!slices.Contains(q.Tags, "c2_status:offline") || !strings.Contains(q.Description, "port 8080") ||
		!q.FirstSeen.Equal(time.Date(2026, 2, 2, 13, 1, 12, 0, time.UTC)) || !q.LastSeen.Equal(time.Date(2026, 2, 20, 0, 0, 0, 0, time.UTC)) ||
		!q.Expires.Equal(time.Date(2026, 2, 27, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("QakBot C2 = %+v", q)
	}
	if len(warns) != 1 || warns[0].Line != 16 || !strings.Contains(warns[0].Msg, "not-an-ip") {
		t.Errorf("warnings = %v", warns)
	}
	// An unquoted header, as a plain line.
	plain := "first_seen_utc,dst_ip,dst_port,c2_status,last_online,malware\n2026-01-01 00:00:00,192.0.2.99,443,online,2026-01-02,Heodo\n"
	inds, _, err = ParseFeodo(strings.NewReader(plain), Options{})
	if err != nil || len(inds) != 1 || inds[0].Value != "192.0.2.99" {
		t.Errorf("plain header: %v %v", values(inds), err)
	}
	// Not Feodo at all.
	if _, _, err := ParseFeodo(strings.NewReader("a,b,c\nd,e,f\n"), Options{}); err == nil || !strings.Contains(err.Error(), "right format") {
		t.Errorf("wrong format: %v", err)
	}
}

func TestURLhaus(t *testing.T) {
	inds, warns, err := ParseURLhaus(openTestdata(t, "urlhaus.csv"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkValid(t, inds)
	if got := values(inds); !slices.Equal(got, []string{"url http://198.51.100.23:8088/i", "url https://files.example.net/docs/Invoice%2D2026.zip",
		"url http://cdn.example.org/wp-content/upd.exe"}) {
		t.Errorf("indicators = %v", got)
	}
	z := inds[1]
	if z.Refs[0].ID != "3100002" || z.Refs[0].Link != "https://urlhaus.abuse.ch/url/3100002/" || !slices.Contains(z.Tags, "AsyncRAT") ||
		!slices.Contains(z.Tags, "malware_download") || z.Confidence != 80 || !strings.Contains(z.Description, "abuse_ch") {
		t.Errorf("zip URL = %+v", z)
	}
	if len(warns) != 1 || warns[0].Line != 14 {
		t.Errorf("warnings = %v", warns)
	}
}

func TestThreatFox(t *testing.T) {
	inds, warns, err := ParseThreatFox(openTestdata(t, "threatfox.json"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkValid(t, inds)
	if got := values(inds); !slices.Equal(got, []string{"ipv4 192.0.2.200", "domain login-portal.example.com",
		"sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "url http://203.0.113.9/gate.php"}) {
		t.Errorf("indicators = %v", got)
	}
	cs := inds[0]
	if cs.Confidence != 100 || cs.Refs[0].ID != "1700001" || cs.Refs[0].Link != "https://threatfox.abuse.ch/ioc/1700001/" ||
		!slices.Contains(cs.Tags, "Cobalt Strike") || !slices.Contains(cs.Tags, "c2") || !slices.Contains(cs.Tags, "botnet_cc") {
		t.Errorf("Cobalt Strike = %+v", cs)
	}
	if inds[2].Confidence != 50 || !inds[1].LastSeen.Equal(time.Date(2026, 3, 1, 7, 0, 0, 0, time.UTC)) {
		t.Errorf("confidence/last seen: %+v %+v", inds[2], inds[1])
	}
	if w := warningsText(warns); !strings.Contains(w, `1 IOCs of type "sha3_384_hash" skipped`) {
		t.Errorf("warnings = %s", w)
	}
	// The API response shape.
	api := `{"query_status":"ok","data":[{"id":"41","ioc":"[2001:db8::5]:443","ioc_type":"ip:port","threat_type":"botnet_cc",` +
		`"malware_printable":"QakBot","confidence_level":75,"first_seen":"2026-01-01 00:00:00 UTC","tags":["qakbot"]}]}`
	inds, _, err = ParseThreatFox(strings.NewReader(api), Options{})
	if err != nil || len(inds) != 1 || inds[0].Value != "2001:db8::5" || inds[0].Confidence != 75 ||
		!inds[0].FirstSeen.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("API shape: %+v %v", inds, err)
	}
	if _, _, err := ParseThreatFox(strings.NewReader(`[1,2]`), Options{}); err == nil {
		t.Error("a JSON list is not a ThreatFox export")
	}
}

func TestLocalCSV(t *testing.T) {
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	inds, warns, err := ParseCSV(openTestdata(t, "local.csv"), Options{Source: "csirt-toscana", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	checkValid(t, inds)
	if got := values(inds); !slices.Equal(got, []string{"ipv4 192.0.2.66", "cidr 198.51.100.128/25", "domain evil.example",
		"url http://evil.example/payload.bin", "md5 44d88612fea8a8f36de82e1278abb02f", "email phisher@example.org"}) {
		t.Errorf("indicators = %v", got)
	}
	ssh := inds[0]
	if ssh.Confidence != 90 || ssh.TLP != TLPAmber || !slices.Equal(ssh.Tags, []string{"scanner", "ssh"}) ||
		!ssh.Expires.Equal(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)) || ssh.Description != "SSH brute force source" ||
		!ssh.LastSeen.Equal(now) || ssh.Refs[0].ID != "line 3" {
		t.Errorf("first row = %+v", ssh)
	}
	if inds[2].TLP != TLPClear || !slices.Equal(inds[2].Tags, []string{"phishing", "kit"}) || inds[3].TLP != TLPRed || inds[3].Confidence != 70 {
		t.Errorf("rows = %+v %+v", inds[2], inds[3])
	}
	w := warningsText(warns)
	for _, want := range []string{`line 9: skipped: unknown type "banana"`, `line 10 (value "bad..name"): skipped`, `line 11: confidence "abc"`,
		`line 11: TLP "purple"`, `line 11: skipped: expires "not-a-date"`} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings lack %q:\n%s", want, w)
		}
	}

	inds, warns, err = ParseCSV(openTestdata(t, "plain.txt"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := values(inds); !slices.Equal(got, []string{"ipv4 192.0.2.1", "ipv6 2001:db8::1", "cidr 203.0.113.0/24", "domain evil.example.com",
		"url https://download.example.net/a.exe", "sha256 275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f",
		"sha1 3395856ce81f2b7382dee72602f798b642f14140", "email bob@example.com"}) {
		t.Errorf("plain list = %v", got)
	}
	if len(warns) != 1 || warns[0].Line != 10 {
		t.Errorf("plain warnings = %v", warns)
	}
	semi := "Type;Value;Tags\ndomain;x.example;a,b\n"
	inds, _, err = ParseCSV(strings.NewReader(semi), Options{})
	if err != nil || len(inds) != 1 || !slices.Equal(inds[0].Tags, []string{"a", "b"}) {
		t.Errorf("semicolon list: %+v %v", inds, err)
	}
}

func TestParseAnyDetects(t *testing.T) {
	for name, want := range map[string]Format{
		"feodo_ipblocklist.csv": FormatFeodo, "urlhaus.csv": FormatURLhaus, "threatfox.json": FormatThreatFox,
		"misp_restsearch.json": FormatMISP, "local.csv": FormatCSV, "plain.txt": FormatCSV,
		"misp-feed/22222222-2222-4333-8444-555555555555.json": FormatMISP,
	} {
		f, inds, _, err := ParseAny(openTestdata(t, name), Options{})
		if err != nil || f != want || len(inds) == 0 {
			t.Errorf("%s: format %q, %d indicators, %v; want %q", name, f, len(inds), err, want)
		}
	}
	if _, _, _, err := ParseAny(openTestdata(t, "misp-feed/manifest.json"), Options{}); err == nil || !strings.Contains(err.Error(), "ParseMISPFeed") {
		t.Errorf("manifest: %v", err)
	}
	if _, _, _, err := ParseAny(strings.NewReader(`{"a":1}`), Options{}); err == nil {
		t.Error("unknown JSON accepted")
	}
	if _, _, err := Parse("nope", strings.NewReader(""), Options{}); err == nil {
		t.Error("unknown format accepted")
	}
	for _, f := range Formats {
		if _, ok := formatDefaults[f]; !ok {
			t.Errorf("format %s has no defaults", f)
		}
	}
}
