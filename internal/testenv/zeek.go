package testenv

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

// ZeekLog reads a Zeek TSV log of the shared data (the btest baselines):
// one map per row, from the #fields names to the values as written ("-"
// for unset, "(empty)" for an empty set). A row before #fields or with
// another number of values than fields fails the test.
func ZeekLog(t testing.TB, path string) []map[string]string {
	t.Helper()
	f, err := os.Open(path) //nolint:gosec // a test data file
	if err != nil {
		t.Fatalf("opening the Zeek log: %v", err)
	}
	defer func() { _ = f.Close() }()
	var fields []string
	var rows []map[string]string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "#fields\t"); ok {
			fields = strings.Split(rest, "\t")
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		vals := strings.Split(line, "\t")
		if fields == nil || len(vals) != len(fields) {
			t.Fatalf("%s: a row of %d values for %d #fields", path, len(vals), len(fields))
		}
		row := make(map[string]string, len(fields))
		for i, name := range fields {
			row[name] = vals[i]
		}
		rows = append(rows, row)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	return rows
}
