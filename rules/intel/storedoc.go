package intel

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/csirt-toscana/platform/internal/store"
)

// docJSON is an indicator as stored in the intel collection. The searchable
// fields are those of the collection's schema (internal/store/schema.go):
// first_seen, last_seen, expires, type, value, ip, source, confidence, tlp,
// tags. description and refs are stored, not searchable.
type docJSON struct {
	Type        Type     `json:"type"`
	Value       string   `json:"value"`
	IP          string   `json:"ip,omitempty"` // IPv4 and IPv6 indicators only
	Source      string   `json:"source"`
	Confidence  int      `json:"confidence"`
	TLP         TLP      `json:"tlp,omitempty"`
	Tags        []string `json:"tags,omitempty"`
	FirstSeen   string   `json:"first_seen,omitempty"`
	LastSeen    string   `json:"last_seen,omitempty"`
	Expires     string   `json:"expires,omitempty"`
	Description string   `json:"description,omitempty"`
	Refs        []Ref    `json:"refs,omitempty"`
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// Doc returns the indicator as a document of the intel collection in the
// regional tenant, with its deterministic ID.
func (ind *Indicator) Doc() (store.Doc, error) { return ind.DocFor(store.RegionalTenant) }

// DocFor is Doc for another tenant (an entity's own list).
func (ind *Indicator) DocFor(tenant string) (store.Doc, error) {
	if err := ind.Validate(); err != nil {
		return store.Doc{}, err
	}
	d := docJSON{
		Type: ind.Type, Value: ind.Value, Source: ind.Source, Confidence: ind.Confidence, TLP: ind.TLP,
		Tags: ind.Tags, FirstSeen: formatTime(ind.FirstSeen), LastSeen: formatTime(ind.LastSeen),
		Expires: formatTime(ind.Expires), Description: ind.Description, Refs: ind.Refs,
	}
	if ind.Type == IPv4 || ind.Type == IPv6 {
		d.IP = ind.Value
	}
	src, err := json.Marshal(d)
	if err != nil {
		return store.Doc{}, fmt.Errorf("encoding indicator %s %q: %w", ind.Type, ind.Value, err)
	}
	return store.Doc{ID: ind.ID(), Tenant: tenant, Source: src}, nil
}

// FromDoc reads an indicator back from an intel document. The value is
// normalised again (and the document refused when it is not an
// indicator), so documents written by an older normalisation still match.
func FromDoc(d store.Doc) (Indicator, error) {
	var j docJSON
	if err := json.Unmarshal(d.Source, &j); err != nil {
		return Indicator{}, fmt.Errorf("intel document %q is not an indicator: %w", d.ID, err)
	}
	ind, err := New(j.Type, j.Value, j.Source)
	if err != nil {
		return Indicator{}, fmt.Errorf("intel document %q: %w", d.ID, err)
	}
	ind.Confidence, ind.TLP, ind.Tags, ind.Description, ind.Refs = j.Confidence, j.TLP, j.Tags, j.Description, j.Refs
	for _, f := range []struct {
		name string
		s    string
		t    *time.Time
	}{{"first_seen", j.FirstSeen, &ind.FirstSeen}, {"last_seen", j.LastSeen, &ind.LastSeen}, {"expires", j.Expires, &ind.Expires}} {
		if f.s == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, f.s)
		if err != nil {
			return Indicator{}, fmt.Errorf("intel document %q: %s %q is not an RFC 3339 time", d.ID, f.name, f.s)
		}
		*f.t = t
	}
	if err := ind.Validate(); err != nil {
		return Indicator{}, fmt.Errorf("intel document %q: %w", d.ID, err)
	}
	return ind, nil
}
