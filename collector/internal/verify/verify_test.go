package verify

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/csirt-toscana/platform/internal/envelope"
	"github.com/csirt-toscana/platform/internal/store/sqlite"
)

type testAgent struct {
	agent  Agent
	signer envelope.Signer
}

func newAgent(t testing.TB, id, entity string) testAgent {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	s, err := envelope.NewEd25519Signer("k1", priv)
	require.NoError(t, err)
	v, err := envelope.NewEd25519Verifier(pub)
	require.NoError(t, err)
	return testAgent{agent: Agent{ID: id, EntityID: entity, Algorithm: envelope.Ed25519, KeyID: "k1", Key: v}, signer: s}
}

func seal(t testing.TB, s envelope.Signer, agent, entity, stream string, first uint64, n int) []byte {
	t.Helper()
	b := &envelope.Batch{AgentID: agent, EntityID: entity, StreamID: stream, FirstSeq: first, Created: time.Unix(1700000000, 0)}
	for i := range n {
		b.Records = append(b.Records, envelope.Record{Time: time.Unix(1700000000, int64(i)), Kind: envelope.KindRawLine, Data: []byte("line")})
	}
	data, err := envelope.Seal(b, s)
	require.NoError(t, err)
	return data
}

func TestVerifyRejections(t *testing.T) {
	ctx := context.Background()
	a := newAgent(t, "a1", "e1")
	other := newAgent(t, "a1", "e1") // same id, another key
	revoked := newAgent(t, "a2", "e1")
	revoked.agent.Revoked = true
	agents := NewMemoryAgents(a.agent, revoked.agent)

	badVersion := seal(t, a.signer, "a1", "e1", "s", 1, 1)
	badVersion[7] = '9' // schema version "1.0" -> "9.0" (str8 at offset 6)

	tests := []struct {
		name string
		data []byte
		want Reason
	}{
		{"garbage", []byte("not an envelope"), ReasonMalformed},
		{"unknown agent", seal(t, a.signer, "nobody", "e1", "s", 1, 1), ReasonUnknownAgent},
		{"revoked", seal(t, revoked.signer, "a2", "e1", "s", 1, 1), ReasonRevokedAgent},
		{"wrong key", seal(t, other.signer, "a1", "e1", "s", 1, 1), ReasonBadSignature},
		{"entity mismatch", seal(t, a.signer, "a1", "e2", "s", 1, 1), ReasonEntityMismatch},
		{"unsupported version", badVersion, ReasonUnsupportedVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := New(Options{Agents: agents})
			require.NoError(t, err)
			_, err = v.Verify(ctx, tt.data, nil)
			var rej *Rejection
			require.ErrorAs(t, err, &rej)
			require.Equal(t, tt.want, rej.Reason, "%v", err)
		})
	}
}

func TestVerifySequence(t *testing.T) {
	ctx := context.Background()
	a := newAgent(t, "a1", "e1")
	v, err := New(Options{Agents: NewMemoryAgents(a.agent)})
	require.NoError(t, err)
	at := func(off int64) *Position { return &Position{Partition: 0, Offset: off} }

	res, err := v.Verify(ctx, seal(t, a.signer, "a1", "e1", "s", 1, 10), at(0))
	require.NoError(t, err)
	require.Nil(t, res.Gap)
	require.Zero(t, res.Skip)

	// Overlap: 6..15 -> 6..10 already accepted.
	res, err = v.Verify(ctx, seal(t, a.signer, "a1", "e1", "s", 6, 10), at(1))
	require.NoError(t, err)
	require.Equal(t, 5, res.Skip)

	// Replay at a later offset.
	_, err = v.Verify(ctx, seal(t, a.signer, "a1", "e1", "s", 1, 10), at(2))
	var rej *Rejection
	require.ErrorAs(t, err, &rej)
	require.Equal(t, ReasonReplay, rej.Reason)

	// Redelivery of an earlier offset is not a replay.
	res, err = v.Verify(ctx, seal(t, a.signer, "a1", "e1", "s", 1, 10), at(0))
	require.NoError(t, err)
	require.True(t, res.Redelivered)

	// Gap 16..99.
	res, err = v.Verify(ctx, seal(t, a.signer, "a1", "e1", "s", 100, 1), at(3))
	require.NoError(t, err)
	require.Equal(t, &Gap{Agent: "a1", Entity: "e1", Stream: "s", From: 16, To: 99}, res.Gap)

	// Other streams are independent.
	res, err = v.Verify(ctx, seal(t, a.signer, "a1", "e1", "other", 1, 1), at(4))
	require.NoError(t, err)
	require.Nil(t, res.Gap)
}

func TestStoreStateSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(t.TempDir(), "s.db")})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, st.Close()) })

	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	signer, err := envelope.NewEd25519Signer("k1", priv)
	require.NoError(t, err)
	der, err := x509.MarshalPKIXPublicKey(pub)
	require.NoError(t, err)
	require.NoError(t, PutAgent(ctx, st, AgentDoc{AgentID: "a1", EntityID: "e1", Algorithm: "ed25519", KeyID: "k1",
		PublicKey: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}))

	opts := Options{Agents: StoreAgents{Store: st}, Seqs: StoreSeqs{Store: st}}
	v1, err := New(opts)
	require.NoError(t, err)
	_, err = v1.Verify(ctx, seal(t, signer, "a1", "e1", "/var/log/auth.log", 1, 5), &Position{Offset: 7})
	require.NoError(t, err)
	require.NoError(t, v1.Save(ctx))

	v2, err := New(opts)
	require.NoError(t, err)
	_, err = v2.Verify(ctx, seal(t, signer, "a1", "e1", "/var/log/auth.log", 1, 5), &Position{Offset: 8})
	var rej *Rejection
	require.ErrorAs(t, err, &rej)
	require.Equal(t, ReasonReplay, rej.Reason)
	res, err := v2.Verify(ctx, seal(t, signer, "a1", "e1", "/var/log/auth.log", 1, 5), &Position{Offset: 7})
	require.NoError(t, err)
	require.True(t, res.Redelivered)
	res, err = v2.Verify(ctx, seal(t, signer, "a1", "e1", "/var/log/auth.log", 9, 1), &Position{Offset: 9})
	require.NoError(t, err)
	require.Equal(t, uint64(6), res.Gap.From)

	// Revocation in the store takes effect at the next batch.
	require.NoError(t, PutAgent(ctx, st, AgentDoc{AgentID: "a1", EntityID: "e1", Algorithm: "ed25519", KeyID: "k1", Status: "revoked",
		PublicKey: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}))
	_, err = v2.Verify(ctx, seal(t, signer, "a1", "e1", "/var/log/auth.log", 10, 1), nil)
	require.ErrorAs(t, err, &rej)
	require.Equal(t, ReasonRevokedAgent, rej.Reason)
}

func TestParseKeyForms(t *testing.T) {
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ecDER, err := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	require.NoError(t, err)
	secret := make([]byte, 32)
	ok := []AgentDoc{
		{Algorithm: "ed25519", PublicKey: base64.StdEncoding.EncodeToString(edPub)},
		{Algorithm: "ecdsa-p256-sha256", PublicKey: base64.StdEncoding.EncodeToString(ecDER)},
		{Algorithm: "ecdsa-p256-sha256", PublicKey: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecDER}))},
		{Algorithm: "hmac-sha256", PublicKey: base64.StdEncoding.EncodeToString(secret)},
	}
	for _, d := range ok {
		_, err := d.Agent()
		require.NoError(t, err, d.Algorithm)
	}
	bad := []AgentDoc{
		{Algorithm: "rsa", PublicKey: base64.StdEncoding.EncodeToString(edPub)},
		{Algorithm: "ed25519", PublicKey: base64.StdEncoding.EncodeToString(ecDER)},
		{Algorithm: "hmac-sha256", PublicKey: "short"},
	}
	for _, d := range bad {
		_, err := d.Agent()
		require.Error(t, err, d.Algorithm)
	}
	_, err = StoreAgents{}.Agent(context.Background(), "bad id/")
	require.True(t, errors.Is(err, ErrUnknownAgent))
}
