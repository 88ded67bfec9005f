package seq

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestReserveAndReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	require.NoError(t, err)
	a := Key{"agent-1", "file:syslog"}
	b := Key{"agent-1", "file:auth"}
	other := Key{"agent-2", "file:syslog"}

	first, err := s.Reserve(a, 10)
	require.NoError(t, err)
	require.Equal(t, uint64(1), first)
	first, err = s.Reserve(a, 5)
	require.NoError(t, err)
	require.Equal(t, uint64(11), first)
	first, err = s.Reserve(b, 3)
	require.NoError(t, err)
	require.Equal(t, uint64(1), first)
	require.Equal(t, uint64(1), s.Next(other))
	_, err = s.Reserve(a, 0)
	require.Error(t, err)

	// Reopen without any Close (there is none): what Reserve returned is on disk.
	s2, err := Open(dir, Options{})
	require.NoError(t, err)
	require.Equal(t, uint64(16), s2.Next(a))
	require.Equal(t, uint64(4), s2.Next(b))
	first, err = s2.Reserve(a, 1)
	require.NoError(t, err)
	require.Equal(t, uint64(16), first)
}

func TestTornTempFileIgnored(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	require.NoError(t, err)
	k := Key{"a", "s"}
	_, err = s.Reserve(k, 7)
	require.NoError(t, err)
	// A crash during the next write leaves a half-written temporary file.
	torn := filepath.Join(dir, FileName+".tmp-123")
	require.NoError(t, os.WriteFile(torn, []byte(`{"version":1,"str`), 0o600))

	s2, err := Open(dir, Options{})
	require.NoError(t, err)
	require.Equal(t, uint64(8), s2.Next(k))
	_, err = os.Stat(torn)
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestDamagedStateIsAnError(t *testing.T) {
	for name, content := range map[string]string{
		"syntax":  `{"version":1,`,
		"version": `{"version":2,"streams":[]}`,
		"zero":    `{"version":1,"streams":[{"agent":"a","stream":"s","next":0}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(dir, FileName), []byte(content), 0o600))
			_, err := Open(dir, Options{})
			require.Error(t, err, "a damaged file must not restart the counters at 1")
		})
	}
}

func TestConcurrentReserveNeverOverlaps(t *testing.T) {
	s, err := Open(t.TempDir(), Options{NoSync: true})
	require.NoError(t, err)
	k := Key{"a", "s"}
	var mu sync.Mutex
	seen := map[uint64]bool{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				first, err := s.Reserve(k, 3)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for i := range uint64(3) {
					if seen[first+i] {
						t.Errorf("number %d handed out twice", first+i)
					}
					seen[first+i] = true
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.Len(t, seen, 8*50*3)
	require.Equal(t, uint64(8*50*3+1), s.Next(k))
}

const envHelperDir = "CSIRT_SEQ_HELPER_DIR"

// TestHelperReserveForever is run in a subprocess by TestSIGKILL: it
// reserves numbers as fast as it can and prints each first number once
// Reserve returned.
func TestHelperReserveForever(t *testing.T) {
	dir := os.Getenv(envHelperDir)
	if dir == "" {
		t.Skip("helper for TestSIGKILL")
	}
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(os.Stdout)
	for {
		first, err := s.Reserve(Key{"a", "s"}, 2)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.WriteString(strconv.FormatUint(first, 10) + "\n")
		_ = w.Flush()
	}
}

// TestSIGKILL kills a process that reserves numbers in a loop, three
// times, and checks that no number it reported is handed out again.
func TestSIGKILL(t *testing.T) {
	dir := t.TempDir()
	var last uint64
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperReserveForever$")
		cmd.Env = append(os.Environ(), envHelperDir+"="+dir)
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		sc := bufio.NewScanner(out)
		got := 0
		deadline := time.Now().Add(200 * time.Millisecond)
		for sc.Scan() {
			n, err := strconv.ParseUint(sc.Text(), 10, 64)
			if err != nil {
				continue // testing's own output
			}
			require.Greater(t, n, last, "round %d: number reused", round)
			last = n + 1 // a reservation of 2
			got++
			if got > 5 && time.Now().After(deadline) {
				break
			}
		}
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
		require.Positive(t, got)

		s, err := Open(dir, Options{})
		require.NoError(t, err)
		require.Greater(t, s.Next(Key{"a", "s"}), last, "round %d: reopened store would reuse a number", round)
		t.Logf("round %d: %d reservations seen, last number %d, next after reopen %d", round, got, last, s.Next(Key{"a", "s"}))
	}
}
