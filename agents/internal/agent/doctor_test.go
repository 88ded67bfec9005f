package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/agents/internal/identity"
	"github.com/csirt-toscana/platform/agents/internal/netsum"
	"github.com/csirt-toscana/platform/internal/policy"
)

func findingsByCheck(fs []Finding) map[string]Finding {
	m := map[string]Finding{}
	for _, f := range fs {
		m[f.Check] = f
	}
	return m
}

func TestDoctor(t *testing.T) {
	f := newFixture(t, time.Now().Add(-time.Hour), time.Now().Add(90*24*time.Hour))
	present, dir, absent := filepath.Join(f.logs, "present.log"), filepath.Join(f.logs, "adir"), filepath.Join(f.logs, "absent.log")
	appendLines(t, present, "x")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := policy.Policy{Sources: []policy.Source{
		fileSource("present", present), fileSource("dir", dir), fileSource("absent", absent),
		fileSource("glob", filepath.Join(f.logs, "*.log")), {Name: "journal", Kind: "journal"},
	}}
	p.Normalize()
	if err := identity.SavePolicy(f.state, p); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.StateDir = f.state
	noJournal := func(string) (string, error) { return "", errors.New("not found") }
	fs := findingsByCheck(Doctor(context.Background(), DoctorOptions{Config: cfg, Central: &fakeCentral{}, LookPath: noJournal}))
	want := map[string]Level{
		"identity": OK, "certificate": OK, "source present": OK, "source dir": Fail, "source absent": Warn,
		"source glob": OK, "source journal": Fail, "intake https://intake.test": OK, "clock": OK, "disk": OK,
	}
	for check, lvl := range want {
		if got, ok := fs[check]; !ok || got.Level != lvl {
			t.Errorf("check %q: got %+v, want level %s", check, got, lvl)
		}
	}
	if !strings.Contains(fs["source dir"].Message, "is a directory") || !strings.Contains(fs["source journal"].Fix, "journal") {
		t.Errorf("messages: %+v %+v", fs["source dir"], fs["source journal"])
	}
	var out bytes.Buffer
	if !RenderDoctor(&out, Doctor(context.Background(), DoctorOptions{Config: cfg, Central: &fakeCentral{}, LookPath: noJournal})) {
		t.Error("RenderDoctor must report a failure")
	}
	if !strings.Contains(out.String(), "FAIL  source dir") || !strings.Contains(out.String(), "fix: ") {
		t.Errorf("rendered:\n%s", out.String())
	}

	// A key readable by others, and an expired certificate.
	keyPath := filepath.Join(identity.Path(f.state), identity.KeyFile)
	if err := os.Chmod(keyPath, 0o644); err != nil {
		t.Fatal(err)
	}
	fs = findingsByCheck(Doctor(context.Background(), DoctorOptions{Config: cfg, Now: func() time.Time { return time.Now().Add(100 * 24 * time.Hour) }, LookPath: noJournal}))
	if fs["identity"].Level != Fail || !strings.Contains(fs["identity"].Fix, "chmod 600") {
		t.Errorf("key mode: %+v", fs["identity"])
	}
	if fs["certificate"].Level != Fail || !strings.Contains(fs["certificate"].Message, "expired") {
		t.Errorf("expired cert: %+v", fs["certificate"])
	}
	if fs["intake"].Level == OK {
		t.Errorf("no intake client must not be OK: %+v", fs["intake"])
	}
}

func TestDoctorNotEnrolled(t *testing.T) {
	cfg := DefaultConfig()
	cfg.StateDir = t.TempDir()
	fs := Doctor(context.Background(), DoctorOptions{Config: cfg})
	if fs[0].Check != "identity" || fs[0].Level != Fail || !strings.Contains(fs[0].Fix, "csirt-agent enroll") {
		t.Errorf("%+v", fs)
	}
}

func TestDoctorKafkaUnreachable(t *testing.T) {
	f := newFixture(t, time.Now().Add(-time.Hour), time.Now().Add(90*24*time.Hour))
	cfg := DefaultConfig()
	cfg.StateDir = f.state
	cfg.Transport.KafkaBootstrap = []string{"127.0.0.1:1"}
	fs := findingsByCheck(Doctor(context.Background(), DoctorOptions{Config: cfg, Timeout: 2 * time.Second}))
	if k := fs["kafka 127.0.0.1:1"]; k.Level != Fail || k.Fix == "" {
		t.Errorf("kafka check: %+v", k)
	}
}

func TestSkew(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		d    time.Duration
		want Level
	}{{30 * time.Second, OK}, {-3 * time.Minute, Warn}, {6 * time.Minute, Fail}} {
		if got := SkewFinding(now, now.Add(c.d)); got.Level != c.want {
			t.Errorf("skew %s: %s, want %s", c.d, got.Level, c.want)
		}
	}
}

func TestConfig(t *testing.T) {
	c, err := ParseConfig([]byte("state_dir: /srv/agent\nspool:\n  max_bytes: 2GiB\n  max_age: 48h\nlog:\n  format: json\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.StateDir != "/srv/agent" || c.Spool.MaxBytes != 2<<30 || c.Spool.MaxAge != 48*time.Hour || c.Log.Level != "info" || c.Transport.Mode != ModeAuto {
		t.Errorf("%+v", c)
	}
	for _, bad := range []string{"statedir: /x\n", "state_dir: relative\n", "spool:\n  max_bytes: 12XB\n", "transport:\n  mode: carrier-pigeon\n", "transport:\n  compression: gzip\n"} {
		if _, err := ParseConfig([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "none.yml"), true); err == nil {
		t.Error("a missing explicit config must be an error")
	}
	if c, err := LoadConfig(filepath.Join(t.TempDir(), "none.yml"), false); err != nil || c.StateDir != DefaultStateDir {
		t.Errorf("missing default config: %+v %v", c, err)
	}
}

func TestStatusJSONRoundTrip(t *testing.T) {
	dir := t.TempDir()
	st := &Status{State: "running", PID: os.Getpid(), Updated: time.Now(), AgentID: "a", Sources: nil}
	if err := WriteStatus(dir, st); err != nil {
		t.Fatal(err)
	}
	got, err := ReadStatus(dir)
	if err != nil || got.AgentID != "a" || !Check(got, time.Now()).Running {
		t.Fatalf("%+v %v", got, err)
	}
	if v := Check(got, time.Now().Add(time.Minute)); v.Running || !strings.Contains(v.Reason, "hung") {
		t.Errorf("stale status: %+v", v)
	}
	got.PID = 1 << 30
	if v := Check(got, time.Now()); v.Running || !strings.Contains(v.Reason, "gone") {
		t.Errorf("dead pid: %+v", v)
	}
	if err := os.WriteFile(filepath.Join(dir, StatusFile), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadStatus(dir); err == nil {
		t.Error("damaged status accepted")
	}
	b, _ := json.Marshal(st)
	if !bytes.Contains(b, []byte(`"counters"`)) {
		t.Error(string(b))
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("state_dir: /var/lib/csirt-agent\nspool:\n  max_bytes: 256MiB\n"))
	f.Add([]byte("transport:\n  mode: intake\n  intake_url: https://x:8443\n"))
	f.Add([]byte("spool: {max_bytes: 99999999999999999999}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			return
		}
		if c.Spool.MaxBytes < 1<<20 || !strings.HasPrefix(c.StateDir, "/") {
			t.Fatalf("accepted an invalid configuration: %+v", c)
		}
		if _, err := ParseByteSize(c.Spool.MaxBytes.String()); err != nil {
			t.Fatalf("size %d does not round-trip: %v", c.Spool.MaxBytes, err)
		}
	})
}

func TestDoctorCapture(t *testing.T) {
	f := newFixture(t, time.Now().Add(-time.Hour), time.Now().Add(90*24*time.Hour))
	cfg := DefaultConfig()
	cfg.StateDir = f.state
	doctor := func(iface string, mask uint64) map[string]Finding {
		p := policy.Policy{Capture: policy.Capture{Enabled: iface != "", Interface: iface}}
		p.Normalize()
		if err := identity.SavePolicy(f.state, p); err != nil {
			t.Fatal(err)
		}
		capEff := func() (uint64, error) { return mask, nil }
		return findingsByCheck(Doctor(context.Background(), DoctorOptions{Config: cfg, Central: &fakeCentral{}, CapEff: capEff}))
	}
	fs := doctor("", 0)
	if fs["capture"].Level != OK || !strings.Contains(fs["capture"].Message, "off") {
		t.Errorf("capture off: %+v", fs["capture"])
	}
	fs = doctor("lo", capNetRaw)
	wantCap := OK
	if !netsum.LiveCaptureAvailable {
		wantCap = Fail
	}
	if fs["capture"].Level != wantCap {
		t.Errorf("capture on lo with CAP_NET_RAW: %+v", fs["capture"])
	}
	if !netsum.LiveCaptureAvailable {
		return
	}
	if fs["capture interface"].Level != OK {
		t.Errorf("lo: %+v", fs["capture interface"])
	}
	fs = doctor("lo", 0)
	if fs["capture"].Level != Fail || !strings.Contains(fs["capture"].Message, "CAP_NET_RAW") || !strings.Contains(fs["capture"].Fix, "AmbientCapabilities") {
		t.Errorf("without CAP_NET_RAW: %+v", fs["capture"])
	}
	fs = doctor("nosuch0", capNetRaw)
	if fs["capture interface"].Level != Fail || !strings.Contains(fs["capture interface"].Message, "nosuch0") || !strings.Contains(fs["capture interface"].Fix, "lo") {
		t.Errorf("missing interface: %+v", fs["capture interface"])
	}
}
