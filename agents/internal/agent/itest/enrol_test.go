package itest

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/agents/internal/identity"
	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/enroll"
	"github.com/csirt-toscana/platform/internal/envelope"
)

// TestEnrolAgainstServe enrols the real csirt-agent binary against a real
// `csirt serve` node with tokens from `csirt admin token create`: a good
// token gives an identity (key 0600, certificate naming agent and
// entity); a used-up, an expired, a revoked and an unknown token are each
// refused with their own message, printed by csirt-agent without the
// token's secret; and a batch claiming another entity, sent over the
// agent's own mutual TLS, is refused by the intake (403).
func TestEnrolAgainstServe(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs csirt serve")
	}
	csirt, agentBin := buildCsirt(t), buildAgent(t)
	n := startServe(t, csirt)
	server := "https://" + n.intake
	const entity = "comune-di-enrol"
	n.mustAdmin("entity", "add", entity, "--name", "Comune di Enrol")
	work := t.TempDir()
	try := func(name, tok string) (int, string, string) {
		state := filepath.Join(work, name, "state")
		cfg := filepath.Join(work, name, "agent.yml")
		if err := os.MkdirAll(filepath.Dir(cfg), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cfg, []byte("state_dir: "+state+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		code, out := enrol(t, agentBin, server, tok, cfg)
		if p, err := enroll.ParseToken(tok); err == nil && strings.Contains(out, p.Secret) {
			t.Errorf("%s: csirt-agent printed the token's secret:\n%s", name, out)
		}
		return code, out, state
	}

	// A good token.
	good := n.token(entity)
	code, out, state := try("good", good)
	if code != 0 {
		t.Fatalf("enrol with a good token: exit %d\n%s", code, out)
	}
	t.Logf("good token: %s", strings.TrimSpace(out))
	id, err := identity.Load(state)
	if err != nil {
		t.Fatal(err)
	}
	if id.EntityID != entity || !strings.HasPrefix(id.AgentID, entity+"-") || !strings.Contains(out, id.AgentID) {
		t.Errorf("identity %+v, output %q", id.Info, out)
	}
	for _, f := range []string{identity.KeyFile, identity.CertFile, identity.CAFile, identity.InfoFile, identity.PolicyFile} {
		fi, err := os.Stat(filepath.Join(identity.Path(state), f))
		if err != nil {
			t.Errorf("identity file %s: %v", f, err)
			continue
		}
		if f == identity.KeyFile && fi.Mode().Perm() != 0o600 {
			t.Errorf("private key mode %04o, want 0600", fi.Mode().Perm())
		}
	}
	uris := map[string]bool{}
	for _, u := range id.Cert.URIs {
		uris[u.String()] = true
	}
	if !uris["urn:csirt:agent:"+id.AgentID] || !uris["urn:csirt:entity:"+entity] || id.Cert.Subject.CommonName != id.AgentID {
		t.Errorf("certificate CN %q URIs %v: want agent and entity URIs", id.Cert.Subject.CommonName, id.Cert.URIs)
	}

	// Refusals, each with its own message from the csirt-agent binary.
	expired := n.token(entity, "--ttl", "1s")
	revoked := n.token(entity)
	p, err := enroll.ParseToken(revoked)
	if err != nil {
		t.Fatal(err)
	}
	n.mustAdmin("token", "revoke", p.ID)
	unknown := p
	unknown.ID, unknown.Secret = "aaaaaaaaaa", strings.Repeat("b", 26)
	time.Sleep(2 * time.Second) // past the 1 s lifetime of the expired token
	msgs := map[string]string{}
	for _, c := range []struct{ name, tok, want string }{
		{"used-up", good, "used up"},
		{"expired", expired, "expired"},
		{"revoked", revoked, "revoked"},
		{"unknown", unknown.String(), "not known"},
	} {
		code, out, state := try(c.name, c.tok)
		if code != 1 || !strings.Contains(out, c.want) {
			t.Errorf("%s token: exit %d, output %q; want exit 1 and %q", c.name, code, out, c.want)
		}
		if _, err := identity.Load(state); err == nil {
			t.Errorf("%s token: an identity was written", c.name)
		}
		msgs[c.name] = strings.TrimSpace(out)
		t.Logf("%s token: %s", c.name, msgs[c.name])
	}
	seen := map[string]string{}
	for k, m := range msgs {
		if prev, dup := seen[m]; dup {
			t.Errorf("%s and %s tokens give the same message %q", k, prev, m)
		}
		seen[m] = k
	}

	// The certificate binds agent and entity: a batch of this agent
	// claiming another entity is refused; the same batch with its own
	// entity is accepted.
	signer, err := id.Signer()
	if err != nil {
		t.Fatal(err)
	}
	bc, err := enroll.NewBatchClient(enroll.Session{IntakeURL: id.IntakeURL, TLS: id.TLSConfig()})
	if err != nil {
		t.Fatal(err)
	}
	seal := func(ent string, seq uint64) []byte {
		b := &envelope.Batch{AgentID: id.AgentID, EntityID: ent, StreamID: "enrol-test", FirstSeq: seq, Created: time.Now(),
			Records: []envelope.Record{{Time: time.Now(), Kind: envelope.KindRawLine, Data: []byte("hello from " + ent)}}}
		raw, err := envelope.Seal(b, signer)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	ctx := context.Background()
	err = bc.Produce(ctx, bus.Message{Value: seal("comune-altro", 1)})
	var se *enroll.ServerError
	if !errors.As(err, &se) || se.Status != http.StatusForbidden || !errors.Is(err, enroll.ErrForbidden) {
		t.Fatalf("a batch claiming another entity: %v, want 403", err)
	}
	t.Logf("batch claiming another entity: %v", err)
	if err := bc.Produce(ctx, bus.Message{Value: seal(entity, 1)}); err != nil {
		t.Fatalf("the same batch with the agent's own entity: %v", err)
	}
}
