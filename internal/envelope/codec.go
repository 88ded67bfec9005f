package envelope

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/csirt-toscana/platform/internal/event"
)

// signedSize returns the number of bytes of the signed part (magic to the
// last record's data) of a validated batch.
func (b *Batch) signedSize() int {
	n := 4 + 1 + 1 +
		1 + len(b.SchemaVersion) + 1 + 1 + len(b.KeyID) +
		1 + len(b.AgentID) + 1 + len(b.EntityID) + 1 + len(b.StreamID) +
		8 + 8 + 4
	for i := range b.Records {
		n += recordHeaderSize + len(b.Records[i].Data)
	}
	return n
}

// appendSigned appends the signed part of a validated batch to dst.
func (b *Batch) appendSigned(dst []byte) []byte {
	dst = append(dst, Magic...)
	dst = append(dst, FormatVersion, 0)
	dst = appendStr8(dst, b.SchemaVersion)
	dst = append(dst, byte(b.Algorithm))
	dst = appendStr8(dst, b.KeyID)
	dst = appendStr8(dst, b.AgentID)
	dst = appendStr8(dst, b.EntityID)
	dst = appendStr8(dst, b.StreamID)
	dst = binary.BigEndian.AppendUint64(dst, b.FirstSeq)
	dst = binary.BigEndian.AppendUint64(dst, timeWire(b.Created))
	dst = binary.BigEndian.AppendUint32(dst, toU32(len(b.Records)))
	for i := range b.Records {
		r := &b.Records[i]
		dst = binary.BigEndian.AppendUint64(dst, timeWire(r.Time))
		dst = append(dst, byte(r.Kind), byte(r.Flags))
		dst = binary.BigEndian.AppendUint32(dst, toU32(len(r.Data)))
		dst = append(dst, r.Data...)
	}
	return dst
}

func appendStr8(dst []byte, s string) []byte {
	dst = append(dst, toU8(len(s)))
	return append(dst, s...)
}

// encodeSigned validates b and returns its signed part with room for a
// signature of extra bytes.
func (b *Batch) encodeSigned(extra int) ([]byte, error) {
	if err := b.validate(); err != nil {
		return nil, err
	}
	size := b.signedSize()
	if size+2+1 > MaxBatchSize {
		return nil, fmt.Errorf("%w: %d bytes before the signature (at most %d in all)", ErrTooLarge, size, MaxBatchSize)
	}
	return b.appendSigned(make([]byte, 0, size+2+extra)), nil
}

// message returns M (package doc) for a signed part.
func message(signed []byte) []byte {
	d := sha256.Sum256(signed)
	return append([]byte(sigDomain), d[:]...)
}

// streamMessage returns M for a batch without building its encoding.
func (b *Batch) streamMessage() ([]byte, error) {
	if err := b.validate(); err != nil {
		return nil, err
	}
	if size := b.signedSize(); size+2+1 > MaxBatchSize {
		return nil, fmt.Errorf("%w: %d bytes before the signature (at most %d in all)", ErrTooLarge, size, MaxBatchSize)
	}
	h := sha256.New()
	hdr := make([]byte, 0, 2048)
	hdr = (&Batch{
		SchemaVersion: b.SchemaVersion, Algorithm: b.Algorithm, KeyID: b.KeyID, AgentID: b.AgentID,
		EntityID: b.EntityID, StreamID: b.StreamID, FirstSeq: b.FirstSeq, Created: b.Created,
	}).appendSigned(hdr)
	// appendSigned wrote a record count of 0: patch in the real one.
	binary.BigEndian.PutUint32(hdr[len(hdr)-4:], toU32(len(b.Records)))
	h.Write(hdr)
	var rh [recordHeaderSize]byte
	for i := range b.Records {
		r := &b.Records[i]
		binary.BigEndian.PutUint64(rh[0:], timeWire(r.Time))
		rh[8], rh[9] = byte(r.Kind), byte(r.Flags)
		binary.BigEndian.PutUint32(rh[10:], toU32(len(r.Data)))
		h.Write(rh[:])
		h.Write(r.Data)
	}
	return append([]byte(sigDomain), h.Sum(nil)...), nil
}

// SignedMessage returns the message M the signature is computed on (see
// the package doc). It is exported for other implementations' test vectors.
func (b *Batch) SignedMessage() ([]byte, error) { return b.streamMessage() }

// Encode returns the wire encoding of a signed batch.
func Encode(b *Batch) ([]byte, error) {
	if len(b.Signature) == 0 {
		return nil, ErrUnsigned
	}
	if len(b.Signature) > MaxSignatureSize {
		return nil, fmt.Errorf("%w: signature of %d bytes (at most %d)", ErrTooLarge, len(b.Signature), MaxSignatureSize)
	}
	w, err := b.encodeSigned(len(b.Signature))
	if err != nil {
		return nil, err
	}
	return appendSignature(w, b.Signature)
}

func appendSignature(wire, sig []byte) ([]byte, error) {
	wire = binary.BigEndian.AppendUint16(wire, toU16(len(sig)))
	wire = append(wire, sig...)
	if len(wire) > MaxBatchSize {
		return nil, fmt.Errorf("%w: %d bytes (at most %d)", ErrTooLarge, len(wire), MaxBatchSize)
	}
	return wire, nil
}

// Seal fills in the schema version when empty, signs the batch with s and
// returns its wire encoding, in one pass. It is Sign followed by Encode.
func Seal(b *Batch, s Signer) ([]byte, error) {
	if b.SchemaVersion == "" {
		b.SchemaVersion = event.SchemaVersion
	}
	b.Algorithm, b.KeyID = s.Algorithm(), s.KeyID()
	w, err := b.encodeSigned(2 + 80)
	if err != nil {
		return nil, err
	}
	sig, err := signMessage(b, s, message(w))
	if err != nil {
		return nil, err
	}
	b.Signature = sig
	return appendSignature(w, sig)
}

func signMessage(b *Batch, s Signer, m []byte) ([]byte, error) {
	sig, err := s.Sign(m)
	if err != nil {
		return nil, fmt.Errorf("envelope: signing with %s key %q: %w", b.Algorithm, b.KeyID, err)
	}
	if len(sig) == 0 || len(sig) > MaxSignatureSize {
		return nil, fmt.Errorf("envelope: signer returned a signature of %d bytes", len(sig))
	}
	return sig, nil
}

// Decode parses one encoded batch with the default limits. It checks the
// format and the schema version but not the signature: call Verify, or use
// Open. Records' Data alias data.
func Decode(data []byte) (*Batch, error) {
	d := decoder{buf: data}
	b, _, err := d.batch()
	return b, err
}

type decoder struct {
	buf []byte
	off int
}

func (d *decoder) fail(field string, off int, err error) error {
	return &DecodeError{Offset: off, Field: field, Err: err}
}

var errShort = errors.New("unexpected end of input")

func (d *decoder) need(field string, n int) error {
	if len(d.buf)-d.off < n {
		return d.fail(field, d.off, errShort)
	}
	return nil
}

func (d *decoder) u8(field string) (byte, error) {
	if err := d.need(field, 1); err != nil {
		return 0, err
	}
	v := d.buf[d.off]
	d.off++
	return v, nil
}

func (d *decoder) u16(field string) (uint16, error) {
	if err := d.need(field, 2); err != nil {
		return 0, err
	}
	v := binary.BigEndian.Uint16(d.buf[d.off:])
	d.off += 2
	return v, nil
}

func (d *decoder) u32(field string) (uint32, error) {
	if err := d.need(field, 4); err != nil {
		return 0, err
	}
	v := binary.BigEndian.Uint32(d.buf[d.off:])
	d.off += 4
	return v, nil
}

func (d *decoder) u64(field string) (uint64, error) {
	if err := d.need(field, 8); err != nil {
		return 0, err
	}
	v := binary.BigEndian.Uint64(d.buf[d.off:])
	d.off += 8
	return v, nil
}

func (d *decoder) str8(field string) (string, error) {
	start := d.off
	n, err := d.u8(field)
	if err != nil {
		return "", err
	}
	if err := d.need(field, int(n)); err != nil {
		return "", err
	}
	s := d.buf[d.off : d.off+int(n)]
	if n == 0 {
		return "", d.fail(field, start, errors.New("is empty"))
	}
	if !utf8.Valid(s) {
		return "", d.fail(field, start, errors.New("is not valid UTF-8"))
	}
	d.off += int(n)
	return string(s), nil
}

// batch decodes; it also returns the length of the signed part.
func (d *decoder) batch() (*Batch, int, error) {
	if len(d.buf) > MaxBatchSize {
		return nil, 0, d.fail("batch", 0, fmt.Errorf("%w: %d bytes (at most %d)", ErrTooLarge, len(d.buf), MaxBatchSize))
	}
	if err := d.need("magic", 4); err != nil {
		return nil, 0, err
	}
	if string(d.buf[:4]) != Magic {
		return nil, 0, d.fail("magic", 0, fmt.Errorf("got %q, want %q: not a batch envelope", d.buf[:4], Magic))
	}
	d.off = 4
	ver, err := d.u8("format version")
	if err != nil {
		return nil, 0, err
	}
	if ver != FormatVersion {
		return nil, 0, d.fail("format version", 4, fmt.Errorf("%w: wire format %d (this build reads %d)", ErrUnsupportedVersion, ver, FormatVersion))
	}
	hflags, err := d.u8("header flags")
	if err != nil {
		return nil, 0, err
	}
	if hflags != 0 {
		return nil, 0, d.fail("header flags", 5, fmt.Errorf("reserved flags %#x set", hflags))
	}
	b := &Batch{}
	off := d.off
	if b.SchemaVersion, err = d.str8("schema version"); err != nil {
		return nil, 0, err
	}
	if err := event.CheckVersion(b.SchemaVersion); err != nil {
		return nil, 0, d.fail("schema version", off, fmt.Errorf("%w: %w", ErrUnsupportedVersion, err))
	}
	off = d.off
	alg, err := d.u8("algorithm")
	if err != nil {
		return nil, 0, err
	}
	b.Algorithm = Algorithm(alg)
	if !b.Algorithm.valid() {
		return nil, 0, d.fail("algorithm", off, fmt.Errorf("unknown signature algorithm %d", alg))
	}
	if b.KeyID, err = d.str8("key id"); err != nil {
		return nil, 0, err
	}
	if b.AgentID, err = d.str8("agent id"); err != nil {
		return nil, 0, err
	}
	if b.EntityID, err = d.str8("entity id"); err != nil {
		return nil, 0, err
	}
	if b.StreamID, err = d.str8("stream id"); err != nil {
		return nil, 0, err
	}
	if b.FirstSeq, err = d.u64("first sequence"); err != nil {
		return nil, 0, err
	}
	created, err := d.u64("created time")
	if err != nil {
		return nil, 0, err
	}
	b.Created = wireTime(created)
	off = d.off
	count, err := d.u32("record count")
	if err != nil {
		return nil, 0, err
	}
	switch {
	case count == 0:
		return nil, 0, d.fail("record count", off, errors.New("a batch needs at least one record"))
	case count > MaxRecords:
		return nil, 0, d.fail("record count", off, fmt.Errorf("%w: %d records (at most %d)", ErrTooLarge, count, MaxRecords))
	case uint64(count)*recordHeaderSize > toU64(len(d.buf)-d.off):
		return nil, 0, d.fail("record count", off, fmt.Errorf("%d records cannot fit in the %d bytes left", count, len(d.buf)-d.off))
	case b.FirstSeq > ^uint64(0)-uint64(count-1):
		return nil, 0, d.fail("record count", off, fmt.Errorf("sequence numbers overflow (first %d, %d records)", b.FirstSeq, count))
	}
	b.Records = make([]Record, count)
	for i := range b.Records {
		r := &b.Records[i]
		const field = "record"
		if err := d.need(field, recordHeaderSize); err != nil {
			return nil, 0, err
		}
		start := d.off
		r.Time = wireTime(binary.BigEndian.Uint64(d.buf[d.off:]))
		r.Kind = Kind(d.buf[d.off+8])
		r.Flags = Flags(d.buf[d.off+9])
		n := binary.BigEndian.Uint32(d.buf[d.off+10:])
		d.off += recordHeaderSize
		switch {
		case r.Kind != KindRawLine && r.Kind != KindSummary:
			return nil, 0, d.fail(field, start+8, fmt.Errorf("record %d: unknown kind %d", i, r.Kind))
		case r.Flags&^knownFlags != 0:
			return nil, 0, d.fail(field, start+9, fmt.Errorf("record %d: unknown flags %#x", i, uint8(r.Flags)))
		case n > MaxRecordSize:
			return nil, 0, d.fail(field, start+10, fmt.Errorf("%w: record %d has %d bytes of data (at most %d)", ErrTooLarge, i, n, MaxRecordSize))
		}
		if err := d.need(field, int(n)); err != nil {
			return nil, 0, err
		}
		r.Data = d.buf[d.off : d.off+int(n) : d.off+int(n)]
		d.off += int(n)
	}
	off = d.off
	signed := d.off
	slen, err := d.u16("signature length")
	if err != nil {
		return nil, 0, err
	}
	switch {
	case slen == 0:
		return nil, 0, d.fail("signature", off, errors.New("batch is not signed"))
	case slen > MaxSignatureSize:
		return nil, 0, d.fail("signature", off, fmt.Errorf("%w: %d bytes (at most %d)", ErrTooLarge, slen, MaxSignatureSize))
	}
	if err := d.need("signature", int(slen)); err != nil {
		return nil, 0, err
	}
	b.Signature = d.buf[d.off : d.off+int(slen) : d.off+int(slen)]
	d.off += int(slen)
	if d.off != len(d.buf) {
		return nil, 0, d.fail("end", d.off, fmt.Errorf("%d bytes after the signature", len(d.buf)-d.off))
	}
	return b, signed, nil
}

// Conversions whose bounds gosec (G115) cannot see: lengths are checked by
// validate or by the format's field widths before these are called, and
// times travel as two's complement int64 nanoseconds.

func toU8(n int) byte             { return byte(n) }              //nolint:gosec // G115: n <= MaxIDLength
func toU16(n int) uint16          { return uint16(n) }            //nolint:gosec // G115: n <= MaxSignatureSize
func toU32(n int) uint32          { return uint32(n) }            //nolint:gosec // G115: n <= MaxBatchSize
func toU64(n int) uint64          { return uint64(n) }            //nolint:gosec // G115: n >= 0
func timeWire(t time.Time) uint64 { return uint64(t.UnixNano()) } //nolint:gosec // G115: two's complement on the wire

func wireTime(v uint64) time.Time { return time.Unix(0, int64(v)).UTC() } //nolint:gosec // G115: two's complement on the wire
