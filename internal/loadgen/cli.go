package loadgen

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/central"
	"github.com/csirt-toscana/platform/internal/config"
	"github.com/csirt-toscana/platform/internal/store"
)

// Main runs `csirt loadgen` and returns the exit code (0 ok, 1 failure,
// 2 bad usage).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("csirt loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration `file` (brokers, TLS, store for --raw); default: the single-node defaults")
	dataDir := fs.String("data-dir", "", "override data_dir (the store used by --raw)")
	entities := fs.Int("entities", 20, "number of entities (1-10000), sized by a Zipf-like law")
	rate := fs.String("rate", "1000/s", "events per second, e.g. 20000/s or 20k/s")
	duration := fs.String("duration", "1m", "how long to send, e.g. 30s, 10m (0: until interrupted)")
	brokers := fs.String("brokers", "", "comma-separated Kafka bootstrap addresses (default: bus.brokers of the configuration, else its embedded broker)")
	seed := fs.Uint64("seed", 1, "random seed: the same seed gives the same stream")
	raw := fs.Bool("raw", false, "send signed agent batches to csirt.raw.v1 (fake agents registered in the store) instead of events to csirt.events.v1")
	topic := fs.String("topic", "", "topic to write (default csirt.events.v1, or csirt.raw.v1 with --raw)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: csirt loadgen --entities N --rate R/s --duration D [--brokers HOST:PORT,...] [--raw] [--seed S]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	fail := func(code int, err error) int { fmt.Fprintln(stderr, "csirt loadgen:", err); return code }
	if fs.NArg() > 0 {
		return fail(2, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	r, err := ParseRate(*rate)
	if err != nil {
		return fail(2, err)
	}
	d, err := config.ParseDuration(*duration)
	if err != nil || d < 0 {
		return fail(2, fmt.Errorf("--duration %q: want a duration such as 30s, 10m or 0", *duration))
	}
	g, err := New(*entities, *seed)
	if err != nil {
		return fail(2, err)
	}
	cfg, err := config.Load(*cfgPath)
	if err == nil && *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		return fail(1, err)
	}
	tlsCfg, err := cfg.Bus.TLS.Client()
	if err != nil {
		return fail(1, fmt.Errorf("bus TLS: %w", err))
	}
	opts := bus.Options{Brokers: cfg.Bus.Brokers, TLS: tlsCfg, ClientID: "csirt-loadgen"}
	if cfg.Bus.SASL.Mechanism != "" {
		opts.SASL = &bus.SASL{Mechanism: cfg.Bus.SASL.Mechanism, Username: cfg.Bus.SASL.Username, Password: cfg.Bus.SASL.Password.Value()}
	}
	switch {
	case *brokers != "":
		opts.Brokers = strings.Split(*brokers, ",")
	case len(opts.Brokers) == 0:
		opts.Brokers = []string{cfg.Bus.Embedded.Listen} // a running `csirt serve`
	}
	prod, err := bus.NewProducer(bus.ProducerOptions{Options: opts, BatchTimeout: cfg.Bus.Producer.BatchTimeout.D(),
		Compression: bus.Compression(cfg.Bus.Producer.Compression)})
	if err != nil {
		return fail(1, err)
	}
	defer func() { _ = prod.Close() }()
	o := Options{Generator: g, Sender: prod, Rate: r, Duration: d, Raw: *raw, Progress: stdout}
	if *raw {
		o.RawTopic = *topic
		l := logrus.New()
		l.SetOutput(stderr)
		l.SetLevel(logrus.WarnLevel)
		var st store.Store
		st, _, _, err = central.OpenStore(ctx, cfg, l)
		if err != nil {
			return fail(1, err)
		}
		defer func() { _ = st.Close() }()
		o.Store = st
	} else {
		o.EventsTopic = *topic
	}
	fmt.Fprintf(stdout, "loadgen: %d entities, %.0f events/s for %s to %s (seed %d)\n", *entities, r, d, strings.Join(opts.Brokers, ","), *seed)
	st, err := Run(ctx, o)
	if err != nil {
		return fail(1, err)
	}
	if st.Errors > 0 {
		fmt.Fprintf(stderr, "csirt loadgen: %d produce calls failed (check the brokers)\n", st.Errors)
		return 1
	}
	return 0
}
