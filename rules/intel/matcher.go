package intel

import (
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
)

// Kind is what an event field holds, which decides how it is looked up.
type Kind string

// The field kinds.
const (
	KindIP     Kind = "ip"     // an address: exact and CIDR indicators
	KindDomain Kind = "domain" // a host name (or an address): domain indicators, subdomains included
	KindURL    Kind = "url"    // a full URL: URL indicators, and its host as KindDomain
	KindHash   Kind = "hash"   // a hex digest: MD5, SHA-1, SHA-256 indicators
	KindEmail  Kind = "email"  // an e-mail address
)

// Field is an event field the matcher looks at.
type Field struct {
	Name string
	Kind Kind
}

// DefaultFields are the ECS fields where observables live, specific ones
// first: a value found in several fields is reported once, for the first.
var DefaultFields = []Field{
	{"source.ip", KindIP}, {"destination.ip", KindIP}, {"client.ip", KindIP}, {"server.ip", KindIP},
	{"dns.question.name", KindDomain}, {"dns.answers.data", KindDomain}, {"dns.resolved_ip", KindIP},
	{"tls.client.server_name", KindDomain}, {"url.domain", KindDomain},
	{"destination.domain", KindDomain}, {"source.domain", KindDomain}, {"server.domain", KindDomain}, {"client.domain", KindDomain},
	{"destination.address", KindDomain}, {"source.address", KindDomain},
	{"url.full", KindURL}, {"url.original", KindURL}, {"http.request.referrer", KindURL},
	{"file.hash.md5", KindHash}, {"file.hash.sha1", KindHash}, {"file.hash.sha256", KindHash},
	{"process.hash.md5", KindHash}, {"process.hash.sha1", KindHash}, {"process.hash.sha256", KindHash},
	{"email.from.address", KindEmail}, {"email.sender.address", KindEmail}, {"email.reply_to.address", KindEmail},
	{"related.ip", KindIP}, {"related.hosts", KindDomain}, {"related.hash", KindHash},
}

// MatcherOptions tune Build.
type MatcherOptions struct {
	// Fields replaces DefaultFields.
	Fields []Field
	// URLHosts makes every URL indicator also match its host, exactly (not
	// subdomains), wherever a host is looked up. Off by default: malware
	// URLs are often on shared or compromised hosting.
	URLHosts bool
}

// Match is one indicator found in one event field.
type Match struct {
	Indicator *Indicator // shared with the Matcher: do not modify
	Field     string     // the event field
	Value     string     // the field's value as it is in the event
}

// post is a postings entry: one indicator index, or (with the high bit)
// an index into Matcher.multi for values several indicators share.
type post uint32

const multiBit = 1 << 31

// Matcher finds indicators in events. Build it once per indicator set; it
// is immutable and safe for concurrent use. Lookups are O(1) for
// addresses, URLs, hashes and e-mail addresses, O(labels) for domains and
// O(log n) for CIDRs.
type Matcher struct {
	inds     []Indicator
	multi    [][]int32
	ips      map[netip.Addr]post
	v4, v6   cidrTable
	domains  map[string]post
	urls     map[string]post
	urlHosts map[string]post
	hashes   map[string]post
	emails   map[string]post
	fields   []Field
	counts   map[Type]int
}

// Build makes a matcher of the indicators (which it copies; duplicates by
// ID are merged). Every indicator must be valid (Validate); the first
// invalid one is reported.
func Build(inds []Indicator, opts MatcherOptions) (*Matcher, error) {
	for i := range inds {
		if err := inds[i].Validate(); err != nil {
			return nil, fmt.Errorf("building the intel matcher: indicator %d: %w", i, err)
		}
	}
	m := &Matcher{
		inds: Merge(inds), ips: map[netip.Addr]post{}, domains: map[string]post{}, urls: map[string]post{},
		hashes: map[string]post{}, emails: map[string]post{}, fields: opts.Fields, counts: map[Type]int{},
	}
	if m.fields == nil {
		m.fields = DefaultFields
	}
	if opts.URLHosts {
		m.urlHosts = map[string]post{}
	}
	v4, v6 := map[netip.Prefix]post{}, map[netip.Prefix]post{}
	for i := range m.inds {
		ind := &m.inds[i]
		m.counts[ind.Type]++
		idx := int32(i)
		switch ind.Type {
		case IPv4, IPv6:
			a := netip.MustParseAddr(ind.Value)
			ps, ok := m.ips[a]
			m.ips[a] = m.add(ps, idx, ok)
		case CIDR:
			p := netip.MustParsePrefix(ind.Value)
			tab := v6
			if p.Addr().Is4() {
				tab = v4
			}
			ps, ok := tab[p]
			tab[p] = m.add(ps, idx, ok)
		case Domain:
			ps, ok := m.domains[ind.Value]
			m.domains[ind.Value] = m.add(ps, idx, ok)
		case URL:
			ps, ok := m.urls[ind.Value]
			m.urls[ind.Value] = m.add(ps, idx, ok)
			if m.urlHosts != nil {
				h := urlHost(ind.Value)
				ps, ok := m.urlHosts[h]
				m.urlHosts[h] = m.add(ps, idx, ok)
			}
		case MD5, SHA1, SHA256:
			ps, ok := m.hashes[ind.Value]
			m.hashes[ind.Value] = m.add(ps, idx, ok)
		case Email:
			ps, ok := m.emails[ind.Value]
			m.emails[ind.Value] = m.add(ps, idx, ok)
		}
	}
	m.v4, m.v6 = buildCIDRTable(v4), buildCIDRTable(v6)
	return m, nil
}

// add appends indicator idx to the postings ps (present: ps is valid).
func (m *Matcher) add(ps post, idx int32, present bool) post {
	switch {
	case !present:
		return post(idx)
	case ps&multiBit != 0:
		j := ps &^ multiBit
		m.multi[j] = append(m.multi[j], idx)
		return ps
	}
	m.multi = append(m.multi, []int32{int32(ps), idx})
	return post(len(m.multi)-1) | multiBit
}

// Len is the number of indicators (after merging duplicates).
func (m *Matcher) Len() int {
	if m == nil {
		return 0
	}
	return len(m.inds)
}

// Counts returns the number of indicators of each type.
func (m *Matcher) Counts() map[Type]int {
	out := map[Type]int{}
	if m != nil {
		for t, n := range m.counts {
			out[t] = n
		}
	}
	return out
}

// Indicators returns the matcher's indicators (shared: do not modify).
func (m *Matcher) Indicators() []Indicator {
	if m == nil {
		return nil
	}
	return m.inds
}

// matchState accumulates the matches of one event and drops repeats of
// the same indicator for the same value.
type matchState struct {
	m     *Matcher
	now   time.Time
	out   []Match
	start int
}

func (s *matchState) emit(ps post, field, value string) {
	if ps&multiBit == 0 {
		s.one(int32(ps), field, value)
		return
	}
	for _, i := range s.m.multi[ps&^multiBit] {
		s.one(i, field, value)
	}
}

func (s *matchState) one(i int32, field, value string) {
	ind := &s.m.inds[i]
	if ind.Expired(s.now) {
		return
	}
	for _, o := range s.out[s.start:] {
		if o.Indicator == ind && o.Value == value {
			return
		}
	}
	s.out = append(s.out, Match{Indicator: ind, Field: field, Value: value})
}

// MatchEvent returns the indicators found in the event's observable
// fields, skipping those expired at now. It allocates only for matches
// (and for URL normalisation).
func (m *Matcher) MatchEvent(ev event.Event, now time.Time) []Match {
	return m.AppendEvent(nil, ev, now)
}

// AppendEvent is MatchEvent appending to dst.
func (m *Matcher) AppendEvent(dst []Match, ev event.Event, now time.Time) []Match {
	if m == nil {
		return dst
	}
	s := matchState{m: m, now: now, out: dst, start: len(dst)}
	for _, f := range m.fields {
		switch v := ev[f.Name].(type) {
		case string:
			s.value(f, v)
		case []string:
			for _, x := range v {
				s.value(f, x)
			}
		}
	}
	return s.out
}

// AppendValue looks one value up as a field of the given kind (field only
// names it in the matches): for hunting over values outside events.
func (m *Matcher) AppendValue(dst []Match, field string, kind Kind, value string, now time.Time) []Match {
	if m == nil {
		return dst
	}
	s := matchState{m: m, now: now, out: dst, start: len(dst)}
	s.value(Field{field, kind}, value)
	return s.out
}

func (s *matchState) value(f Field, v string) {
	if v == "" {
		return
	}
	switch f.Kind {
	case KindIP:
		if a, err := netip.ParseAddr(v); err == nil {
			s.ip(a, f.Name, v)
		}
	case KindDomain:
		s.host(v, f.Name, v)
	case KindURL:
		if !strings.Contains(v, "://") {
			return // a path (url.original of an access log) or not a URL
		}
		u, err := normalizeURL(strings.TrimSpace(v), false)
		if err != nil {
			return
		}
		if ps, ok := s.m.urls[u]; ok {
			s.emit(ps, f.Name, v)
		}
		if h := urlHost(u); h != "" {
			s.host(h, f.Name, v)
		}
	case KindHash:
		s.hash(v, f.Name)
	case KindEmail:
		s.email(v, f.Name)
	}
}

func (s *matchState) ip(a netip.Addr, field, value string) {
	if a.Zone() != "" {
		a = a.WithZone("")
	}
	a = a.Unmap()
	if ps, ok := s.m.ips[a]; ok {
		s.emit(ps, field, value)
	}
	t := &s.m.v6
	if a.Is4() {
		t = &s.m.v4
	}
	for n := t.innermost(a); n >= 0; n = t.nodes[n].parent {
		s.emit(t.nodes[n].post, field, value)
	}
}

// host looks up a host name: exactly and by every parent domain down to
// two labels (evil.com matches mail.evil.com, never the bare TLD); an
// address is looked up as one.
func (s *matchState) host(h, field, value string) {
	if h[0] >= '0' && h[0] <= '9' || strings.IndexByte(h, ':') >= 0 || h[0] == '[' {
		if a, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
			s.ip(a, field, value)
			return
		}
	}
	name, err := normalizeDomain(h, true)
	if err != nil {
		return
	}
	if s.m.urlHosts != nil {
		if ps, ok := s.m.urlHosts[name]; ok {
			s.emit(ps, field, value)
		}
	}
	for d := name; ; {
		if ps, ok := s.m.domains[d]; ok {
			s.emit(ps, field, value)
		}
		i := strings.IndexByte(d, '.')
		if i < 0 {
			return
		}
		d = d[i+1:]
		if strings.IndexByte(d, '.') < 0 {
			return // a single label: a TLD is never an indicator
		}
	}
}

func (s *matchState) hash(v, field string) {
	key := v
	if !isLowerHex(v) {
		t := hashType(strings.TrimSpace(v))
		if t == "" {
			return
		}
		n, err := normalizeHash(t, strings.TrimSpace(v))
		if err != nil {
			return
		}
		key = n
	}
	if ps, ok := s.m.hashes[key]; ok {
		s.emit(ps, field, v)
	}
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'F' || !isHexByte(c) {
			return false
		}
	}
	return true
}

func (s *matchState) email(v, field string) {
	key := v
	if !canonicalEmail(v) {
		var err error
		if key, err = normalizeEmail(strings.TrimSpace(v)); err != nil {
			return
		}
	}
	if ps, ok := s.m.emails[key]; ok {
		s.emit(ps, field, v)
	}
}

// canonicalEmail reports whether normalizeEmail would return v unchanged
// for the common ASCII case, so that lookups need not allocate.
func canonicalEmail(v string) bool {
	at := strings.LastIndexByte(v, '@')
	if at <= 0 || at > 64 || strings.HasPrefix(v, "mailto:") {
		return false
	}
	for i := 0; i < at; i++ {
		c := v[i]
		if c <= ' ' || c >= 0x7f || c >= 'A' && c <= 'Z' || c == '<' || c == '>' || c == '@' {
			return false
		}
	}
	d := v[at+1:]
	return canonicalASCIIName(d) && strings.IndexByte(d, '.') > 0 && !lastLabelNumeric(d)
}

// Holder holds the current matcher: the correlator builds a new one on
// every intel refresh and swaps it in; readers Load it per event (or
// batch) without locks.
type Holder struct {
	cur atomic.Pointer[Matcher]
}

// NewHolder returns a holder of m (nil until the first Store).
func NewHolder(m *Matcher) *Holder {
	h := &Holder{}
	if m != nil {
		h.cur.Store(m)
	}
	return h
}

// Load returns the current matcher (nil before the first Store; a nil
// matcher matches nothing).
func (h *Holder) Load() *Matcher { return h.cur.Load() }

// Store swaps in m and returns the previous matcher.
func (h *Holder) Store(m *Matcher) *Matcher { return h.cur.Swap(m) }

// MatchEvent matches ev with the current matcher.
func (h *Holder) MatchEvent(ev event.Event, now time.Time) []Match {
	return h.Load().MatchEvent(ev, now)
}
