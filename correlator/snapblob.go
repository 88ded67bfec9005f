package correlator

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// SnapshotEncoding names how a partition snapshot document carries its
// state since the second format: "state_blob" (base64 in the JSON
// document) is zstd of the framing below. Documents of the first format
// carry the state as a JSON object ("state") and are still read.
//
// Framing (inside zstd): the magic "CSPS1", then uvarint-length-prefixed
// byte strings: the program digest, the heuristics snapshot (JSON), then a
// uvarint count of entities and, per entity in name order, its name and
// its correlation snapshot (rules/correlation JSON Lines). The engines'
// and detectors' encodings travel as bytes: the first format embedded them
// in JSON strings, escaping every quote again (its documents were mostly
// backslashes and five times larger before compression).
const SnapshotEncoding = "csps1+zstd"

const snapshotMagic = "CSPS1"

// maxSnapshotState bounds the decompressed size of a stored snapshot.
const maxSnapshotState = 1 << 30

var (
	zstdEncoders = sync.Pool{New: func() any {
		// Options that cannot fail.
		e, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
		return e
	}}
	zstdDecOnce sync.Once
	zstdDec     *zstd.Decoder
	errZstd     error
)

func snapshotDecoder() (*zstd.Decoder, error) {
	zstdDecOnce.Do(func() {
		zstdDec, errZstd = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxSnapshotState))
	})
	return zstdDec, errZstd
}

// encodeSnapshot serialises a state for storage, streaming the framing
// through the compressor.
func encodeSnapshot(st *Snapshot) ([]byte, error) {
	var out bytes.Buffer
	enc := zstdEncoders.Get().(*zstd.Encoder)
	defer zstdEncoders.Put(enc)
	enc.Reset(&out)
	var lenBuf [binary.MaxVarintLen64]byte
	put := func(b []byte) error {
		if _, err := enc.Write(lenBuf[:binary.PutUvarint(lenBuf[:], uint64(len(b)))]); err != nil {
			return err
		}
		_, err := enc.Write(b)
		return err
	}
	ents := make([]string, 0, len(st.Correlation))
	for e := range st.Correlation {
		ents = append(ents, e)
	}
	sort.Strings(ents)
	err := func() error {
		if _, err := enc.Write([]byte(snapshotMagic)); err != nil {
			return err
		}
		if err := put([]byte(st.Digest)); err != nil {
			return err
		}
		if err := put(st.Heuristics); err != nil {
			return err
		}
		if _, err := enc.Write(lenBuf[:binary.PutUvarint(lenBuf[:], uint64(len(ents)))]); err != nil {
			return err
		}
		for _, e := range ents {
			if err := put([]byte(e)); err != nil {
				return err
			}
			if err := put(st.Correlation[e]); err != nil {
				return err
			}
		}
		return enc.Close()
	}()
	if err != nil {
		return nil, fmt.Errorf("encoding the snapshot: %w", err)
	}
	return out.Bytes(), nil
}

// decodeSnapshot reads what encodeSnapshot wrote.
func decodeSnapshot(blob []byte) (*Snapshot, error) {
	dec, err := snapshotDecoder()
	if err != nil {
		return nil, fmt.Errorf("decoding the snapshot: %w", err)
	}
	raw, err := dec.DecodeAll(blob, nil)
	if err != nil {
		return nil, fmt.Errorf("decompressing the snapshot: %w", err)
	}
	return decodeSnapshotFrames(raw)
}

var errSnapshotFraming = errors.New("decoding the snapshot: damaged framing")

// decodeSnapshotFrames reads the framing inside the compression.
func decodeSnapshotFrames(raw []byte) (*Snapshot, error) {
	if !bytes.HasPrefix(raw, []byte(snapshotMagic)) {
		return nil, errors.New("decoding the snapshot: not a partition snapshot (bad magic)")
	}
	raw = raw[len(snapshotMagic):]
	uvarint := func() (uint64, bool) {
		n, k := binary.Uvarint(raw)
		if k <= 0 {
			return 0, false
		}
		raw = raw[k:]
		return n, true
	}
	bytesOf := func() ([]byte, bool) {
		n, ok := uvarint()
		if !ok || n > uint64(len(raw)) {
			return nil, false
		}
		b := raw[:n]
		raw = raw[n:]
		return b, true
	}
	digest, ok := bytesOf()
	if !ok {
		return nil, errSnapshotFraming
	}
	heur, ok := bytesOf()
	if !ok {
		return nil, errSnapshotFraming
	}
	n, ok := uvarint()
	if !ok || n > uint64(len(raw)) { // every entity takes at least two bytes
		return nil, errSnapshotFraming
	}
	st := &Snapshot{Digest: string(digest), Correlation: make(map[string][]byte, n)}
	if len(heur) > 0 {
		st.Heuristics = append([]byte(nil), heur...)
	}
	for i := uint64(0); i < n; i++ {
		name, ok := bytesOf()
		if !ok {
			return nil, errSnapshotFraming
		}
		data, ok := bytesOf()
		if !ok {
			return nil, errSnapshotFraming
		}
		if _, dup := st.Correlation[string(name)]; dup {
			return nil, fmt.Errorf("decoding the snapshot: entity %q twice", name)
		}
		st.Correlation[string(name)] = data
	}
	if len(raw) > 0 {
		return nil, errors.New("decoding the snapshot: trailing data")
	}
	return st, nil
}
