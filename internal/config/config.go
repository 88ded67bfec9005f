// Package config loads and validates the central configuration (the `csirt`
// binary): strict YAML (an unknown key is an error), defaults in one place
// (Default), secrets read from files and never printed, and errors that name
// the file, the line and the key.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole central configuration. Every field has a default in
// Default(); the YAML keys are the snake_case names in the tags.
type Config struct {
	// DataDir holds the embedded broker's log, the SQLite store, the local
	// CA and other single-node state.
	DataDir string    `yaml:"data_dir"`
	Log     Log       `yaml:"log"`
	HTTP    HTTP      `yaml:"http"`
	Bus     Bus       `yaml:"bus"`
	Store   StoreConf `yaml:"store"`
	// ShutdownTimeout bounds the graceful drain on SIGTERM.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // trace, debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// HTTP configures the console and the health/metrics endpoints.
type HTTP struct {
	Listen string `yaml:"listen"`
}

// Bus configures Kafka. With no brokers the embedded broker runs.
type Bus struct {
	Brokers  []string       `yaml:"brokers"`
	Embedded EmbeddedBroker `yaml:"embedded"`
	TLS      TLS            `yaml:"tls"`
	SASL     SASL           `yaml:"sasl"`
	Topics   Topics         `yaml:"topics"`
	Producer Producer       `yaml:"producer"`
}

// EmbeddedBroker configures the in-process Kafka-protocol broker.
type EmbeddedBroker struct {
	Listen     string `yaml:"listen"`
	SyncWrites bool   `yaml:"sync_writes"`
}

// Topics sets how topics are created at bootstrap.
type Topics struct {
	Partitions        int      `yaml:"partitions"`
	ReplicationFactor int      `yaml:"replication_factor"`
	Retention         Duration `yaml:"retention"`
}

// Producer tunes batching.
type Producer struct {
	BatchTimeout Duration `yaml:"batch_timeout"`
	Compression  string   `yaml:"compression"` // zstd, lz4, snappy, gzip, none
}

// TLS holds the client side of a TLS connection (mutual when cert and key
// are given).
type TLS struct {
	Enabled  bool   `yaml:"enabled"`
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// SASL configures Kafka authentication.
type SASL struct {
	Mechanism string `yaml:"mechanism"` // "", PLAIN, SCRAM-SHA-512
	Username  string `yaml:"username"`
	Password  Secret `yaml:"password_file"`
}

// StoreConf chooses and configures the store backend.
type StoreConf struct {
	Backend       string        `yaml:"backend"` // sqlite or elasticsearch
	SQLite        SQLiteConf    `yaml:"sqlite"`
	Elasticsearch Elasticsearch `yaml:"elasticsearch"`
}

// SQLiteConf configures the embedded store.
type SQLiteConf struct {
	Path string `yaml:"path"` // default <data_dir>/store.db
}

// Elasticsearch configures the cluster store.
type Elasticsearch struct {
	Addresses   []string `yaml:"addresses"`
	Username    string   `yaml:"username"`
	Password    Secret   `yaml:"password_file"`
	APIKey      Secret   `yaml:"api_key_file"`
	TLS         TLS      `yaml:"tls"`
	IndexPrefix string   `yaml:"index_prefix"`
	Replicas    *int     `yaml:"replicas"` // default: the cluster's (1)
	// Retention of time series: key "events" or "findings" for a
	// collection's default, any other key is an event.dataset (e.g. sshd).
	Retention map[string]Duration `yaml:"retention"`
}

// Default returns the configuration used when no file is given: the
// single-node mode on this machine.
func Default() Config {
	return Config{
		DataDir:         "csirt-data",
		Log:             Log{Level: "info", Format: "text"},
		HTTP:            HTTP{Listen: "127.0.0.1:8080"},
		ShutdownTimeout: Duration(30 * time.Second),
		Bus: Bus{
			Embedded: EmbeddedBroker{Listen: "127.0.0.1:9092"},
			Topics:   Topics{Partitions: 6, ReplicationFactor: 1, Retention: Duration(7 * 24 * time.Hour)},
			Producer: Producer{BatchTimeout: Duration(10 * time.Millisecond), Compression: "zstd"},
		},
		Store: StoreConf{
			Backend: "sqlite",
			Elasticsearch: Elasticsearch{
				IndexPrefix: "csirt",
				Retention: map[string]Duration{
					"events":   Duration(90 * 24 * time.Hour),
					"findings": Duration(365 * 24 * time.Hour),
				},
			},
		},
	}
}

// Embedded reports whether the embedded broker serves the bus.
func (c Config) Embedded() bool { return len(c.Bus.Brokers) == 0 }

// SQLitePath returns the SQLite file path, defaulting under the data dir.
func (c Config) SQLitePath() string {
	if c.Store.SQLite.Path != "" {
		return c.Store.SQLite.Path
	}
	return filepath.Join(c.DataDir, "store.db")
}

// Error is a configuration problem located in a file.
type Error struct {
	File string
	Line int    // 0 when unknown
	Key  string // dotted key path, "" when unknown
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ": key %s", e.Key)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// Load reads a configuration file over the defaults, resolves secret files
// and validates the result. An empty path gives the defaults.
func Load(path string) (Config, error) {
	cfg := Default()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("reading configuration: %w", err)
		}
		if err := decode(path, data, &cfg); err != nil {
			return Config{}, err
		}
	}
	if err := cfg.resolveSecrets(path); err != nil {
		return Config{}, err
	}
	if err := cfg.Validate(); err != nil {
		var ce *Error
		if errors.As(err, &ce) && path != "" {
			ce.File = path
		}
		return Config{}, err
	}
	return cfg, nil
}

var lineRE = regexp.MustCompile(`line (\d+): (.*)`)

// decode applies YAML strictly and turns yaml.v3's errors into *Error with
// the dotted key at the reported line.
func decode(path string, data []byte, cfg *Config) error {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return &Error{File: path, Line: lineOf(err.Error()), Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(cfg)
	if err == nil || errors.Is(err, io.EOF) {
		return nil
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		// Report the first problem precisely; the others are usually its echoes.
		msg = te.Errors[0]
	}
	m := lineRE.FindStringSubmatch(msg)
	if m == nil {
		return &Error{File: path, Msg: msg}
	}
	line, _ := strconv.Atoi(m[1])
	msg = m[2]
	if strings.Contains(msg, "not found in type") {
		msg = "unknown key"
	}
	return &Error{File: path, Line: line, Key: keyAtLine(&root, line, ""), Msg: msg}
}

func lineOf(msg string) int {
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

// keyAtLine finds the dotted path of the mapping key (or of the value) that
// sits on the given line.
func keyAtLine(n *yaml.Node, line int, prefix string) string {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if k := keyAtLine(c, line, prefix); k != "" {
				return k
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			path := k.Value
			if prefix != "" {
				path = prefix + "." + k.Value
			}
			if k.Line == line {
				return path
			}
			if sub := keyAtLine(v, line, path); sub != "" {
				return sub
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", prefix, i)
			if c.Line == line && c.Kind == yaml.ScalarNode {
				return p
			}
			if sub := keyAtLine(c, line, p); sub != "" {
				return sub
			}
		}
	}
	return ""
}

// Validate checks the values and names the key of the first bad one.
func (c *Config) Validate() error {
	bad := func(key, format string, args ...any) error {
		return &Error{File: "configuration", Key: key, Msg: fmt.Sprintf(format, args...)}
	}
	if c.DataDir == "" {
		return bad("data_dir", "is required")
	}
	switch c.Log.Level {
	case "trace", "debug", "info", "warn", "warning", "error":
	default:
		return bad("log.level", "%q is not one of trace, debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return bad("log.format", "%q is not text or json", c.Log.Format)
	}
	if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
		return bad("http.listen", "%q is not host:port", c.HTTP.Listen)
	}
	if c.Embedded() {
		if _, _, err := net.SplitHostPort(c.Bus.Embedded.Listen); err != nil {
			return bad("bus.embedded.listen", "%q is not host:port", c.Bus.Embedded.Listen)
		}
	}
	for i, b := range c.Bus.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			return bad(fmt.Sprintf("bus.brokers[%d]", i), "%q is not host:port", b)
		}
	}
	if c.Bus.Topics.Partitions < 1 || c.Bus.Topics.Partitions > 1000 {
		return bad("bus.topics.partitions", "must be between 1 and 1000, got %d", c.Bus.Topics.Partitions)
	}
	if c.Bus.Topics.ReplicationFactor < 1 {
		return bad("bus.topics.replication_factor", "must be at least 1")
	}
	if bt := c.Bus.Producer.BatchTimeout.D(); bt <= 0 || bt > 50*time.Millisecond {
		return bad("bus.producer.batch_timeout", "must be more than 0 and at most 50ms (latency budget), got %s", bt)
	}
	switch c.Bus.Producer.Compression {
	case "zstd", "lz4", "snappy", "gzip", "none":
	default:
		return bad("bus.producer.compression", "%q is not one of zstd, lz4, snappy, gzip, none", c.Bus.Producer.Compression)
	}
	switch c.Bus.SASL.Mechanism {
	case "":
	case "PLAIN", "SCRAM-SHA-512":
		if c.Bus.SASL.Username == "" {
			return bad("bus.sasl.username", "is required with mechanism %s", c.Bus.SASL.Mechanism)
		}
		if c.Bus.SASL.Password.Value() == "" {
			return bad("bus.sasl.password_file", "is required with mechanism %s", c.Bus.SASL.Mechanism)
		}
	default:
		return bad("bus.sasl.mechanism", "%q is not PLAIN or SCRAM-SHA-512", c.Bus.SASL.Mechanism)
	}
	if err := c.Bus.TLS.validate("bus.tls"); err != nil {
		return err
	}
	switch c.Store.Backend {
	case "sqlite":
	case "elasticsearch":
		es := c.Store.Elasticsearch
		if len(es.Addresses) == 0 {
			return bad("store.elasticsearch.addresses", "is required when store.backend is elasticsearch")
		}
		if es.IndexPrefix == "" {
			return bad("store.elasticsearch.index_prefix", "is required")
		}
		if err := es.TLS.validate("store.elasticsearch.tls"); err != nil {
			return err
		}
	default:
		return bad("store.backend", "%q is not sqlite or elasticsearch", c.Store.Backend)
	}
	for k, d := range c.Store.Elasticsearch.Retention {
		if d.D() < time.Hour {
			return bad("store.elasticsearch.retention."+k, "must be at least 1h, got %s", d.D())
		}
	}
	if c.ShutdownTimeout.D() <= 0 {
		return bad("shutdown_timeout", "must be positive")
	}
	return nil
}

func (t TLS) validate(key string) error {
	if (t.CertFile == "") != (t.KeyFile == "") {
		return &Error{File: "configuration", Key: key, Msg: "cert_file and key_file go together"}
	}
	return nil
}
