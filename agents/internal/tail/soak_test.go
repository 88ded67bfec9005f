package tail

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/agents/internal/source"
)

var soakLines = flag.Int("soak.lines", 10000, "lines written by TestSoakRotationsAndRestarts")

// TestSoakRotationsAndRestarts writes lines while the log is rotated
// (rename and copytruncate in turn) and the source is stopped and restarted
// without acknowledging its last records, as after a crash. Every line must
// arrive; duplicates (from unacknowledged tails) are counted and logged.
func TestSoakRotationsAndRestarts(t *testing.T) {
	n := *soakLines
	if testing.Short() {
		n = min(n, 4000)
	}
	dir, state := t.TempDir(), t.TempDir()
	log := filepath.Join(dir, "app.log")
	cfg := Config{Paths: []string{log + "*"}, PollInterval: 10 * time.Millisecond, CloseAfter: 200 * time.Millisecond}

	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		if err := writeRotating(log, n, n/8); err != nil {
			t.Error(err)
		}
	}()

	var mu sync.Mutex
	seen := map[string]int{}
	received := 0
	phase := func(d time.Duration, ackAll bool) {
		src, err := NewFileSource("soak", cfg, source.Deps{StateDir: state})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		out := make(chan source.Record, 64)
		done := make(chan error, 1)
		go func() { done <- src.Run(ctx, out) }()
		var pending []source.Cursor
		flush := func() {
			if err := src.Ack(pending...); err != nil {
				t.Error(err)
			}
			pending = pending[:0]
		}
		for {
			select {
			case r := <-out:
				mu.Lock()
				seen[string(r.Data)]++
				received++
				mu.Unlock()
				pending = append(pending, r.Cursor)
				if len(pending) == 100 {
					flush()
				}
			case err := <-done:
				if err != nil {
					t.Error(err)
				}
				if ackAll {
					flush()
				}
				return // unacknowledged records: read again next phase
			}
			mu.Lock()
			all := len(seen) == n
			mu.Unlock()
			if all && ackAll {
				cancel()
			}
		}
	}
	for i := range 4 {
		phase(time.Duration(150+100*i)*time.Millisecond, false)
	}
	<-writerDone
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		phase(2*time.Second, true)
		mu.Lock()
		all := len(seen) == n
		mu.Unlock()
		if all {
			break
		}
	}
	var missing []string
	for i := range n {
		if seen[soakLine(i)] == 0 {
			missing = append(missing, soakLine(i)[:8])
		}
	}
	if len(seen) != n || len(missing) > 0 {
		t.Fatalf("%d distinct lines of %d; missing %d: %.400s", len(seen), n, len(missing), strings.Join(missing, " "))
	}
	t.Logf("lines written %d, records received %d, duplicates %d (unacknowledged tails and partial copies)", n, received, received-n)
}

func soakLine(i int) string { return fmt.Sprintf("L%07d %s", i, strings.Repeat("=", 60)) }

// writeRotating writes n lines to path, rotating every `every` lines: by
// rename and by copytruncate in turn, as logrotate would.
func writeRotating(path string, n, every int) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	rot := 0
	for i := range n {
		if _, err := f.WriteString(soakLine(i) + "\n"); err != nil {
			return err
		}
		if i%50 == 0 {
			time.Sleep(time.Millisecond)
		}
		if (i+1)%every != 0 {
			continue
		}
		rot++
		dst := fmt.Sprintf("%s.%d", path, rot)
		if rot%2 == 1 {
			if err := os.Rename(path, dst); err != nil {
				return err
			}
			nf, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			if err != nil {
				return err
			}
			_ = f.Close()
			f = nf
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			return err
		}
		if err := f.Truncate(0); err != nil {
			return err
		}
	}
	return nil
}
