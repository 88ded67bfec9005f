package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written as in Go ("10ms", "1h30m") or with a
// day or week suffix ("7d", "2w").
type Duration time.Duration

// D returns the duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// ParseDuration reads Go durations plus the "d" and "w" suffixes.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	for suffix, unit := range map[string]time.Duration{"d": 24 * time.Hour, "w": 7 * 24 * time.Hour} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			v, err := strconv.ParseFloat(n, 64)
			if err != nil {
				return 0, fmt.Errorf("%q is not a duration (e.g. 10s, 5m, 7d)", s)
			}
			return time.Duration(v * float64(unit)), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (e.g. 10s, 5m, 7d)", s)
	}
	return d, nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a duration such as 10s or 7d", n.Line)
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration in Go form.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Secret holds a credential. In YAML it is given as the path of a file
// holding it (keys end in _file); the value is read at load time. The same
// key can come from the environment: CSIRT_<KEY>_FILE names the file, where
// <KEY> is the dotted key path in upper case with dots and the "_file"
// suffix dropped (e.g. CSIRT_STORE_ELASTICSEARCH_PASSWORD_FILE). A Secret
// prints as "[redacted]" in every format, so logging or dumping a Config
// never shows it.
type Secret struct {
	path  string
	value string
}

// NewSecret returns a secret holding v (for tests and programmatic use).
func NewSecret(v string) Secret { return Secret{value: v} }

// Value returns the secret itself. Call it only where the credential is used.
func (s Secret) Value() string { return s.value }

// Path returns the file the secret was read from.
func (s Secret) Path() string { return s.path }

const redacted = "[redacted]"

func (s Secret) String() string                { return redacted }
func (s Secret) GoString() string              { return redacted }
func (s Secret) MarshalJSON() ([]byte, error)  { return []byte(`"` + redacted + `"`), nil }
func (s Secret) MarshalText() ([]byte, error)  { return []byte(redacted), nil }
func (s Secret) MarshalYAML() (any, error)     { return s.describe(), nil }
func (s Secret) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte(redacted)) }

func (s Secret) describe() string {
	if s.path == "" {
		return ""
	}
	return s.path + " " + redacted
}

// UnmarshalYAML takes the file path; the value is read by Load.
func (s *Secret) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want the path of a file holding the secret", n.Line)
	}
	s.path = n.Value
	return nil
}

// resolveSecrets applies CSIRT_*_FILE variables and reads every secret file.
// Relative paths are relative to the configuration file's folder.
func (c *Config) resolveSecrets(configPath string) error {
	base := "."
	if configPath != "" {
		base = filepath.Dir(configPath)
	}
	secrets := map[string]*Secret{
		"bus.sasl.password_file":            &c.Bus.SASL.Password,
		"store.elasticsearch.password_file": &c.Store.Elasticsearch.Password,
		"store.elasticsearch.api_key_file":  &c.Store.Elasticsearch.APIKey,
	}
	for i := range c.Correlator.Feeds {
		secrets[fmt.Sprintf("correlator.feeds[%d].api_key_file", i)] = &c.Correlator.Feeds[i].APIKey
	}
	for key, sec := range secrets {
		env := "CSIRT_" + strings.ToUpper(strings.ReplaceAll(strings.TrimSuffix(key, "_file"), ".", "_")) + "_FILE"
		if p := os.Getenv(env); p != "" && !strings.Contains(key, "[") {
			sec.path = p
		}
		if sec.path == "" || sec.value != "" {
			continue
		}
		p := sec.path
		if !filepath.IsAbs(p) {
			p = filepath.Join(base, p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			// The error names the file, never its content.
			return &Error{File: configPath, Key: key, Msg: fmt.Sprintf("reading secret file: %v", err)}
		}
		sec.value = strings.TrimRight(string(b), "\r\n")
		if sec.value == "" {
			return &Error{File: configPath, Key: key, Msg: fmt.Sprintf("secret file %s is empty", p)}
		}
	}
	return nil
}

// Dump returns the configuration as YAML with every secret redacted, for
// `csirt config check` and for support requests.
func (c Config) Dump() ([]byte, error) {
	return yaml.Marshal(c)
}
