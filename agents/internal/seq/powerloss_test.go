package seq

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/csirt-toscana/platform/agents/internal/spool"
	"github.com/csirt-toscana/platform/internal/envelope"
)

func testSigner(t testing.TB) envelope.Signer {
	t.Helper()
	k, err := envelope.NewHMACKey("k1", bytes.Repeat([]byte{7}, 32))
	require.NoError(t, err)
	return k
}

func sealBatch(t testing.TB, k Key, first uint64, n int) []byte {
	t.Helper()
	recs := make([]envelope.Record, n)
	for i := range recs {
		recs[i] = envelope.Record{Time: time.Unix(1700000000, 0), Kind: envelope.KindRawLine, Data: []byte("line")}
	}
	data, err := envelope.Seal(&envelope.Batch{
		AgentID: k.Agent, EntityID: "ent", StreamID: k.Stream, FirstSeq: first,
		Created: time.Unix(1700000000, 0), Records: recs,
	}, testSigner(t))
	require.NoError(t, err)
	return data
}

// raise is what the agent does at start (agent.raiseFromSpool).
func raise(t *testing.T, st *Store, sp *spool.Spool) {
	t.Helper()
	require.NoError(t, sp.ScanAll(func(data []byte) error {
		k, first, n, err := RangeOf(data)
		require.NoError(t, err)
		return st.Raise(k, first+uint64(n))
	}))
}

// TestPowerLossNoReuse simulates a power loss: the sequence file goes back
// to its content at the last Sync (the background sync or the spool's
// BeforeRemove hook), the spool keeps what it fsynced. After the agent's
// start-up raise no number that reached the spool is handed out again.
func TestPowerLossNoReuse(t *testing.T) {
	for _, ackAll := range []bool{false, true} {
		t.Run(map[bool]string{false: "unacked", true: "acked-segments-removed"}[ackAll], func(t *testing.T) {
			dir := t.TempDir()
			seqDir, spoolDir := filepath.Join(dir, "seq"), filepath.Join(dir, "spool")
			synced := filepath.Join(dir, "synced-copy")
			st, err := Open(seqDir, Options{SyncInterval: -1})
			require.NoError(t, err)
			// The copy of the file as of the last Sync is what a power
			// loss leaves.
			snapshot := func() {
				b, err := os.ReadFile(filepath.Join(seqDir, FileName))
				require.NoError(t, err)
				require.NoError(t, os.WriteFile(synced, b, 0o600))
			}
			syncs := 0
			hook := func() error {
				if err := st.Sync(); err != nil {
					return err
				}
				syncs++
				snapshot()
				return nil
			}
			sp, err := spool.Open(spoolDir, spool.Options{SegmentBytes: 64 << 10, MaxBytes: 1 << 20, BeforeRemove: hook})
			require.NoError(t, err)
			streams := []Key{{"agent-1", "file:a"}, {"agent-1", "file:b"}}
			maxSpooled := map[Key]uint64{}
			// A first reservation, synced: the file exists.
			_, err = st.Reserve(streams[0], 1)
			require.NoError(t, err)
			require.NoError(t, hook())
			for i := range 300 {
				k := streams[i%2]
				first, err := st.Reserve(k, 100)
				require.NoError(t, err)
				require.NoError(t, sp.Append(sealBatch(t, k, first, 100)))
				maxSpooled[k] = first + 99
				if ackAll && i%10 == 9 {
					// Everything but the last entry (ids are 1, 2, ...).
					require.NoError(t, sp.Ack(sp.Stats().Appended-1))
				}
			}
			if ackAll {
				require.Positive(t, syncs, "acknowledged segments were removed through the hook")
			}
			// Power loss: nothing is closed, the sequence file is the
			// synced copy.
			require.NoError(t, sp.Close())
			require.NoError(t, os.Rename(synced, filepath.Join(seqDir, FileName)))

			st2, err := Open(seqDir, Options{SyncInterval: -1})
			require.NoError(t, err)
			stale := false
			for _, k := range streams {
				if st2.Next(k) <= maxSpooled[k] {
					stale = true
				}
			}
			require.True(t, stale, "the simulation must lose reservations, or it proves nothing")
			sp2, err := spool.Open(spoolDir, spool.Options{SegmentBytes: 64 << 10, MaxBytes: 1 << 20, BeforeRemove: st2.Sync})
			require.NoError(t, err)
			raise(t, st2, sp2)
			for _, k := range streams {
				require.Greater(t, st2.Next(k), maxSpooled[k], "stream %s: a number in the spool (or removed from it) would be reused", k.Stream)
			}
			require.NoError(t, sp2.Close())
			require.NoError(t, st2.Close())
			require.NoError(t, st.Close())
		})
	}
}

func TestRaiseAndClose(t *testing.T) {
	dir := t.TempDir()
	st, err := Open(dir, Options{SyncInterval: 5 * time.Millisecond})
	require.NoError(t, err)
	k := Key{"a", "s"}
	require.NoError(t, st.Raise(k, 50))
	require.NoError(t, st.Raise(k, 10)) // never lowers
	require.Equal(t, uint64(50), st.Next(k))
	first, err := st.Reserve(k, 5)
	require.NoError(t, err)
	require.Equal(t, uint64(50), first)
	time.Sleep(20 * time.Millisecond) // a background sync or two
	require.NoError(t, st.Close())
	require.NoError(t, st.Close())
	_, err = st.Reserve(k, 1)
	require.Error(t, err)
	st2, err := Open(dir, Options{})
	require.NoError(t, err)
	require.Equal(t, uint64(55), st2.Next(k))
	require.NoError(t, st2.Close())
}

func TestLegacyJSONMigrated(t *testing.T) {
	dir := t.TempDir()
	legacy := `{"version":1,"streams":[{"agent":"a","stream":"s","next":42},{"agent":"a","stream":"t","next":7}]}`
	require.NoError(t, os.WriteFile(filepath.Join(dir, LegacyFileName), []byte(legacy), 0o600))
	st, err := Open(dir, Options{})
	require.NoError(t, err)
	require.Equal(t, uint64(42), st.Next(Key{"a", "s"}))
	require.Equal(t, uint64(7), st.Next(Key{"a", "t"}))
	_, err = os.Stat(filepath.Join(dir, LegacyFileName))
	require.ErrorIs(t, err, os.ErrNotExist)
	require.NoError(t, st.Close())
	st2, err := Open(dir, Options{})
	require.NoError(t, err)
	require.Equal(t, uint64(42), st2.Next(Key{"a", "s"}))
	require.NoError(t, st2.Close())
}

func TestRangeOf(t *testing.T) {
	k := Key{"agent-x", "file:" + strings.Repeat("s", 200)}
	data := sealBatch(t, k, 1234, 17)
	got, first, n, err := RangeOf(data)
	require.NoError(t, err)
	require.Equal(t, k, got)
	require.Equal(t, uint64(1234), first)
	require.Equal(t, uint32(17), n)
	for i := range len(data) {
		if i < 80 { // every cut inside the header fails
			_, _, _, err := RangeOf(data[:i])
			require.Error(t, err, "cut at %d", i)
		}
	}
	bad := append([]byte(nil), data...)
	bad[0] = 'X'
	_, _, _, err = RangeOf(bad)
	require.Error(t, err)
}

// FuzzRangeOf: RangeOf never panics, and agrees with envelope.Decode on
// every input Decode accepts.
func FuzzRangeOf(f *testing.F) {
	f.Add(sealBatch(f, Key{"a", "s"}, 1, 1))
	f.Add(sealBatch(f, Key{"agent-1", "file:syslog"}, 1<<40, 3))
	f.Add([]byte("CSEB\x01\x00\x031.0"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		k, first, n, err := RangeOf(data)
		b, derr := envelope.Decode(data)
		if derr != nil {
			return
		}
		if err != nil {
			t.Fatalf("Decode accepts what RangeOf refuses: %v", err)
		}
		if k.Agent != b.AgentID || k.Stream != b.StreamID || first != b.FirstSeq || int(n) != len(b.Records) {
			t.Fatalf("RangeOf %v %d %d, Decode %s %s %d %d", k, first, n, b.AgentID, b.StreamID, b.FirstSeq, len(b.Records))
		}
	})
}

// TestPowerLossBlockLimit simulates a power loss without any spool: the
// state file goes back to its content at the last fsync (Reserve fsyncs
// only when it raises a limit). After the restart (a new boot id) no
// number handed out is handed out again, and the gap is at most one
// block. Without a restart (a SIGKILL: same boot) counting resumes
// exactly, and after a clean Close it does even across a reboot.
func TestPowerLossBlockLimit(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	const block = 100
	st, err := Open(dir, Options{Block: block, BootID: "boot-1"})
	require.NoError(t, err)
	k := Key{"agent-1", "file:a"}
	var synced []byte
	var last uint64
	fsyncs := 0
	for range 150 {
		before := st.limit[k]
		first, err := st.Reserve(k, 7)
		require.NoError(t, err)
		require.Greater(t, first, last)
		last = first + 6
		if st.limit[k] != before { // Reserve fsynced: this is on disk
			fsyncs++
			synced, err = os.ReadFile(path)
			require.NoError(t, err)
		}
	}
	require.Less(t, fsyncs, 150*7/block+2, "about one fsync per block")
	exact, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, synced, 0o600))
	// Same boot on the synced copy: this is what must never happen (a
	// power loss always changes the boot id); it shows the copy is stale.
	stale, err := Open(dir, Options{Block: block, BootID: "boot-1"})
	require.NoError(t, err)
	require.LessOrEqual(t, stale.Next(k), last, "the simulation must lose reservations, or it proves nothing")
	require.NoError(t, stale.file.Close())
	require.NoError(t, os.WriteFile(path, synced, 0o600))

	after, err := Open(dir, Options{Block: block, BootID: "boot-2"})
	require.NoError(t, err)
	require.Greater(t, after.Next(k), last, "a number handed out before the power loss would be reused")
	require.LessOrEqual(t, after.Next(k)-last, uint64(block+7), "the gap is at most a block")
	require.NoError(t, after.Close())

	// SIGKILL: the page cache kept the exact state.
	require.NoError(t, os.WriteFile(path, exact, 0o600))
	kill, err := Open(dir, Options{Block: block, BootID: "boot-1"})
	require.NoError(t, err)
	require.Equal(t, last+1, kill.Next(k), "after a SIGKILL counting resumes exactly")
	// Clean stop, then a reboot: no gap either.
	require.NoError(t, kill.Close())
	reboot, err := Open(dir, Options{Block: block, BootID: "boot-3"})
	require.NoError(t, err)
	require.Equal(t, last+1, reboot.Next(k), "after a clean stop and a reboot counting resumes exactly")
	require.NoError(t, reboot.Close())
	require.NoError(t, st.file.Close())
}
