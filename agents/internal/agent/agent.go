// Package agent is the csirt-agent runtime: it loads the local
// configuration and the enrolled identity, builds the sources of the
// central policy, runs them through batchers into the disk spool and one
// shipper (Kafka over mutual TLS, or the HTTPS intake), emits heartbeats,
// writes the status file, applies new policies without restarting,
// renews the certificate, and runs the doctor's checks.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/csirt-toscana/platform/agents/internal/heartbeat"
	"github.com/csirt-toscana/platform/agents/internal/identity"
	"github.com/csirt-toscana/platform/agents/internal/kafkaout"
	"github.com/csirt-toscana/platform/agents/internal/netsum"
	"github.com/csirt-toscana/platform/agents/internal/seq"
	"github.com/csirt-toscana/platform/agents/internal/ship"
	"github.com/csirt-toscana/platform/agents/internal/source"
	"github.com/csirt-toscana/platform/agents/internal/spool"
	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/policy"

	_ "github.com/csirt-toscana/platform/agents/internal/journal" // the "journal" source kind
	// netsum registers the "capture" kind; the agent also adds the capture
	// source itself when the policy's capture section is enabled.
	_ "github.com/csirt-toscana/platform/agents/internal/tail" // the "file" source kind
)

// Sub-directories of the state directory.
const (
	SpoolDir      = "spool"
	SeqDir        = "seq"
	CheckpointDir = "checkpoints"
)

// Options configure an Agent. Config is required.
type Options struct {
	Config  Config
	Version string
	// Central reaches the intake (policy, renewal, health, intake
	// transport). Nil: no policy refresh nor renewal, Kafka only.
	Central Central
	// Producer replaces the transport (tests and benchmarks).
	Producer ship.Producer
	Logger   logrus.FieldLogger
	Now      func() time.Time
	// NoSync turns off fsync in the spool and sequence store (benchmarks).
	NoSync bool
	// RenewCheck is how often the certificate is checked. Default 1 h.
	RenewCheck time.Duration
	// Linger of the batchers. Default ship.DefaultLinger.
	Linger time.Duration
	// MaxProcs makes the agent set GOMAXPROCS (Config.MaxProcs, or its
	// default, which depends on whether the policy turns capture on) unless
	// the GOMAXPROCS environment variable is set. The binary sets it; tests
	// running agents inside the test process do not.
	MaxProcs bool
	// MemoryLimit makes the agent set the Go runtime's soft memory limit
	// (Config.MemoryLimit, or its default, which depends on whether the
	// policy turns capture on) unless GOMEMLIMIT is set. The binary sets
	// it; tests running agents inside the test process do not.
	MemoryLimit bool
}

// Agent is the running agent. Build it with New, then Run once.
type Agent struct {
	opts     Options
	cfg      Config
	log      logrus.FieldLogger
	now      func() time.Time
	id       *identity.Identity
	spool    *spool.Spool
	seq      *seq.Store
	shipper  *ship.Shipper
	producer *trackingProducer
	closer   func() error // closes the transport
	hostname string
	started  time.Time

	transport, server string

	mu          sync.Mutex
	pol         policy.Policy
	gen         *generation
	base        ship.Counters // batcher counters of finished generations
	certNA      time.Time
	certState   string
	certMsg     string
	polFetched  time.Time
	polErr      string
	polErrAt    time.Time
	problems    map[string]string // key -> message
	spoolErr    atomic.Value      // string
	stopped     atomic.Bool
	reloads     atomic.Uint64
	appendFails atomic.Uint64
	memLimit    atomic.Int64 // soft memory limit in force (0: none set by the agent)
	maxProcs    atomic.Int64 // GOMAXPROCS set by the agent (0: left alone)
}

// New loads the identity and opens the state; it fails with a message a
// technician can act on (not enrolled, state directory not writable...).
func New(opts Options) (*Agent, error) {
	if opts.Logger == nil {
		l := logrus.New()
		opts.Logger = l
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.RenewCheck <= 0 {
		opts.RenewCheck = time.Hour
	}
	cfg := opts.Config
	a := &Agent{opts: opts, cfg: cfg, log: opts.Logger, now: opts.Now, problems: map[string]string{}}
	a.spoolErr.Store("")
	a.started = a.now()
	a.hostname, _ = os.Hostname()
	id, err := identity.Load(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	if cfg.Transport.IntakeURL != "" {
		id.IntakeURL = cfg.Transport.IntakeURL
	}
	if len(cfg.Transport.KafkaBootstrap) > 0 {
		id.KafkaBootstrap = cfg.Transport.KafkaBootstrap
	}
	a.id = id
	a.certNA = id.Cert.NotAfter
	a.certState, a.certMsg = CertState(id.Cert, a.now())
	pol, err := id.Policy()
	if err != nil {
		return nil, fmt.Errorf("reading the saved policy: %w (delete it to fall back to the default policy until the next refresh)", err)
	}
	pol.Normalize()
	a.pol = pol
	if err := os.MkdirAll(filepath.Join(cfg.StateDir, CheckpointDir), 0o700); err != nil {
		return nil, fmt.Errorf("state directory %s is not writable: %w", cfg.StateDir, err)
	}
	a.seq, err = seq.Open(filepath.Join(cfg.StateDir, SeqDir), seq.Options{NoSync: opts.NoSync})
	if err != nil {
		return nil, err
	}
	a.spool, err = spool.Open(filepath.Join(cfg.StateDir, SpoolDir), spool.Options{
		MaxBytes: int64(cfg.Spool.MaxBytes),
		MaxAge:   cfg.Spool.MaxAge,
		NoSync:   opts.NoSync,
		// Group commit: appends are fsynced by whoever needs them durable
		// (a checkpoint about to be fsynced, an acknowledgement to a source
		// without spool references); docs/agent.md "Power loss".
		DeferSync: true,
		Now:       opts.Now,
		Logger:    a.log,
		// Sequence numbers are durable before the last copy of a batch
		// carrying them is deleted (package seq, "power loss").
		BeforeRemove: a.seq.Sync,
	})
	if err != nil {
		_ = a.seq.Close()
		return nil, fmt.Errorf("opening the spool: %w", err)
	}
	if err := raiseFromSpool(a.seq, a.spool, a.log); err != nil {
		_ = a.spool.Close()
		_ = a.seq.Close()
		return nil, err
	}
	prod, err := a.buildTransport()
	if err != nil {
		_ = a.spool.Close()
		_ = a.seq.Close()
		return nil, err
	}
	a.producer = &trackingProducer{p: prod, now: a.now}
	a.shipper, err = ship.NewShipper(ship.ShipperOptions{
		Queue:      &spoolQueue{Spool: a.spool},
		Producer:   a.producer,
		AgentID:    id.AgentID,
		MaxBackoff: 10 * time.Second,
		Now:        opts.Now,
		Logger:     a.log,
	})
	if err != nil {
		_ = a.spool.Close()
		_ = a.seq.Close()
		return nil, err
	}
	return a, nil
}

// raiseFromSpool raises every sequence counter past the envelopes still
// present in the spool, acknowledged or not: after a power loss the
// sequence file may be older than the batches that reached the spool.
func raiseFromSpool(st *seq.Store, sp *spool.Spool, log logrus.FieldLogger) error {
	bad := 0
	err := sp.ScanAll(func(data []byte) error {
		k, first, n, err := seq.RangeOf(data)
		if err != nil {
			bad++      // not ours to judge here: the shipper reports it when sending
			return nil //nolint:nilerr // counted and logged below; the scan goes on
		}
		return st.Raise(k, first+uint64(n))
	})
	if bad > 0 {
		log.WithField("entries", bad).Warn("spool entries with an unreadable envelope header were ignored when checking sequence numbers")
	}
	if err != nil {
		return fmt.Errorf("checking sequence numbers against the spool: %w", err)
	}
	return nil
}

// buildTransport chooses Kafka or the intake.
func (a *Agent) buildTransport() (ship.Producer, error) {
	if a.opts.Producer != nil {
		a.transport, a.server, a.closer = "custom", "test producer", func() error { return nil }
		return a.opts.Producer, nil
	}
	mode := a.cfg.Transport.Mode
	if mode == ModeAuto {
		mode = ModeIntake
		if len(a.id.KafkaBootstrap) > 0 {
			mode = ModeKafka
		}
	}
	switch mode {
	case ModeKafka:
		if len(a.id.KafkaBootstrap) == 0 {
			return nil, errors.New("transport.mode is kafka but enrolment gave no Kafka brokers: set transport.kafka_bootstrap or use mode auto")
		}
		// The agent's own synchronous producer: one round trip per send
		// and no batching goroutines (package kafkaout).
		p, err := kafkaout.New(kafkaout.Options{
			Brokers:      a.id.KafkaBootstrap,
			TLS:          a.id.TLSConfig(),
			ClientID:     "csirt-agent-" + a.id.AgentID,
			DialTimeout:  5 * time.Second,
			Compression:  bus.Compression(strings.ToLower(a.cfg.Transport.Compression)),
			WriteTimeout: 10 * time.Second,
			Logger:       a.log,
		})
		if err != nil {
			return nil, fmt.Errorf("Kafka transport: %w", err) //nolint:staticcheck // ST1005: Kafka is a name
		}
		a.transport, a.server, a.closer = ModeKafka, strings.Join(a.id.KafkaBootstrap, ","), p.Close
		return p, nil
	default:
		if a.opts.Central == nil || a.id.IntakeURL == "" {
			return nil, fmt.Errorf("no transport: enrolment gave no Kafka brokers and %w", ErrNoCentral)
		}
		p, err := a.opts.Central.NewBatchProducer(a.id)
		if err != nil {
			return nil, fmt.Errorf("HTTPS intake transport: %w", err)
		}
		a.transport, a.server, a.closer = ModeIntake, a.id.IntakeURL, func() error { return nil }
		return p, nil
	}
}

// Identity is the loaded identity.
func (a *Agent) Identity() *identity.Identity { return a.id }

// spoolQueue remembers the last append failure for the status.
type spoolQueue struct{ *spool.Spool }

// trackingProducer remembers the last transport failure and success.
type trackingProducer struct {
	p   ship.Producer
	now func() time.Time

	mu      sync.Mutex
	lastErr string
	errAt   time.Time
	certErr bool
}

func (t *trackingProducer) Produce(ctx context.Context, msgs ...bus.Message) error {
	err := t.p.Produce(ctx, msgs...)
	if err != nil && ctx.Err() == nil {
		t.mu.Lock()
		t.lastErr, t.errAt, t.certErr = err.Error(), t.now(), certProblem(err)
		t.mu.Unlock()
	}
	return err
}

func (t *trackingProducer) last() (string, time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lastErr, t.errAt, t.certErr
}

// appender counts spool append failures (disk full) for the status.
type appender struct{ a *Agent }

func (ap appender) Append(data []byte) error {
	_, err := ap.AppendID(data)
	return err
}

func (ap appender) AppendID(data []byte) (uint64, error) {
	id, err := ap.a.spool.AppendID(data)
	if err != nil {
		ap.a.appendFails.Add(1)
		ap.a.spoolErr.Store(fmt.Sprintf("cannot write to the spool (%v): free disk space under %s; lines wait in the log files meanwhile", err, ap.a.cfg.StateDir))
	} else if s, _ := ap.a.spoolErr.Load().(string); s != "" {
		ap.a.spoolErr.Store("")
		ap.a.log.Info("spool writable again")
	}
	return id, err
}

// generation is one set of sources and batchers built from a policy.
type generation struct {
	cancel   context.CancelFunc
	done     chan struct{}
	failed   chan error // a batcher failed: restart the generation
	sources  []namedSource
	batchers []*ship.Batcher
}

type namedSource struct {
	name, kind string
	src        source.Source
}

// buildSources builds the policy's sources; failures are returned per
// source name (the other sources still run).
func (a *Agent) buildSources(p policy.Policy) ([]namedSource, map[string]error) {
	deps := source.Deps{
		Logger: a.log, StateDir: filepath.Join(a.cfg.StateDir, CheckpointDir), Now: a.now,
		Spool: source.SpoolDeps{Sync: a.spool.Sync, Covers: a.spool.Mark().Covers},
	}
	var out []namedSource
	errs := map[string]error{}
	for _, s := range p.Sources {
		cfg := []byte(s.Config)
		if len(cfg) == 0 {
			cfg = []byte("{}")
		}
		src, err := source.Default.New(s.Kind, s.Name, source.StrictYAML(cfg), deps)
		if err != nil {
			errs[s.Name] = err
			continue
		}
		out = append(out, namedSource{name: s.Name, kind: s.Kind, src: src})
	}
	if p.Capture.Enabled {
		if src, err := a.newCapture(p); err != nil {
			errs[CaptureSource] = err
		} else {
			out = append(out, namedSource{name: CaptureSource, kind: CaptureSource, src: src})
		}
	}
	hb, err := heartbeat.New(p.HeartbeatInterval.D(), a.report, a.now)
	if err != nil {
		errs[heartbeat.Kind] = err
	} else {
		out = append(out, namedSource{name: heartbeat.Kind, kind: heartbeat.Kind, src: hb})
	}
	return out, errs
}

// Default soft memory limits (Config.MemoryLimit = 0).
const (
	DefaultMemoryLimit        = 28 << 20 // logs only: a backlog peaks at 47 MB RSS (docs/PERFORMANCE.md)
	DefaultCaptureMemoryLimit = 80 << 20 // with packet capture on (100k flows)
)

// MemoryLimitFor is the soft memory limit the agent sets for policy p
// under configuration c: c.MemoryLimit when set, else the default for
// p's capture setting; 0 means none.
func MemoryLimitFor(c Config, p policy.Policy) int64 {
	switch {
	case c.MemoryLimit < 0:
		return 0
	case c.MemoryLimit > 0:
		return int64(c.MemoryLimit)
	case p.Capture.Enabled:
		return DefaultCaptureMemoryLimit
	default:
		return DefaultMemoryLimit
	}
}

// applyMemoryLimit sets the runtime's soft memory limit for p (GC works
// harder as the heap nears it; it is not a cap). GOMEMLIMIT, when set in
// the environment, wins and is left alone.
func (a *Agent) applyMemoryLimit(p policy.Policy) {
	if !a.opts.MemoryLimit {
		return
	}
	if os.Getenv("GOMEMLIMIT") != "" {
		cur := debug.SetMemoryLimit(-1)
		if cur == math.MaxInt64 {
			cur = 0
		}
		a.memLimit.Store(cur)
		return
	}
	lim := MemoryLimitFor(a.cfg, p)
	if lim == a.memLimit.Load() {
		return
	}
	if lim == 0 {
		debug.SetMemoryLimit(math.MaxInt64)
	} else {
		debug.SetMemoryLimit(lim)
	}
	a.memLimit.Store(lim)
	a.log.WithField("memory_limit", ByteSize(lim).String()).Info("soft memory limit set")
}

// MaxProcsFor is the GOMAXPROCS the agent sets for policy p under
// configuration c: c.MaxProcs when set, else 1 without capture and
// runtime.NumCPU() with it.
func MaxProcsFor(c Config, p policy.Policy) int {
	switch {
	case c.MaxProcs > 0:
		return c.MaxProcs
	case p.Capture.Enabled:
		return runtime.NumCPU()
	default:
		return 1
	}
}

// applyMaxProcs sets GOMAXPROCS for p. With one P, a goroutine waking
// another (source to batcher to shipper to the Kafka client) runs it on
// the same thread instead of waking a second one: at 1,000 lines/s this
// more than halved the agent's CPU time (context switches are costly,
// above all in virtual machines). GOMAXPROCS in the environment wins.
func (a *Agent) applyMaxProcs(p policy.Policy) {
	if !a.opts.MaxProcs || os.Getenv("GOMAXPROCS") != "" {
		return
	}
	n := MaxProcsFor(a.cfg, p)
	if int64(n) == a.maxProcs.Load() {
		return
	}
	runtime.GOMAXPROCS(n)
	a.maxProcs.Store(int64(n))
	a.log.WithField("max_procs", n).Info("GOMAXPROCS set")
}

// CaptureSource is the name, kind and stream of the packet summaries the
// policy's capture section turns on.
const CaptureSource = "capture"

// newCapture builds the live capture source of p.Capture. Its
// pseudonymisation key lives in the state directory itself.
func (a *Agent) newCapture(p policy.Policy) (*netsum.LiveSource, error) {
	for _, s := range p.Sources {
		if s.Name == CaptureSource {
			return nil, fmt.Errorf("the policy has a source named %q, the name reserved for packet capture: rename that source", CaptureSource)
		}
	}
	deps := source.Deps{Logger: a.log, StateDir: a.cfg.StateDir, Now: a.now}
	return netsum.NewLive(CaptureSource, netsum.FromPolicy(p.Capture), deps)
}

// captureStats returns the counters of the running capture source, or
// nil when capture is off.
func (a *Agent) captureStats() *heartbeat.CaptureCounter {
	a.mu.Lock()
	g := a.gen
	a.mu.Unlock()
	if g == nil {
		return nil
	}
	for _, ns := range g.sources {
		r, ok := ns.src.(netsum.StatsReporter)
		if !ok {
			continue
		}
		cs := r.CaptureStats()
		return &heartbeat.CaptureCounter{
			Interface: cs.Interface, Packets: cs.Received, DroppedKernel: cs.Dropped, DroppedInterface: cs.IfDropped,
			FlowsEvicted: cs.Summary.Evicted, FlowsActive: int64(cs.Summary.ActiveFlows), Summaries: cs.Summary.Summaries,
		}
	}
	return nil
}

// startGeneration builds and starts the sources of p.
func (a *Agent) startGeneration(ctx context.Context, p policy.Policy) (*generation, error) {
	srcs, errs := a.buildSources(p)
	a.mu.Lock()
	for k := range a.problems {
		if strings.HasPrefix(k, "source:") {
			delete(a.problems, k)
		}
	}
	for name, err := range errs {
		msg := fmt.Sprintf("source %s cannot start: %v", name, err)
		a.problems["source:"+name] = msg
		a.log.WithField("source", name).WithError(err).Error("source cannot start; the other sources keep running")
	}
	a.mu.Unlock()
	signer, err := a.id.Signer()
	if err != nil {
		return nil, err
	}
	gctx, cancel := context.WithCancel(ctx)
	g := &generation{cancel: cancel, done: make(chan struct{}), failed: make(chan error, len(srcs)), sources: srcs}
	var wg sync.WaitGroup
	for _, ns := range srcs {
		bo := ship.BatcherOptions{
			AgentID:   a.id.AgentID,
			EntityID:  a.id.EntityID,
			Signer:    signer,
			Sequencer: a.seq,
			Spool:     appender{a},
			Ack:       ns.src.Ack,
			SyncSpool: a.spool.Sync,
			Linger:    a.opts.Linger,
			Now:       a.now,
			Logger:    a.log,
		}
		if sa, ok := ns.src.(source.SpoolAcker); ok {
			bo.AckSpooled, bo.SpoolRun = sa.AckSpooled, a.spool.Mark().Run
		}
		b, err := ship.NewBatcher(bo)
		if err != nil {
			cancel()
			return nil, err
		}
		if rn, ok := ns.src.(source.RoundNotifier); ok {
			rn.NotifyRounds(b.RoundDone)
		}
		g.batchers = append(g.batchers, b)
		ch := make(chan source.Record, 1024)
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := ns.src.Run(gctx, ch); err != nil {
				a.setProblem("source:"+ns.name, fmt.Sprintf("source %s stopped: %v", ns.name, err))
				a.log.WithField("source", ns.name).WithError(err).Error("source stopped; the other sources keep running")
			}
		}()
		go func() {
			defer wg.Done()
			if err := b.Run(gctx, ch); err != nil && gctx.Err() == nil {
				a.log.WithField("source", ns.name).WithError(err).Error("batcher failed; restarting the sources in 5s")
				g.failed <- err
			}
		}()
	}
	go func() { wg.Wait(); close(g.done) }()
	a.log.WithFields(logrus.Fields{"revision": p.Revision, "sources": len(srcs)}).Info("sources started")
	return g, nil
}

// stopGeneration stops g and waits until its batchers spooled what they
// held and the sources wrote their checkpoints.
func (a *Agent) stopGeneration(g *generation) {
	if g == nil {
		return
	}
	g.cancel()
	<-g.done
	closeSources(g.sources, a.log)
	a.mu.Lock()
	for _, b := range g.batchers {
		addBatcher(&a.base, b.Stats())
	}
	a.mu.Unlock()
}

func addBatcher(c *ship.Counters, s ship.BatcherStats) {
	c.LinesRead += s.RecordsIn
	c.LinesSpooled += s.RecordsSpooled
	c.BatchesSpooled += s.BatchesSpooled
	c.Errors += s.AppendErrors + s.AckErrors
}

func (a *Agent) setProblem(key, msg string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if msg == "" {
		delete(a.problems, key)
		return
	}
	a.problems[key] = msg
}

// Counters sums every part's counters.
func (a *Agent) Counters() ship.Counters {
	a.mu.Lock()
	c := a.base
	g := a.gen
	if g != nil {
		for _, b := range g.batchers {
			addBatcher(&c, b.Stats())
		}
	}
	a.mu.Unlock()
	s := a.shipper.Stats()
	c.LinesShipped = s.RecordsShipped
	c.BatchesShipped = s.BatchesShipped
	c.Errors += s.ProduceFailures + s.DecodeErrors
	c.Retries = s.Retries
	c.LastShip = s.LastShipped
	q := a.spool.Stats()
	c.DroppedBatches = q.DroppedEntries
	c.DroppedBytes = q.DroppedBytes
	c.SpoolDepth = q.Entries
	c.SpoolBytes = q.Bytes
	return c
}

// Run runs the agent until ctx ends (SIGTERM): sources stop, batchers
// spool what they hold, the shipper gets a moment to send it, the rest
// stays in the spool for the next start.
func (a *Agent) Run(ctx context.Context) error {
	defer func() { _ = a.seq.Close() }() // after the spool: deferred first
	defer func() { _ = a.spool.Close() }()
	defer func() { _ = a.closer() }()
	a.log.WithFields(logrus.Fields{
		"agent": a.id.AgentID, "entity": a.id.EntityID, "transport": a.transport, "server": a.server,
		"version": a.opts.Version, "state_dir": a.cfg.StateDir,
	}).Info("csirt-agent starting")
	if a.certState == CertExpired {
		a.log.Error(a.certMsg + "; the agent keeps reading and spooling")
	}
	shipCtx, stopShip := context.WithCancel(context.WithoutCancel(ctx))
	defer stopShip()
	shipDone := make(chan error, 1)
	go func() { shipDone <- a.shipper.Run(shipCtx) }()

	a.mu.Lock()
	pol := a.pol
	a.mu.Unlock()
	a.applyMemoryLimit(pol)
	a.applyMaxProcs(pol)
	g, err := a.startGeneration(ctx, pol)
	if err != nil {
		stopShip()
		if serr := <-shipDone; serr != nil {
			a.log.WithError(serr).Warn("shipper stopped with an error")
		}
		return err
	}
	a.mu.Lock()
	a.gen = g
	a.mu.Unlock()

	var loops sync.WaitGroup
	loopCtx, stopLoops := context.WithCancel(ctx)
	loops.Add(3)
	go func() { defer loops.Done(); a.statusLoop(loopCtx) }()
	go func() { defer loops.Done(); a.policyLoop(loopCtx) }()
	go func() { defer loops.Done(); a.renewLoop(loopCtx) }()

	var shipErr error
	running := true
	for running {
		a.mu.Lock()
		failed := a.gen.failed
		a.mu.Unlock()
		select {
		case <-ctx.Done():
			running = false
		case shipErr = <-shipDone:
			running = false
			shipDone = nil
		case err := <-failed:
			a.setProblem("batcher", "a batcher failed: "+err.Error())
			a.restartGeneration(ctx, 5*time.Second)
		}
	}
	stopLoops()
	loops.Wait()
	a.mu.Lock()
	g = a.gen
	a.mu.Unlock()
	a.stopGeneration(g)
	if shipDone != nil {
		// Give the shipper a moment to send what the batchers just spooled.
		deadline := time.Now().Add(2 * time.Second)
		for a.spool.Stats().Entries > 0 && time.Now().Before(deadline) && a.producer.healthy() {
			time.Sleep(20 * time.Millisecond)
		}
		stopShip()
		shipErr = <-shipDone
	}
	a.stopped.Store(true)
	st := a.Status()
	st.State = "stopped"
	if err := WriteStatus(a.cfg.StateDir, st); err != nil {
		a.log.WithError(err).Warn("cannot write the final status file")
	}
	c := a.Counters()
	a.log.WithFields(logrus.Fields{"lines_read": c.LinesRead, "lines_shipped": c.LinesShipped, "spool_depth": c.SpoolDepth}).Info("csirt-agent stopped")
	if shipErr != nil {
		return fmt.Errorf("shipping: %w", shipErr)
	}
	return nil
}

func (t *trackingProducer) healthy() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.errAt.IsZero() || time.Since(t.errAt) > 5*time.Second
}

func (a *Agent) restartGeneration(ctx context.Context, wait time.Duration) {
	a.mu.Lock()
	old := a.gen
	pol := a.pol
	a.mu.Unlock()
	a.stopGeneration(old)
	select {
	case <-ctx.Done():
		return
	case <-time.After(wait):
	}
	g, err := a.startGeneration(ctx, pol)
	if err != nil {
		a.log.WithError(err).Error("cannot restart the sources")
		g = &generation{cancel: func() {}, done: make(chan struct{}), failed: make(chan error)}
		close(g.done)
	}
	a.mu.Lock()
	a.gen = g
	a.mu.Unlock()
}

// ApplyPolicy replaces the sources with those of p without stopping the
// spool, the sequence store or the shipper. p is saved first.
func (a *Agent) ApplyPolicy(ctx context.Context, p policy.Policy) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("policy %s is invalid: %w (keeping revision %s)", p.Revision, err, a.Policy().Revision)
	}
	// Check every source builds before stopping the running ones.
	if _, errs := a.buildSourcesDry(p); len(errs) > 0 {
		var msgs []string
		for n, e := range errs {
			msgs = append(msgs, fmt.Sprintf("%s: %v", n, e))
		}
		sort.Strings(msgs)
		return fmt.Errorf("policy %s has sources that cannot start (%s); keeping revision %s", p.Revision, strings.Join(msgs, "; "), a.Policy().Revision)
	}
	if err := identity.SavePolicy(a.cfg.StateDir, p); err != nil {
		return fmt.Errorf("saving policy %s: %w", p.Revision, err)
	}
	a.mu.Lock()
	old := a.gen
	a.pol = p
	a.mu.Unlock()
	a.applyMemoryLimit(p)
	a.applyMaxProcs(p)
	a.stopGeneration(old)
	g, err := a.startGeneration(ctx, p)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.gen = g
	a.mu.Unlock()
	a.reloads.Add(1)
	a.log.WithField("revision", p.Revision).Info("new policy applied without restart")
	return nil
}

// closeSources closes the sources that hold state files (io.Closer).
func closeSources(srcs []namedSource, log logrus.FieldLogger) {
	for _, ns := range srcs {
		if c, ok := ns.src.(io.Closer); ok {
			if err := c.Close(); err != nil {
				log.WithField("source", ns.name).WithError(err).Warn("closing the source failed (after a power loss some lines may be read again)")
			}
		}
	}
}

// buildSourcesDry validates source configurations. The sources are built
// in a scratch state directory and closed: the running sources' checkpoints
// are not opened twice (a second opener could remove a checkpoint being
// created, and the source would then re-read its files).
func (a *Agent) buildSourcesDry(p policy.Policy) ([]namedSource, map[string]error) {
	errs := map[string]error{}
	scratch, err := os.MkdirTemp(a.cfg.StateDir, "policy-check-")
	if err != nil {
		errs["state"] = fmt.Errorf("cannot create a scratch directory to check the policy: %w", err)
		return nil, errs
	}
	defer func() { _ = os.RemoveAll(scratch) }()
	deps := source.Deps{Logger: a.log, StateDir: scratch, Now: a.now}
	var built []namedSource
	for _, s := range p.Sources {
		cfg := []byte(s.Config)
		if len(cfg) == 0 {
			cfg = []byte("{}")
		}
		src, err := source.Default.New(s.Kind, s.Name, source.StrictYAML(cfg), deps)
		if err != nil {
			errs[s.Name] = err
			continue
		}
		built = append(built, namedSource{name: s.Name, kind: s.Kind, src: src})
	}
	closeSources(built, a.log)
	if p.Capture.Enabled {
		if _, err := a.newCapture(p); err != nil {
			errs[CaptureSource] = err
		}
	}
	return nil, errs
}

// Policy is the applied policy.
func (a *Agent) Policy() policy.Policy {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pol
}

// Reloads is how many policies were applied since the start.
func (a *Agent) Reloads() uint64 { return a.reloads.Load() }

func (a *Agent) policyLoop(ctx context.Context) {
	if a.opts.Central == nil || a.id.IntakeURL == "" {
		return
	}
	for {
		p := a.Policy()
		wait := p.RefreshInterval.D()
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		np, changed, err := a.opts.Central.FetchPolicy(fctx, a.id, p.Revision)
		cancel()
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil:
			a.setPolicyError(fmt.Sprintf("cannot fetch the policy: %v", err))
			a.log.WithError(err).Warn("cannot fetch the policy; keeping the current one")
			if a.opts.Central.Revoked(err) {
				a.setCert(CertRevoked, "this agent was revoked by the CSIRT: run csirt-agent enroll again with a new token")
			}
			wait = min(wait, time.Minute)
		case changed && np.Revision != p.Revision:
			if err := a.ApplyPolicy(ctx, np); err != nil {
				a.setPolicyError(err.Error())
				a.log.WithError(err).Error("cannot apply the new policy")
			} else {
				a.setPolicyError("")
			}
		default:
			a.setPolicyError("")
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (a *Agent) setPolicyError(msg string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if msg == "" {
		a.polErr = ""
		a.polFetched = a.now()
		return
	}
	a.polErr, a.polErrAt = msg, a.now()
}

func (a *Agent) setCert(state, msg string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.certState, a.certMsg = state, msg
}

// CheckCertificate reloads the certificate from disk, renews it when due
// and updates the certificate state. It is what the renewal loop calls.
func (a *Agent) CheckCertificate(ctx context.Context) {
	now := a.now()
	cur, err := identity.Load(a.cfg.StateDir)
	if err != nil {
		a.setCert(CertMissing, "cannot read the identity: "+err.Error())
		a.log.WithError(err).Error("cannot read the identity")
		return
	}
	state, msg := CertState(cur.Cert, now)
	a.mu.Lock()
	revoked := a.certState == CertRevoked
	a.certNA = cur.Cert.NotAfter
	a.mu.Unlock()
	if (state == CertRenewDue || state == CertExpired) && a.opts.Central != nil && a.id.IntakeURL != "" {
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		na, err := a.opts.Central.Renew(rctx, a.cfg.StateDir)
		cancel()
		switch {
		case err == nil:
			a.log.WithField("not_after", na).Info("certificate renewed")
			if c, err := identity.Load(a.cfg.StateDir); err == nil {
				state, msg = CertState(c.Cert, now)
				a.mu.Lock()
				a.certNA = c.Cert.NotAfter
				a.mu.Unlock()
				revoked = false
			}
		case a.opts.Central.Revoked(err):
			state, msg = CertRevoked, "this agent was revoked by the CSIRT: run csirt-agent enroll again with a new token"
		default:
			a.log.WithError(err).Warn("certificate renewal failed; retrying later")
			msg += fmt.Sprintf(" (last renewal attempt failed: %v)", err)
		}
	}
	if revoked && state != CertExpired {
		return // keep the revoked state until a renewal succeeds
	}
	switch state {
	case CertExpired, CertRevoked, CertNotYet:
		a.log.Error(msg + "; the agent keeps reading and spooling")
	}
	a.setCert(state, msg)
}

func (a *Agent) renewLoop(ctx context.Context) {
	for {
		a.CheckCertificate(ctx)
		wait := a.opts.RenewCheck
		a.mu.Lock()
		if a.certState != CertOK {
			wait = min(wait, 10*time.Minute)
		}
		a.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (a *Agent) statusLoop(ctx context.Context) {
	t := time.NewTicker(StatusInterval)
	defer t.Stop()
	for {
		if err := WriteStatus(a.cfg.StateDir, a.Status()); err != nil {
			a.log.WithError(err).Warn("cannot write the status file")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func toHB(c ship.Counters) heartbeat.Counters {
	return heartbeat.Counters{
		LinesRead: c.LinesRead, LinesSpooled: c.LinesSpooled, LinesShipped: c.LinesShipped,
		BatchesSpooled: c.BatchesSpooled, BatchesShipped: c.BatchesShipped,
		DroppedBatches: c.DroppedBatches, DroppedBytes: c.DroppedBytes, Errors: c.Errors,
		Retries: c.Retries, SpoolDepth: c.SpoolDepth, SpoolBytes: c.SpoolBytes, LastAck: c.LastShip,
	}
}

func (a *Agent) sourceStates() []heartbeat.SourceState {
	a.mu.Lock()
	g := a.gen
	var names []string
	msgs := map[string]string{}
	for k, m := range a.problems {
		if strings.HasPrefix(k, "source:") {
			n := strings.TrimPrefix(k, "source:")
			names = append(names, n)
			msgs[n] = m
		}
	}
	a.mu.Unlock()
	var out []heartbeat.SourceState
	if g != nil {
		for _, ns := range g.sources {
			sts := ns.src.Status()
			if len(sts) == 0 {
				out = append(out, heartbeat.SourceState{Source: ns.name, Kind: ns.kind, State: string(source.StateWaiting), Error: "no input yet"})
			}
			for _, s := range sts {
				out = append(out, heartbeat.SourceState{
					Source: ns.name, Kind: ns.kind, Path: s.Path, State: string(s.State), Error: s.Err,
					Since: s.Since, Read: s.Read, Acked: s.Acked,
				})
			}
		}
	}
	sort.Strings(names)
	for _, n := range names {
		found := false
		for _, s := range out {
			if s.Source == n {
				found = true
			}
		}
		if !found {
			out = append(out, heartbeat.SourceState{Source: n, State: string(source.StateError), Error: msgs[n]})
		}
	}
	return out
}

// Status is the current status (what StatusFile holds).
func (a *Agent) Status() *Status {
	now := a.now()
	c := a.Counters()
	a.mu.Lock()
	st := &Status{
		State: "running", PID: os.Getpid(), Started: a.started, Updated: now,
		AgentVersion: a.opts.Version, Hostname: a.hostname, AgentID: a.id.AgentID, EntityID: a.id.EntityID,
		StateDir: a.cfg.StateDir, Transport: a.transport, Server: a.server,
		Spool:  SpoolStatus{MaxBytes: int64(a.cfg.Spool.MaxBytes), MaxAge: a.cfg.Spool.MaxAge.String()},
		Cert:   CertStatus{NotAfter: a.certNA, DaysLeft: int(a.certNA.Sub(now).Hours() / 24), State: a.certState, Message: a.certMsg},
		Policy: PolicyStatus{Revision: a.pol.Revision, Fetched: a.polFetched, Error: a.polErr, ErrorTime: a.polErrAt},
	}
	keys := make([]string, 0, len(a.problems))
	for k := range a.problems {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !strings.HasPrefix(k, "source:") {
			st.Problems = append(st.Problems, a.problems[k])
		}
	}
	a.mu.Unlock()
	st.Counters = toHB(c)
	st.Capture = a.captureStats()
	st.MemoryLimit = a.memLimit.Load()
	st.MaxProcs = int(a.maxProcs.Load())
	st.TimerSlackNS = timerSlack()
	st.Sources = a.sourceStates()
	st.Spool.Error, _ = a.spoolErr.Load().(string)
	if msg, at, certErr := a.producer.last(); msg != "" {
		st.TransportError, st.TransportErrorAt = msg, at
		if certErr && at.After(c.LastShip) && (st.Cert.State == CertOK || st.Cert.State == CertRenewDue) {
			st.TransportError = "the server refused this agent's certificate (" + msg + "): if it was revoked or expired, run csirt-agent enroll again"
		}
	}
	return st
}

// report builds a heartbeat.
func (a *Agent) report() heartbeat.Report {
	st := a.Status()
	v := Check(st, st.Updated)
	return heartbeat.Report{
		Time: st.Updated, AgentID: st.AgentID, EntityID: st.EntityID, Hostname: st.Hostname,
		AgentVersion: st.AgentVersion, Started: st.Started, UptimeSeconds: int64(st.Updated.Sub(st.Started) / time.Second),
		PolicyRevision: st.Policy.Revision, Transport: st.Transport, Counters: st.Counters, Sources: st.Sources,
		CertNotAfter: st.Cert.NotAfter, CertState: st.Cert.State, Problems: append(v.Problems, v.Warnings...),
		Capture: st.Capture,
	}
}
