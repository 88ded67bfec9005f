package correlator

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/require"
)

// The stored document carries the state compressed; reading it back gives
// the same snapshot, and a state restored from it completes the window.
func TestSnapshotDocRoundTrip(t *testing.T) {
	p := program(t, "")
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	s := NewState(p, nil)
	feed(t, s, "comune-a", "192.0.2.1", 0, 4, t0)
	feed(t, s, "comune-b", "192.0.2.9", 0, 2, t0)
	snap, err := s.Snapshot()
	require.NoError(t, err)
	require.NotEmpty(t, snap.Heuristics)

	blob, err := encodeSnapshot(snap)
	require.NoError(t, err)
	src, err := json.Marshal(snapshotDoc{Kind: SnapshotKind, Offset: 42, Encoding: SnapshotEncoding, Blob: blob})
	require.NoError(t, err)
	require.NotContains(t, string(src), "csirt-correlation-state", "the state is not stored as text")

	doc, err := parseSnapshotDoc(src)
	require.NoError(t, err)
	require.Equal(t, int64(42), doc.Offset)
	require.Equal(t, snap, doc.State)

	restored := NewState(p, nil)
	_, err = restored.Restore(doc.State)
	require.NoError(t, err)
	require.Equal(t, 1, rules(feed(t, restored, "comune-a", "192.0.2.1", 4, 2, t0))[bruteForceRule])
}

// Documents of the first format (state as a JSON object) are still read.
func TestSnapshotDocFirstFormat(t *testing.T) {
	p := program(t, "")
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	s := NewState(p, nil)
	feed(t, s, "comune-a", "192.0.2.1", 0, 4, t0)
	snap, err := s.Snapshot()
	require.NoError(t, err)
	// The first format: each entity's snapshot in a JSON string.
	legacy := map[string]any{"heuristics": snap.Heuristics, "correlation": map[string]string{"comune-a": string(snap.Correlation["comune-a"])}}
	src, err := json.Marshal(map[string]any{"kind": SnapshotKind, "offset": 7, "state": legacy})
	require.NoError(t, err)

	doc, err := parseSnapshotDoc(src)
	require.NoError(t, err)
	require.Equal(t, int64(7), doc.Offset)
	require.Equal(t, snap.Correlation, doc.State.Correlation)
	require.JSONEq(t, string(snap.Heuristics), string(doc.State.Heuristics))
	restored := NewState(p, nil)
	_, err = restored.Restore(doc.State)
	require.NoError(t, err)
	require.Equal(t, 1, rules(feed(t, restored, "comune-a", "192.0.2.1", 4, 2, t0))[bruteForceRule])
}

func TestSnapshotDocErrors(t *testing.T) {
	for name, src := range map[string]string{
		"unknown encoding": `{"kind":"correlation-snapshot","state_encoding":"brotli","state_blob":"AAAA"}`,
		"not zstd":         `{"kind":"correlation-snapshot","state_encoding":"csps1+zstd","state_blob":"AAAA"}`,
		"not json":         `{"kind":`,
	} {
		_, err := parseSnapshotDoc([]byte(src))
		require.Error(t, err, name)
	}
	_, err := parseSnapshotDoc([]byte(`{"state_encoding":"brotli"}`))
	require.True(t, strings.Contains(err.Error(), "newer version"), err)
	// A valid zstd frame holding something else than a snapshot.
	junk, err := encodeSnapshot(&Snapshot{})
	require.NoError(t, err)
	_, err = decodeSnapshot(junk)
	require.NoError(t, err, "an empty state is a state")
	junk = zstdEncoders.Get().(*zstd.Encoder).EncodeAll([]byte("not a snapshot"), nil)
	_, err = decodeSnapshot(junk)
	require.Error(t, err)
}

// FuzzSnapshotBlob: whatever the stored blob, decoding returns a snapshot
// or an error, never panics (a snapshot document may be damaged in the
// store).
func FuzzSnapshotBlob(f *testing.F) {
	st := &Snapshot{Correlation: map[string][]byte{"comune-a": []byte("{\"format\":\"csirt-correlation-state\",\"version\":1}\n")},
		Heuristics: json.RawMessage(`{"port_scan":{}}`), Digest: "abc"}
	good, err := encodeSnapshot(st)
	if err != nil {
		f.Fatal(err)
	}
	raw, err := snapshotDecoder()
	if err != nil {
		f.Fatal(err)
	}
	frames, err := raw.DecodeAll(good, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(frames)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, blob []byte) {
		// Both layers: the compressed blob, and the bytes as the gob layer
		// (mutations of a zstd frame rarely get past its checks).
		for _, dec := range []func([]byte) (*Snapshot, error){decodeSnapshot, decodeSnapshotFrames} {
			got, err := dec(blob)
			if err == nil && got == nil {
				t.Fatal("no snapshot and no error")
			}
		}
	})
}
