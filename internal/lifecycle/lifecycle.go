// Package lifecycle runs the long-lived parts of a process together: each
// part runs until the context is cancelled (SIGINT/SIGTERM via
// signal.NotifyContext in main), then drains; the first part to fail stops
// the others; the whole drain is bounded by a timeout.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"
)

// Part is one long-running component. Run blocks until ctx is cancelled or
// the part fails. On cancellation it must drain (finish in-flight work,
// flush, commit) and return nil; any other return is a failure that stops
// the process.
type Part struct {
	Name string
	Run  func(ctx context.Context) error
}

// Run runs every part until ctx is cancelled or one part fails, then waits
// at most drain for the others to return.
func Run(ctx context.Context, log logrus.FieldLogger, drain time.Duration, parts ...Part) error {
	g, gctx := errgroup.WithContext(ctx)
	done := make(chan struct{})
	for _, p := range parts {
		g.Go(func() error {
			log.WithField("part", p.Name).Debug("starting")
			err := p.Run(gctx)
			if err != nil && !errors.Is(err, context.Canceled) {
				log.WithField("part", p.Name).WithError(err).Error("stopped with an error")
				return fmt.Errorf("%s: %w", p.Name, err)
			}
			log.WithField("part", p.Name).Debug("stopped")
			return nil
		})
	}
	var err error
	go func() { err = g.Wait(); close(done) }()
	select {
	case <-done:
		return err
	case <-gctx.Done():
	}
	log.WithField("timeout", drain).Info("shutting down")
	select {
	case <-done:
		return err
	case <-time.After(drain):
		return fmt.Errorf("shutdown did not finish within %s", drain)
	}
}
