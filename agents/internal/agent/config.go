package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/csirt-toscana/platform/internal/bus"
)

// DefaultConfigPath is where the package installs the local configuration.
const DefaultConfigPath = "/etc/csirt-agent/agent.yml"

// DefaultStateDir holds the identity, checkpoints, sequences and spool.
const DefaultStateDir = "/var/lib/csirt-agent"

// Config is the local configuration file (strict YAML: unknown keys are
// errors). Everything about what to read comes from the central policy;
// this file only says where the agent keeps its state and how it logs.
type Config struct {
	StateDir  string    `yaml:"state_dir"`
	Log       LogConfig `yaml:"log"`
	Spool     Spool     `yaml:"spool"`
	Transport Transport `yaml:"transport"`
	// MemoryLimit is the Go runtime's soft memory limit: "28MiB", or
	// "off". Default (empty): 28 MiB, 80 MiB while the policy turns
	// packet capture on. The GOMEMLIMIT environment variable wins.
	MemoryLimit MemoryLimit `yaml:"memory_limit"`
	// MaxProcs is how many cores the agent's Go code may use at once
	// (Go's GOMAXPROCS). Default (0): 1 while packet capture is off (every
	// hand-off between two threads costs a wake-up; one is plenty for
	// logs), all cores while it is on. The GOMAXPROCS environment variable
	// wins.
	MaxProcs int `yaml:"max_procs"`
}

// MemoryLimit is a size, 0 for the default, or -1 for "off".
type MemoryLimit int64

// UnmarshalYAML reads a size or "off".
func (m *MemoryLimit) UnmarshalYAML(n *yaml.Node) error {
	if strings.EqualFold(strings.TrimSpace(n.Value), "off") {
		*m = -1
		return nil
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: memory_limit: %w, or off", n.Line, err)
	}
	*m = MemoryLimit(v)
	return nil
}

// LogConfig chooses the log level and format.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info (default), warn, error
	Format string `yaml:"format"` // text (default) or json
}

// Spool bounds the disk queue used while the centre is unreachable.
type Spool struct {
	// MaxBytes: "256MiB" (default), "2GiB", or a number of bytes.
	MaxBytes ByteSize `yaml:"max_bytes"`
	// MaxAge: batches older than this are dropped (counted). Default 168h.
	MaxAge time.Duration `yaml:"max_age"`
}

// Transport overrides what enrolment chose. Leave it empty normally.
type Transport struct {
	// Mode: "auto" (default: Kafka when enrolment gave brokers, else the
	// HTTPS intake), "kafka" or "intake".
	Mode string `yaml:"mode"`
	// KafkaBootstrap replaces the brokers from enrolment.
	KafkaBootstrap []string `yaml:"kafka_bootstrap"`
	// IntakeURL replaces the intake URL from enrolment.
	IntakeURL string `yaml:"intake_url"`
	// Compression of Kafka batches: zstd (default) or lz4.
	Compression string `yaml:"compression"`
}

// Transport modes.
const (
	ModeAuto   = "auto"
	ModeKafka  = "kafka"
	ModeIntake = "intake"
)

// ByteSize is a size in bytes written as "256MiB", "1GB" or a number.
type ByteSize int64

// UnmarshalYAML reads a size.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = v
	return nil
}

// String writes the size with a binary unit when it divides exactly.
func (b ByteSize) String() string {
	for _, u := range []struct {
		s string
		n int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.n == 0 {
			return strconv.FormatInt(int64(b)/u.n, 10) + u.s
		}
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

// ParseByteSize parses "512MiB", "2GB", "1048576".
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	i := len(t)
	for i > 0 && (t[i-1] < '0' || t[i-1] > '9') {
		i--
	}
	num, unit := strings.TrimSpace(t[:i]), strings.ToLower(strings.TrimSpace(t[i:]))
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want a number with an optional unit (B, KiB, MiB, GiB, KB, MB, GB)", s)
	}
	mult := map[string]int64{"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "kb": 1000, "m": 1 << 20, "mib": 1 << 20, "mb": 1_000_000, "g": 1 << 30, "gib": 1 << 30, "gb": 1_000_000_000}
	m, ok := mult[unit]
	if !ok {
		return 0, fmt.Errorf("size %q: unknown unit %q (B, KiB, MiB, GiB, KB, MB, GB)", s, unit)
	}
	if n > (1<<62)/m {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return ByteSize(n * m), nil
}

// Defaults of Config.
const (
	DefaultSpoolBytes = 256 << 20
	DefaultSpoolAge   = 7 * 24 * time.Hour
)

// DefaultConfig is the configuration used when the file does not exist.
func DefaultConfig() Config {
	c := Config{}
	_ = c.normalize()
	return c
}

func (c *Config) normalize() error {
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	if c.Spool.MaxBytes == 0 {
		c.Spool.MaxBytes = DefaultSpoolBytes
	}
	if c.Spool.MaxAge == 0 {
		c.Spool.MaxAge = DefaultSpoolAge
	}
	if c.Transport.Mode == "" {
		c.Transport.Mode = ModeAuto
	}
	if c.Transport.Compression == "" {
		c.Transport.Compression = string(bus.CompressionZstd)
	}
	switch {
	case !strings.HasPrefix(c.StateDir, "/"):
		return fmt.Errorf("state_dir %q must be an absolute path", c.StateDir)
	case c.Log.Format != "text" && c.Log.Format != "json":
		return fmt.Errorf("log.format %q: use text or json", c.Log.Format)
	case c.Spool.MaxBytes < 1<<20:
		return fmt.Errorf("spool.max_bytes %s is below 1MiB", c.Spool.MaxBytes)
	case c.Spool.MaxAge < time.Minute:
		return fmt.Errorf("spool.max_age %s is below 1m", c.Spool.MaxAge)
	case c.MaxProcs < 0:
		return fmt.Errorf("max_procs %d is negative: use 0 for the default", c.MaxProcs)
	case c.MemoryLimit > 0 && c.MemoryLimit < 16<<20:
		return fmt.Errorf("memory_limit %s is below 16MiB: the agent would spend its time collecting garbage", ByteSize(c.MemoryLimit))
	}
	switch c.Transport.Mode {
	case ModeAuto, ModeKafka, ModeIntake:
	default:
		return fmt.Errorf("transport.mode %q: use auto, kafka or intake", c.Transport.Mode)
	}
	if comp := bus.Compression(strings.ToLower(c.Transport.Compression)); comp != bus.CompressionZstd && comp != bus.CompressionLZ4 {
		return fmt.Errorf("transport.compression %q: use zstd or lz4", c.Transport.Compression)
	}
	if c.Transport.IntakeURL != "" && !strings.HasPrefix(c.Transport.IntakeURL, "https://") {
		return fmt.Errorf("transport.intake_url %q must start with https://", c.Transport.IntakeURL)
	}
	return nil
}

// ParseConfig decodes a configuration strictly and fills the defaults.
func ParseConfig(b []byte) (Config, error) {
	var c Config
	d := yaml.NewDecoder(bytes.NewReader(b))
	d.KnownFields(true)
	if err := d.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, err
	}
	if err := c.normalize(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// LoadConfig reads path. A missing file at the default path gives the
// defaults (the package may not ship one); a missing file named explicitly
// is an error.
func LoadConfig(path string, explicit bool) (Config, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		return DefaultConfig(), nil
	}
	if err != nil {
		return Config{}, fmt.Errorf("reading the configuration: %w", err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		return Config{}, fmt.Errorf("configuration %s: %w (see docs/agent.md)", path, err)
	}
	return c, nil
}
