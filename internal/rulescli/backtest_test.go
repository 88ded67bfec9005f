package rulescli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/collector/parsecli"
	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/finding"
	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/sqlite"
	"github.com/csirt-toscana/platform/internal/testenv"
)

// The shared crowdsec ssh-bf log, stored as events, backtested with the
// library's sshd rules: the brute force of 35.188.49.176 is found.
func TestBacktestSSHBruteForce(t *testing.T) {
	logPath := filepath.Join(testenv.SharedData(t), "crowdsec-hub-tests", ".tests", "ssh-bf", "ssh-bf.log")
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(t.TempDir(), "store.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	f, err := os.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	bw, err := st.Bulk(store.RegionalScope(), store.Events, store.BulkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var first, last time.Time
	n := 0
	err = parsecli.ReadEvents(f, parsecli.Options{Entity: "comune-bt", Host: "srv1", Source: logPath}, func(_ int, ev event.Event) error {
		data, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		if first.IsZero() || ev.Time().Before(first) {
			first = ev.Time()
		}
		if ev.Time().After(last) {
			last = ev.Time()
		}
		n++
		return bw.Add(ctx, store.Doc{ID: ev.ID(), Tenant: "comune-bt", Source: data})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := bw.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.Refresh(ctx, store.Events); err != nil {
		t.Fatal(err)
	}
	old := openStore
	openStore = func(context.Context, string) (store.Store, error) { return nopClose{st}, nil }
	t.Cleanup(func() { openStore = old })

	until := last.Add(time.Second).UTC().Format(time.RFC3339Nano)
	since := last.Sub(first) + time.Hour
	code, out, errs := run(t, "backtest", "../../rules/library/linux/sshd.yml", "--since", since.String(), "--until", until,
		"--entity", "comune-bt", "--format", "jsonl")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(errs, " events, ") {
		t.Fatalf("no summary: %s", errs)
	}
	flagged := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		f, err := finding.Decode([]byte(l))
		if err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		if f.RuleName == "SSH brute force from one address" {
			flagged[f.SourceIP]++
			if f.Entity != "comune-bt" || len(f.EventIDs) == 0 {
				t.Errorf("finding without entity or events: %+v", f)
			}
		}
	}
	if flagged["35.188.49.176"] == 0 || len(flagged) != 1 {
		t.Fatalf("brute force flagged %v, want 35.188.49.176 (%d events read)\n%s", flagged, n, errs)
	}

	// Outside the range: nothing.
	code, out, _ = run(t, "backtest", "--since", "1h", "--until", first.Add(-2*time.Hour).UTC().Format(time.RFC3339), "../../rules/library/linux/sshd.yml")
	if code != 0 || strings.TrimSpace(out) != "" {
		t.Fatalf("exit %d, output %q for an empty range", code, out)
	}
	if c, _, _ := run(t, "backtest", "--since", "soon", "x.yml"); c != 2 {
		t.Fatalf("bad --since: exit %d", c)
	}
}

type nopClose struct{ store.Store }

func (nopClose) Close() error { return nil }

// hunt --intel: a flow to an address of the shared MISP event is reported
// with the event cited.
func TestHuntIntel(t *testing.T) {
	misp := filepath.Join(testenv.SharedData(t), "intel", "pymisp", "5a0a9aa9-23a4-4607-b6df-41a9950d210f.json")
	events := filepath.Join(t.TempDir(), "events.jsonl")
	lines := `{"@timestamp":"2026-03-01T10:00:00Z","event.id":"f1","event.dataset":"flow","source.ip":"10.0.0.5","destination.ip":"98.126.156.210","destination.port":443}
{"@timestamp":"2026-03-01T10:00:01Z","event.id":"f2","event.dataset":"flow","source.ip":"10.0.0.5","destination.ip":"192.0.2.1","destination.port":443}
`
	if err := os.WriteFile(events, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := run(t, "hunt", "--intel", misp, "--format", "jsonl", events)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	got := strings.Split(strings.TrimSpace(out), "\n")
	if len(got) != 1 {
		t.Fatalf("want one match, got %q", out)
	}
	var rec struct {
		Intel huntIntel `json:"intel"`
		Event struct {
			ID string `json:"event.id"`
		} `json:"event"`
	}
	if err := json.Unmarshal([]byte(got[0]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Intel.Value != "98.126.156.210" || rec.Intel.Field != "destination.ip" || !strings.Contains(strings.Join(rec.Intel.Refs, " "), "5a0a9aa9") {
		t.Fatalf("unexpected record %s", got[0])
	}
	if code, _, _ := run(t, "hunt", "--intel", misp, "--intel-format", "urlhaus", events); code != 1 {
		t.Fatalf("a forced wrong format should fail, exit %d", code)
	}
}
