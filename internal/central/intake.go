package central

import (
	"context"
	"fmt"

	"github.com/sirupsen/logrus"

	"github.com/csirt-toscana/platform/collector/intake"
	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/config"
	"github.com/csirt-toscana/platform/internal/lifecycle"
	"github.com/csirt-toscana/platform/internal/pki"
)

// OpenIssuer opens the certificate issuer the configuration names: the
// local CA from pki.local.ca_cert_file/ca_key_file when given, else the CA
// kept under cfg.PKIDir() (created on first use). `csirt admin token
// create` uses it too, for the CA pin of the token.
func OpenIssuer(cfg config.Config) (pki.Issuer, error) {
	if cfg.PKI.Backend != "" && cfg.PKI.Backend != "local" {
		return nil, fmt.Errorf("pki.backend %q is not supported yet (use local)", cfg.PKI.Backend)
	}
	var (
		ca  *pki.LocalCA
		err error
	)
	if cfg.PKI.Local.CACertFile != "" {
		ca, err = pki.LoadLocalCA(cfg.PKI.Local.CACertFile, cfg.PKI.Local.CAKeyFile)
	} else {
		ca, err = pki.OpenLocalCA(cfg.PKIDir(), "CSIRT Toscana agent CA")
	}
	if err != nil {
		return nil, fmt.Errorf("local CA: %w", err)
	}
	return ca, nil
}

// addIntake adds the collector's HTTPS intake (enrolment, renewal, policy,
// batches over HTTPS) as a part of the node. With an empty intake.listen
// it does nothing. Build calls it after the store is open.
func (n *Node) addIntake(_ context.Context, cfg config.Config, log logrus.FieldLogger) error {
	if cfg.Intake.Listen == "" {
		return nil
	}
	iss, err := OpenIssuer(cfg)
	if err != nil {
		return err
	}
	prod, err := bus.NewProducer(bus.ProducerOptions{
		Options:      n.busOpts,
		BatchTimeout: cfg.Bus.Producer.BatchTimeout.D(),
		Compression:  bus.Compression(cfg.Bus.Producer.Compression),
		Logger:       log,
		Registerer:   n.registry,
	})
	if err != nil {
		return fmt.Errorf("intake producer: %w", err)
	}
	srv, err := intake.New(intake.Options{
		Store: n.store, Issuer: iss, Producer: prod,
		Config: intake.Config{Intake: cfg.Intake, PKI: cfg.PKI},
		Logger: log, Registerer: n.registry,
	})
	if err != nil {
		_ = prod.Close()
		return err
	}
	n.parts = append(n.parts, lifecycle.Part{Name: "intake", Run: func(ctx context.Context) error {
		err := srv.Run(ctx)
		if cerr := prod.Close(); err == nil {
			err = cerr
		}
		return err
	}})
	return nil
}
