package tail

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// tearNewestSlot flips a payload byte of the checkpoint slot with the
// highest generation (a torn in-place write) and returns its index.
func tearNewestSlot(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	half := len(b) / 2
	g0, g1 := binary.BigEndian.Uint64(b[8:]), binary.BigEndian.Uint64(b[half+8:])
	newest := 0
	if g1 > g0 {
		newest = 1
	}
	b[newest*half+24] ^= 0xff // first payload byte: CRC mismatch
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return newest
}

// TestTornCheckpointSlotUsesTheOther: the newest checkpoint slot is torn;
// the source resumes from the other slot (an older offset: lines are read
// again, none is lost).
func TestTornCheckpointSlotUsesTheOther(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	log := filepath.Join(dir, "app.log")
	appendFile(t, log, numbered("a", 0, 100))
	h := start(t, state, Config{Paths: []string{log}})
	rs := h.wait(100)
	if err := h.src.Ack(rs[39].Cursor); err != nil {
		t.Fatal(err)
	}
	h.src.syncCheckpoint() // offset of line 40 is durable
	if err := h.src.Ack(rs[99].Cursor); err != nil {
		t.Fatal(err)
	}
	h.stop()

	ckpt := filepath.Join(state, "tail-test.ckpt")
	tearNewestSlot(t, ckpt)
	h2 := start(t, state, Config{Paths: []string{log}})
	exactlyOnce(t, h2.wait(60), numbered("a", 40, 100))
	h2.ackAll()
	h2.stop()

	// Both slots torn: the checkpoint is unreadable, the file is read from
	// its beginning (duplicates, never loss) and checkpointing works again.
	tearNewestSlot(t, ckpt)
	b, err := os.ReadFile(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	half := len(b) / 2
	b[24] ^= 0x55
	b[half+24] ^= 0x55
	if err := os.WriteFile(ckpt, b, 0o600); err != nil {
		t.Fatal(err)
	}
	h3 := start(t, state, Config{Paths: []string{log}})
	exactlyOnce(t, h3.wait(100), numbered("a", 0, 100))
	h3.ackAll()
	h3.stop()
	h4 := start(t, state, Config{Paths: []string{log}})
	appendFile(t, log, numbered("b", 0, 3))
	exactlyOnce(t, h4.wait(3), numbered("b", 0, 3))
}

// TestLegacyJSONCheckpoint: a checkpoint of an earlier version (JSON,
// tail-<name>.json) is read and replaced by the slot file.
func TestLegacyJSONCheckpoint(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	log := filepath.Join(dir, "app.log")
	appendFile(t, log, numbered("a", 0, 10))
	h := start(t, state, Config{Paths: []string{log}})
	rs := h.wait(10)
	if err := h.src.Ack(rs[4].Cursor); err != nil {
		t.Fatal(err)
	}
	h.stop()
	// Turn the slot file back into the JSON file an earlier version wrote.
	f, saved, err := openCheckpoint(filepath.Join(state, "tail-test.ckpt"), "", nil)
	if err != nil || len(saved) != 1 {
		t.Fatalf("checkpoint: %v %v", saved, err)
	}
	_ = f.Close()
	var legacy []byte
	for _, e := range saved {
		legacy = []byte(`{"version":1,"files":[{"path":"` + e.Path + `","dev":` + strconv.FormatUint(e.Dev, 10) + `,"ino":` + strconv.FormatUint(e.Ino, 10) +
			`,"fp_len":` + strconv.Itoa(e.FPLen) + `,"fp_sha256":"` + e.FP + `","offset":` + strconv.FormatInt(e.Offset, 10) + `}]}`)
	}
	if err := os.Remove(filepath.Join(state, "tail-test.ckpt")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "tail-test.json"), legacy, 0o600); err != nil {
		t.Fatal(err)
	}
	h2 := start(t, state, Config{Paths: []string{log}})
	rs = h2.wait(5)
	exactlyOnce(t, rs, numbered("a", 5, 10))
	h2.ackAll()
	h2.stop()
	if _, err := os.Stat(filepath.Join(state, "tail-test.json")); !os.IsNotExist(err) {
		t.Fatalf("legacy checkpoint still present: %v", err)
	}
}
