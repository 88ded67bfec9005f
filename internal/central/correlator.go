package central

import (
	"context"

	"github.com/sirupsen/logrus"

	"github.com/csirt-toscana/platform/correlator"
	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/config"
	"github.com/csirt-toscana/platform/internal/lifecycle"
)

// addCorrelator adds the correlator role: it loads the rules (failing at
// start on errors an operator must fix) and runs the stream under the
// node's lifecycle.
func (n *Node) addCorrelator(_ context.Context, cfg config.Config, log logrus.FieldLogger) error {
	cc := cfg.Correlator
	c, err := correlator.New(correlator.Options{
		Bus:              n.busOpts,
		Store:            n.store,
		RulesDirs:        cc.RulesDirs,
		OverridesFile:    cc.OverridesFile,
		ReloadInterval:   cc.ReloadInterval.D(),
		SnapshotInterval: cc.SnapshotInterval.D(),
		Feeds:            cc.Feeds,
		RetroHunt:        cc.RetroHunt.D(),
		BatchTimeout:     cfg.Bus.Producer.BatchTimeout.D(),
		Compression:      bus.Compression(cfg.Bus.Producer.Compression),
		Logger:           log,
		Registerer:       n.registry,
	})
	if err != nil {
		return err
	}
	n.parts = append(n.parts, lifecycle.Part{Name: "correlator", Run: c.Run})
	return nil
}
