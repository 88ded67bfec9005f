package admincli

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/sqlite"
)

// seedEntity stores an entity document where `csirt admin --data-dir dir`
// finds it (the default SQLite path).
func seedEntity(t *testing.T, dir, id string) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(dir, "store.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Put(ctx, store.TenantScope(id), store.Entities, store.Doc{ID: id, Tenant: id, Source: []byte(`{"name":"Comune di Prato"}`)},
		store.WriteOptions{Refresh: store.RefreshWait}); err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, dir string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	// --data-dir right after GROUP VERB: Main parses the flags before the
	// first positional argument.
	full := append([]string{args[0], args[1], "--data-dir", dir}, args[2:]...)
	code := Main(context.Background(), full, &out, &errb)
	return code, out.String(), errb.String()
}

func TestDeviceCommands(t *testing.T) {
	dir := t.TempDir()
	seedEntity(t, dir, "comune-prato")

	code, out, errs := run(t, dir, "device", "add", "fw1", "--entity", "comune-prato", "--cidr", "10.1.2.0/24", "--cidr", "10.9.9.9", "--hostname", "fw1.prato")
	if code != 0 || !strings.Contains(out, "device fw1 registered for entity comune-prato: 10.1.2.0/24,10.9.9.9/32") {
		t.Fatalf("add: code %d out %q err %q", code, out, errs)
	}
	// Flags before the name work too.
	if code, _, errs := run(t, dir, "device", "add", "--entity", "comune-prato", "--cidr", "10.1.3.0/24", "sw1"); code != 0 {
		t.Fatalf("add with flags first: code %d err %q", code, errs)
	}

	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"device", "add", "fw2", "--cidr", "10.2.0.0/16"}, 2, "--entity is required"},
		{[]string{"device", "add", "fw2", "--entity", "comune-prato"}, 2, "at least one --cidr"},
		{[]string{"device", "add", "fw2", "--entity", "comune-prato", "--cidr", "10.2.0.0/33"}, 2, "is not a CIDR"},
		{[]string{"device", "add", "fw2", "--entity", "comune-nowhere", "--cidr", "10.2.0.0/16"}, 1, "entity add comune-nowhere"},
		{[]string{"device", "add", "fw2", "--entity", "comune-prato", "--cidr", "10.1.2.0/24"}, 1, "already registered for device fw1"},
		{[]string{"device", "add", "fw1", "--entity", "comune-prato", "--cidr", "10.3.0.0/16"}, 1, "device already registered"},
		{[]string{"device", "add", "a", "b", "--entity", "comune-prato", "--cidr", "10.3.0.0/16"}, 2, "exactly one device NAME"},
		{[]string{"device", "remove", "nosuch"}, 1, "no such device"},
		{[]string{"device", "list", "--format", "xml"}, 2, "table or json"},
	} {
		code, _, errs := run(t, dir, tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.msg) {
			t.Errorf("%v: code %d stderr %q, want %d and %q", tc.args, code, errs, tc.code, tc.msg)
		}
	}

	code, out, errs = run(t, dir, "device", "list", "--entity", "comune-prato")
	if code != 0 {
		t.Fatalf("list: %d %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "fw1") || !strings.Contains(lines[1], "10.1.2.0/24,10.9.9.9/32") ||
		!strings.Contains(lines[1], "fw1.prato") || !strings.Contains(lines[1], "registered") || !strings.Contains(lines[1], "never") ||
		!strings.HasPrefix(lines[2], "sw1") {
		t.Fatalf("list table:\n%s", out)
	}
	code, out, _ = run(t, dir, "device", "list", "--format", "json")
	var got []struct {
		Name     string   `json:"name"`
		Entity   string   `json:"entity"`
		Networks []string `json:"networks"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || len(got) != 2 || got[0].Name != "fw1" || got[0].Entity != "comune-prato" || len(got[0].Networks) != 2 {
		t.Fatalf("list json: %d %s", code, out)
	}
	if code, out, _ := run(t, dir, "device", "list", "--entity", "comune-other"); code != 0 || strings.Count(out, "\n") != 1 {
		t.Fatalf("list of another entity: %d %q", code, out)
	}

	code, out, errs = run(t, dir, "device", "remove", "fw1")
	if code != 0 || !strings.Contains(out, "device fw1 of entity comune-prato removed") {
		t.Fatalf("remove: %d %q %q", code, out, errs)
	}
	if _, out, _ := run(t, dir, "device", "list"); strings.Contains(out, "fw1") {
		t.Fatalf("fw1 still listed:\n%s", out)
	}
	// Its network is free again.
	if code, _, errs := run(t, dir, "device", "add", "fw3", "--entity", "comune-prato", "--cidr", "10.1.2.0/24"); code != 0 {
		t.Fatalf("re-adding the network: %d %s", code, errs)
	}
}
