package parse

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/csirt-toscana/platform/internal/event"
)

// TestDatasetsDoc keeps DATASETS.md (what each parser fills) equal to the
// fields the golden events carry. Run with -update after changing a parser.
func TestDatasetsDoc(t *testing.T) {
	outs, err := filepath.Glob(filepath.Join("testdata", "golden", "*.golden.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]map[string]bool{}
	for _, f := range outs {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			ev, err := event.Decode([]byte(l))
			if err != nil {
				t.Fatal(err)
			}
			ds := ev.Dataset()
			if strings.HasSuffix(ds, ".unparsed") {
				ds = "<source>.unparsed"
			}
			if fields[ds] == nil {
				fields[ds] = map[string]bool{}
			}
			for k := range ev {
				if strings.HasPrefix(k, "log.syslog.structured_data.") {
					k = "log.syslog.structured_data.*"
				} else if _, ok := event.Lookup(k); !ok {
					t.Errorf("%s: field %s is not in the schema registry (internal/event/fields.go)", ds, k)
				}
				fields[ds][k] = true
			}
		}
	}
	var b bytes.Buffer
	b.WriteString("# Datasets of the collector's parsers\n\n")
	b.WriteString("Generated from the golden tests (`testdata/golden`) by\n")
	b.WriteString("`go test ./collector/internal/parse -run TestDatasetsDoc -update`: the fields each\n")
	b.WriteString("dataset's events carry in those tests. Every event also gets, from the collector's\n")
	b.WriteString("pipeline, `event.id`, `event.ingested`, `organization.id` and `agent.id`.\n\n")
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fs := make([]string, 0, len(fields[n]))
		for f := range fields[n] {
			fs = append(fs, "`"+f+"`")
		}
		sort.Strings(fs)
		b.WriteString("## " + n + "\n\n" + strings.Join(fs, ", ") + "\n\n")
	}
	path := "DATASETS.md"
	if *update {
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if !bytes.Equal(got, b.Bytes()) {
		t.Fatalf("%s is out of date: go test ./collector/internal/parse -run TestDatasetsDoc -update", path)
	}
}
