// Package agenttest mints agent identities for tests: an ECDSA P-256 key
// and a client certificate signed by a given CA (the dev CA the real
// Kafka's mutual-TLS listener trusts, or a throwaway one), saved with
// identity.Save as enrolment would.
package agenttest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/agents/internal/identity"
	"github.com/csirt-toscana/platform/internal/testenv"
)

// CA is a certificate authority able to sign agent certificates.
type CA struct {
	Cert *x509.Certificate
	PEM  []byte
	Key  crypto.Signer
}

// DevCA loads the dev CA of deploy/dev/services (its key is under
// tls/private), or skips/fails like testenv when it is missing.
func DevCA(t testing.TB) *CA {
	t.Helper()
	dir := os.Getenv(testenv.EnvKafkaTLSDir)
	if dir == "" {
		testenv.KafkaMTLS(t) // skips or fails with the right message
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, "private", "ca-key.pem"))
	if err != nil {
		t.Fatalf("the dev CA key is needed to mint agent certificates: %v", err)
	}
	key, err := identity.ParseKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(caPEM)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: cert, PEM: caPEM, Key: key}
}

// NewCA makes a throwaway CA.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "agenttest CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &CA{Cert: cert, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), Key: key}
}

// Mint writes an enrolled identity for info under stateDir with a
// certificate valid from notBefore to notAfter.
func (ca *CA) Mint(t testing.TB, stateDir string, info identity.Info, notBefore, notAfter time.Time) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := ca.Sign(t, key.Public(), info, notBefore, notAfter)
	keyPEM, err := identity.MarshalKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if info.EnrolledAt.IsZero() {
		info.EnrolledAt = time.Now()
	}
	if err := identity.Save(stateDir, info, keyPEM, certPEM, ca.PEM); err != nil {
		t.Fatal(err)
	}
}

// Sign issues a client certificate for pub naming the agent and entity.
func (ca *CA) Sign(t testing.TB, pub crypto.PublicKey, info identity.Info, notBefore, notAfter time.Time) []byte {
	t.Helper()
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: info.AgentID},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs: []*url.URL{
			{Scheme: "urn", Opaque: "csirt:agent:" + info.AgentID},
			{Scheme: "urn", Opaque: "csirt:entity:" + info.EntityID},
		},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
