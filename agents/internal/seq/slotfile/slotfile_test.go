package slotfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(to, b, 0o600))
}

// newestSlot returns the index of the slot with the highest generation.
func newestSlot(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	half := len(b) / 2
	g0, _, ok0 := decodeSlot(b[:half])
	g1, _, ok1 := decodeSlot(b[half:])
	require.True(t, ok0 || ok1)
	if ok1 && (!ok0 || g1 > g0) {
		return 1
	}
	return 0
}

func TestWriteReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state")
	f, p, err := Open(path, Options{})
	require.NoError(t, err)
	require.Nil(t, p)
	for i := range 10 {
		require.NoError(t, f.Write([]byte(strings.Repeat("x", i+1))))
	}
	// No Sync, no Close: a SIGKILL keeps the page cache.
	f2, p, err := Open(path, Options{})
	require.NoError(t, err)
	require.Equal(t, strings.Repeat("x", 10), string(p))
	require.NoError(t, f2.Write([]byte("after")))
	require.NoError(t, f2.Close())
	require.NoError(t, f.Close())
	_, p, err = Open(path, Options{})
	require.NoError(t, err)
	require.Equal(t, "after", string(p))
}

// TestTornActiveSlot: the slot written since the last Sync is torn (a
// power loss during its write); Open returns the synced state.
func TestTornActiveSlot(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state")
	f, _, err := Open(path, Options{})
	require.NoError(t, err)
	require.NoError(t, f.Write([]byte("one")))
	require.NoError(t, f.Write([]byte("two")))
	require.NoError(t, f.Sync())
	require.NoError(t, f.Write([]byte("three")))
	require.NoError(t, f.Write([]byte("four")))
	newest := newestSlot(t, path)

	// Tear the newest slot: flip a payload byte (CRC mismatch).
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	off := newest*int64(len(b)/2) + headerSize
	b[off] ^= 0xff
	require.NoError(t, os.WriteFile(path, b, 0o600))

	_, p, err := Open(path, Options{})
	require.NoError(t, err)
	require.Equal(t, "two", string(p), "the other slot holds the last synced state")
}

// TestPowerLossKeepsSyncedState simulates power loss by restoring the file
// as it was right after a Sync, whatever was written afterwards: every
// Write between two Syncs went to the slot the Sync did not protect.
func TestPowerLossKeepsSyncedState(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state")
	f, _, err := Open(path, Options{})
	require.NoError(t, err)
	for round := range 5 {
		for i := range 3 {
			require.NoError(t, f.Write([]byte{byte(round), byte(i)}))
		}
		require.NoError(t, f.Sync())
		synced := filepath.Join(dir, "synced")
		copyFile(t, path, synced)
		require.NoError(t, f.Write([]byte{byte(round), 9}))
		// On disk after the power loss: the synced file with the active
		// slot's beginning torn (header written, payload not).
		b, err := os.ReadFile(synced)
		require.NoError(t, err)
		cur, err := os.ReadFile(path)
		require.NoError(t, err)
		active := newestSlot(t, path)
		half := int64(len(b) / 2)
		copy(b[active*half:active*half+headerSize], cur[active*half:])
		require.NoError(t, os.WriteFile(synced, b, 0o600))
		_, p, err := Open(synced, Options{})
		require.NoError(t, err)
		require.Equal(t, []byte{byte(round), 2}, p, "round %d", round)
	}
	require.NoError(t, f.Close())
}

func TestGrow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state")
	f, _, err := Open(path, Options{})
	require.NoError(t, err)
	require.NoError(t, f.Write([]byte("small")))
	big := bytes.Repeat([]byte("y"), 3*pageSize)
	require.NoError(t, f.Write(big))
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, int64(2*4*pageSize), st.Size())
	require.NoError(t, f.Write([]byte("small again")))
	require.NoError(t, f.Close())
	_, p, err := Open(path, Options{})
	require.NoError(t, err)
	require.Equal(t, "small again", string(p))
	require.Error(t, f.Write(make([]byte, MaxPayload+1)))
}

func TestDamaged(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string][]byte{
		"empty":   {},
		"odd":     make([]byte, 3*pageSize),
		"zeros":   make([]byte, 2*pageSize),
		"garbage": bytes.Repeat([]byte("{json}"), 2*pageSize/6+1)[:2*pageSize],
	} {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, content, 0o600))
		_, _, err := Open(path, Options{})
		require.True(t, errors.Is(err, ErrDamaged), "%s: %v", name, err)
	}
	// A slot whose length field points past the slot.
	path := filepath.Join(dir, "length")
	f, _, err := Open(path, Options{})
	require.NoError(t, err)
	require.NoError(t, f.Write([]byte("x")))
	require.NoError(t, f.Close())
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	for i := range 2 {
		binary.BigEndian.PutUint32(b[i*len(b)/2+16:], uint32(len(b)))
	}
	require.NoError(t, os.WriteFile(path, b, 0o600))
	_, _, err = Open(path, Options{})
	require.ErrorIs(t, err, ErrDamaged)
}

func TestStaleTempRemoved(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state")
	require.NoError(t, os.WriteFile(path+".tmp-1", []byte("half"), 0o600))
	_, _, err := Open(path, Options{})
	require.NoError(t, err)
	_, err = os.Stat(path + ".tmp-1")
	require.ErrorIs(t, err, os.ErrNotExist)
}

func BenchmarkWrite(b *testing.B) {
	f, _, err := Open(filepath.Join(b.TempDir(), "state"), Options{})
	require.NoError(b, err)
	payload := bytes.Repeat([]byte("z"), 200)
	for b.Loop() {
		if err := f.Write(payload); err != nil {
			b.Fatal(err)
		}
	}
	require.NoError(b, f.Close())
}
