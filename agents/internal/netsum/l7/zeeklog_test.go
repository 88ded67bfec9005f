package l7

import (
	"testing"

	"github.com/csirt-toscana/platform/internal/testenv"
)

// zeekLog reads a Zeek TSV log (as in the btest baselines) into rows keyed
// by field name; a log without rows fails the test.
func zeekLog(t testing.TB, path string) []map[string]string {
	t.Helper()
	rows := testenv.ZeekLog(t, path)
	if len(rows) == 0 {
		t.Fatalf("%s has no rows", path)
	}
	return rows
}
