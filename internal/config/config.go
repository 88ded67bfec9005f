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
	// Intake is the HTTPS intake of the collector: agent enrolment,
	// certificate renewal, policy, and batches from agents that cannot
	// reach Kafka.
	Intake Intake `yaml:"intake"`
	// PKI issues agents' certificates.
	PKI PKI `yaml:"pki"`
	// Syslog receives devices that cannot run an agent.
	Syslog Syslog `yaml:"syslog"`
	// Collector tunes the collector role.
	Collector CollectorConf `yaml:"collector"`
	// Correlator tunes detection: rules, per-entity overrides, intel feeds.
	Correlator CorrelatorConf `yaml:"correlator"`
	// Incidents tunes how findings are grouped into incidents and campaigns.
	Incidents IncidentsConf `yaml:"incidents"`
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

// Intake configures the collector's HTTPS intake (mutual TLS for agents;
// enrolment is authenticated by its token).
type Intake struct {
	// Listen is where the intake serves HTTPS; "" disables it.
	Listen string `yaml:"listen"`
	// AdvertiseURL is the URL agents are told to use after enrolment
	// (behind NAT or a load balancer); default https://<listen>.
	AdvertiseURL string `yaml:"advertise_url"`
	// ServerNames are the DNS names and IP addresses in the intake's
	// certificate issued by the local CA; default the listen host and
	// localhost.
	ServerNames []string `yaml:"server_names"`
	// KafkaBootstrap are the brokers (mutual TLS) given to agents at
	// enrolment. Empty: agents ship their batches to the intake.
	KafkaBootstrap []string `yaml:"kafka_bootstrap"`
	// MaxBodyBytes bounds a request body.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// RatePerAgent is the most batch requests per second per agent
	// (token bucket, burst of twice the rate); RatePerIP bounds enrolment
	// attempts per source address per minute.
	RatePerAgent  float64 `yaml:"rate_per_agent"`
	EnrolPerIPMin int     `yaml:"enrol_per_ip_per_minute"`
}

// PKI configures certificate issuing. "local" is a CA kept under the
// data directory (single-node mode); Vault PKI comes with the Vault issue.
type PKI struct {
	Backend string   `yaml:"backend"` // local
	Local   LocalCA  `yaml:"local"`
	CertTTL Duration `yaml:"cert_ttl"` // lifetime of an agent certificate
	// RenewBefore: agents renew when less than this is left.
	RenewBefore Duration `yaml:"renew_before"`
}

// LocalCA configures the local CA. With no files a CA is created under
// <data_dir>/pki on first start.
type LocalCA struct {
	Dir        string `yaml:"dir"`          // default <data_dir>/pki
	CACertFile string `yaml:"ca_cert_file"` // use an existing CA certificate...
	CAKeyFile  string `yaml:"ca_key_file"`  // ...and its key (PEM)
}

// Syslog configures the syslog intake. An empty listen address disables
// that transport.
type Syslog struct {
	UDPListen string `yaml:"udp_listen"`
	TCPListen string `yaml:"tcp_listen"`
	TLSListen string `yaml:"tls_listen"`
	// TLS certificate of the TLS listener; default one issued by the local CA.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// MaxMessageBytes is the longest message accepted (longer is cut and
	// flagged).
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// RatePerSource is messages per second per source address (burst of
	// twice that); excess is counted and dropped.
	RatePerSource float64 `yaml:"rate_per_source"`
	// MaxConnections bounds concurrent TCP and TLS connections;
	// IdleTimeout closes a silent one.
	MaxConnections int      `yaml:"max_connections"`
	IdleTimeout    Duration `yaml:"idle_timeout"`
}

// CollectorConf tunes the collector role.
type CollectorConf struct {
	// SilenceCheck is how often agents' and entities' last activity is
	// compared with their policy's silence_after.
	SilenceCheck Duration `yaml:"silence_check"`
	// EntitySilenceAfter raises a coverage finding when no agent or device
	// of an entity sent anything for this long.
	EntitySilenceAfter Duration `yaml:"entity_silence_after"`
}

// CorrelatorConf tunes the correlator role.
type CorrelatorConf struct {
	// RulesDirs are directories of Sigma rules and correlations loaded
	// besides the built-in library; re-read every ReloadInterval.
	RulesDirs      []string `yaml:"rules_dirs"`
	ReloadInterval Duration `yaml:"reload_interval"`
	// OverridesFile holds the per-entity layers over the regional baseline
	// (disabled rules, thresholds, allow-lists); "" = none.
	OverridesFile string `yaml:"overrides_file"`
	// SnapshotInterval is how often correlation state is saved per
	// partition (also on partition revocation and shutdown).
	SnapshotInterval Duration `yaml:"snapshot_interval"`
	// Feeds are the threat-intelligence sources fetched on a schedule.
	Feeds []Feed `yaml:"feeds"`
	// RetroHunt is how far back new indicators are searched in stored events.
	RetroHunt Duration `yaml:"retro_hunt"`
}

// Feed is one threat-intelligence source.
type Feed struct {
	Name       string   `yaml:"name"`
	Format     string   `yaml:"format"` // misp, misp-feed, feodo, urlhaus, threatfox, stix, taxii, csv
	URL        string   `yaml:"url"`    // https://... or file path
	Interval   Duration `yaml:"interval"`
	Confidence int      `yaml:"confidence"` // default for indicators without one
	TLP        string   `yaml:"tlp"`
	APIKey     Secret   `yaml:"api_key_file"`
}

// IncidentsConf tunes incident grouping.
type IncidentsConf struct {
	// Window: a finding joins an open incident of the same entity, rule
	// group and key entities seen within this window.
	Window Duration `yaml:"window"`
	// CampaignWindow: incidents of several entities sharing an attacker
	// address or indicator within this window are linked into a campaign.
	CampaignWindow Duration `yaml:"campaign_window"`
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
		Intake:    Intake{Listen: "127.0.0.1:8443", MaxBodyBytes: 16 << 20, RatePerAgent: 50, EnrolPerIPMin: 10},
		PKI:       PKI{Backend: "local", CertTTL: Duration(90 * 24 * time.Hour), RenewBefore: Duration(30 * 24 * time.Hour)},
		Syslog:    Syslog{MaxMessageBytes: 64 << 10, RatePerSource: 5000, MaxConnections: 1024, IdleTimeout: Duration(10 * time.Minute)},
		Collector: CollectorConf{SilenceCheck: Duration(time.Minute), EntitySilenceAfter: Duration(6 * time.Hour)},
		Correlator: CorrelatorConf{ReloadInterval: Duration(time.Minute), SnapshotInterval: Duration(10 * time.Second),
			RetroHunt: Duration(7 * 24 * time.Hour)},
		Incidents: IncidentsConf{Window: Duration(24 * time.Hour), CampaignWindow: Duration(time.Hour)},
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
	if err := c.validateIntake(bad); err != nil {
		return err
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

func (c *Config) validateIntake(bad func(key, format string, args ...any) error) error {
	hostPort := func(key, v string) error {
		if v == "" {
			return nil
		}
		if _, _, err := net.SplitHostPort(v); err != nil {
			return bad(key, "%q is not host:port", v)
		}
		return nil
	}
	for k, v := range map[string]string{"intake.listen": c.Intake.Listen, "syslog.udp_listen": c.Syslog.UDPListen,
		"syslog.tcp_listen": c.Syslog.TCPListen, "syslog.tls_listen": c.Syslog.TLSListen} {
		if err := hostPort(k, v); err != nil {
			return err
		}
	}
	for i, b := range c.Intake.KafkaBootstrap {
		if err := hostPort(fmt.Sprintf("intake.kafka_bootstrap[%d]", i), b); err != nil {
			return err
		}
	}
	if u := c.Intake.AdvertiseURL; u != "" && !strings.HasPrefix(u, "https://") {
		return bad("intake.advertise_url", "%q must start with https://", u)
	}
	if c.Intake.MaxBodyBytes < 1<<20 || c.Intake.MaxBodyBytes > 1<<30 {
		return bad("intake.max_body_bytes", "must be between 1MiB and 1GiB, got %d", c.Intake.MaxBodyBytes)
	}
	if c.Intake.RatePerAgent <= 0 {
		return bad("intake.rate_per_agent", "must be positive")
	}
	if c.Intake.EnrolPerIPMin < 1 {
		return bad("intake.enrol_per_ip_per_minute", "must be at least 1")
	}
	if c.PKI.Backend != "local" {
		return bad("pki.backend", "%q is not local (Vault PKI is not built yet)", c.PKI.Backend)
	}
	if (c.PKI.Local.CACertFile == "") != (c.PKI.Local.CAKeyFile == "") {
		return bad("pki.local", "ca_cert_file and ca_key_file go together")
	}
	if c.PKI.CertTTL.D() < time.Hour {
		return bad("pki.cert_ttl", "must be at least 1h, got %s", c.PKI.CertTTL.D())
	}
	if rb := c.PKI.RenewBefore.D(); rb <= 0 || rb >= c.PKI.CertTTL.D() {
		return bad("pki.renew_before", "must be positive and less than pki.cert_ttl, got %s", rb)
	}
	if (c.Syslog.CertFile == "") != (c.Syslog.KeyFile == "") {
		return bad("syslog", "cert_file and key_file go together")
	}
	if c.Syslog.MaxMessageBytes < 480 || c.Syslog.MaxMessageBytes > 1<<20 {
		return bad("syslog.max_message_bytes", "must be between 480 and 1048576, got %d", c.Syslog.MaxMessageBytes)
	}
	if c.Syslog.RatePerSource <= 0 {
		return bad("syslog.rate_per_source", "must be positive")
	}
	if c.Syslog.MaxConnections < 1 {
		return bad("syslog.max_connections", "must be at least 1")
	}
	if c.Syslog.IdleTimeout.D() <= 0 {
		return bad("syslog.idle_timeout", "must be positive")
	}
	if c.Correlator.ReloadInterval.D() < time.Second || c.Correlator.SnapshotInterval.D() < 100*time.Millisecond {
		return bad("correlator", "reload_interval must be at least 1s and snapshot_interval at least 100ms")
	}
	for i, f := range c.Correlator.Feeds {
		key := fmt.Sprintf("correlator.feeds[%d]", i)
		switch f.Format {
		case "misp", "misp-feed", "feodo", "urlhaus", "threatfox", "stix", "taxii", "csv":
		default:
			return bad(key+".format", "%q is not one of misp, misp-feed, feodo, urlhaus, threatfox, stix, taxii, csv", f.Format)
		}
		if f.Name == "" || f.URL == "" {
			return bad(key, "name and url are required")
		}
		if f.Interval.D() < time.Minute {
			return bad(key+".interval", "must be at least 1m")
		}
	}
	if c.Incidents.Window.D() < time.Minute || c.Incidents.CampaignWindow.D() < time.Minute {
		return bad("incidents", "window and campaign_window must be at least 1m")
	}
	if c.Collector.SilenceCheck.D() < time.Second {
		return bad("collector.silence_check", "must be at least 1s")
	}
	if c.Collector.EntitySilenceAfter.D() < time.Minute {
		return bad("collector.entity_silence_after", "must be at least 1m")
	}
	return nil
}

// PKIDir is the local CA's directory.
func (c Config) PKIDir() string {
	if c.PKI.Local.Dir != "" {
		return c.PKI.Local.Dir
	}
	return filepath.Join(c.DataDir, "pki")
}
