package netsum

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/csirt-toscana/platform/agents/internal/source"
	"github.com/csirt-toscana/platform/internal/envelope"
	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/policy"
)

// liveHandle is an open live capture.
type liveHandle interface {
	read() ([]byte, gopacket.CaptureInfo, error) // errTimeout when nothing arrived for a while
	linkType() layers.LinkType
	stats() (received, dropped, ifDropped uint64, err error)
	close()
}

var errTimeout = errors.New("capture read timeout")

// KeyFile is the name of the pseudonymisation key file in the agent's
// state directory.
const KeyFile = "capture-pseudonym.key"

// CaptureConfig is the configuration of the "capture" source kind: the
// policy's capture section (same names) and the table bounds.
type CaptureConfig struct {
	Interface    string   `yaml:"interface" json:"interface,omitempty"`
	BPF          string   `yaml:"bpf" json:"bpf,omitempty"`
	SnapLen      int      `yaml:"snaplen" json:"snaplen,omitempty"`
	Exclude      Exclude  `yaml:"exclude" json:"exclude"`
	Internal     []string `yaml:"internal_networks" json:"internal_networks,omitempty"`
	HashInternal bool     `yaml:"hash_internal" json:"hash_internal,omitempty"`
	Promiscuous  bool     `yaml:"promiscuous" json:"promiscuous,omitempty"`
	MaxFlows     int      `yaml:"max_flows" json:"max_flows,omitempty"`
	// BufferBytes is the kernel ring size. Default 8 MiB.
	BufferBytes int `yaml:"buffer_bytes" json:"buffer_bytes,omitempty"`
}

// Exclude mirrors policy.Exclude with YAML names.
type Exclude struct {
	Networks []string `yaml:"networks" json:"networks,omitempty"`
	Ports    []int    `yaml:"ports" json:"ports,omitempty"`
}

// FromPolicy converts the policy's capture section.
func FromPolicy(c policy.Capture) CaptureConfig {
	return CaptureConfig{Interface: c.Interface, BPF: c.BPF, SnapLen: c.SnapLen,
		Exclude:  Exclude{Networks: c.Exclude.Networks, Ports: c.Exclude.Ports},
		Internal: c.Internal, HashInternal: c.HashInternal}
}

func (c CaptureConfig) policy() policy.Capture {
	return policy.Capture{Enabled: true, Interface: c.Interface, BPF: c.BPF, SnapLen: c.SnapLen,
		Exclude:  policy.Exclude{Networks: c.Exclude.Networks, Ports: c.Exclude.Ports},
		Internal: c.Internal, HashInternal: c.HashInternal}
}

func init() {
	source.Register("capture", func(name string, decode func(any) error, deps source.Deps) (source.Source, error) {
		var c CaptureConfig
		if err := decode(&c); err != nil {
			return nil, err
		}
		return NewLive(name, c, deps)
	})
}

// CaptureStats are the counters of a live capture, for heartbeats.
type CaptureStats struct {
	Interface string
	Received  uint64 // packets the kernel passed the filter
	Dropped   uint64 // packets the kernel dropped: the ring was full (the agent was too slow)
	IfDropped uint64 // packets the interface dropped
	Summary   Stats  // summarizer counters
}

// StatsReporter is implemented by the capture source; the agent's
// heartbeat reads it.
type StatsReporter interface {
	CaptureStats() CaptureStats
}

// LiveSource is the "capture" source: it captures on an interface and
// emits summary records (envelope.KindSummary, the event JSON).
type LiveSource struct {
	name string
	cfg  CaptureConfig
	deps source.Deps
	pv   *Privacy

	mu     sync.Mutex
	status source.Status
	stats  CaptureStats
}

var (
	_ source.Source = (*LiveSource)(nil)
	_ StatsReporter = (*LiveSource)(nil)
)

// NewLive validates the configuration and prepares a live capture source
// (the capture starts in Run).
func NewLive(name string, c CaptureConfig, deps source.Deps) (*LiveSource, error) {
	deps = deps.WithDefaults()
	if c.SnapLen == 0 {
		c.SnapLen = policy.DefaultSnapLen
	}
	if c.SnapLen < 96 || c.SnapLen > 65535 {
		return nil, fmt.Errorf("snaplen %d is outside 96..65535", c.SnapLen)
	}
	if c.BufferBytes <= 0 {
		c.BufferBytes = 8 << 20
	}
	var key []byte
	if c.HashInternal {
		var err error
		if key, err = loadOrCreateKey(deps.StateDir); err != nil {
			return nil, err
		}
	}
	pv, err := NewPrivacy(c.policy(), key)
	if err != nil {
		return nil, err
	}
	if _, err := CaptureFilter(c.policy()); err != nil {
		return nil, err
	}
	s := &LiveSource{name: name, cfg: c, deps: deps, pv: pv}
	s.status = source.Status{Source: name, Path: c.Interface, State: source.StateWaiting, Since: deps.Now()}
	return s, nil
}

// loadOrCreateKey returns the agent's pseudonymisation key, creating it
// (random, mode 0600) on first use.
func loadOrCreateKey(dir string) ([]byte, error) {
	if dir == "" {
		return nil, errors.New("capture.hash_internal needs the agent's state directory to keep its pseudonymisation key")
	}
	path := filepath.Join(dir, KeyFile)
	b, err := os.ReadFile(path) //nolint:gosec // the agent's own state file
	if err == nil {
		if len(b) < 16 {
			return nil, fmt.Errorf("pseudonymisation key %s is shorter than 16 bytes: remove it to have a new one made (pseudonyms will change)", path)
		}
		return b, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("reading the pseudonymisation key: %w", err)
	}
	key := make([]byte, HashKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the state directory for the pseudonymisation key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600) //nolint:gosec // the agent's own state file
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return loadOrCreateKey(dir)
		}
		return nil, fmt.Errorf("creating the pseudonymisation key: %w", err)
	}
	if _, err := f.Write(key); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("writing the pseudonymisation key: %w", err)
	}
	return key, f.Close()
}

// defaultInterface is the first non-loopback interface that is up.
func defaultInterface() (string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return "", fmt.Errorf("listing interfaces: %w", err)
	}
	for _, i := range ifs {
		if i.Flags&net.FlagUp != 0 && i.Flags&net.FlagLoopback == 0 {
			return i.Name, nil
		}
	}
	return "", errors.New("no network interface is up besides loopback: set capture.interface in the policy")
}

func (s *LiveSource) setState(st source.State, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status.State != st {
		s.status.Since = s.deps.Now()
	}
	s.status.State = st
	s.status.Err = ""
	if err != nil {
		s.status.Err = err.Error()
	}
}

// Run captures until ctx ends. Summaries are sent on out; when out is
// full the capture waits (the kernel ring absorbs bursts, and its drops
// are counted in CaptureStats).
func (s *LiveSource) Run(ctx context.Context, out chan<- source.Record) error {
	iface := s.cfg.Interface
	if iface == "" {
		var err error
		if iface, err = defaultInterface(); err != nil {
			s.setState(source.StateError, err)
			return err
		}
	}
	filter, _ := CaptureFilter(s.cfg.policy())
	h, err := openLive(iface, s.cfg.SnapLen, filter, s.cfg.Promiscuous, s.cfg.BufferBytes)
	if err != nil {
		s.setState(source.StateError, err)
		return err
	}
	defer h.close()
	s.mu.Lock()
	s.status.Path = iface
	s.stats.Interface = iface
	s.mu.Unlock()
	s.setState(source.StateReading, nil)
	log := s.deps.Logger.WithField("source", s.name).WithField("interface", iface)
	log.WithField("filter", filter).Info("packet capture started")

	stopped := false
	sum := New(Config{MaxFlows: s.cfg.MaxFlows, Privacy: s.pv, Logger: log, Emit: func(e event.Event) {
		if stopped {
			return
		}
		b, err := e.MarshalJSON()
		if err != nil {
			log.WithError(err).Warn("a summary could not be encoded; it is dropped")
			return
		}
		rec := source.Record{Stream: s.name, Origin: iface, Time: e.Time(), Kind: envelope.KindSummary, Data: b}
		select {
		case out <- rec:
		case <-ctx.Done():
			stopped = true
		}
	}})
	lt := h.linkType()
	if !supportedLink(lt) {
		err := fmt.Errorf("interface %s has link type %s, which the summarizer does not decode", iface, lt)
		s.setState(source.StateError, err)
		return err
	}
	lastStats := time.Now()
	for ctx.Err() == nil {
		data, ci, err := h.read()
		switch {
		case err == nil:
			sum.Packet(ci.Timestamp, lt, data)
		case errors.Is(err, errTimeout):
			sum.Tick(time.Now())
		default:
			s.setState(source.StateError, err)
			log.WithError(err).Error("packet capture failed")
			return fmt.Errorf("reading packets on %s: %w", iface, err)
		}
		if time.Since(lastStats) >= time.Second {
			lastStats = time.Now()
			s.refreshStats(h, sum)
		}
	}
	// Report what the table holds, as far as the receiver still listens.
	stopped = false
	flushCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ctx = flushCtx
	sum.Flush()
	s.refreshStats(h, sum)
	return nil
}

func (s *LiveSource) refreshStats(h liveHandle, sum *Summarizer) {
	rcv, drop, ifdrop, err := h.stats()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		s.stats.Received, s.stats.Dropped, s.stats.IfDropped = rcv, drop, ifdrop
	}
	s.stats.Summary = sum.Stats()
	s.status.Read = int64(s.stats.Summary.Packets) //nolint:gosec // counter
}

// Ack is a no-op: a live capture cannot be replayed, so it keeps no
// checkpoint.
func (s *LiveSource) Ack(...source.Cursor) error { return nil }

// Status describes the capture.
func (s *LiveSource) Status() []source.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return []source.Status{s.status}
}

// CaptureStats returns the capture's counters (kernel drops included).
func (s *LiveSource) CaptureStats() CaptureStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}
