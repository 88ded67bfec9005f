package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/csirt-toscana/platform/agents/internal/heartbeat"
)

// StatusFile is the status file under the state directory, rewritten
// atomically every StatusInterval by the running agent.
const StatusFile = "status.json"

// StatusInterval is how often the running agent rewrites StatusFile.
const StatusInterval = 2 * time.Second

// staleAfter: a status file older than this means the agent is not running
// (or hung).
const staleAfter = 15 * time.Second

// Status is the content of StatusFile (docs/agent.md documents it).
type Status struct {
	State        string    `json:"state"` // "running" or "stopped"
	PID          int       `json:"pid"`
	Started      time.Time `json:"started"`
	Updated      time.Time `json:"updated"`
	AgentVersion string    `json:"agent_version"`
	Hostname     string    `json:"hostname"`
	AgentID      string    `json:"agent_id"`
	EntityID     string    `json:"entity_id"`
	StateDir     string    `json:"state_dir"`

	Transport        string    `json:"transport"` // kafka or intake
	Server           string    `json:"server"`    // brokers or intake URL
	TransportError   string    `json:"transport_error,omitempty"`
	TransportErrorAt time.Time `json:"transport_error_at,omitzero"`

	Counters heartbeat.Counters        `json:"counters"`
	Capture  *heartbeat.CaptureCounter `json:"capture,omitempty"` // when the policy turns capture on
	// MemoryLimit is the Go soft memory limit in force (bytes; 0 none).
	MemoryLimit int64 `json:"memory_limit,omitempty"`
	// MaxProcs is the GOMAXPROCS the agent set (0: left to Go or to the
	// GOMAXPROCS environment variable).
	MaxProcs int `json:"max_procs,omitempty"`
	// TimerSlackNS is the timer slack the agent's threads run with (ns;
	// the packaged unit sets 4 ms, a process started otherwise usually
	// has Linux's default 50 µs and uses more CPU: docs/agent.md, "Cores").
	TimerSlackNS int64                   `json:"timer_slack_ns,omitempty"`
	Sources      []heartbeat.SourceState `json:"sources"`
	Spool        SpoolStatus             `json:"spool"`
	Cert         CertStatus              `json:"cert"`
	Policy       PolicyStatus            `json:"policy"`
	Problems     []string                `json:"problems,omitempty"`
}

// SpoolStatus is the spool's limits (its depth is in Counters).
type SpoolStatus struct {
	MaxBytes int64  `json:"max_bytes"`
	MaxAge   string `json:"max_age"`
	Error    string `json:"error,omitempty"` // last append failure (disk full...)
}

// CertStatus is the agent certificate's state.
type CertStatus struct {
	NotAfter time.Time `json:"not_after,omitzero"`
	DaysLeft int       `json:"days_left"`
	State    string    `json:"state"`
	Message  string    `json:"message"`
}

// PolicyStatus is the applied policy.
type PolicyStatus struct {
	Revision  string    `json:"revision"`
	Fetched   time.Time `json:"fetched,omitzero"` // last successful check with the centre
	Error     string    `json:"error,omitempty"`  // last fetch or apply failure
	ErrorTime time.Time `json:"error_time,omitzero"`
}

// WriteStatus writes st to the state directory atomically (readable by
// other users: it holds no secret).
func WriteStatus(stateDir string, st *Status) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(stateDir, StatusFile)
	tmp, err := os.CreateTemp(stateDir, ".status-*.tmp")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if err := tmp.Chmod(0o644); err != nil {
		_ = tmp.Close()
		return err
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// ReadStatus reads the status file of a state directory.
func ReadStatus(stateDir string) (*Status, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, StatusFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no %s in %s: the agent has never run with this state directory (start it: systemctl start csirt-agent)", StatusFile, stateDir)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the agent status: %w", err)
	}
	var st Status
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s is damaged (%w): restart the agent to rewrite it", filepath.Join(stateDir, StatusFile), err)
	}
	return &st, nil
}

// processAlive reports whether pid exists (signal 0).
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Verdict is the outcome of Check: Running is false when the agent is not
// running; Problems are why it is unhealthy (empty: healthy); Warnings
// need attention but data still flows.
type Verdict struct {
	Running  bool
	Reason   string // why not running
	Problems []string
	Warnings []string
}

// Healthy is true when running and without problems.
func (v Verdict) Healthy() bool { return v.Running && len(v.Problems) == 0 }

// Check judges a status read at now.
func Check(st *Status, now time.Time) Verdict {
	var v Verdict
	age := now.Sub(st.Updated)
	switch {
	case st.State != "running":
		v.Reason = fmt.Sprintf("the agent stopped at %s", st.Updated.Local().Format(time.DateTime))
	case !processAlive(st.PID):
		v.Reason = fmt.Sprintf("process %d is gone (last status %s ago): it crashed or was killed; see journalctl -u csirt-agent", st.PID, age.Round(time.Second))
	case age > staleAfter:
		v.Reason = fmt.Sprintf("process %d has not updated its status for %s: it may be hung; restart it (systemctl restart csirt-agent)", st.PID, age.Round(time.Second))
	default:
		v.Running = true
	}
	switch st.Cert.State {
	case CertExpired, CertRevoked, CertNotYet, CertMissing:
		v.Problems = append(v.Problems, st.Cert.Message)
	case CertRenewDue:
		v.Warnings = append(v.Warnings, st.Cert.Message)
	}
	if st.TransportError != "" && st.TransportErrorAt.After(st.Counters.LastAck) && now.Sub(st.TransportErrorAt) < time.Minute {
		msg := fmt.Sprintf("cannot ship to %s since %s: %s (data is kept in the spool)", st.Server, sinceText(st.Counters.LastAck, st.Started), st.TransportError)
		if st.Counters.SpoolDepth > 0 && now.Sub(maxTime(st.Counters.LastAck, st.Started)) > 2*time.Minute {
			v.Problems = append(v.Problems, msg)
		} else {
			v.Warnings = append(v.Warnings, msg)
		}
	}
	for _, s := range st.Sources {
		if s.State == "error" {
			v.Problems = append(v.Problems, fmt.Sprintf("source %s: %s: %s", s.Source, s.Path, s.Error))
		}
	}
	if cp := st.Capture; cp != nil && cp.DroppedKernel+cp.DroppedInterface > 0 {
		v.Warnings = append(v.Warnings, fmt.Sprintf("packet capture on %s lost %d packets in the kernel and %d in the interface since it started: the server is busy or the traffic too high; ask the CSIRT to narrow capture.bpf", cp.Interface, cp.DroppedKernel, cp.DroppedInterface))
	}
	if st.Counters.DroppedBatches > 0 {
		v.Warnings = append(v.Warnings, fmt.Sprintf("the spool was full or too old and dropped %d batches (%d bytes) since the start: raise spool.max_bytes or fix the connection", st.Counters.DroppedBatches, st.Counters.DroppedBytes))
	}
	if st.Spool.Error != "" {
		v.Problems = append(v.Problems, "spool: "+st.Spool.Error)
	}
	if st.Policy.Error != "" {
		v.Warnings = append(v.Warnings, "policy: "+st.Policy.Error)
	}
	v.Problems = append(v.Problems, st.Problems...)
	return v
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func sinceText(t, started time.Time) string {
	if t.IsZero() {
		return "the start (" + started.Local().Format(time.DateTime) + ")"
	}
	return t.Local().Format(time.DateTime)
}

// RenderStatus writes the status for a technician.
func RenderStatus(w io.Writer, st *Status, now time.Time) Verdict {
	v := Check(st, now)
	state := "running"
	if !v.Running {
		state = "NOT RUNNING: " + v.Reason
	} else if !v.Healthy() {
		state = "running, UNHEALTHY"
	}
	fmt.Fprintf(w, "csirt-agent %s: %s\n", st.AgentVersion, state)
	if v.Running {
		fmt.Fprintf(w, "  pid %d, up since %s, status written %s ago\n", st.PID, st.Started.Local().Format(time.DateTime), now.Sub(st.Updated).Round(time.Second))
	}
	fmt.Fprintf(w, "agent     %s (entity %s) on %s\n", st.AgentID, st.EntityID, st.Hostname)
	fmt.Fprintf(w, "transport %s %s\n", st.Transport, st.Server)
	if st.Counters.LastAck.IsZero() {
		fmt.Fprintf(w, "last ack  none yet\n")
	} else {
		fmt.Fprintf(w, "last ack  %s (%s ago)\n", st.Counters.LastAck.Local().Format(time.DateTime), now.Sub(st.Counters.LastAck).Round(time.Second))
	}
	c := st.Counters
	fmt.Fprintf(w, "lines     read %d, spooled %d, shipped %d\n", c.LinesRead, c.LinesSpooled, c.LinesShipped)
	fmt.Fprintf(w, "spool     %d batches, %s of %s (max age %s)\n", c.SpoolDepth, ByteSize(c.SpoolBytes), ByteSize(st.Spool.MaxBytes), st.Spool.MaxAge)
	fmt.Fprintf(w, "drops     %d batches (%d bytes); errors %d, retries %d\n", c.DroppedBatches, c.DroppedBytes, c.Errors, c.Retries)
	if cp := st.Capture; cp != nil {
		fmt.Fprintf(w, "capture   %s: %d packets, dropped %d by the kernel and %d by the interface; flows active %d, evicted %d; %d summaries\n",
			cp.Interface, cp.Packets, cp.DroppedKernel, cp.DroppedInterface, cp.FlowsActive, cp.FlowsEvicted, cp.Summaries)
	}
	if st.MemoryLimit > 0 {
		fmt.Fprintf(w, "memory    soft limit %s\n", ByteSize(st.MemoryLimit))
	}
	fmt.Fprintf(w, "cert      %s\n", st.Cert.Message)
	pol := st.Policy.Revision
	if !st.Policy.Fetched.IsZero() {
		pol += ", checked " + st.Policy.Fetched.Local().Format(time.DateTime)
	}
	fmt.Fprintf(w, "policy    %s\n", pol)
	fmt.Fprintf(w, "sources:\n")
	for _, s := range st.Sources {
		line := fmt.Sprintf("  %-12s %-9s %-8s", s.Source, s.Kind, s.State)
		if s.Path != "" {
			line += " " + s.Path
		}
		if s.Kind == "file" && s.State != "waiting" && s.State != "error" {
			line += fmt.Sprintf(" (read %d, acked %d)", s.Read, s.Acked)
		}
		if s.Error != "" {
			line += ": " + s.Error
		}
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
	for _, p := range v.Problems {
		fmt.Fprintf(w, "PROBLEM: %s\n", p)
	}
	for _, p := range v.Warnings {
		fmt.Fprintf(w, "WARNING: %s\n", p)
	}
	return v
}
