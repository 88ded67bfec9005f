package tail

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/agents/internal/source"
	"github.com/csirt-toscana/platform/agents/internal/spool"
)

// copyDir copies the regular files of src into a new directory; sizes
// truncates some of them (base name -> size) to what a power loss keeps.
func copyDir(t *testing.T, src string, sizes map[string]int64) string {
	t.Helper()
	dst := t.TempDir()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if n, ok := sizes[e.Name()]; ok && int64(len(b)) > n {
			b = b[:n]
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// TestPowerLossGroupCommit follows the agent's group commit: batches are
// appended to the spool without fsync and their lines checkpointed at once
// (AckSpooled, one pwrite); the spool is fsynced only before the
// checkpoint is. A power loss keeps the spool as of its last Sync and, in
// the worst case, the newest checkpoint slot (the kernel may write pages
// back at any time). After it, every line must be in the durable spool or
// be read again: no checkpoint may cover lines that are in neither. After
// a SIGKILL (the page cache survives) nothing is read twice.
func TestPowerLossGroupCommit(t *testing.T) {
	dir := t.TempDir()
	logPath, state, spoolDir := filepath.Join(dir, "app.log"), filepath.Join(dir, "state"), filepath.Join(dir, "spool")
	sp, err := spool.Open(spoolDir, spool.Options{DeferSync: true})
	if err != nil {
		t.Fatal(err)
	}
	durable := map[string]int64{} // segment file -> size at the last Sync
	syncs := 0
	syncSpool := func() error {
		if err := sp.Sync(); err != nil {
			return err
		}
		syncs++
		names, _ := filepath.Glob(filepath.Join(spoolDir, "seg-*"))
		for _, p := range names {
			if fi, err := os.Stat(p); err == nil {
				durable[filepath.Base(p)] = fi.Size()
			}
		}
		return nil
	}
	syncSpool() //nolint:errcheck // nothing appended yet: records the empty segment
	mark := sp.Mark()
	src, err := NewFileSource("test", Config{Paths: []string{logPath}, PollInterval: 10 * time.Millisecond},
		source.Deps{StateDir: state, Spool: source.SpoolDeps{Sync: syncSpool, Covers: mark.Covers}})
	if err != nil {
		t.Fatal(err)
	}
	src.ckptSyncEvery = time.Hour // the test decides when the checkpoint is synced
	const total, group = 50, 10
	appendFile(t, logPath, numbered("a", 0, total))
	h := &harness{t: t, src: src, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	out := make(chan source.Record, 128)
	go func() { defer close(h.done); _ = src.Run(ctx, out) }()
	go func() {
		for r := range out {
			h.mu.Lock()
			h.recs = append(h.recs, r)
			h.mu.Unlock()
		}
	}()
	rs := h.wait(total)
	// Five batches of ten lines; the checkpoint (and so the spool) is
	// synced after the second. The last batch is spooled, not acknowledged.
	for g := range total / group {
		var data bytes.Buffer
		for _, r := range rs[g*group : (g+1)*group] {
			data.Write(r.Data)
			data.WriteByte('\n')
		}
		id, err := sp.AppendID(data.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if g < total/group-1 {
			if err := src.AckSpooled(source.SpoolRef{Run: mark.Run, ID: id}, rs[(g+1)*group-1].Cursor); err != nil {
				t.Fatal(err)
			}
		}
		if g == 1 {
			src.syncCheckpoint()
		}
	}
	// At the start, before the checkpoint file was created (its first
	// write fsyncs both slots), and before the checkpoint sync.
	if syncs != 3 {
		t.Fatalf("spool synced %d times, want 3 (only before the checkpoint is made durable)", syncs)
	}
	// The disk at the moment of the crash: the checkpoint as written (newest
	// slot included), the spool whole (SIGKILL) or as last synced (power).
	ckptKill := copyDir(t, state, nil)
	spoolKill := copyDir(t, spoolDir, nil)
	spoolPower := copyDir(t, spoolDir, durable)
	h.stop()
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}

	restart := func(stateDir, spoolDir string, covers bool) (inSpool, reread []string) {
		t.Helper()
		sp2, err := spool.Open(spoolDir, spool.Options{DeferSync: true})
		if err != nil {
			t.Fatal(err)
		}
		defer sp2.Close()
		if err := sp2.ScanAll(func(data []byte) error {
			inSpool = append(inSpool, strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")...)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		deps := source.Deps{StateDir: stateDir}
		if covers {
			deps.Spool = source.SpoolDeps{Sync: sp2.Sync, Covers: sp2.Mark().Covers}
		}
		src2, err := NewFileSource("test", Config{Paths: []string{logPath}, PollInterval: 10 * time.Millisecond}, deps)
		if err != nil {
			t.Fatal(err)
		}
		defer src2.Close()
		h2 := &harness{t: t, src: src2, done: make(chan struct{})}
		ctx, cancel := context.WithCancel(context.Background())
		h2.cancel = cancel
		out := make(chan source.Record, 128)
		go func() { defer close(h2.done); _ = src2.Run(ctx, out) }()
		deadline := time.Now().Add(500 * time.Millisecond)
		for time.Now().Before(deadline) {
			select {
			case r := <-out:
				reread = append(reread, string(r.Data))
			case <-time.After(10 * time.Millisecond):
			}
		}
		h2.stop()
		return inSpool, reread
	}
	written := strings.Split(strings.TrimSuffix(numbered("a", 0, total), "\n"), "\n")
	missing := func(inSpool, reread []string) []string {
		have := map[string]bool{}
		for _, l := range append(inSpool, reread...) {
			have[l] = true
		}
		var miss []string
		for _, l := range written {
			if !have[l] {
				miss = append(miss, l)
			}
		}
		return miss
	}

	// Power loss: batches 3 and 4 are gone from the spool although the
	// newest checkpoint slot covers them; it is passed over for the synced
	// one, and their lines are read again.
	inSpool, reread := restart(copyDir(t, ckptKill, nil), spoolPower, true)
	if len(inSpool) != 2*group {
		t.Fatalf("power loss kept %d spooled lines, want %d (the simulation must lose batches)", len(inSpool), 2*group)
	}
	if miss := missing(inSpool, reread); len(miss) > 0 {
		t.Fatalf("after a power loss %d lines are neither in the spool nor read again, first %q", len(miss), miss[0])
	}
	if len(reread) != total-2*group {
		t.Errorf("after a power loss %d lines were read again, want %d (from the synced checkpoint)", len(reread), total-2*group)
	}
	// Without the spool check, the newest slot would have been used: lines
	// lost. This is what the check is for.
	inSpool, reread = restart(copyDir(t, ckptKill, nil), copyDir(t, spoolPower, nil), false)
	if miss := missing(inSpool, reread); len(miss) == 0 {
		t.Fatal("without the spool check no line was lost: the simulation proves nothing")
	}
	// SIGKILL: the spool is whole, the newest checkpoint stands, only the
	// unacknowledged batch is read again.
	inSpool, reread = restart(copyDir(t, ckptKill, nil), spoolKill, true)
	if miss := missing(inSpool, reread); len(miss) > 0 {
		t.Fatalf("after a SIGKILL %d lines are lost, first %q", len(miss), miss[0])
	}
	if len(reread) != group {
		t.Errorf("after a SIGKILL %d lines were read again, want %d (the batch not acknowledged)", len(reread), group)
	}
}
