package central

import (
	"context"
	"fmt"
	"net"

	"github.com/sirupsen/logrus"

	"github.com/csirt-toscana/platform/collector/eventsink"
	"github.com/csirt-toscana/platform/collector/syslogin"
	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/config"
	"github.com/csirt-toscana/platform/internal/lifecycle"
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
	sink := eventsink.New(prod, bus.TopicEvents, n.store)
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
			sink.Close()
			_ = prod.Close()
		}()
		return srv.Run(ctx)
	}})
	return nil
}
