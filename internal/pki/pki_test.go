package pki

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/testenv"
)

func csrFor(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "host"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func TestOpenLocalCACreatesOnceAndReloads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	ca, err := OpenLocalCA(dir, "test CA")
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, CAKeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("CA key mode %v, %v; want 0600", st.Mode().Perm(), err)
	}
	c := ca.Certificate()
	if !c.IsCA || c.PublicKey.(*ecdsa.PublicKey).Curve != elliptic.P256() {
		t.Fatalf("CA certificate: IsCA %v key %T", c.IsCA, c.PublicKey)
	}
	if life := time.Until(c.NotAfter); life < 9*365*24*time.Hour {
		t.Fatalf("CA lifetime %s, want about ten years", life)
	}
	again, err := OpenLocalCA(dir, "other name")
	if err != nil {
		t.Fatal(err)
	}
	if !again.Certificate().Equal(c) {
		t.Fatal("second open created a new CA instead of loading the first")
	}
	// One file missing: refuse rather than silently making a new CA.
	if err := os.Remove(filepath.Join(dir, CACertFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenLocalCA(dir, "x"); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("half a CA accepted: %v", err)
	}
}

func TestSignAgentBindsAgentAndEntity(t *testing.T) {
	ca, err := OpenLocalCA(t.TempDir(), "test CA")
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	certPEM, err := ca.SignAgent(context.Background(), AgentRequest{CSRPEM: csrFor(t, key), AgentID: "comune-prato-web1-abc123", EntityID: "comune-prato", TTL: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CAPEM())
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("agent certificate does not verify for client auth: %v", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Fatal("agent certificate is usable as a server certificate")
	}
	if cert.Subject.CommonName != "comune-prato-web1-abc123" {
		t.Fatalf("CN %q", cert.Subject.CommonName)
	}
	if !cert.NotBefore.Before(time.Now().Add(-time.Minute)) {
		t.Fatalf("NotBefore %s leaves no room for clock skew", cert.NotBefore)
	}
	if d := time.Until(cert.NotAfter); d < 47*time.Hour || d > 49*time.Hour {
		t.Fatalf("NotAfter in %s, want 48h", d)
	}
	a, e, err := Identity(cert)
	if err != nil || a != "comune-prato-web1-abc123" || e != "comune-prato" {
		t.Fatalf("Identity = %q %q %v", a, e, err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		t.Fatal("certificate is not for the CSR's key")
	}
	// Names that would break the URN are refused.
	if _, err := ca.SignAgent(context.Background(), AgentRequest{CSRPEM: csrFor(t, key), AgentID: "a b", EntityID: "e", TTL: time.Hour}); err == nil {
		t.Fatal("agent id with a space accepted")
	}
}

func TestParseCSRRefusals(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	good, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tampered := func() []byte {
		b := csrFor(t, good)
		blk, _ := pem.Decode(b)
		blk.Bytes[len(blk.Bytes)-3] ^= 0xff // inside the signature
		return pem.EncodeToMemory(blk)
	}()
	for name, c := range map[string]struct {
		csr  []byte
		want string
	}{
		"rsa":      {csrFor(t, rsaKey), "RSA"},
		"p384":     {csrFor(t, p384), "P-384"},
		"ed25519":  {csrFor(t, edKey), "Ed25519"},
		"tampered": {tampered, "signature"},
		"garbage":  {[]byte("not a csr"), "PEM"},
	} {
		_, err := ParseCSR(c.csr)
		if !errors.Is(err, ErrBadCSR) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrBadCSR mentioning %q", name, err, c.want)
		}
	}
	if _, err := ParseCSR(csrFor(t, good)); err != nil {
		t.Fatal(err)
	}
}

func TestServerCertificateChainsAndNames(t *testing.T) {
	ca, err := OpenLocalCA(t.TempDir(), "test CA")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.ServerCertificate(context.Background(), []string{"intake.example", "127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Certificate) != 2 {
		t.Fatalf("chain of %d, want leaf and CA", len(c.Certificate))
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CAPEM())
	for _, n := range []string{"intake.example", "127.0.0.1"} {
		if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: n}); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
	if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "other.example"}); err == nil {
		t.Fatal("server certificate valid for a name it was not issued for")
	}
	if _, _, err := Identity(c.Leaf); err == nil {
		t.Fatal("a server certificate passed as an agent certificate")
	}
}

func TestPinIsCertificateHash(t *testing.T) {
	ca, err := OpenLocalCA(t.TempDir(), "test CA")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Pin(ca.CAPEM())
	if err != nil {
		t.Fatal(err)
	}
	other, _ := OpenLocalCA(t.TempDir(), "test CA")
	q, _ := Pin(other.CAPEM())
	if p == q || !strings.HasPrefix(PinString(p), "sha256:") {
		t.Fatalf("pins %s %s", PinString(p), PinString(q))
	}
}

// The dev CA trusted by the real Kafka mutual-TLS listener can be the
// intake's CA.
func TestLoadDevCA(t *testing.T) {
	testenv.KafkaMTLS(t)
	dir := os.Getenv(testenv.EnvKafkaTLSDir)
	ca, err := LoadLocalCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "private", "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	certPEM, err := ca.SignAgent(context.Background(), AgentRequest{CSRPEM: csrFor(t, key), AgentID: "a1", EntityID: "e1", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	devCA, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(devCA)
	blk, _ := pem.Decode(certPEM)
	cert, _ := x509.ParseCertificate(blk.Bytes)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatal(err)
	}
	// A key that is not the certificate's is refused.
	other := filepath.Join(t.TempDir(), "k.pem")
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	_ = os.WriteFile(other, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	if _, err := LoadLocalCA(filepath.Join(dir, "ca.pem"), other); err == nil {
		t.Fatal("mismatched CA key accepted")
	}
}
