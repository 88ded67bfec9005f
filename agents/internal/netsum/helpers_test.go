package netsum

import (
	"bufio"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/testenv"
)

// zeekDir is the Zeek test data (traces and baselines).
func zeekDir(t *testing.T) string {
	t.Helper()
	return filepath.Join(testenv.SharedData(t), "pcaps", "zeek")
}

// summarize runs the summarizer over capture files and returns the events.
func summarize(t testing.TB, cfg Config, paths ...string) []event.Event {
	t.Helper()
	var out []event.Event
	cfg.Emit = func(e event.Event) {
		if err := checkEvent(e); err != nil {
			t.Errorf("invalid event %v: %v", e, err)
		}
		out = append(out, e)
	}
	if _, err := SummarizeFiles(paths, cfg); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkEvent validates an event's field types; the fields the collector
// adds (id, ingestion time, tenant, agent, host) are filled with
// placeholders first.
func checkEvent(e event.Event) error {
	c := e.Clone()
	c["event.id"], c["event.ingested"], c["organization.id"], c["agent.id"], c["host.name"] = "x", e["@timestamp"], "o", "a", "h"
	if err := c.Validate(); err != nil {
		return err
	}
	_, err := c.MarshalJSON()
	return err
}

func byDataset(evs []event.Event, ds string) []event.Event {
	var out []event.Event
	for _, e := range evs {
		if e.Dataset() == ds {
			out = append(out, e)
		}
	}
	return out
}

// zeekLog is a Zeek TSV log: rows as maps of field name to value.
type zeekLog []map[string]string

func readZeekLog(t *testing.T, path string) zeekLog { return readZeekLogCols(t, path, nil) }

// readZeekLogCols reads a log whose header names its fields, or, when cols
// is given, a zeek-cut output without header.
func readZeekLogCols(t *testing.T, path string, cols []string) zeekLog {
	t.Helper()
	f, err := os.Open(path) //nolint:gosec // test data path
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	fields := cols
	var rows zeekLog
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#fields\t") {
			fields = strings.Split(line, "\t")[1:]
			continue
		}
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		vals := strings.Split(line, "\t")
		row := map[string]string{}
		for i, name := range fields {
			if i < len(vals) {
				row[name] = vals[i]
			}
		}
		rows = append(rows, row)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path) //nolint:gosec // test data path
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func parseAddr(s string) (string, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "", err
	}
	return a.String(), nil
}
