package central

import (
	"context"
	"fmt"

	"github.com/sirupsen/logrus"

	"github.com/csirt-toscana/platform/correlator/incidents"
	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/config"
	"github.com/csirt-toscana/platform/internal/lifecycle"
)

// addIncidents adds the incident stage (findings -> incidents and
// regional campaigns) as a part of the node: a consumer in group
// incidents.GroupID on csirt.findings.v1, the DLQ for messages that are
// not findings, and the store opened by Build. Build calls it after the
// store is open.
func (n *Node) addIncidents(_ context.Context, cfg config.Config, log logrus.FieldLogger) error {
	stage, err := incidents.New(incidents.Options{Store: n.store, Window: cfg.Incidents.Window.D(),
		CampaignWindow: cfg.Incidents.CampaignWindow.D(), Logger: log})
	if err != nil {
		return err
	}
	prod, err := bus.NewProducer(bus.ProducerOptions{Options: n.busOpts, BatchTimeout: cfg.Bus.Producer.BatchTimeout.D(),
		Compression: bus.Compression(cfg.Bus.Producer.Compression), Logger: log, Registerer: n.registry})
	if err != nil {
		return fmt.Errorf("incident stage producer: %w", err)
	}
	dlq, err := bus.NewDLQ(bus.DLQOptions{Sender: prod, Logger: log, Registerer: n.registry})
	if err != nil {
		_ = prod.Close()
		return fmt.Errorf("incident stage: %w", err)
	}
	cons, err := bus.NewConsumer(bus.ConsumerOptions{Options: n.busOpts, GroupID: incidents.GroupID,
		Topics: []string{bus.TopicFindings}, Logger: log, Registerer: n.registry})
	if err != nil {
		_ = prod.Close()
		return fmt.Errorf("incident stage: %w", err)
	}
	n.parts = append(n.parts, lifecycle.Part{Name: "incidents", Run: func(ctx context.Context) error {
		err := stage.Run(ctx, cons, dlq, incidents.RunOptions{})
		if cerr := cons.Close(); err == nil {
			err = cerr
		}
		if cerr := prod.Close(); err == nil {
			err = cerr
		}
		return err
	}})
	return nil
}
