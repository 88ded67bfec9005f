// Package identity is an enrolled agent's identity on disk: its private key
// (never leaves the host), its certificate and the CA bundle from
// enrolment, and the facts the centre sent (agent id, entity id, Kafka
// bootstrap, intake URL). `csirt-agent enroll` writes it with Save; every
// other command reads it with Load.
//
// Layout under the state directory:
//
//	identity/agent.key     PKCS#8 PEM private key, mode 0600
//	identity/agent.crt     PEM certificate (leaf first)
//	identity/ca.pem        PEM CA bundle for the brokers and the intake
//	identity/identity.json Info
//	identity/policy.json   the last policy received (policy.Policy)
package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/csirt-toscana/platform/internal/envelope"
	"github.com/csirt-toscana/platform/internal/policy"
)

// Dir is the identity directory under the state directory.
const Dir = "identity"

// File names inside Dir.
const (
	KeyFile    = "agent.key"
	CertFile   = "agent.crt"
	CAFile     = "ca.pem"
	InfoFile   = "identity.json"
	PolicyFile = "policy.json"
)

// ErrNotEnrolled is returned by Load when the state directory has no
// identity: the agent was never enrolled.
var ErrNotEnrolled = errors.New("this agent is not enrolled: run `csirt-agent enroll --server URL --token TOKEN`")

// Info is what the centre told the agent at enrolment.
type Info struct {
	AgentID        string    `json:"agent_id"`
	EntityID       string    `json:"entity_id"`
	KafkaBootstrap []string  `json:"kafka_bootstrap,omitempty"` // host:port of brokers (mutual TLS)
	IntakeURL      string    `json:"intake_url"`                // https://host:port of the HTTPS intake
	EnrolledAt     time.Time `json:"enrolled_at"`
	Hostname       string    `json:"hostname,omitempty"`
}

// Identity is a loaded identity.
type Identity struct {
	Info
	Key   crypto.Signer     // the agent's private key
	Cert  *x509.Certificate // leaf
	Chain [][]byte          // DER, leaf first
	CAs   *x509.CertPool    // roots for brokers and intake
	CAPEM []byte            // the bundle as written
	dir   string
}

// Path returns the identity directory of a state directory.
func Path(stateDir string) string { return filepath.Join(stateDir, Dir) }

// Load reads the identity of stateDir and checks that key and
// certificate belong together.
func Load(stateDir string) (*Identity, error) {
	dir := Path(stateDir)
	infoB, err := os.ReadFile(filepath.Join(dir, InfoFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotEnrolled
	}
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	id := &Identity{dir: dir}
	if err := json.Unmarshal(infoB, &id.Info); err != nil {
		return nil, fmt.Errorf("identity: %s: %w", filepath.Join(dir, InfoFile), err)
	}
	if id.AgentID == "" || id.EntityID == "" {
		return nil, fmt.Errorf("identity: %s: agent_id and entity_id are required", filepath.Join(dir, InfoFile))
	}
	keyB, err := os.ReadFile(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, fmt.Errorf("identity: private key: %w", err)
	}
	id.Key, err = ParseKey(keyB)
	if err != nil {
		return nil, fmt.Errorf("identity: %s: %w", filepath.Join(dir, KeyFile), err)
	}
	certB, err := os.ReadFile(filepath.Join(dir, CertFile))
	if err != nil {
		return nil, fmt.Errorf("identity: certificate: %w", err)
	}
	if err := id.setCert(certB); err != nil {
		return nil, fmt.Errorf("identity: %s: %w", filepath.Join(dir, CertFile), err)
	}
	id.CAPEM, err = os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, fmt.Errorf("identity: CA bundle: %w", err)
	}
	id.CAs = x509.NewCertPool()
	if !id.CAs.AppendCertsFromPEM(id.CAPEM) {
		return nil, fmt.Errorf("identity: %s: no PEM certificate", filepath.Join(dir, CAFile))
	}
	return id, nil
}

func (id *Identity) setCert(certPEM []byte) error {
	var chain [][]byte
	for rest := certPEM; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type == "CERTIFICATE" {
			chain = append(chain, blk.Bytes)
		}
	}
	if len(chain) == 0 {
		return errors.New("no PEM certificate")
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return err
	}
	if !publicKeysEqual(leaf.PublicKey, id.Key.Public()) {
		return errors.New("the certificate is not for this agent's private key")
	}
	id.Cert, id.Chain = leaf, chain
	return nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type eq interface{ Equal(crypto.PublicKey) bool }
	ka, ok := a.(eq)
	return ok && ka.Equal(b)
}

// ParseKey reads a PKCS#8 (or SEC 1 "EC PRIVATE KEY") PEM private key.
func ParseKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM block")
	}
	var k any
	var err error
	switch blk.Type {
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	}
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported private key type %T", k)
	}
	return s, nil
}

// MarshalKey writes a private key as PKCS#8 PEM.
func MarshalKey(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// KeyID is the key id the agent puts in its envelopes: the first 16 hex
// digits of the SHA-256 of the public key's PKIX encoding. It does not
// change when the certificate is renewed with the same key.
func KeyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:8]), nil
}

// Signer signs envelopes with the agent's key (ECDSA P-256).
func (id *Identity) Signer() (envelope.Signer, error) {
	kid, err := KeyID(id.Key.Public())
	if err != nil {
		return nil, err
	}
	ec, ok := id.Key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("identity: key type %T cannot sign envelopes (ECDSA P-256 expected)", id.Key)
	}
	return envelope.NewECDSASigner(kid, ec)
}

// TLSConfig is the client TLS configuration for the brokers and the
// intake: the agent's certificate and the enrolment CA bundle as roots.
// The certificate is read from disk at each handshake, so a renewal takes
// effect on the next connection.
func (id *Identity) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    id.CAs,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cur, err := Load(filepath.Dir(id.dir))
			if err != nil {
				cur = id
			}
			return &tls.Certificate{Certificate: cur.Chain, PrivateKey: cur.Key, Leaf: cur.Cert}, nil
		},
	}
}

// Policy reads the last policy saved next to the identity; the default
// policy when none was saved.
func (id *Identity) Policy() (policy.Policy, error) {
	b, err := os.ReadFile(filepath.Join(id.dir, PolicyFile))
	if errors.Is(err, fs.ErrNotExist) {
		return policy.Default(), nil
	}
	if err != nil {
		return policy.Policy{}, err
	}
	var p policy.Policy
	if err := json.Unmarshal(b, &p); err != nil {
		return policy.Policy{}, fmt.Errorf("%s: %w", filepath.Join(id.dir, PolicyFile), err)
	}
	return p, nil
}

// SavePolicy stores a policy received from the centre.
func SavePolicy(stateDir string, p policy.Policy) error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(Path(stateDir), PolicyFile), append(b, '\n'), 0o640)
}

// Save writes a new identity (enrolment). keyPEM is written 0600.
func Save(stateDir string, info Info, keyPEM, certPEM, caPEM []byte) error {
	dir := Path(stateDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	ib, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		b    []byte
		mode os.FileMode
	}{{KeyFile, keyPEM, 0o600}, {CertFile, certPEM, 0o644}, {CAFile, caPEM, 0o644}, {InfoFile, append(ib, '\n'), 0o644}} {
		if err := writeAtomic(filepath.Join(dir, f.name), f.b, f.mode); err != nil {
			return fmt.Errorf("identity: %w", err)
		}
	}
	return nil
}

// SaveCert replaces the certificate (renewal with the same key) after
// checking that it matches the key.
func SaveCert(stateDir string, certPEM []byte) error {
	id, err := Load(stateDir)
	if err != nil {
		return err
	}
	if err := id.setCert(certPEM); err != nil {
		return fmt.Errorf("identity: renewed certificate: %w", err)
	}
	return writeAtomic(filepath.Join(Path(stateDir), CertFile), certPEM, 0o644)
}

func writeAtomic(path string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }() // gone after the rename; cleans up on error
	if err := tmp.Chmod(mode); err != nil {
		_ = tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// MatchOwner gives the identity directory and its files to the owner of
// the state directory when they differ from the caller's: `csirt-agent
// enroll` run as root writes them, and the service runs as csirt-agent
// (the package creates the state directory owned by that user).
func MatchOwner(stateDir string) error {
	fi, err := os.Stat(stateDir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || int(st.Uid) == os.Geteuid() {
		return nil
	}
	uid, gid := int(st.Uid), int(st.Gid)
	return filepath.WalkDir(Path(stateDir), func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid) //nolint:gosec // G122: Lchown never follows a symlink, and the directory is the agent's own 0700 one
	})
}
