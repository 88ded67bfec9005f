// Package envelope is the signed, sequenced batch that agents ship to the
// regional centre (DESIGN.md, "Agent batch envelope"). The same bytes travel
// as the value of a csirt.raw.v1 Kafka record and as the body of an HTTPS
// intake request; the agent writes them (Seal) and the collector reads them
// (Open, or Decode then Verify).
//
// # Wire format, version 1
//
// All integers are big-endian. str8 is a one-byte length followed by that
// many bytes of UTF-8. Times are signed nanoseconds since the Unix epoch
// (UTC), which covers the years 1678 to 2262.
//
//	offset  size  field
//	0       4     magic "CSEB" (0x43 0x53 0x45 0x42)
//	4       1     format version, 1
//	5       1     header flags, 0 (reserved: a reader refuses anything else)
//	6       str8  schema version, e.g. "1.0" (event.SchemaVersion)
//	        1     signature algorithm: 1 Ed25519, 2 ECDSA P-256 SHA-256, 3 HMAC-SHA256
//	        str8  key id (which key of the agent signed: certificate serial, key name)
//	        str8  agent id
//	        str8  entity id
//	        str8  stream id
//	        8     first sequence number (uint64)
//	        8     created time (int64 ns)
//	        4     record count n (uint32, 1..MaxRecords)
//	        n *   record:
//	                8  event time (int64 ns)
//	                1  kind: 1 raw line, 2 summary
//	                1  record flags: bit 0 truncated, bit 1 invalid UTF-8 (others 0)
//	                4  data length m (uint32, 0..MaxRecordSize)
//	                m  data
//	        2     signature length s (uint16, 1..MaxSignatureSize)
//	        s     signature
//
// Nothing may follow the signature. Record i carries sequence number
// first+i; first+n-1 must not overflow. The encoding is canonical: a batch
// has exactly one encoding, and Decode accepts only that encoding, so
// Encode(Decode(b)) == b for every b that Decode accepts.
//
// # Signature coverage
//
// The signature covers every byte before the signature length field, from
// the magic up to and including the last record's data ("the signed part").
// It is hashed once with SHA-256, and the digest is prefixed with the
// domain-separation string "csirt-envelope-v1" and one zero byte:
//
//	D = SHA-256(wire[0 : offset of signature length])
//	M = "csirt-envelope-v1" || 0x00 || D          (50 bytes)
//
// Ed25519 signs M (pure Ed25519, RFC 8032; 64 bytes); ECDSA P-256 signs
// SHA-256(M) and the signature is ASN.1 DER (crypto/ecdsa.SignASN1, at most
// 72 bytes); HMAC-SHA256 is HMAC(key, M), 32 bytes. Hashing first makes the
// cost one SHA-256 pass over the batch whatever the algorithm. Every field,
// including the algorithm and the key id, is covered, and because every
// variable-length field is length prefixed no two batches share a signed
// part.
//
// Decoded records' Data alias the input slice: keep the input unchanged
// while the batch is in use, or copy.
package envelope

import (
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"github.com/csirt-toscana/platform/internal/event"
)

// Magic opens every encoded batch.
const Magic = "CSEB"

// FormatVersion is the wire format this build writes and reads.
const FormatVersion = 1

// Hard limits. Decode refuses input beyond them before allocating for it.
const (
	// MaxRecords is the most records in one batch.
	MaxRecords = 16384
	// MaxRecordSize is the most data bytes in one record. The agent's line
	// cap (64 KiB by default) stays below it.
	MaxRecordSize = 256 << 10
	// MaxBatchSize is the most bytes of an encoded batch: below the
	// default Kafka message.max.bytes (1 MB) and the producer's BatchBytes,
	// leaving room for the key and headers.
	MaxBatchSize = 960 << 10
	// MaxSignatureSize is the longest signature accepted.
	MaxSignatureSize = 4096
	// MaxIDLength is the longest agent, entity, stream or key id, and
	// schema version string (str8).
	MaxIDLength = 255
)

// sigDomain is prefixed to the signed bytes (see the package doc).
const sigDomain = "csirt-envelope-v1\x00"

// recordHeaderSize is the fixed part of an encoded record.
const recordHeaderSize = 8 + 1 + 1 + 4

// Kind says what a record's data is.
type Kind uint8

// Record kinds.
const (
	KindRawLine Kind = 1 // a raw log line, without its line terminator
	KindSummary Kind = 2 // a network summary (JSON document of ECS fields)
)

func (k Kind) String() string {
	switch k {
	case KindRawLine:
		return "raw-line"
	case KindSummary:
		return "summary"
	default:
		return fmt.Sprintf("kind(%d)", uint8(k))
	}
}

// Flags qualify a record.
type Flags uint8

// Record flags. Bits not listed are reserved and must be zero.
const (
	// FlagTruncated: the source line was longer than the agent's cap; Data
	// holds its beginning, the rest was skipped.
	FlagTruncated Flags = 1 << 0
	// FlagInvalidUTF8: Data is not valid UTF-8; it is kept as bytes.
	FlagInvalidUTF8 Flags = 1 << 1

	knownFlags = FlagTruncated | FlagInvalidUTF8
)

// Algorithm is a signature algorithm.
type Algorithm uint8

// Signature algorithms.
const (
	Ed25519    Algorithm = 1 // the default: the agent's enrolled Ed25519 key
	ECDSAP256  Algorithm = 2 // ECDSA P-256 over SHA-256, ASN.1 DER signature
	HMACSHA256 Algorithm = 3 // HMAC-SHA256 with a per-agent secret key
)

func (a Algorithm) String() string {
	switch a {
	case Ed25519:
		return "ed25519"
	case ECDSAP256:
		return "ecdsa-p256-sha256"
	case HMACSHA256:
		return "hmac-sha256"
	default:
		return fmt.Sprintf("algorithm(%d)", uint8(a))
	}
}

func (a Algorithm) valid() bool { return a >= Ed25519 && a <= HMACSHA256 }

// Record is one line or summary.
type Record struct {
	Time  time.Time // event time (when the agent cannot parse it: read time)
	Kind  Kind
	Flags Flags
	Data  []byte
}

// Batch is one envelope. Records[i] has sequence number FirstSeq+i.
type Batch struct {
	SchemaVersion string // event.SchemaVersion when empty at Seal/Sign
	AgentID       string
	EntityID      string
	StreamID      string
	FirstSeq      uint64
	Created       time.Time
	Records       []Record

	Algorithm Algorithm // set by Sign/Seal
	KeyID     string    // set by Sign/Seal
	Signature []byte    // set by Sign/Seal
}

// Seq returns the sequence number of record i.
func (b *Batch) Seq(i int) uint64 { return b.FirstSeq + toU64(i) }

// LastSeq returns the sequence number of the last record (FirstSeq for an
// empty batch, which cannot be encoded).
func (b *Batch) LastSeq() uint64 {
	if len(b.Records) == 0 {
		return b.FirstSeq
	}
	return b.FirstSeq + uint64(len(b.Records)) - 1
}

// EventID returns the deterministic event id of record i
// (event.IDFromSequence of agent, stream and sequence).
func (b *Batch) EventID(i int) string {
	return event.IDFromSequence(b.AgentID, b.StreamID, b.Seq(i))
}

// Errors callers branch on. Errors returned by this package wrap them (test
// with errors.Is) or are a *DecodeError (test with errors.As).
var (
	// ErrBadSignature: the signature does not verify with the given key,
	// or the algorithm or key id is not the expected one.
	ErrBadSignature = errors.New("envelope: bad signature")
	// ErrUnsupportedVersion: the wire format version or the schema major
	// version is not one this build reads.
	ErrUnsupportedVersion = errors.New("envelope: unsupported version")
	// ErrTooLarge: a hard limit (MaxBatchSize, MaxRecords, MaxRecordSize,
	// MaxSignatureSize, MaxIDLength) is exceeded.
	ErrTooLarge = errors.New("envelope: too large")
	// ErrUnsigned: Encode was given a batch without a signature.
	ErrUnsigned = errors.New("envelope: batch is not signed")
)

// DecodeError says where and why decoding failed. Err may wrap ErrTooLarge
// or ErrUnsupportedVersion.
type DecodeError struct {
	Offset int    // byte offset in the input where the bad field starts
	Field  string // the field being decoded
	Err    error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("envelope: decoding %s at offset %d: %v", e.Field, e.Offset, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// validate checks everything but the signature before encoding.
func (b *Batch) validate() error {
	if err := event.CheckVersion(b.SchemaVersion); err != nil {
		return fmt.Errorf("%w: %w", ErrUnsupportedVersion, err)
	}
	for _, f := range []struct{ name, v string }{
		{"schema version", b.SchemaVersion},
		{"key id", b.KeyID}, {"agent id", b.AgentID},
		{"entity id", b.EntityID}, {"stream id", b.StreamID},
	} {
		if err := checkID(f.v); err != nil {
			return fmt.Errorf("envelope: %s: %w", f.name, err)
		}
	}
	if !b.Algorithm.valid() {
		return fmt.Errorf("envelope: unknown signature algorithm %d", b.Algorithm)
	}
	n := len(b.Records)
	if n == 0 {
		return errors.New("envelope: a batch needs at least one record")
	}
	if n > MaxRecords {
		return fmt.Errorf("%w: %d records (at most %d)", ErrTooLarge, n, MaxRecords)
	}
	if b.FirstSeq > math.MaxUint64-toU64(n-1) {
		return fmt.Errorf("envelope: sequence numbers overflow (first %d, %d records)", b.FirstSeq, n)
	}
	if err := checkTime(b.Created); err != nil {
		return fmt.Errorf("envelope: created time: %w", err)
	}
	for i := range b.Records {
		r := &b.Records[i]
		if err := checkTime(r.Time); err != nil {
			return fmt.Errorf("envelope: record %d: event time: %w", i, err)
		}
		if r.Kind != KindRawLine && r.Kind != KindSummary {
			return fmt.Errorf("envelope: record %d: unknown kind %d", i, r.Kind)
		}
		if r.Flags&^knownFlags != 0 {
			return fmt.Errorf("envelope: record %d: unknown flags %#x", i, uint8(r.Flags))
		}
		if len(r.Data) > MaxRecordSize {
			return fmt.Errorf("%w: record %d has %d bytes (at most %d)", ErrTooLarge, i, len(r.Data), MaxRecordSize)
		}
	}
	return nil
}

func checkID(s string) error {
	switch {
	case s == "":
		return errors.New("is empty")
	case len(s) > MaxIDLength:
		return fmt.Errorf("%w: %d bytes (at most %d)", ErrTooLarge, len(s), MaxIDLength)
	case !utf8.ValidString(s):
		return errors.New("is not valid UTF-8")
	}
	return nil
}

var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

func checkTime(t time.Time) error {
	if t.IsZero() {
		return errors.New("is not set")
	}
	if t.Before(minTime) || t.After(maxTime) {
		return fmt.Errorf("%s is outside the years 1678-2262", t.UTC().Format(time.RFC3339))
	}
	return nil
}
