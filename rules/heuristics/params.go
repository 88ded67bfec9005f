package heuristics

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written in YAML as a Go duration string
// ("90s", "10m", "1h").
type Duration time.Duration

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalYAML reads a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: a duration is a string such as \"90s\" or \"10m\"", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: duration %q: %w (write e.g. \"90s\" or \"10m\")", n.Line, s, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// String returns the duration string.
func (d Duration) String() string { return time.Duration(d).String() }

// validator is implemented by every detector's Params.
type validator interface{ Validate() error }

// Layered holds a detector's regional parameters and the per-entity
// layers, each a partial override already merged over the regional values.
type Layered[P any] struct {
	Regional P
	entities map[string]*P
}

// For returns the parameters that apply to an entity.
func (l *Layered[P]) For(entity string) *P {
	if p, ok := l.entities[entity]; ok {
		return p
	}
	return &l.Regional
}

// Entities lists the entities with their own layer, sorted.
func (l *Layered[P]) Entities() []string {
	out := make([]string, 0, len(l.entities))
	for k := range l.entities {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// SetEntity merges a partial override written in YAML (only the keys to
// change) over the regional parameters for one entity.
func (l *Layered[P]) SetEntity(entity string, partialYAML []byte) error {
	p, err := decodeOver(l.Regional, partialYAML)
	if err != nil {
		return fmt.Errorf("entity %q: %w", entity, err)
	}
	if l.entities == nil {
		l.entities = map[string]*P{}
	}
	l.entities[entity] = &p
	return nil
}

// NewLayered returns regional parameters without entity layers.
func NewLayered[P any](regional P) Layered[P] { return Layered[P]{Regional: regional} }

// decodeOver decodes YAML strictly (unknown keys are errors) over a copy of
// base, so absent keys keep base's values, and validates the result.
func decodeOver[P any](base P, data []byte) (P, error) {
	out := base
	if len(bytes.TrimSpace(data)) > 0 {
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&out); err != nil && !errors.Is(err, io.EOF) {
			return base, err
		}
	}
	if v, ok := any(&out).(validator); ok {
		if err := v.Validate(); err != nil {
			return base, err
		}
	}
	return out, nil
}

// Config holds the parameters of every detector.
type Config struct {
	PortScan  Layered[PortScanParams]
	Beaconing Layered[BeaconParams]
	DNSTunnel Layered[DNSTunnelParams]
	Volume    Layered[VolumeParams]
}

// DefaultConfig returns every detector's defaults without entity layers.
func DefaultConfig() *Config {
	return &Config{
		PortScan:  NewLayered(DefaultPortScanParams()),
		Beaconing: NewLayered(DefaultBeaconParams()),
		DNSTunnel: NewLayered(DefaultDNSTunnelParams()),
		Volume:    NewLayered(DefaultVolumeParams()),
	}
}

type sections struct {
	PortScan  yaml.Node `yaml:"port_scan"`
	Beaconing yaml.Node `yaml:"beaconing"`
	DNSTunnel yaml.Node `yaml:"dns_tunnel"`
	Volume    yaml.Node `yaml:"outbound_volume"`
}

type configFile struct {
	PortScan  yaml.Node           `yaml:"port_scan"`
	Beaconing yaml.Node           `yaml:"beaconing"`
	DNSTunnel yaml.Node           `yaml:"dns_tunnel"`
	Volume    yaml.Node           `yaml:"outbound_volume"`
	Entities  map[string]sections `yaml:"entities"`
}

// LoadConfig reads the heuristics parameters from YAML:
//
//	port_scan:       {window: 60s, min_ports: 20, ...}   # regional values
//	beaconing:       {...}
//	dns_tunnel:      {...}
//	outbound_volume: {...}
//	entities:
//	  comune-esempio:
//	    port_scan: {min_ports: 40}                      # partial override
//
// Absent keys keep their defaults; unknown keys, wrong types and invalid
// values are errors naming the section and the line.
func LoadConfig(data []byte) (*Config, error) {
	var f configFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("heuristics parameters: %w", err)
	}
	cfg := DefaultConfig()
	if err := loadSection(&cfg.PortScan, "port_scan", "", f.PortScan); err != nil {
		return nil, err
	}
	if err := loadSection(&cfg.Beaconing, "beaconing", "", f.Beaconing); err != nil {
		return nil, err
	}
	if err := loadSection(&cfg.DNSTunnel, "dns_tunnel", "", f.DNSTunnel); err != nil {
		return nil, err
	}
	if err := loadSection(&cfg.Volume, "outbound_volume", "", f.Volume); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(f.Entities))
	for k := range f.Entities {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, ent := range names {
		if strings.TrimSpace(ent) == "" {
			return nil, errors.New("heuristics parameters: entities: an entity id is empty")
		}
		s := f.Entities[ent]
		if err := loadSection(&cfg.PortScan, "port_scan", ent, s.PortScan); err != nil {
			return nil, err
		}
		if err := loadSection(&cfg.Beaconing, "beaconing", ent, s.Beaconing); err != nil {
			return nil, err
		}
		if err := loadSection(&cfg.DNSTunnel, "dns_tunnel", ent, s.DNSTunnel); err != nil {
			return nil, err
		}
		if err := loadSection(&cfg.Volume, "outbound_volume", ent, s.Volume); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

func loadSection[P any](l *Layered[P], name, entity string, n yaml.Node) error {
	if n.Kind == 0 {
		return nil
	}
	where := name
	if entity != "" {
		where = "entities." + entity + "." + name
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("heuristics parameters: %s (line %d) must be a mapping of parameter names to values", where, n.Line)
	}
	raw, err := yaml.Marshal(&n)
	if err != nil {
		return fmt.Errorf("heuristics parameters: %s: %w", where, err)
	}
	if entity == "" {
		p, err := decodeOver(l.Regional, raw)
		if err != nil {
			return fmt.Errorf("heuristics parameters: %s (line %d): %w", where, n.Line, err)
		}
		l.Regional = p
		return nil
	}
	if err := l.SetEntity(entity, raw); err != nil {
		return fmt.Errorf("heuristics parameters: %s (line %d): %w", where, n.Line, err)
	}
	return nil
}

// prefixes parses a list of CIDRs or addresses.
func parsePrefixes(field string, list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is neither an address nor a CIDR (write e.g. 10.1.2.3 or 10.1.0.0/16)", field, s)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

func inPrefixes(a netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func positive(field string, v float64) error {
	if !(v > 0) {
		return fmt.Errorf("%s must be greater than 0 (got %v)", field, v)
	}
	return nil
}

func fraction(field string, v float64) error {
	if !(v >= 0 && v <= 1) {
		return fmt.Errorf("%s must be between 0 and 1 (got %v)", field, v)
	}
	return nil
}
