// Package syslogin is the collector's syslog intake for devices that cannot
// run an agent (firewalls, NAS, switches): it listens on UDP (RFC 5426),
// TCP (RFC 6587, octet-counting or newline framing detected per
// connection) and TLS (RFC 5425), maps each message's source address to a
// registered device and so to its entity (the device registry in the
// store's agents collection), parses it with the collector's parsers, and
// hands the events in batches to a Sink the caller supplies. It enforces
// the intake's limits: message size, a token bucket per source address,
// concurrent connections, idle and read deadlines.
//
// A message from an address no device covers is kept, as an event of the
// regional tenant tagged "unknown-source", so that an analyst sees it and
// can register the device (Options.DropUnknown drops such messages
// instead). docs/syslog.md is the operator's guide.
package syslogin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/csirt-toscana/platform/collector/internal/parse"
	"github.com/csirt-toscana/platform/internal/config"
	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/store"
)

// Sink receives the intake's events, in batches. The collector implements
// it with its outputs (csirt.events.v1 keyed by organization.id, and the
// store's events collection under that tenant). Publish returns once the
// events are accepted (durable, for the collector's outputs); an error
// makes the intake retry the batch a few times, then drop and count it.
// While Publish blocks, TCP and TLS reading slows down and UDP messages
// beyond the queue are dropped and counted. Publish is called from one
// goroutine at a time.
type Sink interface {
	Publish(ctx context.Context, events []event.Event) error
}

// Tags the intake puts on events.
const (
	TagUnknownSource = "unknown-source" // no registered device covers the source address
	TagTruncated     = "truncated"      // the message was longer than MaxMessageBytes and was cut
)

// Transports (label "transport" of the metrics).
const (
	UDP = "udp"
	TCP = "tcp"
	TLS = "tls"
)

// Options configure a Server. Sink and Store (or Devices) are required,
// and at least one listen address.
type Options struct {
	// Listen addresses; "" disables a transport. Port 0 picks a free port
	// (see the Addr methods).
	UDPListen, TCPListen, TLSListen string
	// TLS certificate of the TLS listener: GetCertificate or TLSCertificate
	// when set (for example issued by the local CA), else loaded from
	// CertFile/KeyFile.
	TLSCertificate    *tls.Certificate
	CertFile, KeyFile string
	// GetCertificate, when set, is asked for the certificate at every
	// handshake instead (a certificate the local CA renews in place).
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// ClientCAs, when set, makes the TLS listener require a client
	// certificate signed by one of them (RFC 5425 mutual authentication).
	ClientCAs *x509.CertPool

	// MaxMessageBytes is the longest message kept; longer ones are cut and
	// tagged "truncated". Default 64 KiB.
	MaxMessageBytes int
	// RatePerSource is messages per second per source address, with a
	// burst of twice that; excess is dropped and counted. Default 5000.
	RatePerSource float64
	// MaxConnections bounds concurrent TCP plus TLS connections; more are
	// closed at once. Default 1024.
	MaxConnections int
	// IdleTimeout closes a connection that sends nothing for this long (it
	// is also the read deadline inside a frame). Default 10 min.
	IdleTimeout time.Duration
	// HandshakeTimeout bounds a TLS handshake. Default 30 s.
	HandshakeTimeout time.Duration

	// Store holds the device registry; Devices, when set, replaces the
	// registry New would build over Store.
	Store   store.Store
	Devices *Registry
	// DropUnknown drops messages from addresses no device covers instead
	// of keeping them as regional events tagged "unknown-source".
	DropUnknown bool

	Sink Sink
	// Parser parses messages; default parse.New with Now.
	Parser *parse.Dispatcher
	// BatchSize and BatchDelay: a batch goes to the sink when it has
	// BatchSize events or its oldest event waited BatchDelay. Defaults 512
	// and 200 ms; BatchDelay is at most 1 s.
	BatchSize  int
	BatchDelay time.Duration
	// QueueSize is how many parsed events may wait for the sink. Default 8192.
	QueueSize int
	// SinkAttempts is how often a batch is offered to the sink before it is
	// dropped. Default 5 (backoff from 100 ms, doubling).
	SinkAttempts int
	// DrainTimeout bounds the graceful shutdown. Default 10 s.
	DrainTimeout time.Duration

	Now        func() time.Time
	Logger     logrus.FieldLogger
	Registerer prometheus.Registerer
}

// OptionsFromConfig returns the options of the configuration's syslog
// section; the caller adds Store, Sink, Logger, Registerer and, when
// cert_file is empty, a TLSCertificate (e.g. issued by the local CA).
func OptionsFromConfig(c config.Syslog) Options {
	return Options{
		UDPListen: c.UDPListen, TCPListen: c.TCPListen, TLSListen: c.TLSListen,
		CertFile: c.CertFile, KeyFile: c.KeyFile,
		MaxMessageBytes: c.MaxMessageBytes, RatePerSource: c.RatePerSource,
		MaxConnections: c.MaxConnections, IdleTimeout: c.IdleTimeout.D(),
	}
}

func (o *Options) fill() error {
	if o.Sink == nil {
		return errors.New("syslog intake: a sink is required")
	}
	if o.Store == nil && o.Devices == nil {
		return errors.New("syslog intake: a store (device registry) is required")
	}
	if o.UDPListen == "" && o.TCPListen == "" && o.TLSListen == "" {
		return errors.New("syslog intake: no listen address: set syslog.udp_listen, tcp_listen or tls_listen")
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = 64 << 10
	}
	if o.RatePerSource <= 0 {
		o.RatePerSource = 5000
	}
	if o.MaxConnections <= 0 {
		o.MaxConnections = 1024
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 10 * time.Minute
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 30 * time.Second
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 512
	}
	if o.BatchDelay <= 0 {
		o.BatchDelay = 200 * time.Millisecond
	}
	o.BatchDelay = min(o.BatchDelay, time.Second)
	if o.QueueSize <= 0 {
		o.QueueSize = 8192
	}
	if o.SinkAttempts <= 0 {
		o.SinkAttempts = 5
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = discard()
	}
	if o.Parser == nil {
		o.Parser = parse.New(parse.Options{Now: o.Now})
	}
	if o.Devices == nil {
		o.Devices = NewRegistry(o.Store, RegistryOptions{Now: o.Now, Logger: o.Logger})
	}
	return nil
}

// Server is the syslog intake. New binds the listeners; Run serves them.
type Server struct {
	o       Options
	log     logrus.FieldLogger
	m       *metrics
	lim     *limiter
	udp     *net.UDPConn
	tcp     net.Listener
	tls     net.Listener
	queue   chan event.Event
	abort   chan struct{} // closed when the drain timed out
	slots   chan struct{} // connection semaphore
	lastNs  atomic.Int64  // last receive time handed out (unique per message)
	refused atomic.Int64  // connections refused since the last log line
	refLog  atomic.Int64

	connMu sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// New validates the options, loads the TLS certificate and binds the
// listeners (so a taken port fails here, before the process reports ready).
func New(o Options) (*Server, error) {
	if err := o.fill(); err != nil {
		return nil, err
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Server{o: o, log: o.Logger.WithField("component", "syslog"), m: m,
		lim: newLimiter(o.RatePerSource, 2*o.RatePerSource), queue: make(chan event.Event, o.QueueSize),
		abort: make(chan struct{}), slots: make(chan struct{}, o.MaxConnections), conns: map[net.Conn]struct{}{}}
	var tlsCfg *tls.Config
	if o.TLSListen != "" {
		if tlsCfg, err = o.tlsConfig(); err != nil {
			return nil, err
		}
	}
	lc := net.ListenConfig{}
	ctx := context.Background()
	if o.UDPListen != "" {
		pc, err := lc.ListenPacket(ctx, "udp", o.UDPListen)
		if err != nil {
			return nil, fmt.Errorf("syslog intake: listening on UDP %s: %w", o.UDPListen, err)
		}
		s.udp = pc.(*net.UDPConn)
		_ = s.udp.SetReadBuffer(4 << 20) // best effort: fewer kernel drops in bursts
	}
	if o.TCPListen != "" {
		if s.tcp, err = lc.Listen(ctx, "tcp", o.TCPListen); err != nil {
			s.closeListeners()
			return nil, fmt.Errorf("syslog intake: listening on TCP %s: %w", o.TCPListen, err)
		}
	}
	if o.TLSListen != "" {
		ln, err := lc.Listen(ctx, "tcp", o.TLSListen)
		if err != nil {
			s.closeListeners()
			return nil, fmt.Errorf("syslog intake: listening for TLS on %s: %w", o.TLSListen, err)
		}
		s.tls = tls.NewListener(ln, tlsCfg)
	}
	return s, nil
}

func (o *Options) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case o.GetCertificate != nil:
		cfg.GetCertificate = o.GetCertificate
	case o.TLSCertificate != nil:
		cfg.Certificates = []tls.Certificate{*o.TLSCertificate}
	case o.CertFile != "" && o.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("syslog intake: loading the TLS certificate %s and its key: %w (check syslog.cert_file and syslog.key_file)", o.CertFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	default:
		return nil, errors.New("syslog intake: the TLS listener needs a certificate: set syslog.cert_file and syslog.key_file, or let the local CA issue one")
	}
	if o.ClientCAs != nil {
		cfg.ClientCAs = o.ClientCAs
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// UDPAddr, TCPAddr and TLSAddr return the bound addresses (nil when that
// transport is off).
func (s *Server) UDPAddr() net.Addr {
	if s.udp == nil {
		return nil
	}
	return s.udp.LocalAddr()
}

// TCPAddr returns the TCP listener's address, or nil.
func (s *Server) TCPAddr() net.Addr {
	if s.tcp == nil {
		return nil
	}
	return s.tcp.Addr()
}

// TLSAddr returns the TLS listener's address, or nil.
func (s *Server) TLSAddr() net.Addr {
	if s.tls == nil {
		return nil
	}
	return s.tls.Addr()
}

// Devices returns the device registry in use.
func (s *Server) Devices() *Registry { return s.o.Devices }

func (s *Server) closeListeners() {
	if s.udp != nil {
		_ = s.udp.Close()
	}
	if s.tcp != nil {
		_ = s.tcp.Close()
	}
	if s.tls != nil {
		_ = s.tls.Close()
	}
}

// Close releases the listeners of a Server whose Run was never called.
func (s *Server) Close() { s.closeListeners() }

// Run loads the devices and serves until ctx is cancelled. Then it stops
// accepting, closes the connections (a frame being read is lost), hands
// every event already parsed to the sink, writes the devices' last_seen,
// and returns nil, all within DrainTimeout. A failure to load the devices
// at start is logged, not fatal: messages count as unknown-source until a
// reload succeeds.
func (s *Server) Run(ctx context.Context) error {
	if err := s.o.Devices.Load(ctx); err != nil {
		s.log.WithError(err).Warn("loading the syslog devices failed; every message counts as from an unknown source until a reload succeeds")
	}
	pubCtx, cancelPub := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelPub()
	// The registry stops after the drain, so that its final last_seen
	// write includes the messages read until then.
	regCtx, cancelReg := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelReg()
	regDone := make(chan struct{})
	go func() { defer close(regDone); _ = s.o.Devices.Run(regCtx) }()
	batchDone := make(chan struct{})
	go func() { defer close(batchDone); s.batcher(pubCtx) }()

	var readers sync.WaitGroup
	if s.udp != nil {
		for range 2 {
			readers.Go(func() { s.serveUDP(ctx) })
		}
	}
	for _, l := range []struct {
		ln net.Listener
		tr string
	}{{s.tcp, TCP}, {s.tls, TLS}} {
		if l.ln != nil {
			readers.Go(func() { s.accept(ctx, l.ln, l.tr, &readers) })
		}
	}
	s.log.WithFields(logrus.Fields{"udp": addrString(s.UDPAddr()), "tcp": addrString(s.TCPAddr()), "tls": addrString(s.TLSAddr()),
		"devices": s.o.Devices.Len()}).Info("syslog intake listening")

	<-ctx.Done()
	deadline := time.NewTimer(s.o.DrainTimeout)
	defer deadline.Stop()
	s.closeListeners()
	s.closeConns()
	readersDone := make(chan struct{})
	go func() { readers.Wait(); close(readersDone) }()
	select {
	case <-readersDone:
	case <-deadline.C:
		close(s.abort)
		cancelPub()
		<-readersDone
	}
	close(s.queue)
	select {
	case <-batchDone:
	case <-deadline.C:
		cancelPub()
		<-batchDone
	}
	cancelReg()
	<-regDone
	s.log.Info("syslog intake stopped")
	return nil
}

func addrString(a net.Addr) string {
	if a == nil {
		return "off"
	}
	return a.String()
}

// serveUDP reads datagrams: one datagram is one message.
func (s *Server) serveUDP(ctx context.Context) {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := s.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.WithError(err).Warn("reading a syslog datagram failed")
			continue
		}
		s.m.received.WithLabelValues(UDP).Inc()
		s.m.bytes.WithLabelValues(UDP).Add(float64(n))
		msg, truncated := buf[:n], false
		if n > s.o.MaxMessageBytes {
			msg, truncated = buf[:s.o.MaxMessageBytes], true
		}
		ev, ok := s.process(ctx, UDP, from, msg, truncated)
		if !ok {
			continue
		}
		select {
		case s.queue <- ev:
		default:
			s.m.dropped.WithLabelValues(UDP, DropQueueFull).Inc()
		}
	}
}

// accept serves a stream listener until it is closed.
func (s *Server) accept(ctx context.Context, ln net.Listener, tr string, wg *sync.WaitGroup) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.WithError(err).WithField("transport", tr).Warn("accepting a syslog connection failed")
			time.Sleep(50 * time.Millisecond)
			continue
		}
		select {
		case s.slots <- struct{}{}:
		default:
			// Count before closing: whoever sees the close may read the metric.
			s.m.connsRefused.WithLabelValues(tr).Inc()
			s.refused.Add(1)
			_ = c.Close()
			if now := s.o.Now().UnixNano(); now-s.refLog.Load() >= int64(logEvery) {
				s.refLog.Store(now)
				s.log.WithFields(logrus.Fields{"transport": tr, "max_connections": s.o.MaxConnections, "refused": s.refused.Swap(0)}).
					Warn("syslog connections refused: max_connections are open")
			}
			continue
		}
		if !s.track(c) {
			_ = c.Close()
			<-s.slots
			return
		}
		wg.Go(func() {
			defer func() { s.untrack(c); _ = c.Close(); <-s.slots }()
			s.serveConn(ctx, c, tr)
		})
	}
}

func (s *Server) track(c net.Conn) bool {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.connMu.Lock()
	delete(s.conns, c)
	s.connMu.Unlock()
}

// closeConns wakes every connection's reader (their deadline passes now);
// each then closes its connection.
func (s *Server) closeConns() {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	s.closed = true
	for c := range s.conns {
		_ = c.SetReadDeadline(time.Now())
	}
}

// serveConn reads one stream connection's frames.
func (s *Server) serveConn(ctx context.Context, c net.Conn, tr string) {
	s.m.connsOpen.WithLabelValues(tr).Inc()
	defer s.m.connsOpen.WithLabelValues(tr).Dec()
	from := remoteAddrPort(c)
	log := s.log.WithFields(logrus.Fields{"transport": tr, "remote": from.String()})
	if tc, ok := c.(*tls.Conn); ok {
		hctx, cancel := context.WithTimeout(ctx, min(s.o.HandshakeTimeout, s.o.IdleTimeout))
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				s.m.connErrors.WithLabelValues(tr).Inc()
				log.WithError(err).Warn("syslog TLS handshake failed (check the device's CA, certificate and TLS version)")
			}
			return
		}
	}
	fr := newFrameReader(c, s.o.MaxMessageBytes)
	for {
		if err := c.SetReadDeadline(time.Now().Add(s.o.IdleTimeout)); err != nil {
			return
		}
		msg, truncated, err := fr.Next()
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, errIncomplete):
				s.m.dropped.WithLabelValues(tr, DropIncomplete).Inc()
				log.Debug("syslog connection ended inside an octet-counted frame")
			case errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
				if ctx.Err() == nil {
					log.Debug("syslog connection idle: closed")
				}
			case errors.Is(err, net.ErrClosed), errors.Is(err, io.EOF):
			default:
				if ctx.Err() == nil {
					s.m.connErrors.WithLabelValues(tr).Inc()
					log.WithError(err).Debug("syslog connection read failed")
				}
			}
			return
		}
		s.m.received.WithLabelValues(tr).Inc()
		s.m.bytes.WithLabelValues(tr).Add(float64(len(msg)))
		ev, ok := s.process(ctx, tr, from, msg, truncated)
		if !ok {
			continue
		}
		select {
		case s.queue <- ev: // blocks while the sink is behind: reading slows down
		case <-s.abort:
			return
		}
	}
}

func remoteAddrPort(c net.Conn) netip.AddrPort {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	return ap
}

// stamp returns the receive time of a message: the clock, made strictly
// increasing so that two identical messages never share an event id.
func (s *Server) stamp() time.Time {
	now := s.o.Now().UnixNano()
	for {
		last := s.lastNs.Load()
		next := max(now, last+1)
		if s.lastNs.CompareAndSwap(last, next) {
			return time.Unix(0, next).UTC()
		}
	}
}

// process applies the limits and turns one message into an event; ok is
// false when the message is dropped (counted).
func (s *Server) process(ctx context.Context, tr string, from netip.AddrPort, raw []byte, truncated bool) (ev event.Event, ok bool) {
	addr := from.Addr().Unmap().WithZone("")
	now := s.o.Now()
	if allowed, report := s.lim.allow(addr, now); !allowed {
		s.m.dropped.WithLabelValues(tr, DropRateLimit).Inc()
		if report > 0 {
			s.log.WithFields(logrus.Fields{"source": addr.String(), "transport": tr, "dropped": report, "rate_per_source": s.o.RatePerSource}).
				Warn("syslog source over its rate: messages dropped")
		}
		return nil, false
	}
	dev, known := s.o.Devices.Lookup(ctx, addr)
	if !known {
		s.m.unknown.WithLabelValues(tr).Inc()
		if n := s.lim.unknownSource(addr, now); n > 0 {
			s.log.WithFields(logrus.Fields{"source": addr.String(), "transport": tr, "messages": n, "kept": !s.o.DropUnknown}).
				Warn("syslog from an address no device covers: register it with `csirt admin device add`")
		}
		if s.o.DropUnknown {
			s.m.dropped.WithLabelValues(tr, DropUnknownSource).Inc()
			return nil, false
		}
	}
	if truncated {
		s.m.truncated.WithLabelValues(tr).Inc()
	}
	at := s.stamp()
	defer func() {
		if r := recover(); r != nil {
			s.m.dropped.WithLabelValues(tr, DropParserPanic).Inc()
			s.log.WithFields(logrus.Fields{"source": addr.String(), "panic": fmt.Sprint(r)}).Error("parser panic on a syslog message: dropped (a bug: please report it)")
			ev, ok = nil, false
		}
	}()
	ev = s.o.Parser.Parse(parse.Record{Raw: raw, Source: "syslog", Time: at, Host: dev.Hostname})
	s.stampEvent(ev, dev, known, addr, at, raw, truncated)
	if known {
		s.o.Devices.Seen(dev.Name, at)
	}
	return ev, true
}

// stampEvent sets the fields the intake owns.
func (s *Server) stampEvent(ev event.Event, dev Device, known bool, addr netip.Addr, at time.Time, raw []byte, truncated bool) {
	entity, agent := dev.Entity, "syslog:"+dev.Name
	if !known {
		entity, agent = store.RegionalTenant, "syslog:unknown"
		addTag(ev, TagUnknownSource)
	}
	if truncated {
		addTag(ev, TagTruncated)
	}
	ts := at.Format(time.RFC3339Nano)
	ev["event.id"] = event.IDFromRaw([]byte(entity), []byte(dev.Name), []byte(addr.String()), []byte(ts), raw)
	ev["event.ingested"] = at
	ev["organization.id"] = entity
	ev["agent.id"] = agent
	ev["agent.type"] = "syslog"
	ev["observer.ip"] = addr.String()
	if known {
		ev["observer.name"] = dev.Name
		if dev.Hostname != "" {
			ev["observer.hostname"] = dev.Hostname
		}
	}
	if ev.String("host.name") == "" {
		switch {
		case known && dev.Hostname != "":
			ev["host.name"] = dev.Hostname
		case known:
			ev["host.name"] = dev.Name
		default:
			ev["host.name"] = addr.String()
		}
	}
}

func addTag(ev event.Event, tag string) {
	l, _ := ev["tags"].([]string)
	for _, t := range l {
		if t == tag {
			return
		}
	}
	ev["tags"] = append(l, tag)
}

// batcher hands events to the sink in batches until the queue is closed.
func (s *Server) batcher(ctx context.Context) {
	batch := make([]event.Event, 0, s.o.BatchSize)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	flush := func() {
		timer.Stop()
		if len(batch) > 0 {
			s.publish(ctx, batch)
			batch = make([]event.Event, 0, s.o.BatchSize)
		}
	}
	for {
		select {
		case ev, ok := <-s.queue:
			if !ok {
				flush()
				return
			}
			if len(batch) == 0 {
				timer.Reset(s.o.BatchDelay)
			}
			batch = append(batch, ev)
			if len(batch) >= s.o.BatchSize {
				flush()
			}
		case <-timer.C:
			flush()
		}
	}
}

// publish offers a batch to the sink, retrying with backoff; after
// SinkAttempts failures (or when the drain is out of time) it drops the
// batch and counts it.
func (s *Server) publish(ctx context.Context, batch []event.Event) {
	wait := 100 * time.Millisecond
	var err error
	for attempt := 1; attempt <= s.o.SinkAttempts; attempt++ {
		if err = s.o.Sink.Publish(ctx, batch); err == nil {
			s.m.published.Add(float64(len(batch)))
			return
		}
		if ctx.Err() != nil || attempt == s.o.SinkAttempts {
			break
		}
		s.log.WithError(err).WithField("attempt", attempt).Warn("publishing syslog events failed; retrying")
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
		wait *= 2
	}
	byTr := len(batch)
	s.m.dropped.WithLabelValues("any", DropSinkError).Add(float64(byTr))
	s.log.WithError(err).WithField("events", byTr).Error("syslog events dropped: the sink refused them")
}
