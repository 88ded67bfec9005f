// Package cli implements the command line of the central `csirt` binary:
// it parses arguments, loads configuration and hands over to the packages
// that do the work. cmd/csirt only calls Main.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/csirt-toscana/platform/collector/parsecli"
	"github.com/csirt-toscana/platform/internal/admincli"
	"github.com/csirt-toscana/platform/internal/central"
	"github.com/csirt-toscana/platform/internal/config"
	"github.com/csirt-toscana/platform/internal/incidentcli"
	"github.com/csirt-toscana/platform/internal/loadgen"
	"github.com/csirt-toscana/platform/internal/logging"
	"github.com/csirt-toscana/platform/internal/rulescli"
)

const usage = `csirt: the central node of the CSIRT Toscana platform.

Usage:
  csirt serve [--config FILE]    run every central role in one process
                                 (no FILE: single-node mode with the embedded
                                 broker and SQLite store under ./csirt-data,
                                 console on http://127.0.0.1:8080)
  csirt collector [--config FILE]
  csirt correlator [--config FILE]
  csirt console [--config FILE]  run one central role (cluster mode: needs bus.brokers);
                                 the collector verifies agents' batches and publishes
                                 events, the correlator detects and writes findings,
                                 the console serves the web UI
  csirt config check FILE        validate a configuration file and print it
                                 with secrets redacted
  csirt rules lint|test|hunt|backtest
                                 check, test and run detection rules offline
                                 or over stored events
                                 (csirt rules --help)
  csirt incidents list|show      incidents and regional campaigns from the store
                                 (--format json for scripts)
  csirt loadgen --entities N --rate R --duration D
                                 a realistic mixed event stream for load runs and demos
  csirt parse [--dataset D] FILE...
                                 print the events log lines would give (JSONL),
                                 to check a log format before deploying
  csirt admin GROUP VERB         manage entities, enrolment tokens, agents and
                                 syslog devices (csirt admin --help)
  csirt version                  print the version

Run 'csirt COMMAND --help' for a command's flags.
Configuration reference: docs/configuration.md.
`

// Main runs the csirt command line and returns the process exit code:
// 0 success, 1 failure, 2 bad usage.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve("serve", central.AllRoles, args[1:], stderr)
	case "collector":
		return serve("collector", central.Roles{Collector: true}, args[1:], stderr)
	case "correlator":
		return serve("correlator", central.Roles{Correlator: true}, args[1:], stderr)
	case "console":
		return serve("console", central.Roles{Console: true}, args[1:], stderr)
	case "config":
		if len(args) < 2 || args[1] != "check" {
			fmt.Fprintln(stderr, "usage: csirt config check FILE")
			return 2
		}
		return configCheck(args[2:], stdout, stderr)
	case "rules":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return rulescli.Main(ctx, args[1:], stdout, stderr)
	case "admin":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return admincli.Main(ctx, args[1:], stdout, stderr)
	case "incidents":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return incidentcli.Main(ctx, args[1:], stdout, stderr)
	case "loadgen":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return loadgen.Main(ctx, args[1:], stdout, stderr)
	case "parse":
		return parsecli.Main(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "csirt", central.Version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "csirt: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

func serve(name string, roles central.Roles, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration `file` (default: built-in single-node defaults)")
	dataDir := fs.String("data-dir", "", "override data_dir (where the embedded broker and SQLite store keep their files)")
	listen := fs.String("listen", "", "override http.listen (console and /healthz, /readyz, /metrics)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: csirt %s [--config FILE] [--data-dir DIR] [--listen HOST:PORT]\n", name)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "csirt "+name+":", err)
		return 1
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	if *listen != "" {
		cfg.HTTP.Listen = *listen
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, "csirt "+name+":", err)
		return 1
	}
	log, err := logging.New(stderr, cfg.Log.Format, cfg.Log.Level)
	if err != nil {
		fmt.Fprintln(stderr, "csirt "+name+":", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	node, err := central.Build(ctx, cfg, log, roles)
	if err != nil {
		log.WithError(err).Errorf("csirt %s could not start", name)
		return 1
	}
	runErr := node.Run(ctx)
	node.Close()
	if runErr != nil {
		log.WithError(runErr).Errorf("csirt %s stopped with an error", name)
		return 1
	}
	log.Infof("csirt %s stopped", name)
	return 0
}

func configCheck(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: csirt config check FILE")
		return 2
	}
	cfg, err := config.Load(args[0])
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	dump, err := cfg.Dump()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "# %s: configuration is valid (secrets redacted)\n%s", args[0], dump)
	return 0
}
