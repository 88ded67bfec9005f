package central

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/csirt-toscana/platform/collector/syslogin"
	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/config"
	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/lifecycle"
	"github.com/csirt-toscana/platform/internal/store"
)

// addSyslog adds the syslog intake for devices when a syslog listen address
// is configured. Its events go where the collector's go: csirt.events.v1
// keyed by entity, and the store's events collection. The TLS listener uses
// syslog.cert_file/key_file, else a certificate from the local CA for the
// listen host and localhost.
func (n *Node) addSyslog(ctx context.Context, cfg config.Config, log logrus.FieldLogger) error {
	sc := cfg.Syslog
	if sc.UDPListen == "" && sc.TCPListen == "" && sc.TLSListen == "" {
		return nil
	}
	prod, err := bus.NewProducer(bus.ProducerOptions{Options: n.busOpts, BatchTimeout: cfg.Bus.Producer.BatchTimeout.D(),
		Compression: bus.Compression(cfg.Bus.Producer.Compression), Logger: log, Registerer: n.registry})
	if err != nil {
		return fmt.Errorf("syslog intake producer: %w", err)
	}
	sink := &eventSink{prod: prod, st: n.store, writers: map[string]store.BulkWriter{}}
	o := syslogin.OptionsFromConfig(sc)
	o.Store, o.Sink, o.Logger, o.Registerer = n.store, sink, log, n.registry
	if sc.TLSListen != "" && sc.CertFile == "" {
		iss, err := OpenIssuer(cfg)
		if err != nil {
			_ = prod.Close()
			return err
		}
		host, _, _ := net.SplitHostPort(sc.TLSListen)
		names := []string{"localhost"}
		if host != "" && host != "0.0.0.0" && host != "::" {
			names = append(names, host)
		}
		cert, err := iss.ServerCertificate(ctx, names, cfg.PKI.CertTTL.D())
		if err != nil {
			_ = prod.Close()
			return fmt.Errorf("syslog TLS certificate from the local CA: %w", err)
		}
		o.TLSCertificate = cert
	}
	srv, err := syslogin.New(o)
	if err != nil {
		_ = prod.Close()
		return err
	}
	n.parts = append(n.parts, lifecycle.Part{Name: "syslog", Run: func(ctx context.Context) error {
		defer func() {
			sink.close()
			_ = prod.Close()
		}()
		return srv.Run(ctx)
	}})
	return nil
}

// eventSink publishes normalised events the way the collector does: to
// csirt.events.v1 keyed by entity, then to the store; Publish returns once
// both are durable.
type eventSink struct {
	prod    *bus.Producer
	st      store.Store
	mu      sync.Mutex
	writers map[string]store.BulkWriter
}

func (s *eventSink) Publish(ctx context.Context, evs []event.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	msgs := make([]bus.Message, 0, len(evs))
	docs := make([]store.Doc, 0, len(evs))
	for _, e := range evs {
		js, err := e.MarshalJSON()
		if err != nil {
			return fmt.Errorf("event %s: %w", e.ID(), err)
		}
		msgs = append(msgs, bus.Message{Topic: bus.TopicEvents, Key: []byte(e.Org()), Value: js,
			Headers: []bus.Header{{Key: bus.HeaderSchema, Value: []byte(event.SchemaVersion)}}})
		docs = append(docs, store.Doc{ID: e.ID(), Tenant: e.Org(), Source: js})
	}
	if err := s.prod.Produce(ctx, msgs...); err != nil {
		return err
	}
	touched := map[string]store.BulkWriter{}
	for _, d := range docs {
		w, ok := s.writers[d.Tenant]
		if !ok {
			var err error
			if w, err = s.st.Bulk(store.TenantScope(d.Tenant), store.Events, store.BulkOptions{}); err != nil {
				return err
			}
			s.writers[d.Tenant] = w
		}
		if err := w.Add(ctx, d); err != nil {
			return err
		}
		touched[d.Tenant] = w
	}
	for _, w := range touched {
		if err := w.Flush(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (s *eventSink) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, w := range s.writers {
		_ = w.Close(ctx)
	}
}
