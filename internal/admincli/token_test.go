package admincli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/collector/intake"
	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/central"
	"github.com/csirt-toscana/platform/internal/config"
	"github.com/csirt-toscana/platform/internal/enroll"
	"github.com/csirt-toscana/platform/internal/policy"
	"github.com/csirt-toscana/platform/internal/store/sqlite"
)

type adminRun struct {
	t       *testing.T
	dataDir string
}

func (r adminRun) cmd(args ...string) (code int, stdout, stderr string) {
	r.t.Helper()
	var out, errb bytes.Buffer
	// --data-dir right after GROUP VERB: it is read before the store opens.
	full := append([]string{args[0], args[1], "--data-dir", r.dataDir}, args[2:]...)
	code = Main(context.Background(), full, &out, &errb)
	return code, out.String(), errb.String()
}

func (r adminRun) ok(args ...string) string {
	r.t.Helper()
	code, out, errs := r.cmd(args...)
	if code != 0 {
		r.t.Fatalf("%v: exit %d: %s", args, code, errs)
	}
	return out
}

type enrolNopProducer struct{}

func (enrolNopProducer) Produce(context.Context, ...bus.Message) error { return nil }

// The admin commands drive a whole enrolment: entity, token (its pin is
// the data directory's CA), enrolment through a real intake on the same
// store, listing, revocation.
func TestAdminEnrolmentFlow(t *testing.T) {
	r := adminRun{t: t, dataDir: t.TempDir()}
	if out := r.ok("entity", "add", "comune-prato", "--name", "Comune di Prato", "--province", "po", "--nis2"); !strings.Contains(out, "comune-prato added") {
		t.Fatalf("entity add: %q", out)
	}
	if code, _, errs := r.cmd("entity", "add", "comune-prato", "--name", "again"); code != 1 || !strings.Contains(errs, "already exists") {
		t.Fatalf("duplicate entity: %d %s", code, errs)
	}
	if code, _, errs := r.cmd("entity", "add", "Bad Id", "--name", "x"); code != 1 || !strings.Contains(errs, "must be 1-63") {
		t.Fatalf("bad id: %d %s", code, errs)
	}
	if code, _, errs := r.cmd("entity", "add", "comune-x"); code != 2 || !strings.Contains(errs, "--name") {
		t.Fatalf("missing name: %d %s", code, errs)
	}
	// Flags may follow positional arguments, --config too: it is read before the store opens.
	if code, _, errs := r.cmd("entity", "add", "comune-y", "--name", "Y", "--config", "x.yaml"); code != 1 || !strings.Contains(errs, "x.yaml") {
		t.Fatalf("late --config: %d %s", code, errs)
	}
	if out := r.ok("entity", "list"); !strings.Contains(out, "Comune di Prato") || !strings.Contains(out, "PO") {
		t.Fatalf("entity table: %q", out)
	}
	var ents []map[string]any
	if err := json.Unmarshal([]byte(r.ok("entity", "list", "--format", "json")), &ents); err != nil || len(ents) != 1 || ents[0]["id"] != "comune-prato" || ents[0]["province"] != "PO" || ents[0]["nis2"] != true {
		t.Fatalf("entity list: %v %v", ents, err)
	}

	if code, _, errs := r.cmd("token", "create", "--entity", "nosuch"); code != 1 || !strings.Contains(errs, `entity "nosuch" is unknown`) {
		t.Fatalf("token for unknown entity: %d %s", code, errs)
	}
	code, out, errs := r.cmd("token", "create", "--entity", "comune-prato", "--ttl", "2h", "--uses", "2")
	if code != 0 {
		t.Fatalf("token create: %s", errs)
	}
	tok := strings.TrimSpace(out)
	if strings.Count(out, "\n") != 1 {
		t.Fatalf("stdout must be the token alone: %q", out)
	}
	pt, err := enroll.ParseToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errs, "csirt-agent enroll --server https://127.0.0.1:8443 --token "+tok) {
		t.Fatalf("no enrol command in %q", errs)
	}
	list := r.ok("token", "list")
	if !strings.Contains(list, pt.ID) || !strings.Contains(list, "active") || !strings.Contains(list, "0/2") || strings.Contains(list, pt.Secret) {
		t.Fatalf("token list: %q", list)
	}

	// Enrol through a real intake on the same data directory.
	cfg := config.Default()
	cfg.DataDir = r.dataDir
	agentID := enrolVia(t, cfg, tok)

	var agents []map[string]any
	if err := json.Unmarshal([]byte(r.ok("agent", "list", "--entity", "comune-prato", "--format", "json")), &agents); err != nil || len(agents) != 1 {
		t.Fatalf("agent list: %v %v", agents, err)
	}
	a := agents[0]
	if a["id"] != agentID || a["entity"] != "comune-prato" || a["hostname"] != "srv-anagrafe" || a["status"] != "active" || a["cert_expiry"] == nil || a["last_seen"] == nil {
		t.Fatalf("agent row %v", a)
	}
	if out := r.ok("agent", "list"); !strings.Contains(out, agentID) || !strings.Contains(out, "CERT EXPIRES") {
		t.Fatalf("agent table %q", out)
	}
	if out := r.ok("token", "list", "--format", "json"); !strings.Contains(out, `"uses": 1`) {
		t.Fatalf("token use not counted: %s", out)
	}
	if out := r.ok("agent", "revoke", agentID); !strings.Contains(out, "revoked") {
		t.Fatalf("agent revoke: %q", out)
	}
	if code, _, errs := r.cmd("agent", "revoke", agentID); code != 1 || !strings.Contains(errs, "already revoked") {
		t.Fatalf("second revoke: %d %s", code, errs)
	}
	if out := r.ok("agent", "list"); !strings.Contains(out, "revoked") {
		t.Fatalf("revoked agent not shown as such: %q", out)
	}
	if out := r.ok("token", "revoke", pt.ID); !strings.Contains(out, "1 of 2") {
		t.Fatalf("token revoke: %q", out)
	}
	if list := r.ok("token", "list"); !strings.Contains(list, "revoked") {
		t.Fatalf("token list after revoke: %q", list)
	}
	if code, _, errs := r.cmd("token", "revoke", "NOTANID"); code != 1 || !strings.Contains(errs, "not a token id") {
		t.Fatalf("bad token id: %d %s", code, errs)
	}

	// Policy set/show.
	p := policy.Default()
	p.Capture.Enabled = true
	b, _ := json.Marshal(p)
	pf := filepath.Join(t.TempDir(), "p.json")
	if err := os.WriteFile(pf, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if out := r.ok("policy", "set", "--entity", "comune-prato", pf); !strings.Contains(out, "policy revision") {
		t.Fatalf("policy set: %q", out)
	}
	var shown policy.Policy
	if err := json.Unmarshal([]byte(r.ok("policy", "show", "--entity", "comune-prato")), &shown); err != nil || !shown.Capture.Enabled || shown.Revision == policy.Default().Revision {
		t.Fatalf("policy show: %+v %v", shown, err)
	}
}

// enrolVia serves an intake on the data directory's store and CA and
// enrols one agent with tok; the store is closed again before returning.
func enrolVia(t *testing.T, cfg config.Config, tok string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := sqlite.Open(ctx, sqlite.Options{Path: cfg.SQLitePath()})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := central.OpenIssuer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := intake.New(intake.Options{Store: st, Issuer: iss, Producer: enrolNopProducer{}, Listener: l,
		Config: intake.Config{Intake: cfg.Intake, PKI: cfg.PKI}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Error(err)
		}
		_ = st.Close()
	}()
	ectx, ecancel := context.WithTimeout(ctx, 30*time.Second)
	defer ecancel()
	e, err := enroll.Enroll(ectx, enroll.EnrollOptions{Server: "https://" + l.Addr().String(), Token: tok, Hostname: "srv-anagrafe"})
	if err != nil {
		t.Fatal(err)
	}
	return e.AgentID
}
