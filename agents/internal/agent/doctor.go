package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/csirt-toscana/platform/agents/internal/identity"
	"github.com/csirt-toscana/platform/agents/internal/netsum"
	"github.com/csirt-toscana/platform/internal/policy"
)

// Level of a doctor check.
type Level string

// Levels, from fine to broken.
const (
	OK   Level = "OK"
	Warn Level = "WARN"
	Fail Level = "FAIL"
)

// Finding is one doctor line.
type Finding struct {
	Check   string `json:"check"`
	Level   Level  `json:"level"`
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
}

// DoctorOptions configure Doctor.
type DoctorOptions struct {
	Config  Config
	Central Central // nil: the intake checks are skipped with a warning
	Now     func() time.Time
	// LookPath finds programs (journalctl). Default exec.LookPath.
	LookPath func(string) (string, error)
	// Timeout bounds each network check. Default 10 s.
	Timeout time.Duration
	// CapEff returns the effective capability mask of this process.
	// Default: CapEff of /proc/self/status.
	CapEff func() (uint64, error)
}

// Doctor runs every check and returns one finding per line, in order.
func Doctor(ctx context.Context, o DoctorOptions) []Finding {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.LookPath == nil {
		o.LookPath = exec.LookPath
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	var out []Finding
	add := func(check string, l Level, msg, fix string) {
		out = append(out, Finding{Check: check, Level: l, Message: msg, Fix: fix})
	}
	id, err := identity.Load(o.Config.StateDir)
	if err != nil {
		fix := "run: csirt-agent enroll --server URL --token TOKEN (ask the CSIRT for a token)"
		if !errors.Is(err, identity.ErrNotEnrolled) {
			fix = "the identity files under " + identity.Path(o.Config.StateDir) + " are damaged or unreadable by this user: run the doctor as the agent's user (sudo -u csirt-agent) or enrol again"
		}
		add("identity", Fail, err.Error(), fix)
		out = append(out, diskCheck(o.Config))
		return out
	}
	if o.Config.Transport.IntakeURL != "" {
		id.IntakeURL = o.Config.Transport.IntakeURL
	}
	if len(o.Config.Transport.KafkaBootstrap) > 0 {
		id.KafkaBootstrap = o.Config.Transport.KafkaBootstrap
	}
	keyPath := filepath.Join(identity.Path(o.Config.StateDir), identity.KeyFile)
	if fi, err := os.Stat(keyPath); err != nil {
		add("identity", Fail, err.Error(), "enrol again")
	} else if fi.Mode().Perm()&0o077 != 0 {
		add("identity", Fail, fmt.Sprintf("private key %s has mode %04o: other users can read it", keyPath, fi.Mode().Perm()), "chmod 600 "+keyPath)
	} else {
		add("identity", OK, fmt.Sprintf("agent %s of entity %s, key %s mode %04o", id.AgentID, id.EntityID, keyPath, fi.Mode().Perm()), "")
	}
	out = append(out, certCheck(id, o.Now()))

	pol, err := id.Policy()
	if err != nil {
		add("policy", Fail, err.Error(), "delete "+filepath.Join(identity.Path(o.Config.StateDir), identity.PolicyFile)+" and restart the agent: it fetches the policy again")
	} else {
		pol.Normalize()
		add("policy", OK, fmt.Sprintf("revision %s, %d sources", pol.Revision, len(pol.Sources)), "")
		out = append(out, sourceChecks(pol, o.LookPath)...)
		if pol.Capture.Enabled {
			out = append(out, captureChecks(pol.Capture, o.CapEff)...)
		} else {
			add("capture", OK, "off in the policy (CAP_NET_RAW unused; see docs/agent.md to drop it)", "")
		}
	}

	mode := o.Config.Transport.Mode
	if mode == ModeAuto || mode == "" {
		mode = ModeIntake
		if len(id.KafkaBootstrap) > 0 {
			mode = ModeKafka
		}
	}
	if mode == ModeKafka {
		out = append(out, kafkaChecks(ctx, id, o.Timeout)...)
	}
	out = append(out, intakeChecks(ctx, id, o, mode == ModeIntake)...)
	out = append(out, diskCheck(o.Config))
	return out
}

func certCheck(id *identity.Identity, now time.Time) Finding {
	f := Finding{Check: "certificate"}
	_, err := id.Cert.Verify(x509.VerifyOptions{
		Roots:       id.CAs,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	state, msg := CertState(id.Cert, now)
	switch {
	case state == CertExpired:
		f.Level, f.Message, f.Fix = Fail, msg, "ask the CSIRT for a new token and run csirt-agent enroll again"
	case state == CertNotYet:
		f.Level, f.Message, f.Fix = Fail, msg, "set the clock: timedatectl set-ntp true"
	case err != nil:
		f.Level, f.Message, f.Fix = Fail, "the certificate does not chain to the CA from enrolment: "+err.Error(), "enrol again (csirt-agent enroll)"
	case state == CertRenewDue:
		f.Level, f.Message, f.Fix = Warn, msg, "nothing if the agent runs and reaches the intake; otherwise check the network to the intake"
	default:
		f.Level, f.Message = OK, msg+", chains to the enrolment CA"
	}
	return f
}

// sourceChecks checks that every configured file exists and is readable.
func sourceChecks(pol policy.Policy, lookPath func(string) (string, error)) []Finding {
	var out []Finding
	for _, s := range pol.Sources {
		check := "source " + s.Name
		switch s.Kind {
		case "file":
			var cfg struct {
				Paths   []string `json:"paths"`
				Exclude []string `json:"exclude"`
			}
			if err := json.Unmarshal(s.Config, &cfg); err != nil {
				out = append(out, Finding{check, Fail, "configuration: " + err.Error(), "ask the CSIRT to correct the policy"})
				continue
			}
			for _, p := range cfg.Paths {
				out = append(out, pathCheck(check, p))
			}
		case "journal":
			if path, err := lookPath("journalctl"); err != nil {
				out = append(out, Finding{check, Fail, "journalctl not found: the journal source cannot read the systemd journal", "install systemd (journalctl) or ask the CSIRT to remove the journal source from the policy"})
			} else {
				out = append(out, Finding{check, OK, "journalctl found at " + path, ""})
			}
		default:
			out = append(out, Finding{check, OK, "kind " + s.Kind + " (not checked by the doctor)", ""})
		}
	}
	return out
}

func pathCheck(check, pattern string) Finding {
	matches := []string{pattern}
	if strings.ContainsAny(pattern, `*?[\`) {
		var err error
		matches, err = filepath.Glob(pattern)
		if err != nil {
			return Finding{check, Fail, fmt.Sprintf("%s: bad pattern: %v", pattern, err), "ask the CSIRT to correct the policy"}
		}
		if len(matches) == 0 {
			return Finding{check, Warn, pattern + ": no file matches yet", "nothing if this service is not installed here; otherwise check the path"}
		}
	}
	var bad []string
	for _, m := range matches {
		fi, err := os.Stat(m)
		switch {
		case errors.Is(err, os.ErrNotExist):
			if len(matches) == 1 {
				return Finding{check, Warn, m + ": does not exist (yet)", "nothing if this service is not installed here; the agent picks the file up when it appears"}
			}
			continue
		case err != nil:
			bad = append(bad, fmt.Sprintf("%s: %v", m, err))
			continue
		case fi.IsDir():
			bad = append(bad, m+": is a directory, not a log file")
			continue
		}
		f, err := os.Open(m)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: not readable by this user (%v)", m, err))
			continue
		}
		_, rerr := f.Read(make([]byte, 1))
		_ = f.Close()
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			bad = append(bad, fmt.Sprintf("%s: cannot read: %v", m, rerr))
		}
	}
	if len(bad) > 0 {
		return Finding{check, Fail, strings.Join(bad, "; "), "give the agent's user read access, e.g. usermod -aG adm csirt-agent (Debian) then systemctl restart csirt-agent; or a directory replaced the file: move it away"}
	}
	return Finding{check, OK, fmt.Sprintf("%s: %d readable file(s)", pattern, len(matches)), ""}
}

// capNetRaw is the bit of CAP_NET_RAW in a capability mask.
const capNetRaw = 1 << 13

// procCapEff reads this process's effective capabilities.
func procCapEff() (uint64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, errors.New("no CapEff line in /proc/self/status")
}

// captureChecks checks what live capture needs: a build with libpcap,
// CAP_NET_RAW, and the interface.
func captureChecks(c policy.Capture, capEff func() (uint64, error)) []Finding {
	var out []Finding
	if !netsum.LiveCaptureAvailable {
		return []Finding{{"capture", Fail, "the policy turns packet capture on but this csirt-agent was built without libpcap (cgo)", "install the csirt-agent package from the CSIRT (built with libpcap), or ask the CSIRT to turn capture off"}}
	}
	if capEff == nil {
		capEff = procCapEff
	}
	switch mask, err := capEff(); {
	case err != nil:
		out = append(out, Finding{"capture", Warn, "cannot read this process's capabilities: " + err.Error(), ""})
	case mask&capNetRaw == 0:
		out = append(out, Finding{"capture", Fail, "the policy turns packet capture on but this process lacks CAP_NET_RAW",
			"the systemd unit grants it (AmbientCapabilities=CAP_NET_RAW): check no drop-in removed it (systemctl cat csirt-agent); to test by hand: sudo systemd-run -p User=csirt-agent -p AmbientCapabilities=CAP_NET_RAW --pty csirt-agent doctor"})
	default:
		out = append(out, Finding{"capture", OK, "CAP_NET_RAW is effective", ""})
	}
	name := c.Interface
	if name == "" {
		ifs, err := net.Interfaces()
		if err != nil {
			return append(out, Finding{"capture interface", Fail, "cannot list the network interfaces: " + err.Error(), ""})
		}
		for _, i := range ifs {
			if i.Flags&net.FlagUp != 0 && i.Flags&net.FlagLoopback == 0 {
				name = i.Name
				break
			}
		}
		if name == "" {
			return append(out, Finding{"capture interface", Fail, "the policy names no interface and none is up besides loopback", "ask the CSIRT to set capture.interface in the policy"})
		}
	}
	ifc, err := net.InterfaceByName(name)
	switch {
	case err != nil:
		out = append(out, Finding{"capture interface", Fail, fmt.Sprintf("interface %q: %v", name, err), "ask the CSIRT to set capture.interface to one of: " + interfaceNames()})
	case ifc.Flags&net.FlagUp == 0:
		out = append(out, Finding{"capture interface", Warn, fmt.Sprintf("interface %s is down: nothing to capture", name), "bring it up (ip link set " + name + " up) or ask the CSIRT to change capture.interface"})
	default:
		msg := "interface " + name + " is up"
		if c.Interface == "" {
			msg += " (the first one up, the policy names none)"
		}
		out = append(out, Finding{"capture interface", OK, msg, ""})
	}
	return out
}

func interfaceNames() string {
	ifs, err := net.Interfaces()
	if err != nil {
		return "(cannot list them)"
	}
	var names []string
	for _, i := range ifs {
		names = append(names, i.Name)
	}
	return strings.Join(names, ", ")
}

// kafkaChecks dials every bootstrap broker over TLS with the agent's
// certificate and asks for metadata.
func kafkaChecks(ctx context.Context, id *identity.Identity, timeout time.Duration) []Finding {
	var out []Finding
	for _, addr := range id.KafkaBootstrap {
		check := "kafka " + addr
		dctx, cancel := context.WithTimeout(ctx, timeout)
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: id.TLSConfig()}
		conn, err := d.DialContext(dctx, "tcp", addr)
		if err != nil {
			cancel()
			out = append(out, Finding{check, Fail, "TLS connection failed: " + err.Error(), kafkaFix(err)})
			continue
		}
		_ = conn.Close()
		client := &kafka.Client{Addr: kafka.TCP(addr), Timeout: timeout, Transport: &kafka.Transport{TLS: id.TLSConfig(), DialTimeout: timeout, ClientID: "csirt-agent-doctor"}}
		md, err := client.Metadata(dctx, &kafka.MetadataRequest{Topics: []string{"csirt.raw.v1"}})
		cancel()
		if err != nil {
			out = append(out, Finding{check, Fail, "TLS handshake OK but the metadata request failed: " + err.Error(), kafkaFix(err)})
			continue
		}
		msg := fmt.Sprintf("TLS handshake and metadata OK (%d brokers)", len(md.Brokers))
		for _, t := range md.Topics {
			if t.Error != nil {
				msg += "; topic " + t.Name + ": " + t.Error.Error()
			}
		}
		out = append(out, Finding{check, OK, msg, ""})
	}
	return out
}

func kafkaFix(err error) string {
	var ne net.Error
	switch {
	case certProblem(err) || strings.Contains(err.Error(), "certificate") || strings.Contains(err.Error(), "tls:"):
		return "the broker refused the certificate or this host does not trust the broker's: check the clock, then enrol again if the certificate was revoked"
	case errors.As(err, &ne) && ne.Timeout():
		return "the connection timed out: a firewall blocks the Kafka port; ask the network team to open it towards the CSIRT"
	default:
		return "check DNS and the firewall towards the CSIRT's Kafka brokers (the port in the address)"
	}
}

// intakeChecks asks the intake for its clock: reachability (when it is the
// transport) and clock skew.
func intakeChecks(ctx context.Context, id *identity.Identity, o DoctorOptions, transport bool) []Finding {
	lvl := Warn
	if transport {
		lvl = Fail
	}
	if id.IntakeURL == "" || o.Central == nil {
		reason := "no intake URL from enrolment"
		if o.Central == nil {
			reason = "this build has no intake client"
		}
		return []Finding{{"intake", lvl, reason + ": cannot check the intake nor the clock skew", "re-enrol with a current csirt-agent"}}
	}
	hctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	t0 := o.Now()
	srv, err := o.Central.Health(hctx, id)
	t1 := o.Now()
	if err != nil {
		return []Finding{{"intake " + id.IntakeURL, lvl, "not reachable: " + err.Error(), "check DNS, proxy and firewall towards the CSIRT intake (HTTPS)"}}
	}
	out := []Finding{{"intake " + id.IntakeURL, OK, "reachable over mutual TLS", ""}}
	return append(out, SkewFinding(srv, t0.Add(t1.Sub(t0)/2)))
}

// SkewFinding judges the clock difference between the server and this
// host (> 2 min WARN, > 5 min FAIL).
func SkewFinding(server, local time.Time) Finding {
	skew := local.Sub(server)
	abs := skew
	if abs < 0 {
		abs = -abs
	}
	msg := fmt.Sprintf("this host's clock differs from the server's by %s", skew.Round(time.Second))
	fix := "enable time synchronisation: timedatectl set-ntp true (or configure chrony/ntpd)"
	switch {
	case abs > 5*time.Minute:
		return Finding{"clock", Fail, msg + ": event times and certificates will be wrong", fix}
	case abs > 2*time.Minute:
		return Finding{"clock", Warn, msg, fix}
	default:
		return Finding{"clock", OK, msg, ""}
	}
}

// diskCheck compares free space under the state directory with the spool
// limit.
func diskCheck(c Config) Finding {
	dir := c.StateDir
	for {
		if _, err := os.Stat(dir); err == nil || dir == "/" {
			break
		}
		dir = filepath.Dir(dir)
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		return Finding{"disk", Warn, "cannot measure free space under " + dir + ": " + err.Error(), ""}
	}
	free := int64(fs.Bavail) * int64(fs.Bsize) //nolint:unconvert,gosec // field types differ by platform
	msg := fmt.Sprintf("%s free under %s; the spool may use up to %s", ByteSize(free), dir, c.Spool.MaxBytes)
	switch {
	case free < 64<<20:
		return Finding{"disk", Fail, msg, "free disk space on that filesystem: while the spool cannot write, lines wait in the log files"}
	case free < int64(c.Spool.MaxBytes):
		return Finding{"disk", Warn, msg + ": the spool cannot reach its limit", "free disk space or lower spool.max_bytes in the configuration"}
	default:
		return Finding{"disk", OK, msg, ""}
	}
}

// RenderDoctor prints the findings and reports whether any failed.
func RenderDoctor(w io.Writer, fs []Finding) (failed bool) {
	for _, f := range fs {
		fmt.Fprintf(w, "%-4s  %-28s %s\n", f.Level, f.Check, f.Message)
		if f.Fix != "" && f.Level != OK {
			fmt.Fprintf(w, "      %-28s fix: %s\n", "", f.Fix)
		}
		if f.Level == Fail {
			failed = true
		}
	}
	return failed
}
