// Package pki issues the certificates of the platform's mutual TLS: agent
// client certificates signed from a certificate signing request (CSR) at
// enrolment and renewal, and the HTTPS intake's server certificate. The
// Issuer interface is what the rest of the platform uses; LocalCA is the
// single-node implementation (a CA kept on disk), and Vault PKI will be
// another. It also reads the agent and entity a verified client
// certificate binds.
package pki

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// URI SAN prefixes binding a certificate to an agent and to its entity.
const (
	AgentURIPrefix  = "urn:csirt:agent:"
	EntityURIPrefix = "urn:csirt:entity:"
)

// ClockSkew is how far back NotBefore is set on issued certificates, so a
// host whose clock is a little behind accepts a fresh certificate.
const ClockSkew = 5 * time.Minute

// ErrBadCSR wraps every refusal of a certificate signing request.
var ErrBadCSR = errors.New("certificate signing request refused")

// AgentRequest asks for an agent client certificate.
type AgentRequest struct {
	CSRPEM   []byte        // PEM "CERTIFICATE REQUEST" made by the agent with its own key
	AgentID  string        // becomes the CN and a urn:csirt:agent: URI SAN
	EntityID string        // becomes a urn:csirt:entity: URI SAN
	TTL      time.Duration // lifetime from now
}

// Issuer signs certificates. Implementations are safe for concurrent use.
type Issuer interface {
	// SignAgent checks the CSR (signature, ECDSA P-256 key; see ParseCSR)
	// and returns the PEM certificate binding the CSR's key to the agent
	// and entity. Errors about the CSR wrap ErrBadCSR.
	SignAgent(ctx context.Context, r AgentRequest) (certPEM []byte, err error)
	// ServerCertificate issues a TLS server certificate for the DNS names
	// and IP addresses given, with a key generated for it; the chain
	// holds the CA certificate after the leaf.
	ServerCertificate(ctx context.Context, names []string, ttl time.Duration) (*tls.Certificate, error)
	// CAPEM is the CA bundle (PEM) that verifies every issued certificate.
	CAPEM() []byte
}

// ParseCSR decodes a PEM CSR and checks that its self-signature is valid
// and that its key is ECDSA P-256 (the key the envelope's ECDSA algorithm
// and Kafka's Java TLS both take).
func ParseCSR(csrPEM []byte) (*x509.CertificateRequest, error) {
	blk, _ := pem.Decode(csrPEM)
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("%w: no PEM \"CERTIFICATE REQUEST\" block", ErrBadCSR)
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: cannot parse: %w", ErrBadCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: its signature does not verify (was it made with the key it carries?): %w", ErrBadCSR, err)
	}
	k, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: the key is %s, only ECDSA P-256 keys are accepted", ErrBadCSR, keyKind(csr.PublicKey))
	}
	if k.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: the key is ECDSA on %s, only P-256 is accepted", ErrBadCSR, k.Curve.Params().Name)
	}
	return csr, nil
}

func keyKind(k any) string {
	switch k.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA"
	case nil:
		return "unknown"
	}
	s := fmt.Sprintf("%T", k)
	if strings.Contains(s, "rsa") {
		return "RSA"
	}
	if strings.Contains(s, "ed25519") {
		return "Ed25519"
	}
	return s
}

// Identity returns the agent id and entity id a client certificate binds
// (its URI SANs). Call it only on a certificate that TLS already verified
// against the CA. It refuses a certificate without both, or with several.
func Identity(cert *x509.Certificate) (agentID, entityID string, err error) {
	if cert == nil {
		return "", "", errors.New("no client certificate")
	}
	for _, u := range cert.URIs {
		s := u.String()
		switch {
		case strings.HasPrefix(s, AgentURIPrefix):
			if agentID != "" {
				return "", "", errors.New("the certificate names two agents")
			}
			agentID = strings.TrimPrefix(s, AgentURIPrefix)
		case strings.HasPrefix(s, EntityURIPrefix):
			if entityID != "" {
				return "", "", errors.New("the certificate names two entities")
			}
			entityID = strings.TrimPrefix(s, EntityURIPrefix)
		}
	}
	if agentID == "" || entityID == "" {
		return "", "", errors.New("the certificate is not an agent certificate (no urn:csirt:agent and urn:csirt:entity names)")
	}
	return agentID, entityID, nil
}

// agentURIs builds the URI SANs of an agent certificate.
func agentURIs(agentID, entityID string) ([]*url.URL, error) {
	if !validName(agentID) || !validName(entityID) {
		return nil, fmt.Errorf("agent id %q and entity id %q must be 1-128 of A-Z a-z 0-9 . _ -", agentID, entityID)
	}
	a, err := url.Parse(AgentURIPrefix + agentID)
	if err != nil {
		return nil, err
	}
	e, err := url.Parse(EntityURIPrefix + entityID)
	if err != nil {
		return nil, err
	}
	return []*url.URL{a, e}, nil
}

func validName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
		if !ok {
			return false
		}
	}
	return true
}

// Pin is the SHA-256 of the DER of the first certificate in caPEM (the CA
// certificate), as carried in enrolment tokens.
func Pin(caPEM []byte) ([32]byte, error) {
	for rest := caPEM; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			return [32]byte{}, errors.New("no PEM certificate in the CA bundle")
		}
		if blk.Type == "CERTIFICATE" {
			return sha256.Sum256(blk.Bytes), nil
		}
	}
}

// PinString formats a pin for people ("sha256:" and base64url).
func PinString(p [32]byte) string {
	return "sha256:" + base64.RawURLEncoding.EncodeToString(p[:])
}
