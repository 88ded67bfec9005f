// Package cli is the csirt-agent command line (run, status, doctor,
// enroll, pcap, version): flag parsing, help texts a technician understands, and
// exit codes. The binary's main only calls Main. See docs/agent.md.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/csirt-toscana/platform/agents/internal/agent"
	"github.com/csirt-toscana/platform/agents/internal/netsum"
	"github.com/csirt-toscana/platform/internal/enroll"
	"github.com/csirt-toscana/platform/internal/logging"
)

const usage = `csirt-agent: sends this server's logs to the CSIRT Toscana, signed and without loss.

Usage:
  csirt-agent enroll --server URL --token TOKEN   register this server (once, as root)
  csirt-agent run                                 run the agent (systemd does this for you)
  csirt-agent status [--format json]              is it running? what does it read? what is wrong?
  csirt-agent doctor                              check everything and say how to fix it
  csirt-agent version                             print the version
  csirt-agent pcap [--format jsonl] FILE...       summarise capture files (flows, DNS, TLS, HTTP) as JSON lines

Every command but pcap takes --config FILE (default /etc/csirt-agent/agent.yml).
Packet capture on the network interface is switched on by the CSIRT's policy;
status then shows its counters and doctor checks the interface and CAP_NET_RAW.

First installation:
  sudo csirt-agent enroll --server https://intake.csirt.example:8443 --token <token from the CSIRT>
  sudo systemctl enable --now csirt-agent
  csirt-agent status

When something does not work:
  sudo -u csirt-agent csirt-agent doctor     one line per check, with the fix
  journalctl -u csirt-agent -n 50            the agent's recent messages

Exit status: 0 fine, 1 a problem was found (status, doctor) or the command failed,
2 wrong usage.
`

// Main runs the command line args and returns the exit status; version is
// the binary's version.
func Main(version string, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	enroll.AgentVersion = version
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "version", "--version":
		fmt.Fprintln(stdout, "csirt-agent", version)
		return 0
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
		return 0
	case "run":
		return cmdRun(version, rest, stderr)
	case "status":
		return cmdStatus(rest, stdout, stderr)
	case "doctor":
		return cmdDoctor(rest, stdout, stderr)
	case "enroll", "enrol":
		return cmdEnroll(rest, stdout, stderr)
	case "pcap":
		return netsum.PcapMain(rest, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "csirt-agent: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}

func newFlags(name, help string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("csirt-agent "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := fs.String("config", agent.DefaultConfigPath, "local configuration file")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "%s\nFlags:\n", help)
		fs.PrintDefaults()
	}
	return fs, cfg
}

func parse(fs *flag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		return 2, false
	}
	return 0, true
}

func loadConfig(fs *flag.FlagSet, path string) (agent.Config, error) {
	explicit := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "config" {
			explicit = true
		}
	})
	return agent.LoadConfig(path, explicit)
}

const runHelp = `Usage: csirt-agent run [--config FILE]

Runs the agent in the foreground until SIGTERM or Ctrl-C. systemd runs it for you
(systemctl enable --now csirt-agent); run it by hand only to watch its messages.
The server must be enrolled first (csirt-agent enroll).`

func cmdRun(version string, args []string, stderr io.Writer) int {
	fs, cfgPath := newFlags("run", runHelp, stderr)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	cfg, err := loadConfig(fs, *cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "csirt-agent:", err)
		return 1
	}
	log, err := logging.New(stderr, cfg.Log.Format, cfg.Log.Level)
	if err != nil {
		fmt.Fprintln(stderr, "csirt-agent: configuration:", err)
		return 1
	}
	if path := os.Getenv(cpuProfileEnv); path != "" {
		stopProfile, err := startCPUProfile(path)
		if err != nil {
			log.WithError(err).Error("cannot start the CPU profile")
			return 1
		}
		defer stopProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	a, err := agent.New(agent.Options{Config: cfg, Version: version, Central: newCentral(), Logger: log, MemoryLimit: true, MaxProcs: true})
	if err != nil {
		log.WithError(err).Error("csirt-agent cannot start")
		return 1
	}
	if err := a.Run(ctx); err != nil {
		log.WithError(err).Error("csirt-agent stopped with an error")
		return 1
	}
	return 0
}

// cpuProfileEnv names a file to write a CPU profile of `run` to, until
// the agent stops (for performance work; not documented to operators).
const cpuProfileEnv = "CSIRT_AGENT_CPUPROFILE"

func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path) //nolint:gosec // G304: a path the developer chose
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); _ = f.Close() }, nil
}

const statusHelp = `Usage: csirt-agent status [--format text|json] [--config FILE]

Shows whether the agent runs, what it reads, when the centre last acknowledged
data, the spool, drops, the certificate and the policy. Exit status 1 when the
agent is not running or has a problem.`

func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fs, cfgPath := newFlags("status", statusHelp, stderr)
	format := fs.String("format", "text", "text or json")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	cfg, err := loadConfig(fs, *cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "csirt-agent:", err)
		return 1
	}
	st, err := agent.ReadStatus(cfg.StateDir)
	if err != nil {
		fmt.Fprintln(stderr, "csirt-agent status:", err)
		return 1
	}
	now := time.Now()
	var v agent.Verdict
	switch *format {
	case "json":
		v = agent.Check(st, now)
		out := struct {
			*agent.Status
			Running  bool     `json:"running"`
			Healthy  bool     `json:"healthy"`
			Reason   string   `json:"not_running_reason,omitempty"`
			Problems []string `json:"unhealthy_because,omitempty"`
			Warnings []string `json:"warnings,omitempty"`
		}{st, v.Running, v.Healthy(), v.Reason, v.Problems, v.Warnings}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return 1
		}
	case "text":
		v = agent.RenderStatus(stdout, st, now)
	default:
		fmt.Fprintf(stderr, "csirt-agent status: --format %q: use text or json\n", *format)
		return 2
	}
	if !v.Healthy() {
		return 1
	}
	return 0
}

const doctorHelp = `Usage: csirt-agent doctor [--config FILE]

Checks the identity and its key permissions, the certificate, every log file of
the policy (exists, readable by this user), the connection to Kafka or the
intake, the clock and the free disk space. One line per check: OK, WARN or FAIL
with the fix. Run it as the agent's user to test its permissions:
  sudo -u csirt-agent csirt-agent doctor
Exit status 1 when a check fails.`

func cmdDoctor(args []string, stdout, stderr io.Writer) int {
	fs, cfgPath := newFlags("doctor", doctorHelp, stderr)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	cfg, err := loadConfig(fs, *cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "csirt-agent:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	findings := agent.Doctor(ctx, agent.DoctorOptions{Config: cfg, Central: newCentral()})
	if agent.RenderDoctor(stdout, findings) {
		return 1
	}
	return 0
}

const enrollHelp = `Usage: csirt-agent enroll --server URL --token TOKEN [--state-dir DIR] [--ca-file FILE]

Registers this server with the CSIRT, once. The CSIRT gives you the token (valid
for a limited time and number of uses) and the server address. The agent makes
its own key (it never leaves this server) and receives its certificate.
Example:
  sudo csirt-agent enroll --server https://intake.csirt.example:8443 --token abcd...
  sudo systemctl enable --now csirt-agent`

func cmdEnroll(args []string, stdout, stderr io.Writer) int {
	fs, cfgPath := newFlags("enroll", enrollHelp, stderr)
	server := fs.String("server", "", "address of the CSIRT intake, https://host:port (required)")
	token := fs.String("token", "", "enrolment token from the CSIRT (required)")
	stateDir := fs.String("state-dir", "", "state directory (default: state_dir of the configuration, /var/lib/csirt-agent)")
	caFile := fs.String("ca-file", "", "PEM CA bundle to trust for the intake instead of the pin in the token")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if *server == "" || *token == "" {
		fmt.Fprintln(stderr, "csirt-agent enroll: --server and --token are required (the CSIRT gives you both)")
		fs.Usage()
		return 2
	}
	cfg, err := loadConfig(fs, *cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "csirt-agent:", err)
		return 1
	}
	dir := cfg.StateDir
	if *stateDir != "" {
		dir = *stateDir
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	res, err := enrollWith(ctx, enrollRequest{Server: *server, Token: *token, StateDir: dir, CAFile: *caFile})
	if err != nil {
		fmt.Fprintln(stderr, "csirt-agent enroll:", err)
		return 1
	}
	fmt.Fprintf(stdout, "Enrolled: this server is agent %s of entity %s.\n", res.AgentID, res.EntityID)
	fmt.Fprintf(stdout, "Identity written to %s/identity (private key mode 0600, it never leaves this server).\n", dir)
	if len(res.KafkaBootstrap) > 0 {
		fmt.Fprintf(stdout, "Logs will go to Kafka at %v over mutual TLS.\n", res.KafkaBootstrap)
	} else {
		fmt.Fprintf(stdout, "Logs will go to the HTTPS intake at %s.\n", res.IntakeURL)
	}
	fmt.Fprintln(stdout, "Next step: systemctl enable --now csirt-agent   then check with: csirt-agent status")
	return 0
}
