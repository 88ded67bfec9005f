package heuristics

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/publicsuffix"

	"github.com/csirt-toscana/platform/internal/event"
)

// DNSTunnelParams are the DNS-tunnelling detector's parameters.
type DNSTunnelParams struct {
	// Window is the tumbling window (from a key's first query) over which
	// queries are scored.
	Window Duration `yaml:"window"`
	// MinQueries is the least number of queries in a window to judge.
	MinQueries int `yaml:"min_queries"`
	// LongLabel: a query whose longest label below the parent exceeds this
	// many characters is "long".
	LongLabel int `yaml:"long_label"`
	// EntropyBits: a query whose subdomain part (labels below the parent,
	// dots removed) has at least EntropyMinLength characters and a Shannon
	// entropy of at least this many bits per character is "high entropy".
	EntropyBits      float64 `yaml:"entropy_bits"`
	EntropyMinLength int     `yaml:"entropy_min_length"`
	// UniqueSubdomains: distinct subdomains of one parent in a window that
	// give the full unique-subdomain points.
	UniqueSubdomains int `yaml:"unique_subdomains"`
	// QueryTypes counted as tunnel-like (TXT and NULL carry the most data
	// per answer).
	QueryTypes []string `yaml:"query_types"`
	// Weights of the four features in the score (0-100 when they sum to
	// 100): share of unique subdomains (capped at 1), share of high-entropy
	// queries, share of long queries, share of tunnel-like query types.
	WeightUnique  float64 `yaml:"weight_unique"`
	WeightEntropy float64 `yaml:"weight_entropy"`
	WeightLong    float64 `yaml:"weight_long"`
	WeightType    float64 `yaml:"weight_type"`
	// Threshold is the score that raises an alert.
	Threshold float64 `yaml:"threshold"`
	// AllowParents: domains whose names (and subdomains) are never scored:
	// services that encode data in DNS queries by design. ExtraAllowParents
	// adds to them (for per-entity layers, which replace lists).
	AllowParents      []string `yaml:"allow_parents"`
	ExtraAllowParents []string `yaml:"extra_allow_parents"`

	allow []string
	types map[string]bool
}

// DefaultAllowParents are the default allow-listed parents; see
// docs/heuristics.md for why each is there.
var DefaultAllowParents = []string{
	// Reverse lookups and multicast/link-local names: long, numerous,
	// never tunnels through a resolver.
	"arpa", "local",
	// Anti-virus and reputation look-ups that put hashes or encoded URLs
	// in the query name.
	"sophosxl.net", "cymru.com",
	// DNS blocklists and allowlists queried by mail servers for every
	// message (reversed addresses, hashed addresses, domains).
	"spamhaus.org", "spamhaus.net", "surbl.org", "uribl.com", "spamcop.net",
	"barracudacentral.org", "mailspike.net", "dnswl.org",
	// CDN edge names with generated labels.
	"akamaiedge.net", "akamai.net", "cloudfront.net",
}

// DefaultDNSTunnelParams returns the defaults (see docs/heuristics.md).
func DefaultDNSTunnelParams() DNSTunnelParams {
	p := DNSTunnelParams{
		Window:           Duration(10 * time.Minute),
		MinQueries:       20,
		LongLabel:        40,
		EntropyBits:      3.5,
		EntropyMinLength: 16,
		UniqueSubdomains: 50,
		QueryTypes:       []string{"TXT", "NULL"},
		WeightUnique:     30,
		WeightEntropy:    30,
		WeightLong:       25,
		WeightType:       15,
		Threshold:        70,
		AllowParents:     append([]string(nil), DefaultAllowParents...),
	}
	if err := p.Validate(); err != nil {
		panic(err)
	}
	return p
}

// Validate checks the parameters and prepares their compiled forms.
func (p *DNSTunnelParams) Validate() error {
	if p.Window <= 0 {
		return fmt.Errorf("window must be a positive duration (got %s)", p.Window)
	}
	if p.MinQueries < 1 {
		return fmt.Errorf("min_queries must be at least 1 (got %d)", p.MinQueries)
	}
	if p.LongLabel < 1 || p.LongLabel > 63 {
		return fmt.Errorf("long_label must be between 1 and 63, the longest DNS label (got %d)", p.LongLabel)
	}
	if !(p.EntropyBits > 0 && p.EntropyBits <= 8) {
		return fmt.Errorf("entropy_bits must be above 0 and at most 8 (got %v)", p.EntropyBits)
	}
	if p.EntropyMinLength < 1 {
		return fmt.Errorf("entropy_min_length must be at least 1 (got %d)", p.EntropyMinLength)
	}
	if p.UniqueSubdomains < 1 || p.UniqueSubdomains > 65536 {
		return fmt.Errorf("unique_subdomains must be between 1 and 65536 (got %d)", p.UniqueSubdomains)
	}
	for name, w := range map[string]float64{"weight_unique": p.WeightUnique, "weight_entropy": p.WeightEntropy, "weight_long": p.WeightLong, "weight_type": p.WeightType} {
		if !(w >= 0 && w <= 1000) {
			return fmt.Errorf("%s must be between 0 and 1000 (got %v)", name, w)
		}
	}
	if err := positive("threshold", p.Threshold); err != nil {
		return err
	}
	types := map[string]bool{}
	for _, t := range p.QueryTypes {
		types[strings.ToUpper(strings.TrimSpace(t))] = true
	}
	var allow []string
	for _, list := range [][]string{p.AllowParents, p.ExtraAllowParents} {
		for _, s := range list {
			d := normDomain(s)
			if d == "" || strings.ContainsAny(d, " /:") {
				return fmt.Errorf("allow_parents: %q is not a domain", s)
			}
			allow = append(allow, d)
		}
	}
	p.allow, p.types = allow, types
	return nil
}

type dnsState struct {
	start   int64 // window start
	fired   int64 // window start of the last alert (0: none)
	queries int32
	long    int32
	high    int32
	typed   int32
	maxLbl  int32
	uniq    []uint64 // hashes of distinct subdomains, capped
	ids     []string // sample of suspicious queries
	example string   // one suspicious query name
}

// DNSTunnel scores DNS queries per (entity, source.ip, registered parent
// domain) for signs of data carried in query names.
type DNSTunnel struct {
	mu        sync.Mutex
	params    *Layered[DNSTunnelParams]
	opts      Options
	keys      *lru[dnsState]
	watermark int64
	maxWindow int64
	stats     Stats
	buf       []byte
}

// fnv64a is the 64-bit FNV-1a hash of s: fixed, so snapshots holding
// subdomain hashes stay valid in another process.
func fnv64a(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// NewDNSTunnel returns a DNS-tunnelling detector.
func NewDNSTunnel(params Layered[DNSTunnelParams], opts Options) *DNSTunnel {
	d := &DNSTunnel{params: &params, opts: opts.withDefaults()}
	d.keys = newLRU[dnsState](d.opts.MaxKeys)
	d.maxWindow = int64(params.Regional.Window)
	for _, e := range params.Entities() {
		d.maxWindow = max(d.maxWindow, int64(params.For(e).Window))
	}
	return d
}

// ID returns DNSTunnelID.
func (d *DNSTunnel) ID() string { return DNSTunnelID }

// Stats returns the counters.
func (d *DNSTunnel) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.stats
	s.Keys = d.keys.len()
	return s
}

// shannon is the Shannon entropy in bits per character of s without dots.
func shannon(s string) (bits float64, n int) {
	var counts [256]int
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			continue
		}
		counts[s[i]]++
		n++
	}
	if n == 0 {
		return 0, 0
	}
	for _, c := range counts {
		if c > 0 {
			q := float64(c) / float64(n)
			bits -= q * math.Log2(q)
		}
	}
	return bits, n
}

// Observe implements Detector.
func (d *DNSTunnel) Observe(ev event.Event) []Alert {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stats.Events++
	if ev.Dataset() != "dns" {
		d.stats.Ignored++
		return nil
	}
	src, _ := ev["source.ip"].(string)
	name := normDomain(ev.String("dns.question.name"))
	t := evTime(ev)
	if src == "" || name == "" || t == 0 {
		d.stats.Ignored++
		return nil
	}
	entity := ev.Org()
	p := d.params.For(entity)
	if underDomain(name, p.allow) {
		d.stats.Ignored++
		return nil
	}
	parent, err := publicsuffix.EffectiveTLDPlusOne(name)
	if err != nil {
		d.stats.Ignored++
		return nil
	}
	sub := ""
	if len(name) > len(parent) {
		sub = name[:len(name)-len(parent)-1]
	}
	if t > d.watermark {
		d.watermark = t
		d.stats.KeysExpired += d.keys.expire(d.watermark - d.maxWindow)
	}
	d.buf = appendKey(d.buf[:0], entity, src, parent)
	e := d.keys.get(d.buf)
	if e == nil {
		var evicted bool
		e, evicted = d.keys.add(string(d.buf))
		if evicted {
			d.stats.KeysEvicted++
		}
		e.s.start = t
	}
	e.last = max(e.last, t)
	st := &e.s
	win := int64(p.Window)
	switch {
	case t >= st.start+win:
		fired := st.fired
		*st = dnsState{start: t, fired: fired, uniq: st.uniq[:0], ids: st.ids[:0]}
	case t < st.start-win:
		d.stats.Late++
		return nil
	}
	st.queries++
	suspicious := false
	if sub != "" {
		longest := 0
		for l := range strings.SplitSeq(sub, ".") {
			longest = max(longest, len(l))
		}
		st.maxLbl = max(st.maxLbl, int32(min(longest, 1<<20)))
		if longest > p.LongLabel {
			st.long++
			suspicious = true
		}
		if bits, n := shannon(sub); n >= p.EntropyMinLength && bits >= p.EntropyBits {
			st.high++
			suspicious = true
		}
		if len(st.uniq) < p.UniqueSubdomains {
			h := fnv64a(sub)
			seen := false
			for _, x := range st.uniq {
				if x == h {
					seen = true
					break
				}
			}
			if !seen {
				st.uniq = append(st.uniq, h)
			}
		}
	}
	if p.types[strings.ToUpper(ev.String("dns.question.type"))] {
		st.typed++
		suspicious = true
	}
	if suspicious {
		st.ids = addID(st.ids, ev.ID(), d.opts.MaxEventIDs)
		if st.example == "" {
			st.example = name
		}
	}
	if int(st.queries) < p.MinQueries || st.fired == st.start {
		return nil
	}
	q := float64(st.queries)
	uniqShare := min(float64(len(st.uniq))/float64(p.UniqueSubdomains), 1)
	score := p.WeightUnique*uniqShare + p.WeightEntropy*float64(st.high)/q +
		p.WeightLong*float64(st.long)/q + p.WeightType*float64(st.typed)/q
	if score < p.Threshold {
		return nil
	}
	key := string(d.buf)
	uniqText := strconv.Itoa(len(st.uniq))
	if len(st.uniq) >= p.UniqueSubdomains {
		uniqText += " or more"
	}
	sev := SeverityMedium
	if score >= p.Threshold+(100-p.Threshold)/2 {
		sev = SeverityHigh
	}
	a := Alert{
		ID: AlertID(DNSTunnelID, key, st.start), Detector: DNSTunnelID, Name: "DNS tunnelling",
		Key: key, Entity: entity, Host: ev.String("host.name"), SourceIP: src, Severity: sev,
		WindowStart: fromNanos(st.start), WindowEnd: fromNanos(t),
		Observables: []Observable{{Type: "ip", Value: src}, {Type: "domain", Value: parent}},
		Metrics: map[string]float64{
			"score": score, "queries": q, "unique_subdomains": float64(len(st.uniq)),
			"long_queries": float64(st.long), "high_entropy_queries": float64(st.high),
			"typed_queries": float64(st.typed), "longest_label": float64(st.maxLbl),
		},
		EventIDs: append([]string(nil), st.ids...),
		Message: fmt.Sprintf("%s sent %d queries under %s in %s: %s distinct subdomains, %d long, %d high-entropy, %d %s (score %.0f), e.g. %s",
			src, st.queries, parent, fromNanos(t).Sub(fromNanos(st.start)).Round(time.Second), uniqText, st.long, st.high, st.typed,
			strings.Join(p.QueryTypes, "/"), score, st.example),
	}
	st.fired = st.start
	d.stats.Alerts++
	return []Alert{a}
}

type dnsKeySnap struct {
	K       string   `json:"k"`
	Last    int64    `json:"last"`
	Start   int64    `json:"start"`
	Fired   int64    `json:"fired,omitempty"`
	Queries int32    `json:"q,omitempty"`
	Long    int32    `json:"long,omitempty"`
	High    int32    `json:"high,omitempty"`
	Typed   int32    `json:"typed,omitempty"`
	MaxLbl  int32    `json:"maxlbl,omitempty"`
	Uniq    []uint64 `json:"uniq,omitempty"`
	IDs     []string `json:"ids,omitempty"`
	Example string   `json:"example,omitempty"`
}

// Snapshot implements Detector. Distinct subdomains are kept as 64-bit
// hashes.
func (d *DNSTunnel) Snapshot() ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	keys := make([]dnsKeySnap, 0, d.keys.len())
	d.keys.each(func(e *entry[dnsState]) {
		s := &e.s
		keys = append(keys, dnsKeySnap{K: e.key, Last: e.last, Start: s.start, Fired: s.fired, Queries: s.queries,
			Long: s.long, High: s.high, Typed: s.typed, MaxLbl: s.maxLbl, Uniq: s.uniq, IDs: s.ids, Example: s.example})
	})
	st := d.stats
	st.Keys = d.keys.len()
	return encodeSnapshot(DNSTunnelID, d.watermark, st, keys)
}

// Restore implements Detector. On error the state is left as it was.
func (d *DNSTunnel) Restore(data []byte) error {
	s, err := decodeSnapshot[dnsKeySnap](DNSTunnelID, data)
	if err != nil {
		return err
	}
	keys := newLRU[dnsState](d.opts.MaxKeys)
	stats := s.Stats
	for i, k := range s.Keys {
		if _, dup := keys.m[k.K]; dup || k.K == "" {
			return fmt.Errorf("reading %s snapshot: key %d (%q) is empty or repeated", DNSTunnelID, i, k.K)
		}
		if k.Queries < 0 || k.Long < 0 || k.High < 0 || k.Typed < 0 || len(k.Uniq) > 65536 {
			return fmt.Errorf("reading %s snapshot: key %q has negative or too large counters", DNSTunnelID, k.K)
		}
		e := &entry[dnsState]{key: k.K, last: k.Last, s: dnsState{start: k.Start, fired: k.Fired, queries: k.Queries,
			long: k.Long, high: k.High, typed: k.Typed, maxLbl: k.MaxLbl, uniq: k.Uniq, ids: k.IDs, example: k.Example}}
		if !keys.pushBack(e) {
			stats.KeysEvicted++
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.keys, d.watermark, d.stats = keys, s.Watermark, stats
	return nil
}
