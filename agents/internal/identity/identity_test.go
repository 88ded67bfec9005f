package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/envelope"
	"github.com/csirt-toscana/platform/internal/testenv"
)

func selfSigned(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "agent-1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestSaveLoadSign(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("empty dir: %v", err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keyPEM, err := MarshalKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert := selfSigned(t, key)
	if err := Save(dir, Info{AgentID: "agent-1", EntityID: "comune-a", IntakeURL: "https://x"}, keyPEM, cert, cert); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(Path(dir), KeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", fi.Mode(), err)
	}
	id, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if id.AgentID != "agent-1" || id.EntityID != "comune-a" || id.Cert.Subject.CommonName != "agent-1" {
		t.Fatalf("loaded %+v", id.Info)
	}
	s, err := id.Signer()
	if err != nil {
		t.Fatal(err)
	}
	b := &envelope.Batch{SchemaVersion: "1.0", AgentID: "agent-1", EntityID: "comune-a", StreamID: "s", FirstSeq: 1,
		Created: time.Now(), Records: []envelope.Record{{Time: time.Now(), Kind: envelope.KindRawLine, Data: []byte("x")}}}
	if err := envelope.Sign(b, s); err != nil {
		t.Fatal(err)
	}
	v, err := envelope.NewVerifier(id.Cert.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := envelope.Verify(b, v); err != nil {
		t.Fatal(err)
	}
	// A certificate for another key is refused.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err := SaveCert(dir, selfSigned(t, other)); err == nil {
		t.Fatal("certificate for another key accepted")
	}
	if err := SaveCert(dir, selfSigned(t, key)); err != nil {
		t.Fatal(err)
	}
}

func TestMatchOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "TestMatchOwner needs root to give files away: run the tests as root, as deploy/dev/test does in CI")
	}
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keyPEM, _ := MarshalKey(key)
	cert := selfSigned(t, key)
	if err := Save(dir, Info{AgentID: "a", EntityID: "e"}, keyPEM, cert, cert); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 4242, 4343); err != nil {
		t.Fatal(err)
	}
	if err := MatchOwner(dir); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"", KeyFile, CertFile, InfoFile} {
		fi, err := os.Stat(filepath.Join(Path(dir), f))
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 4242 || st.Gid != 4343 {
			t.Errorf("%s owned by %d:%d", f, st.Uid, st.Gid)
		}
	}
}
