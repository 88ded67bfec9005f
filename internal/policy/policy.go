// Package policy is the agent policy document: what an enrolled agent
// reads (log sources, packet capture) and how often it reports. The central
// side serves it at enrolment and on request (GET /v1/policy on the intake);
// the agent applies a changed policy without restarting. It is a contract
// between csirt and csirt-agent: add fields, never change their meaning.
package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Policy is the document. JSON field names are the wire names.
type Policy struct {
	// Revision identifies the content; see Digest. The server fills it; an
	// agent compares it to decide whether anything changed.
	Revision string `json:"revision"`
	// Sources the agent reads. Names are unique; they name checkpoints and
	// status lines, so keep them stable.
	Sources []Source `json:"sources"`
	// Capture configures packet summaries (issue 5). Off by default.
	Capture Capture `json:"capture"`
	// HeartbeatInterval is how often the agent reports its counters.
	// Default 30 s.
	HeartbeatInterval Duration `json:"heartbeat_interval"`
	// RefreshInterval is how often the agent asks for a newer policy.
	// Default 5 min.
	RefreshInterval Duration `json:"refresh_interval"`
	// SilenceAfter is how long the collector lets the agent stay silent
	// (no batch and no heartbeat) before it raises a coverage finding.
	// Default 10 min.
	SilenceAfter Duration `json:"silence_after"`
	// DropOriginal, when true, asks the collector not to keep event.original.
	DropOriginal bool `json:"drop_original,omitempty"`
}

// Source is one log source: a kind registered in the agent's source
// registry ("file", "journal") and its kind-specific configuration, an
// object decoded strictly by that kind (unknown keys are errors).
type Source struct {
	Name   string          `json:"name"`
	Kind   string          `json:"kind"`
	Config json.RawMessage `json:"config,omitempty"`
}

// Capture configures live packet summaries.
type Capture struct {
	Enabled   bool     `json:"enabled"`
	Interface string   `json:"interface,omitempty"` // "" = the first non-loopback interface that is up
	BPF       string   `json:"bpf,omitempty"`       // extra BPF filter, ANDed with the exclusions
	SnapLen   int      `json:"snaplen,omitempty"`   // default 1600 bytes
	Exclude   Exclude  `json:"exclude"`
	Internal  []string `json:"internal_networks,omitempty"` // CIDRs; default RFC 1918, RFC 4193, loopback
	// HashInternal replaces internal addresses by a keyed hash in the
	// summaries (the key stays on the agent).
	HashInternal bool `json:"hash_internal,omitempty"`
}

// Exclude lists traffic never summarised.
type Exclude struct {
	Networks []string `json:"networks,omitempty"` // CIDRs
	Ports    []int    `json:"ports,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("30s").
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes "30s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "30s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"30s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Defaults for zero fields.
const (
	DefaultHeartbeat    = 30 * time.Second
	DefaultRefresh      = 5 * time.Minute
	DefaultSilenceAfter = 10 * time.Minute
	DefaultSnapLen      = 1600
)

// Default is the policy of a newly enrolled agent when the entity has none:
// the usual Debian and RHEL authentication and web server logs, and the
// journal.
func Default() Policy {
	p := Policy{
		Sources: []Source{
			{Name: "auth", Kind: "file", Config: json.RawMessage(`{"paths":["/var/log/auth.log","/var/log/secure"]}`)},
			{Name: "syslog", Kind: "file", Config: json.RawMessage(`{"paths":["/var/log/syslog","/var/log/messages"]}`)},
			{Name: "web", Kind: "file", Config: json.RawMessage(`{"paths":["/var/log/nginx/*access.log","/var/log/apache2/*access.log","/var/log/httpd/*access_log"]}`)},
			{Name: "audit", Kind: "file", Config: json.RawMessage(`{"paths":["/var/log/audit/audit.log"]}`)},
			{Name: "journal", Kind: "journal"},
		},
	}
	p.Normalize()
	return p
}

var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// Normalize fills defaults and the revision.
func (p *Policy) Normalize() {
	if p.HeartbeatInterval <= 0 {
		p.HeartbeatInterval = Duration(DefaultHeartbeat)
	}
	if p.RefreshInterval <= 0 {
		p.RefreshInterval = Duration(DefaultRefresh)
	}
	if p.SilenceAfter <= 0 {
		p.SilenceAfter = Duration(DefaultSilenceAfter)
	}
	if p.Capture.SnapLen <= 0 {
		p.Capture.SnapLen = DefaultSnapLen
	}
	p.Revision = p.Digest()
}

// Validate checks names and intervals. Kind-specific configuration is
// checked by the agent's source registry.
func (p Policy) Validate() error {
	seen := map[string]bool{}
	for i, s := range p.Sources {
		if !namePattern.MatchString(s.Name) {
			return fmt.Errorf("sources[%d]: name %q must be 1-63 of a-z 0-9 . _ - starting with a letter or digit", i, s.Name)
		}
		if seen[s.Name] {
			return fmt.Errorf("sources[%d]: name %q is used twice", i, s.Name)
		}
		seen[s.Name] = true
		if s.Kind == "" {
			return fmt.Errorf("sources[%d] (%s): kind is required", i, s.Name)
		}
	}
	if p.HeartbeatInterval.D() < time.Second || p.RefreshInterval.D() < 10*time.Second {
		return errors.New("heartbeat_interval must be at least 1s and refresh_interval at least 10s")
	}
	if p.Capture.SnapLen < 96 || p.Capture.SnapLen > 65535 {
		return fmt.Errorf("capture.snaplen %d is outside 96..65535", p.Capture.SnapLen)
	}
	return nil
}

// Digest is a hash of the content without the revision.
func (p Policy) Digest() string {
	p.Revision = ""
	b, _ := json.Marshal(p) //nolint:errchkjson // plain structs always marshal
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}
