package intel

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Type is the kind of observable an indicator names.
type Type string

// The indicator types.
const (
	IPv4   Type = "ipv4"   // one IPv4 address
	IPv6   Type = "ipv6"   // one IPv6 address
	CIDR   Type = "cidr"   // an IPv4 or IPv6 network (prefix)
	Domain Type = "domain" // a DNS name; matches the name and its subdomains
	URL    Type = "url"    // a URL, normalised
	MD5    Type = "md5"    // file digests, lower-case hex
	SHA1   Type = "sha1"   //
	SHA256 Type = "sha256" //
	Email  Type = "email"  // an e-mail address (sender)
)

// Types lists every indicator type.
var Types = []Type{IPv4, IPv6, CIDR, Domain, URL, MD5, SHA1, SHA256, Email}

func typeList() string {
	s := make([]string, len(Types))
	for i, t := range Types {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

// TLP is a Traffic Light Protocol 2.0 label.
type TLP string

// The TLP 2.0 labels, least to most restrictive. TLP:WHITE (1.0) reads as
// TLPClear.
const (
	TLPClear       TLP = "clear"
	TLPGreen       TLP = "green"
	TLPAmber       TLP = "amber"
	TLPAmberStrict TLP = "amber+strict"
	TLPRed         TLP = "red"
)

var tlpRank = map[TLP]int{TLPClear: 1, TLPGreen: 2, TLPAmber: 3, TLPAmberStrict: 4, TLPRed: 5}

// ParseTLP reads a TLP label as written by feeds: "TLP:AMBER+STRICT",
// "tlp:white", "green", "amber strict". ok is false for anything else.
func ParseTLP(s string) (TLP, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimPrefix(s, "tlp:")
	s = strings.TrimPrefix(s, "tlp-")
	s = strings.TrimSpace(s)
	switch s {
	case "white", "clear":
		return TLPClear, true
	case "amber+strict", "amber strict", "amber-strict", "amber_strict":
		return TLPAmberStrict, true
	}
	t := TLP(s)
	if _, ok := tlpRank[t]; ok {
		return t, true
	}
	return "", false
}

// Stricter returns the more restrictive of two labels (an empty label
// loses to any other).
func (t TLP) Stricter(u TLP) TLP {
	if tlpRank[u] > tlpRank[t] {
		return u
	}
	return t
}

// Ref points back at where an indicator came from, so that a finding can
// cite it: a MISP event and attribute, a STIX indicator, a feed entry.
type Ref struct {
	Format string `json:"format"`           // the feed format (see Format)
	Parent string `json:"parent,omitempty"` // MISP event uuid, STIX bundle id, TAXII page
	ID     string `json:"id,omitempty"`     // MISP attribute uuid, STIX indicator id, feed entry id, CSV line
	Title  string `json:"title,omitempty"`  // MISP event info, STIX indicator name, malware family
	Link   string `json:"link,omitempty"`   // a web page about the entry (URLhaus, ThreatFox)
}

func (r Ref) String() string {
	var b strings.Builder
	b.WriteString(r.Format)
	if r.Parent != "" {
		b.WriteString(" " + r.Parent)
	}
	if r.ID != "" {
		b.WriteString(" " + r.ID)
	}
	if r.Title != "" {
		fmt.Fprintf(&b, " (%s)", r.Title)
	}
	return b.String()
}

// MaxRefs bounds the references kept on one indicator when duplicates are
// merged.
const MaxRefs = 16

// Indicator is one observable that threat intelligence says is bad.
// Value is canonical for its Type (see Normalize); construct with New or
// check with Validate.
type Indicator struct {
	Type        Type
	Value       string
	Source      string // the feed's name, e.g. "circl-osint", "feodotracker"
	Refs        []Ref  // where in the feed it came from (at most MaxRefs)
	Confidence  int    // 0-100
	TLP         TLP
	Tags        []string
	FirstSeen   time.Time // zero when unknown
	LastSeen    time.Time // zero when unknown
	Expires     time.Time // zero: never
	Description string
}

// New returns an indicator with a normalised value. For IPv4, IPv6 and
// CIDR the type follows the value (an "ipv4" that is a prefix becomes
// CIDR); other types must agree with the value.
func New(t Type, value, source string) (Indicator, error) {
	var err error
	value = strings.TrimSpace(value)
	switch t {
	case IPv4, IPv6, CIDR:
		t, value, err = NormalizeIP(value)
	default:
		value, err = Normalize(t, value)
	}
	if err != nil {
		return Indicator{}, err
	}
	if source == "" {
		return Indicator{}, errors.New("indicator has no source")
	}
	return Indicator{Type: t, Value: value, Source: source}, nil
}

// ID is the deterministic id of the indicator: a hash of source, type and
// value, so that a refreshed feed overwrites its earlier documents. It is
// a valid store document id.
func (ind *Indicator) ID() string {
	h := sha256.New()
	for _, p := range []string{ind.Source, string(ind.Type), ind.Value} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(p)))
		h.Write(n[:])
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Validate checks that the indicator is well-formed: known type, canonical
// value, a source, confidence 0-100, a known TLP label (or none).
func (ind *Indicator) Validate() error {
	if ind.Source == "" {
		return errors.New("indicator has no source")
	}
	n, err := Normalize(ind.Type, ind.Value)
	if err != nil {
		return fmt.Errorf("indicator %s %q: %w", ind.Type, ind.Value, err)
	}
	if n != ind.Value {
		return fmt.Errorf("indicator %s %q is not normalised (want %q)", ind.Type, ind.Value, n)
	}
	if ind.Confidence < 0 || ind.Confidence > 100 {
		return fmt.Errorf("indicator %s %q: confidence %d is outside 0-100", ind.Type, ind.Value, ind.Confidence)
	}
	if _, ok := tlpRank[ind.TLP]; ind.TLP != "" && !ok {
		return fmt.Errorf("indicator %s %q: unknown TLP %q", ind.Type, ind.Value, ind.TLP)
	}
	return nil
}

// Expired reports whether the indicator has expired at now.
func (ind *Indicator) Expired(now time.Time) bool {
	return !ind.Expires.IsZero() && !now.Before(ind.Expires)
}

// key identifies an indicator for merging: the inputs of ID.
type key struct {
	source string
	typ    Type
	value  string
}

func (ind *Indicator) key() key { return key{ind.Source, ind.Type, ind.Value} }

// merge folds o (the same source, type and value) into ind: the widest
// seen window, the latest expiry (never wins), the highest confidence, the
// strictest TLP, the union of tags and references.
func (ind *Indicator) merge(o *Indicator) {
	if !o.FirstSeen.IsZero() && (ind.FirstSeen.IsZero() || o.FirstSeen.Before(ind.FirstSeen)) {
		ind.FirstSeen = o.FirstSeen
	}
	if o.LastSeen.After(ind.LastSeen) {
		ind.LastSeen = o.LastSeen
	}
	if ind.Expires.IsZero() || o.Expires.IsZero() {
		ind.Expires = time.Time{}
	} else if o.Expires.After(ind.Expires) {
		ind.Expires = o.Expires
	}
	ind.Confidence = max(ind.Confidence, o.Confidence)
	ind.TLP = ind.TLP.Stricter(o.TLP)
	for _, t := range o.Tags {
		if !slices.Contains(ind.Tags, t) {
			ind.Tags = append(ind.Tags, t)
		}
	}
	for _, r := range o.Refs {
		if len(ind.Refs) >= MaxRefs {
			break
		}
		if !slices.Contains(ind.Refs, r) {
			ind.Refs = append(ind.Refs, r)
		}
	}
	if ind.Description == "" {
		ind.Description = o.Description
	}
}

// Merge returns the indicators with duplicates (same source, type and
// value, hence the same ID) folded into the first occurrence, in first
// occurrence order. The input is not modified.
func Merge(list []Indicator) []Indicator {
	seen := make(map[key]int, len(list))
	out := make([]Indicator, 0, len(list))
	for i := range list {
		k := list[i].key()
		if j, ok := seen[k]; ok {
			out[j].merge(&list[i])
			continue
		}
		seen[k] = len(out)
		c := list[i]
		c.Tags = slices.Clone(c.Tags)
		c.Refs = slices.Clone(c.Refs)
		out = append(out, c)
	}
	return out
}

// addTag appends a tag unless it is empty or present.
func addTag(tags []string, t string) []string {
	t = strings.TrimSpace(t)
	if t == "" || slices.Contains(tags, t) {
		return tags
	}
	return append(tags, t)
}
