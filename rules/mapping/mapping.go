// Package mapping maps Sigma logsources to the event datasets of the
// platform schema and Sigma field names to ECS field names, as data (YAML
// in the spirit of pySigma processing pipelines). The default mapping is
// embedded; "none" uses field names as written and applies every rule to
// every event. An entry may declare its datasets closed (only fields of the
// event schema), which the engine uses to leave out tests of fields such
// datasets never carry.
package mapping

import (
	"bytes"
	_ "embed"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/csirt-toscana/platform/rules/sigma"
)

//go:embed default.yml
var defaultYAML []byte

// Mapping is a field and logsource mapping.
type Mapping struct {
	Name string `yaml:"name"`
	// Passthrough: no routing by logsource, field names as written.
	Passthrough bool              `yaml:"passthrough"`
	Fields      map[string]string `yaml:"fields"`
	LogSources  []LogSource       `yaml:"logsources"`
}

// LogSource maps one Sigma logsource to datasets.
type LogSource struct {
	Product    string            `yaml:"product"`
	Category   string            `yaml:"category"`
	Service    string            `yaml:"service"`
	Datasets   []string          `yaml:"datasets"`
	Fields     map[string]string `yaml:"fields"`
	Conditions map[string]string `yaml:"conditions"`
	// UnmappedPrefix is put before a field name mapped neither by Fields
	// nor by the global fields (e.g. winlog.event_data. for Windows).
	UnmappedPrefix string `yaml:"unmapped_prefix"`
	// Closed declares that the entry's datasets carry only fields of the
	// platform's event schema (internal/event): the agent's network
	// summaries. The engine does not evaluate a rule on such a dataset when
	// the rule names a field the schema does not define.
	Closed bool `yaml:"closed"`
}

// Target is where a rule with a given logsource applies.
type Target struct {
	Dataset        string
	Fields         map[string]string // entry fields (global fields apply after)
	Conditions     map[string]string
	UnmappedPrefix string
	// Closed: the dataset's events carry only fields of the event schema,
	// so a rule naming any other field could never test it here.
	Closed bool
}

// Parse reads a mapping, rejecting unknown keys.
func Parse(data []byte) (*Mapping, error) {
	var m Mapping
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("parsing mapping: %w", err)
	}
	closedIn := map[string]int{} // dataset -> first entry that declares it closed
	openIn := map[string]int{}   // dataset -> first entry that does not
	for i, ls := range m.LogSources {
		if len(ls.Datasets) == 0 {
			return nil, fmt.Errorf("parsing mapping %q: logsources[%d] has no datasets", m.Name, i)
		}
		for _, d := range ls.Datasets {
			in := openIn
			if ls.Closed {
				in = closedIn
			}
			if _, ok := in[d]; !ok {
				in[d] = i
			}
		}
	}
	// Whether a dataset's field set is closed depends on what produces its
	// events, not on which rule reaches it: every entry must agree.
	for i := range m.LogSources {
		for _, d := range m.LogSources[i].Datasets {
			c, isClosed := closedIn[d]
			o, isOpen := openIn[d]
			if isClosed && isOpen {
				return nil, fmt.Errorf("parsing mapping %q: dataset %q is closed in logsources[%d] but not in logsources[%d]; "+
					"mark every entry that lists it closed: true (split an entry whose other datasets are not closed)", m.Name, d, c, o)
			}
		}
	}
	return &m, nil
}

// Default returns the embedded default mapping.
func Default() *Mapping {
	m, err := Parse(defaultYAML)
	if err != nil {
		panic("embedded default mapping: " + err.Error())
	}
	return m
}

// None returns the passthrough mapping: Sigma field names used as written,
// every rule applied to every event.
func None() *Mapping { return &Mapping{Name: "none", Passthrough: true} }

// ByName returns "default" or "none".
func ByName(name string) (*Mapping, error) {
	switch name {
	case "", "default":
		return Default(), nil
	case "none":
		return None(), nil
	}
	return nil, fmt.Errorf("unknown mapping %q (want default or none)", name)
}

func lsMatch(want, got string) bool {
	if want == "*" {
		return got != ""
	}
	return strings.EqualFold(want, got)
}

// Targets returns where a rule with logsource ls applies, one Target per
// dataset (an empty list: the rule applies nowhere under this mapping).
func (m *Mapping) Targets(ls sigma.LogSource) []Target {
	var out []Target
	seen := map[string]bool{}
	for _, e := range m.LogSources {
		if !lsMatch(e.Product, ls.Product) || !lsMatch(e.Category, ls.Category) || !lsMatch(e.Service, ls.Service) {
			continue
		}
		for _, d := range e.Datasets {
			key := d + "\x00" + fmt.Sprint(e.Conditions)
			if seen[key] {
				continue
			}
			seen[key] = true
			out = append(out, Target{Dataset: d, Fields: e.Fields, Conditions: e.Conditions, UnmappedPrefix: e.UnmappedPrefix, Closed: e.Closed})
		}
	}
	return out
}

// Field maps a Sigma field name given a target's own fields.
func (m *Mapping) Field(t *Target, name string) string {
	if m.Passthrough {
		return name
	}
	if t != nil {
		if f, ok := t.Fields[name]; ok {
			return f
		}
	}
	if f, ok := m.Fields[name]; ok {
		return f
	}
	if t != nil && t.UnmappedPrefix != "" {
		return t.UnmappedPrefix + name
	}
	return name
}
