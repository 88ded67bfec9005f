// Package central assembles the central roles of one `csirt serve` process
// from the configuration: the bus (embedded broker or Kafka), the store
// (SQLite or Elasticsearch), the console and the operational endpoints, and
// runs them under one lifecycle. It holds wiring only; each part's logic
// lives in its own package.
package central

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/csirt-toscana/platform/collector"
	"github.com/csirt-toscana/platform/console"
	"github.com/csirt-toscana/platform/internal/broker"
	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/config"
	"github.com/csirt-toscana/platform/internal/lifecycle"
	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/elastic"
	"github.com/csirt-toscana/platform/internal/store/sqlite"
	"github.com/csirt-toscana/platform/internal/telemetry"
)

// Version is set at build time (-ldflags "-X ...central.Version=...").
var Version = "dev"

// Node is an assembled central process.
type Node struct {
	cfg      config.Config
	log      logrus.FieldLogger
	registry *prometheus.Registry
	health   *telemetry.Health
	broker   *broker.Broker
	busOpts  bus.Options
	store    store.Store
	listener net.Listener
	http     *http.Server
	status   console.Status
	parts    []lifecycle.Part
}

// Roles selects the central roles a process runs. `csirt serve` runs them
// all; `csirt collector` and `csirt console` run one each (cluster mode).
type Roles struct {
	Collector  bool
	Correlator bool
	Console    bool
}

// AllRoles is what `csirt serve` runs.
var AllRoles = Roles{Collector: true, Correlator: true, Console: true}

// Build opens every dependency the configuration names and the roles need.
// On error whatever was opened is closed again.
func Build(ctx context.Context, cfg config.Config, log logrus.FieldLogger, roles Roles) (n *Node, err error) {
	start := time.Now()
	if roles != AllRoles && cfg.Embedded() {
		return nil, fmt.Errorf("running one role needs an external Kafka (bus.brokers): in single-node mode `csirt serve` runs every role in one process")
	}
	n = &Node{cfg: cfg, log: log, registry: telemetry.NewRegistry(), health: telemetry.NewHealth()}
	defer func() {
		if err != nil {
			n.Close()
			n = nil
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("creating data directory: %w", err)
	}
	n.status = console.Status{Version: Version}

	// Bus: the embedded broker unless brokers are configured.
	tlsCfg, err := cfg.Bus.TLS.Client()
	if err != nil {
		return nil, fmt.Errorf("bus TLS: %w", err)
	}
	n.busOpts = bus.Options{Brokers: cfg.Bus.Brokers, TLS: tlsCfg, ClientID: "csirt-central"}
	if cfg.Bus.SASL.Mechanism != "" {
		n.busOpts.SASL = &bus.SASL{Mechanism: cfg.Bus.SASL.Mechanism, Username: cfg.Bus.SASL.Username, Password: cfg.Bus.SASL.Password.Value()}
	}
	if cfg.Embedded() {
		n.status.SingleNode = true
		n.broker, err = broker.Start(broker.Options{
			Addr:       cfg.Bus.Embedded.Listen,
			DataDir:    filepath.Join(cfg.DataDir, "broker"),
			SyncWrites: cfg.Bus.Embedded.SyncWrites,
			Partitions: cfg.Bus.Topics.Partitions,
			Logger:     log,
		})
		if err != nil {
			return nil, err
		}
		n.busOpts.Brokers = []string{n.broker.Addr()}
	}
	n.status.Brokers = strings.Join(n.busOpts.Brokers, ", ")
	specs := bus.DefaultTopicSpecs()
	for i := range specs {
		specs[i].Partitions = cfg.Bus.Topics.Partitions
		specs[i].ReplicationFactor = cfg.Bus.Topics.ReplicationFactor
	}
	tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	err = bus.EnsureTopics(tctx, n.busOpts, specs)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("creating topics: %w", err)
	}
	n.health.Add("bus", n.busReady)

	// Store.
	n.store, n.status.StoreKind, n.status.StoreDetail, err = OpenStore(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	n.health.Add("store", n.storeReady)

	// Roles.
	if roles.Collector {
		if err := n.addCollector(cfg, log); err != nil {
			return nil, err
		}
		if err := n.addIntake(ctx, cfg, log); err != nil {
			return nil, err
		}
		if err := n.addSyslog(ctx, cfg, log); err != nil {
			return nil, err
		}
	}
	if roles.Correlator {
		if err := n.addCorrelator(ctx, cfg, log); err != nil {
			return nil, err
		}
		if err := n.addIncidents(ctx, cfg, log); err != nil {
			return nil, err
		}
	}

	// HTTP: console and operational endpoints.
	mux := http.NewServeMux()
	if roles.Console {
		con, err := console.New(console.Options{Logger: log, Status: func() console.Status { return n.status }})
		if err != nil {
			return nil, err
		}
		con.Mount(mux)
	}
	telemetry.Mount(mux, n.health, n.registry)
	n.listener, err = (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.HTTP.Listen)
	if err != nil {
		return nil, fmt.Errorf("listening for HTTP on %s: %w", cfg.HTTP.Listen, err)
	}
	n.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	log.WithFields(logrus.Fields{"single_node": n.status.SingleNode, "http": "http://" + n.listener.Addr().String(),
		"store": n.status.StoreKind + " " + n.status.StoreDetail, "brokers": n.status.Brokers,
		"took": time.Since(start).Round(time.Millisecond)}).Info("csirt node ready")
	return n, nil
}

// OpenStore opens the store the configuration names, as `csirt serve` does;
// admin commands use it too. It returns the store and, for status lines,
// its kind and where it is.
func OpenStore(ctx context.Context, cfg config.Config, log logrus.FieldLogger) (s store.Store, kind, detail string, err error) {
	switch cfg.Store.Backend {
	case "sqlite":
		if err := os.MkdirAll(filepath.Dir(cfg.SQLitePath()), 0o750); err != nil {
			return nil, "", "", fmt.Errorf("creating data directory: %w", err)
		}
		s, err = sqlite.Open(ctx, sqlite.Options{Path: cfg.SQLitePath(), Logger: log})
		kind, detail = "SQLite", cfg.SQLitePath()
	case "elasticsearch":
		s, err = openElastic(ctx, cfg, log)
		kind, detail = "Elasticsearch", strings.Join(cfg.Store.Elasticsearch.Addresses, ", ")
	default:
		err = fmt.Errorf("unknown store backend %q", cfg.Store.Backend)
	}
	if err != nil {
		return nil, "", "", fmt.Errorf("opening store: %w", err)
	}
	return s, kind, detail, nil
}

func openElastic(ctx context.Context, cfg config.Config, log logrus.FieldLogger) (store.Store, error) {
	es := cfg.Store.Elasticsearch
	tlsCfg, err := es.TLS.Client()
	if err != nil {
		return nil, fmt.Errorf("elasticsearch TLS: %w", err)
	}
	ret := map[string]time.Duration{}
	for k, d := range es.Retention {
		if k != "events" && k != "findings" {
			k = "events/" + k
		}
		ret[k] = d.D()
	}
	return elastic.Open(ctx, elastic.Options{
		Addresses: es.Addresses, Username: es.Username, Password: es.Password.Value(), APIKey: es.APIKey.Value(),
		TLS: tlsCfg, IndexPrefix: es.IndexPrefix, Retention: ret, Replicas: es.Replicas, Logger: log,
	})
}

func (n *Node) addCollector(cfg config.Config, log logrus.FieldLogger) error {
	col, err := collector.New(collector.Options{Bus: n.busOpts, BatchTimeout: cfg.Bus.Producer.BatchTimeout.D(),
		Compression: bus.Compression(cfg.Bus.Producer.Compression), Store: n.store, Logger: log, Registerer: n.registry,
		SilenceCheck: cfg.Collector.SilenceCheck.D(), EntitySilenceAfter: cfg.Collector.EntitySilenceAfter.D()})
	if err != nil {
		return err
	}
	n.parts = append(n.parts, lifecycle.Part{Name: "collector", Run: col.Run})
	return nil
}

// HTTPAddr is the address the console listens on.
func (n *Node) HTTPAddr() string { return n.listener.Addr().String() }

// Run serves until ctx is cancelled, then drains within the shutdown timeout.
func (n *Node) Run(ctx context.Context) error {
	parts := append([]lifecycle.Part{{Name: "http", Run: n.serveHTTP}}, n.parts...)
	return lifecycle.Run(ctx, n.log, n.cfg.ShutdownTimeout.D(), parts...)
}

// serveHTTP serves the console and the operational endpoints until ctx is
// cancelled, then drains open requests.
func (n *Node) serveHTTP(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- n.http.Serve(n.listener) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), n.cfg.ShutdownTimeout.D())
	defer cancel()
	if err := n.http.Shutdown(sctx); err != nil {
		return fmt.Errorf("draining HTTP: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Close releases the store and stops the broker (persisting its data).
func (n *Node) Close() {
	if n.store != nil {
		if err := n.store.Close(); err != nil {
			n.log.WithError(err).Error("closing store")
		}
	}
	if n.broker != nil {
		if err := n.broker.Close(); err != nil {
			n.log.WithError(err).Error("stopping embedded broker")
		}
	}
}

func (n *Node) busReady(ctx context.Context) error { return bus.Ping(ctx, n.busOpts) }

func (n *Node) storeReady(ctx context.Context) error {
	_, err := n.store.Get(ctx, store.RegionalScope(), store.Entities, "_readiness_probe")
	if err == nil || errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}
