package envelope

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/csirt-toscana/platform/internal/event"
)

// Signer signs the message M of the package doc. Implementations must be
// safe for concurrent use.
type Signer interface {
	Algorithm() Algorithm
	// KeyID names the key (certificate serial, key name); it is written
	// into the batch and covered by the signature.
	KeyID() string
	// Sign returns the signature of msg in this package's format for the
	// algorithm.
	Sign(msg []byte) ([]byte, error)
}

// Verifier checks a signature of the message M of the package doc. A
// mismatch is reported as ErrBadSignature.
type Verifier interface {
	Algorithm() Algorithm
	Verify(msg, sig []byte) error
}

// MinHMACKeySize is the shortest HMAC key accepted.
const MinHMACKeySize = 32

// Sign fills in the schema version when empty and signs b with s, setting
// Algorithm, KeyID and Signature. Seal does the same and encodes in one pass.
func Sign(b *Batch, s Signer) error {
	if b.SchemaVersion == "" {
		b.SchemaVersion = event.SchemaVersion
	}
	b.Algorithm, b.KeyID = s.Algorithm(), s.KeyID()
	m, err := b.streamMessage()
	if err != nil {
		return err
	}
	sig, err := signMessage(b, s, m)
	if err != nil {
		return err
	}
	b.Signature = sig
	return nil
}

// Verify checks b's signature with v. It returns an error wrapping
// ErrBadSignature when the batch is unsigned, was signed with another
// algorithm, or the signature does not match; any other error means the
// batch itself is invalid.
func Verify(b *Batch, v Verifier) error {
	if len(b.Signature) == 0 {
		return fmt.Errorf("%w: batch is not signed", ErrBadSignature)
	}
	if b.Algorithm != v.Algorithm() {
		return fmt.Errorf("%w: batch is signed with %s, the key is %s", ErrBadSignature, b.Algorithm, v.Algorithm())
	}
	m, err := b.streamMessage()
	if err != nil {
		return err
	}
	return verifyMessage(b, v, m)
}

func verifyMessage(b *Batch, v Verifier, m []byte) error {
	if len(b.Signature) == 0 {
		return fmt.Errorf("%w: batch is not signed", ErrBadSignature)
	}
	if b.Algorithm != v.Algorithm() {
		return fmt.Errorf("%w: batch is signed with %s, the key is %s", ErrBadSignature, b.Algorithm, v.Algorithm())
	}
	if err := v.Verify(m, b.Signature); err != nil {
		return fmt.Errorf("batch from agent %q stream %q seq %d (key %q): %w", b.AgentID, b.StreamID, b.FirstSeq, b.KeyID, err)
	}
	return nil
}

// KeyResolver finds the verification key of an agent's key id. It is
// called with unverified fields: it must only look them up. An unknown
// agent or key should be reported as an error wrapping ErrBadSignature.
type KeyResolver func(agentID, keyID string) (Verifier, error)

// Open decodes data and verifies its signature with the key resolve finds
// for the batch's agent and key id. It is what the collector calls.
func Open(data []byte, resolve KeyResolver) (*Batch, error) {
	d := decoder{buf: data}
	b, signed, err := d.batch()
	if err != nil {
		return nil, err
	}
	v, err := resolve(b.AgentID, b.KeyID)
	if err != nil {
		return nil, fmt.Errorf("finding key %q of agent %q: %w", b.KeyID, b.AgentID, err)
	}
	// Decode accepts only the canonical encoding, so the input's signed
	// part is what Verify would re-encode: hash it in place.
	if err := verifyMessage(b, v, message(data[:signed])); err != nil {
		return nil, err
	}
	return b, nil
}

// NewSigner returns a signer for an Ed25519 or ECDSA P-256 private key (as
// held by crypto.Signer, e.g. from the agent's key file).
func NewSigner(keyID string, key crypto.Signer) (Signer, error) {
	switch k := key.(type) {
	case ed25519.PrivateKey:
		return NewEd25519Signer(keyID, k)
	case *ecdsa.PrivateKey:
		return NewECDSASigner(keyID, k)
	default:
		return nil, fmt.Errorf("envelope: unsupported key type %T (want Ed25519 or ECDSA P-256)", key)
	}
}

// NewVerifier returns a verifier for an Ed25519 or ECDSA P-256 public key
// (for example a certificate's PublicKey).
func NewVerifier(pub crypto.PublicKey) (Verifier, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return NewEd25519Verifier(k)
	case *ecdsa.PublicKey:
		return NewECDSAVerifier(k)
	default:
		return nil, fmt.Errorf("envelope: unsupported public key type %T (want Ed25519 or ECDSA P-256)", pub)
	}
}

type ed25519Signer struct {
	id  string
	key ed25519.PrivateKey
}

// NewEd25519Signer returns a signer for an Ed25519 private key.
func NewEd25519Signer(keyID string, key ed25519.PrivateKey) (Signer, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("envelope: Ed25519 private key has %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	return ed25519Signer{id: keyID, key: key}, nil
}

func (s ed25519Signer) Algorithm() Algorithm { return Ed25519 }
func (s ed25519Signer) KeyID() string        { return s.id }
func (s ed25519Signer) Sign(msg []byte) ([]byte, error) {
	return ed25519.Sign(s.key, msg), nil
}

type ed25519Verifier struct{ key ed25519.PublicKey }

// NewEd25519Verifier returns a verifier for an Ed25519 public key.
func NewEd25519Verifier(key ed25519.PublicKey) (Verifier, error) {
	if len(key) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("envelope: Ed25519 public key has %d bytes, want %d", len(key), ed25519.PublicKeySize)
	}
	return ed25519Verifier{key: key}, nil
}

func (v ed25519Verifier) Algorithm() Algorithm { return Ed25519 }
func (v ed25519Verifier) Verify(msg, sig []byte) error {
	if !ed25519.Verify(v.key, msg, sig) {
		return ErrBadSignature
	}
	return nil
}

type ecdsaSigner struct {
	id  string
	key *ecdsa.PrivateKey
}

// NewECDSASigner returns a signer for an ECDSA P-256 private key.
func NewECDSASigner(keyID string, key *ecdsa.PrivateKey) (Signer, error) {
	if key == nil || key.Curve != elliptic.P256() {
		return nil, errors.New("envelope: ECDSA key is not on curve P-256")
	}
	return ecdsaSigner{id: keyID, key: key}, nil
}

func (s ecdsaSigner) Algorithm() Algorithm { return ECDSAP256 }
func (s ecdsaSigner) KeyID() string        { return s.id }
func (s ecdsaSigner) Sign(msg []byte) ([]byte, error) {
	h := sha256.Sum256(msg)
	return ecdsa.SignASN1(rand.Reader, s.key, h[:])
}

type ecdsaVerifier struct{ key *ecdsa.PublicKey }

// NewECDSAVerifier returns a verifier for an ECDSA P-256 public key.
func NewECDSAVerifier(key *ecdsa.PublicKey) (Verifier, error) {
	if key == nil || key.Curve != elliptic.P256() {
		return nil, errors.New("envelope: ECDSA key is not on curve P-256")
	}
	return ecdsaVerifier{key: key}, nil
}

func (v ecdsaVerifier) Algorithm() Algorithm { return ECDSAP256 }
func (v ecdsaVerifier) Verify(msg, sig []byte) error {
	h := sha256.Sum256(msg)
	if !ecdsa.VerifyASN1(v.key, h[:], sig) {
		return ErrBadSignature
	}
	return nil
}

// HMACKey is a per-agent HMAC-SHA256 key. It signs and verifies. It never
// prints its key.
type HMACKey struct {
	id  string
	key []byte
}

var (
	_ Signer   = (*HMACKey)(nil)
	_ Verifier = (*HMACKey)(nil)
)

// NewHMACKey returns an HMAC-SHA256 signer and verifier. The key must have
// at least MinHMACKeySize bytes; it is copied.
func NewHMACKey(keyID string, key []byte) (*HMACKey, error) {
	if len(key) < MinHMACKeySize {
		return nil, fmt.Errorf("envelope: HMAC key has %d bytes, want at least %d", len(key), MinHMACKeySize)
	}
	return &HMACKey{id: keyID, key: append([]byte(nil), key...)}, nil
}

// Algorithm returns HMACSHA256.
func (k *HMACKey) Algorithm() Algorithm { return HMACSHA256 }

// KeyID returns the key's name.
func (k *HMACKey) KeyID() string { return k.id }

// String describes the key without its bytes.
func (k *HMACKey) String() string { return fmt.Sprintf("HMACKey{%q [redacted]}", k.id) }

// Sign returns HMAC-SHA256(key, msg).
func (k *HMACKey) Sign(msg []byte) ([]byte, error) {
	m := hmac.New(sha256.New, k.key)
	m.Write(msg)
	return m.Sum(nil), nil
}

// Verify compares in constant time.
func (k *HMACKey) Verify(msg, sig []byte) error {
	want, _ := k.Sign(msg)
	if !hmac.Equal(want, sig) {
		return ErrBadSignature
	}
	return nil
}
