package pki

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Files of a local CA directory.
const (
	CACertFile = "ca.pem"
	CAKeyFile  = "ca-key.pem"
)

// CALifetime is the validity of a CA created by OpenLocalCA.
const CALifetime = 10 * 365 * 24 * time.Hour

// LocalCA is an Issuer backed by a CA certificate and key held in memory,
// read from (or created in) files.
type LocalCA struct {
	// Now is the clock certificates are dated by (tests); nil: time.Now.
	Now   func() time.Time
	cert  *x509.Certificate
	key   crypto.Signer
	caPEM []byte
}

var _ Issuer = (*LocalCA)(nil)

// OpenLocalCA loads the CA kept in dir (ca.pem, ca-key.pem), creating it
// on first use: an ECDSA P-256 key written 0600 and a self-signed CA
// certificate valid for ten years. name is the CA's common name.
func OpenLocalCA(dir, name string) (*LocalCA, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	_, cerr := os.Stat(certPath)
	_, kerr := os.Stat(keyPath)
	switch {
	case cerr == nil && kerr == nil:
		return LoadLocalCA(certPath, keyPath)
	case errors.Is(cerr, fs.ErrNotExist) && errors.Is(kerr, fs.ErrNotExist):
	case cerr == nil || kerr == nil:
		return nil, fmt.Errorf("local CA in %s: one of %s and %s is missing; restore it from a backup or move the other away to create a new CA (every enrolled agent must then enrol again)", dir, CACertFile, CAKeyFile)
	default:
		return nil, fmt.Errorf("local CA in %s: %w", dir, errors.Join(cerr, kerr))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the local CA directory: %w", err)
	}
	ca, err := newCA(name)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(ca.key)
	if err != nil {
		return nil, err
	}
	// The key first and exclusively: two processes starting at once
	// cannot both create a CA.
	if err := writeNew(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return waitAndLoad(certPath, keyPath)
		}
		return nil, fmt.Errorf("writing the local CA key: %w", err)
	}
	if err := writeNew(certPath, ca.caPEM, 0o644); err != nil {
		return nil, fmt.Errorf("writing the local CA certificate: %w", err)
	}
	return ca, nil
}

func waitAndLoad(certPath, keyPath string) (*LocalCA, error) {
	var err error
	for range 50 {
		var ca *LocalCA
		if ca, err = LoadLocalCA(certPath, keyPath); err == nil {
			return ca, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, err
}

func writeNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func newCA(name string) (*LocalCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"CSIRT Toscana"}},
		NotBefore:             now.Add(-ClockSkew),
		NotAfter:              now.Add(CALifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("creating the CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &LocalCA{cert: cert, key: key, caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// LoadLocalCA uses an existing CA certificate and its private key (PEM,
// PKCS#8, SEC 1 or PKCS#1), e.g. the CA that a Kafka mutual-TLS listener
// already trusts.
func LoadLocalCA(certFile, keyFile string) (*LocalCA, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("reading the CA certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("reading the CA key: %w", err)
	}
	blk, _ := pem.Decode(certPEM)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", certFile)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certFile, err)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%s is not a CA certificate (basic constraints CA:TRUE and key usage certSign are required)", certFile)
	}
	key, err := parsePrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyFile, err)
	}
	type eq interface{ Equal(crypto.PublicKey) bool }
	if pk, ok := key.Public().(eq); !ok || !pk.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%s is not the key of the CA certificate %s", keyFile, certFile)
	}
	return &LocalCA{cert: cert, key: key, caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})}, nil
}

func parsePrivateKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM block")
	}
	var k any
	var err error
	switch blk.Type {
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	}
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported key type %T", k)
	}
	return s, nil
}

// Certificate is the CA certificate.
func (c *LocalCA) Certificate() *x509.Certificate { return c.cert }

// CAPEM implements Issuer.
func (c *LocalCA) CAPEM() []byte { return append([]byte(nil), c.caPEM...) }

// SignAgent implements Issuer.
func (c *LocalCA) SignAgent(_ context.Context, r AgentRequest) ([]byte, error) {
	csr, err := ParseCSR(r.CSRPEM)
	if err != nil {
		return nil, err
	}
	uris, err := agentURIs(r.AgentID, r.EntityID)
	if err != nil {
		return nil, err
	}
	if r.TTL <= 0 {
		return nil, errors.New("certificate lifetime must be positive")
	}
	tmpl, err := c.template(r.TTL)
	if err != nil {
		return nil, err
	}
	tmpl.Subject = pkix.Name{CommonName: r.AgentID, Organization: []string{r.EntityID}}
	tmpl.URIs = uris
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, csr.PublicKey, c.key)
	if err != nil {
		return nil, fmt.Errorf("signing the agent certificate: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// ServerCertificate implements Issuer.
func (c *LocalCA) ServerCertificate(_ context.Context, names []string, ttl time.Duration) (*tls.Certificate, error) {
	if len(names) == 0 {
		return nil, errors.New("a server certificate needs at least one DNS name or IP address")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl, err := c.template(ttl)
	if err != nil {
		return nil, err
	}
	tmpl.Subject = pkix.Name{CommonName: names[0]}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		return nil, fmt.Errorf("signing the server certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der, c.cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

func (c *LocalCA) template(ttl time.Duration) (*x509.Certificate, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	if c.Now != nil {
		now = c.Now()
	}
	notAfter := now.Add(ttl)
	if notAfter.After(c.cert.NotAfter) {
		notAfter = c.cert.NotAfter
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             now.Add(-ClockSkew),
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
	}, nil
}

func randomSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}
