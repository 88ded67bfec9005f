package intel

import (
	"strings"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/store"
)

func TestPunycodeRFC3492Vectors(t *testing.T) {
	// Sample strings of RFC 3492 section 7.1 and well-known IDNA labels.
	for in, want := range map[string]string{
		"bücher":            "bcher-kva",
		"münchen":           "mnchen-3ya",
		"ü":                 "tda",
		"他们为什么不说中文":         "ihqwcrb4cv8a8dqg056pqjye",
		"παράδειγμα":        "hxajbheg2az3al",
		"3年b組金八先生":          "3b-ww4c5e180e575a65lsy2b",
		"そのスピードで":           "d9juau41awczczp",
		"ليهمابتكلموشعربي؟": "egbpdaj6bu4bxfgehfvwxn",
	} {
		got, err := punycodeEncode(in)
		if err != nil || got != want {
			t.Errorf("punycodeEncode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestNormalize(t *testing.T) {
	ok := []struct {
		typ       Type
		in, want  string
		wantTypeN Type // for NormalizeIP via New; "" = same
	}{
		{IPv4, " 192.0.2.1 ", "192.0.2.1", ""},
		{IPv4, "::ffff:192.0.2.1", "192.0.2.1", ""},
		{IPv6, "2001:DB8:0:0:0:0:0:1", "2001:db8::1", ""},
		{IPv6, "fe80::1%eth0", "fe80::1", ""},
		{CIDR, "10.1.2.3/8", "10.0.0.0/8", ""},
		{CIDR, "2001:db8::/32", "2001:db8::/32", ""},
		{CIDR, "::ffff:198.51.100.0/120", "198.51.100.0/24", ""},
		{IPv4, "192.0.2.7/32", "192.0.2.7", ""},
		{Domain, "Mail.Evil.COM.", "mail.evil.com", ""},
		{Domain, "bücher.example", "xn--bcher-kva.example", ""},
		{Domain, "BÜCHER.example", "xn--bcher-kva.example", ""},
		{Domain, "例え。テスト", "xn--r8jz45g.xn--zckzah", ""},
		{Domain, "_dmarc.example.com", "_dmarc.example.com", ""},
		{URL, "HTTP://Example.COM", "http://example.com/", ""},
		{URL, "https://example.com:443/a?b=%2f#frag", "https://example.com/a?b=%2F", ""},
		{URL, "http://example.com:8080/A/B", "http://example.com:8080/A/B", ""},
		{URL, "example.com/path", "http://example.com/path", ""},
		{URL, "http://[2001:DB8::1]:80/x", "http://[2001:db8::1]/x", ""},
		{URL, "http://user@bücher.example/?q", "http://user@xn--bcher-kva.example/?q", ""},
		{URL, "http://x.example/é?q=ü", "http://x.example/%C3%A9?q=%C3%BC", ""},
		{URL, "http://x.example/\xc4", "http://x.example/%C4", ""},
		{MD5, "D41D8CD98F00B204E9800998ECF8427E", "d41d8cd98f00b204e9800998ecf8427e", ""},
		{SHA1, "da39a3ee5e6b4b0d3255bfef95601890afd80709", "da39a3ee5e6b4b0d3255bfef95601890afd80709", ""},
		{Email, "<Phisher@Example.ORG>", "phisher@example.org", ""},
		{Email, "mailto:a@bücher.example", "a@xn--bcher-kva.example", ""},
	}
	for _, c := range ok {
		got, err := Normalize(c.typ, c.in)
		if err != nil || got != c.want {
			t.Errorf("Normalize(%s, %q) = %q, %v; want %q", c.typ, c.in, got, err, c.want)
			continue
		}
		again, err := Normalize(c.typ, got)
		if err != nil || again != got {
			t.Errorf("Normalize is not idempotent on %q: %q, %v", got, again, err)
		}
	}
	bad := []struct {
		typ Type
		in  string
	}{
		{IPv4, "2001:db8::1"}, {IPv4, "300.1.1.1"}, {CIDR, "0.0.0.0/0"}, {CIDR, "10.0.0.0/7"}, {CIDR, "2001::/8"},
		{Domain, "com"}, {Domain, "a..b"}, {Domain, "evil com.example"}, {Domain, "192.0.2.1"},
		{Domain, strings.Repeat("a", 64) + ".example"}, {Domain, strings.Repeat("abcdefgh.", 40) + "example"},
		{URL, "http://"}, {URL, "1http://x.example/"}, {URL, "http://x.example:99999/"}, {URL, "http://x.example/a b"},
		{URL, "http://[::1/"}, {MD5, "d41d8cd98f00b204e9800998ecf8427"}, {SHA256, strings.Repeat("g", 64)},
		{Email, "nobody"}, {Email, "a b@example.com"}, {Email, "a@com"}, {"ipv5", "x"}, {Domain, ""},
	}
	for _, c := range bad {
		if got, err := Normalize(c.typ, c.in); err == nil {
			t.Errorf("Normalize(%s, %q) = %q, want an error", c.typ, c.in, got)
		}
	}
}

func TestDetect(t *testing.T) {
	for in, want := range map[string]struct {
		typ Type
		val string
	}{
		"192.0.2.1":                      {IPv4, "192.0.2.1"},
		"2001:db8::1":                    {IPv6, "2001:db8::1"},
		"203.0.113.0/24":                 {CIDR, "203.0.113.0/24"},
		"evil[.]example[.]com":           {Domain, "evil.example.com"},
		"hxxps://download.example.net/a": {URL, "https://download.example.net/a"},
		"download.example.net/a.exe":     {URL, "http://download.example.net/a.exe"},
		strings.Repeat("A", 32):          {MD5, strings.Repeat("a", 32)},
		strings.Repeat("b", 40):          {SHA1, strings.Repeat("b", 40)},
		strings.Repeat("c", 64):          {SHA256, strings.Repeat("c", 64)},
		"bob[@]example.com":              {Email, "bob@example.com"},
	} {
		typ, val, err := Detect(in)
		if err != nil || typ != want.typ || val != want.val {
			t.Errorf("Detect(%q) = %s %q %v; want %s %q", in, typ, val, err, want.typ, want.val)
		}
	}
	for _, in := range []string{"", "not a value", "0.0.0.0/0", "192.0.2.0/33", "single"} {
		if typ, val, err := Detect(in); err == nil {
			t.Errorf("Detect(%q) = %s %q, want an error", in, typ, val)
		}
	}
}

func TestParseTLP(t *testing.T) {
	for in, want := range map[string]TLP{"TLP:WHITE": TLPClear, "tlp:clear": TLPClear, "GREEN": TLPGreen,
		"TLP:AMBER+STRICT": TLPAmberStrict, "amber strict": TLPAmberStrict, "tlp:red": TLPRed} {
		if got, ok := ParseTLP(in); !ok || got != want {
			t.Errorf("ParseTLP(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	if _, ok := ParseTLP("purple"); ok {
		t.Error("ParseTLP accepted purple")
	}
	if got := TLPGreen.Stricter(TLPAmberStrict).Stricter(TLPClear); got != TLPAmberStrict {
		t.Errorf("Stricter chain = %q", got)
	}
	if got := TLP("").Stricter(TLPClear); got != TLPClear {
		t.Errorf("empty.Stricter(clear) = %q", got)
	}
}

func TestIndicatorIDAndMerge(t *testing.T) {
	a, err := New(Domain, "Evil.COM", "feed-a")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := New(Domain, "evil.com.", "feed-a")
	c, _ := New(Domain, "evil.com", "feed-b")
	if a.ID() != b.ID() {
		t.Errorf("same source, type and value give different ids: %s %s", a.ID(), b.ID())
	}
	if a.ID() == c.ID() {
		t.Error("different sources give the same id")
	}
	if err := store.ValidID(a.ID()); err != nil {
		t.Errorf("id is not a store id: %v", err)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a.FirstSeen, a.LastSeen, a.Confidence, a.TLP, a.Tags = t0.Add(time.Hour), t0.Add(time.Hour), 40, TLPGreen, []string{"x"}
	a.Expires = t0.Add(48 * time.Hour)
	a.Refs = []Ref{{Format: "misp", ID: "1"}}
	b.FirstSeen, b.LastSeen, b.Confidence, b.TLP, b.Tags = t0, t0.Add(2*time.Hour), 70, TLPAmber, []string{"y", "x"}
	b.Expires = t0.Add(24 * time.Hour)
	b.Refs = []Ref{{Format: "misp", ID: "2"}}
	m := Merge([]Indicator{a, c, b})
	if len(m) != 2 {
		t.Fatalf("Merge gave %d indicators, want 2", len(m))
	}
	got := m[0]
	if !got.FirstSeen.Equal(t0) || !got.LastSeen.Equal(t0.Add(2*time.Hour)) || got.Confidence != 70 || got.TLP != TLPAmber ||
		len(got.Tags) != 2 || len(got.Refs) != 2 || !got.Expires.Equal(t0.Add(48*time.Hour)) {
		t.Errorf("merged indicator = %+v", got)
	}
	if len(a.Tags) != 1 || len(a.Refs) != 1 {
		t.Error("Merge modified its input")
	}
	// An indicator without expiry makes the merged one never expire.
	b.Expires = time.Time{}
	if m := Merge([]Indicator{a, b}); !m[0].Expires.IsZero() {
		t.Errorf("merged expiry = %v, want none", m[0].Expires)
	}
}

func TestDocRoundTrip(t *testing.T) {
	ind, err := New(IPv4, "::ffff:198.51.100.7", "feodotracker")
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 2, 3, 4, 5, 6, 7, time.UTC)
	ind.Confidence, ind.TLP, ind.Tags, ind.Description = 90, TLPClear, []string{"botnet_cc", "Dridex"}, "C2"
	ind.FirstSeen, ind.LastSeen, ind.Expires = t0, t0.Add(time.Hour), t0.Add(30*24*time.Hour)
	ind.Refs = []Ref{{Format: "feodotracker", ID: "198.51.100.7", Link: "https://feodotracker.abuse.ch/browse/host/198.51.100.7/"}}
	d, err := ind.Doc()
	if err != nil {
		t.Fatal(err)
	}
	if d.Tenant != store.RegionalTenant || d.ID != ind.ID() {
		t.Errorf("doc tenant %q id %q", d.Tenant, d.ID)
	}
	src := string(d.Source)
	for _, want := range []string{`"type":"ipv4"`, `"value":"198.51.100.7"`, `"ip":"198.51.100.7"`, `"source":"feodotracker"`,
		`"confidence":90`, `"tlp":"clear"`, `"tags":["botnet_cc","Dridex"]`, `"first_seen":"2026-02-03T04:05:06.000000007Z"`,
		`"last_seen":"2026-02-03T05:05:06.000000007Z"`, `"expires":"2026-03-05T04:05:06.000000007Z"`} {
		if !strings.Contains(src, want) {
			t.Errorf("doc source lacks %s: %s", want, src)
		}
	}
	// The schema's fields are the ones written.
	schema, _ := store.SchemaOf(store.Intel)
	for _, f := range []string{"first_seen", "last_seen", "expires", "type", "value", "ip", "source", "confidence", "tlp", "tags"} {
		if _, ok := schema.Field(f); !ok {
			t.Errorf("field %s is not in the intel schema", f)
		}
	}
	back, err := FromDoc(d)
	if err != nil {
		t.Fatal(err)
	}
	if back.ID() != ind.ID() || !back.Expires.Equal(ind.Expires) || back.Confidence != 90 || back.TLP != TLPClear ||
		len(back.Refs) != 1 || back.Refs[0] != ind.Refs[0] || back.Description != "C2" || len(back.Tags) != 2 {
		t.Errorf("round trip: %+v", back)
	}
	cidr, _ := New(CIDR, "10.0.0.0/8", "x")
	cd, err := cidr.Doc()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(cd.Source), `"ip"`) {
		t.Errorf("a CIDR indicator must not fill the ip field: %s", cd.Source)
	}
	for _, bad := range []string{`{"type":"domain","value":"com","source":"x"}`, `{"type":"ipv4","value":"192.0.2.1","source":"x","expires":"tomorrow"}`,
		`{"type":"ipv4","value":"192.0.2.1","source":"x","confidence":101}`, `not json`} {
		if _, err := FromDoc(store.Doc{ID: "x", Source: []byte(bad)}); err == nil {
			t.Errorf("FromDoc(%s) succeeded", bad)
		}
	}
	if _, err := (&Indicator{Type: Domain, Value: "Evil.com", Source: "x"}).Doc(); err == nil {
		t.Error("Doc accepted a value that is not normalised")
	}
}

// Indicators made from one entry share the parser's tag list; merging one
// must not change the other.
func TestMergeDoesNotAliasTags(t *testing.T) {
	in := `{"Event":{"uuid":"e","Tag":[{"name":"a"},{"name":"b"}],"Attribute":[
	 {"type":"domain|ip","value":"x.example|192.0.2.1","to_ids":true,"Tag":[{"name":"c"}]},
	 {"type":"domain","value":"x.example","to_ids":true,"Tag":[{"name":"x"}]},
	 {"type":"ip-dst","value":"192.0.2.1","to_ids":true,"Tag":[{"name":"y"}]}]}}`
	inds, _, err := ParseMISP(strings.NewReader(in), Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, ind := range inds {
		got[ind.Value] = strings.Join(ind.Tags, ",")
	}
	if got["x.example"] != "a,b,c,x" || got["192.0.2.1"] != "a,b,c,y" {
		t.Errorf("tags = %v", got)
	}
}
