package correlator

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/rules/correlation"
	"github.com/csirt-toscana/platform/rules/heuristics"
)

// Overrides are the layers over the rule library: a regional baseline and
// per-entity layers, read from the overrides file (YAML, strict):
//
//	regional:
//	  disabled: [rule-id-or-name, ...]
//	  thresholds:
//	    ssh_bruteforce: {timespan: 5m, count: 10}
//	  allow:
//	    ssh_bruteforce: {source.ip: [192.0.2.10]}
//	entities:
//	  comune-esempio:
//	    disabled: [...]
//	    thresholds: {...}
//	    allow: {...}
//	heuristics:            # rules/heuristics parameters (heuristics.LoadConfig)
//	  port_scan: {min_ports: 30}
//	  entities:
//	    comune-esempio:
//	      port_scan: {min_ports: 60}
//
// An entity layer adds to the regional one: its disabled rules and
// allow-list values are added, its thresholds replace the regional ones of
// the same rule. Rules are named by id or by name; heuristics by their
// detector id (port_scan, beaconing, dns_tunnel, outbound_volume), intel
// findings by "intel".
type Overrides struct {
	Regional Layer            `yaml:"regional"`
	Entities map[string]Layer `yaml:"entities"`
	// Heuristics is the heuristics parameter tree, nil for the defaults.
	Heuristics *heuristics.Config `yaml:"-"`
}

// Layer is one set of overrides.
type Layer struct {
	Disabled   []string                       `yaml:"disabled"`
	Thresholds map[string]Threshold           `yaml:"thresholds"`
	Allow      map[string]map[string][]string `yaml:"allow"`
}

// Threshold overrides a correlation's timespan and count. Zero keeps the
// rule's value. Count replaces the lower bound of a count condition
// (gte Count).
type Threshold struct {
	Timespan string `yaml:"timespan"`
	Count    int    `yaml:"count"`
}

type overridesFile struct {
	Regional   Layer            `yaml:"regional"`
	Entities   map[string]Layer `yaml:"entities"`
	Heuristics yaml.Node        `yaml:"heuristics"`
}

// LoadOverrides reads an overrides file; "" gives empty overrides.
func LoadOverrides(path string) (*Overrides, error) {
	if path == "" {
		return &Overrides{}, nil
	}
	data, err := os.ReadFile(path) //nolint:gosec // the path comes from the operator's configuration
	if err != nil {
		return nil, fmt.Errorf("reading correlator overrides: %w (fix correlator.overrides_file)", err)
	}
	o, err := ParseOverrides(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return o, nil
}

// ParseOverrides reads overrides from YAML. Unknown keys, bad timespans and
// negative counts are errors.
func ParseOverrides(data []byte) (*Overrides, error) {
	var f overridesFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("correlator overrides: %w", err)
	}
	o := &Overrides{Regional: f.Regional, Entities: f.Entities}
	if err := o.Regional.validate("regional"); err != nil {
		return nil, err
	}
	for ent, l := range o.Entities {
		if strings.TrimSpace(ent) == "" || strings.HasPrefix(ent, "_") {
			return nil, fmt.Errorf("correlator overrides: entities: %q is not an entity id", ent)
		}
		if err := l.validate("entities." + ent); err != nil {
			return nil, err
		}
	}
	if f.Heuristics.Kind != 0 {
		raw, err := yaml.Marshal(&f.Heuristics)
		if err != nil {
			return nil, fmt.Errorf("correlator overrides: heuristics: %w", err)
		}
		h, err := heuristics.LoadConfig(raw)
		if err != nil {
			return nil, fmt.Errorf("correlator overrides: heuristics (line %d): %w", f.Heuristics.Line, err)
		}
		o.Heuristics = h
	}
	return o, nil
}

func (l Layer) validate(where string) error {
	for _, d := range l.Disabled {
		if strings.TrimSpace(d) == "" {
			return fmt.Errorf("correlator overrides: %s.disabled: empty rule reference", where)
		}
	}
	for r, t := range l.Thresholds {
		if t.Count < 0 {
			return fmt.Errorf("correlator overrides: %s.thresholds.%s.count: must not be negative", where, r)
		}
		if t.Timespan != "" {
			if _, err := correlation.ParseTimespan(t.Timespan); err != nil {
				return fmt.Errorf("correlator overrides: %s.thresholds.%s.timespan: %w", where, r, err)
			}
		}
		if t.Count == 0 && t.Timespan == "" {
			return fmt.Errorf("correlator overrides: %s.thresholds.%s: set timespan or count", where, r)
		}
	}
	for r, fields := range l.Allow {
		for f, vs := range fields {
			if f == "" || len(vs) == 0 {
				return fmt.Errorf("correlator overrides: %s.allow.%s: a field needs a name and at least one value", where, r)
			}
		}
	}
	return nil
}

// layer is the effective, compiled layer of one entity (or the regional
// baseline): what process consults per match.
type layer struct {
	disabled   map[string]bool
	thresholds map[string]Threshold
	allow      map[string]map[string]map[string]bool // rule -> field -> values
}

func compileLayer(parts ...Layer) *layer {
	l := &layer{disabled: map[string]bool{}, thresholds: map[string]Threshold{}, allow: map[string]map[string]map[string]bool{}}
	for _, p := range parts {
		for _, d := range p.Disabled {
			l.disabled[d] = true
		}
		for r, t := range p.Thresholds {
			l.thresholds[r] = t
		}
		for r, fields := range p.Allow {
			if l.allow[r] == nil {
				l.allow[r] = map[string]map[string]bool{}
			}
			for f, vs := range fields {
				if l.allow[r][f] == nil {
					l.allow[r][f] = map[string]bool{}
				}
				for _, v := range vs {
					l.allow[r][f][strings.ToLower(v)] = true
				}
			}
		}
	}
	return l
}

// off reports whether a rule (by id or name) is disabled.
func (l *layer) off(id, name string) bool {
	return l.disabled[id] || (name != "" && l.disabled[name])
}

// allowed reports whether the event carries an allow-listed value for the
// rule (by id or name): its findings are suppressed.
func (l *layer) allowed(id, name string, get func(string) []string) bool {
	for _, ref := range [2]string{id, name} {
		if ref == "" {
			continue
		}
		for f, vs := range l.allow[ref] {
			for _, v := range get(f) {
				if vs[strings.ToLower(v)] {
					return true
				}
			}
		}
	}
	return false
}

// threshold returns the threshold override of a correlation.
func (l *layer) threshold(r *correlation.Rule) (Threshold, bool) {
	if t, ok := l.thresholds[r.ID]; ok && r.ID != "" {
		return t, true
	}
	if t, ok := l.thresholds[r.Name]; ok && r.Name != "" {
		return t, true
	}
	return Threshold{}, false
}

// eventGetter reads a field of an event as strings.
func eventGetter(ev event.Event) func(string) []string {
	return func(f string) []string { return ev.Strings(f) }
}

// applyThreshold returns a copy of r with the threshold applied.
func applyThreshold(r *correlation.Rule, t Threshold) *correlation.Rule {
	c := *r
	if t.Timespan != "" {
		if d, err := correlation.ParseTimespan(t.Timespan); err == nil {
			c.Timespan = d
		}
	}
	if t.Count > 0 {
		var cmp []correlation.Comparison
		for _, x := range r.Condition.Comparisons {
			if x.Op == correlation.GT || x.Op == correlation.GTE {
				continue
			}
			cmp = append(cmp, x)
		}
		cmp = append(cmp, correlation.Comparison{Op: correlation.GTE, Value: float64(t.Count)})
		c.Condition.Comparisons = cmp
	}
	return &c
}

// entitiesWithThresholds lists the entities whose correlations differ from
// the regional baseline.
func (o *Overrides) entitiesWithThresholds() []string {
	var out []string
	for ent, l := range o.Entities {
		if len(l.Thresholds) > 0 {
			out = append(out, ent)
		}
	}
	sort.Strings(out)
	return out
}
