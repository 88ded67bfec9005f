// Package broker runs the embedded Kafka-protocol broker of single-node mode
// (franz-go's kfake) in-process, on a fixed address and with its log and
// group offsets persisted in a data directory, so that the platform's Kafka
// clients (internal/bus) work unchanged without an external cluster.
package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"

	"github.com/sirupsen/logrus"
	"github.com/twmb/franz-go/pkg/kfake"
)

// Options configure the embedded broker. Zero values take the defaults noted.
type Options struct {
	// Addr is the host:port to listen on and to advertise. Default
	// 127.0.0.1:9092. Keep it fixed: clients reconnect to it after a restart.
	Addr string
	// DataDir holds the topics, logs and committed offsets. Empty keeps
	// everything in memory (tests only: nothing survives Close).
	DataDir string
	// SyncWrites fsyncs every produced batch before acknowledging it.
	// Without it data is synced on segment roll and on Close, like Kafka's
	// default, and a crash may lose the last acknowledged batches.
	SyncWrites bool
	// Partitions is the partition count of topics created with the broker
	// default (-1). Default 3.
	Partitions int
	// TLS, when set, makes the listener speak TLS; set ClientAuth to
	// tls.RequireAndVerifyClientCert for mutual TLS.
	TLS *tls.Config
	// ClusterID is returned in metadata. Default "csirt-embedded".
	ClusterID string
	// Logger receives the broker's own log lines. Default: discard.
	Logger logrus.FieldLogger
}

func (o Options) withDefaults() Options {
	if o.Addr == "" {
		o.Addr = "127.0.0.1:9092"
	}
	if o.Partitions <= 0 {
		o.Partitions = 3
	}
	if o.ClusterID == "" {
		o.ClusterID = "csirt-embedded"
	}
	if o.Logger == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		l.SetLevel(logrus.PanicLevel)
		o.Logger = l
	}
	return o
}

// Broker is a running embedded broker.
type Broker struct {
	c    *kfake.Cluster
	addr string
	log  logrus.FieldLogger
}

// Start listens on opts.Addr, loads the state persisted in opts.DataDir if
// any, and serves until Close.
func Start(opts Options) (*Broker, error) {
	opts = opts.withDefaults()
	host, portStr, err := net.SplitHostPort(opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("embedded broker: addr %q: %w", opts.Addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 {
		return nil, fmt.Errorf("embedded broker: addr %q: need a fixed port", opts.Addr)
	}
	log := opts.Logger.WithField("component", "broker")
	kopts := []kfake.Opt{
		kfake.Ports(port),
		// kfake listens on 127.0.0.1; listen on the configured host instead.
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return (&net.ListenConfig{}).Listen(context.Background(), network, net.JoinHostPort(host, portStr))
		}),
		kfake.ClusterID(opts.ClusterID),
		kfake.DefaultNumPartitions(opts.Partitions),
		kfake.WithLogger(kfakeLogger{log}),
	}
	if opts.DataDir != "" {
		kopts = append(kopts, kfake.DataDir(opts.DataDir))
		if opts.SyncWrites {
			kopts = append(kopts, kfake.SyncWrites())
		}
	} else if opts.SyncWrites {
		return nil, errors.New("embedded broker: sync_writes needs a data_dir")
	}
	if opts.TLS != nil {
		kopts = append(kopts, kfake.TLS(opts.TLS))
	}
	c, err := kfake.NewCluster(kopts...)
	if err != nil {
		return nil, fmt.Errorf("starting embedded broker on %s: %w", opts.Addr, err)
	}
	addrs := c.ListenAddrs()
	if len(addrs) != 1 {
		c.Close()
		return nil, fmt.Errorf("starting embedded broker on %s: listening on %v, want one address", opts.Addr, addrs)
	}
	log.WithFields(logrus.Fields{"addr": addrs[0], "data_dir": opts.DataDir}).Info("embedded Kafka broker started")
	return &Broker{c: c, addr: addrs[0], log: log}, nil
}

// Addr is the host:port clients bootstrap from.
func (b *Broker) Addr() string { return b.addr }

// Close stops accepting connections, persists the state to the data
// directory and stops the broker. It is safe to call more than once.
func (b *Broker) Close() error {
	b.c.Close()
	b.log.Info("embedded Kafka broker stopped")
	return nil
}

// kfakeLogger forwards kfake's log lines to logrus, one level quieter
// (kfake's info level logs every request).
type kfakeLogger struct{ log logrus.FieldLogger }

func (l kfakeLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	switch level {
	case kfake.LogLevelError:
		l.log.Errorf(format, args...)
	case kfake.LogLevelWarn:
		l.log.Warnf(format, args...)
	default:
		l.log.Debugf(format, args...)
	}
}
