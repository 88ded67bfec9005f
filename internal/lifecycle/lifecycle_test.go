package lifecycle

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"
)

func quiet() logrus.FieldLogger { l := logrus.New(); l.SetOutput(io.Discard); return l }

func TestDrainOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var drained atomic.Int32
	part := func(ctx context.Context) error {
		<-ctx.Done()
		drained.Add(1)
		return nil
	}
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	err := Run(ctx, quiet(), time.Second, Part{"a", part}, Part{"b", part})
	require.NoError(t, err)
	require.Equal(t, int32(2), drained.Load())
}

func TestFailureStopsOthers(t *testing.T) {
	boom := errors.New("boom")
	stopped := make(chan struct{})
	err := Run(context.Background(), quiet(), time.Second,
		Part{"bad", func(context.Context) error { return boom }},
		Part{"good", func(ctx context.Context) error { <-ctx.Done(); close(stopped); return nil }},
	)
	require.ErrorIs(t, err, boom)
	require.ErrorContains(t, err, "bad: boom")
	<-stopped
}

func TestDrainTimeout(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	release := make(chan struct{})
	defer close(release)
	err := Run(ctx, quiet(), 30*time.Millisecond, Part{"stuck", func(context.Context) error { <-release; return nil }})
	require.ErrorContains(t, err, "did not finish")
}
