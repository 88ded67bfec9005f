package seq

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"
)

// envelope header layout (docs/envelope.md, wire format 1).
const (
	envMagic   = "CSEB"
	envVersion = 1
)

// RangeOf reads only the header of an encoded envelope (docs/envelope.md)
// and returns its counter key, its first sequence number and its record
// count, so that the agent can Raise its counters past what the spool
// holds without decoding whole batches. It does not check the records or
// the signature.
func RangeOf(envelope []byte) (Key, uint64, uint32, error) {
	b := envelope
	fail := func(what string) (Key, uint64, uint32, error) {
		return Key{}, 0, 0, fmt.Errorf("reading an envelope header: %s", what)
	}
	if len(b) < 6 || string(b[:4]) != envMagic {
		return fail("not an envelope (bad magic)")
	}
	if b[4] != envVersion {
		return fail(fmt.Sprintf("unsupported format version %d", b[4]))
	}
	b = b[6:]
	str := func() (string, error) {
		if len(b) < 1 {
			return "", errors.New("truncated")
		}
		n := int(b[0])
		if n == 0 || len(b) < 1+n {
			return "", errors.New("empty or truncated string")
		}
		v := b[1 : 1+n]
		if !utf8.Valid(v) {
			return "", errors.New("string is not valid UTF-8")
		}
		b = b[1+n:]
		return string(v), nil
	}
	if _, err := str(); err != nil { // schema version
		return fail("schema version: " + err.Error())
	}
	if len(b) < 1 {
		return fail("truncated before the signature algorithm")
	}
	b = b[1:]
	var fields [4]string // key id, agent, entity, stream
	for i, name := range []string{"key id", "agent id", "entity id", "stream id"} {
		v, err := str()
		if err != nil {
			return fail(name + ": " + err.Error())
		}
		fields[i] = v
	}
	if len(b) < 8+8+4 {
		return fail("truncated before the record count")
	}
	first := binary.BigEndian.Uint64(b)
	count := binary.BigEndian.Uint32(b[16:])
	if count == 0 || first > math.MaxUint64-uint64(count) {
		return fail(fmt.Sprintf("invalid range: first %d, count %d", first, count))
	}
	return Key{Agent: fields[1], Stream: fields[3]}, first, count, nil
}
