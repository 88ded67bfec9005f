package library_test

import (
	"testing"

	"github.com/csirt-toscana/platform/rules/library"
	"github.com/csirt-toscana/platform/rules/ruleset"
	"github.com/csirt-toscana/platform/rules/ruletest"
)

// TestLibraryCases runs every test case of the library with the runner
// shared with `csirt rules test`.
func TestLibraryCases(t *testing.T) {
	files, err := ruletest.Find(library.FS, "tests")
	if err != nil || len(files) == 0 {
		t.Fatalf("finding test files: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			res, err := ruletest.RunFile(library.FS, f)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res {
				for _, m := range r.Failures {
					t.Errorf("%s: %s", r.Case, m)
				}
			}
		})
	}
}

// TestLibraryLoads: every rule of the library parses, compiles and is
// supported, and every correlation resolves its references.
func TestLibraryLoads(t *testing.T) {
	set, err := ruleset.Load(library.FS, library.RuleDirs, ruleset.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(set.Bundle.Skipped()); n != 0 {
		t.Errorf("%d rules skipped: %+v", n, set.Bundle.Skipped())
	}
	ids := map[string]string{}
	for _, r := range set.Collection.Rules {
		if r.ID == "" || r.Name == "" {
			t.Errorf("%s: rule %q needs an id and a name", r.File, r.Title)
		}
		if prev, dup := ids[r.ID]; dup {
			t.Errorf("%s: id %s already used in %s", r.File, r.ID, prev)
		}
		ids[r.ID] = r.File
	}
	for _, c := range set.Correlations {
		if c.ID == "" || c.Name == "" {
			t.Errorf("%s: correlation %q needs an id and a name", c.File, c.Title)
		}
		if prev, dup := ids[c.ID]; dup {
			t.Errorf("%s: id %s already used in %s", c.File, c.ID, prev)
		}
		ids[c.ID] = c.File
	}
	t.Logf("%d detection rules, %d correlations", len(set.Collection.Rules), len(set.Correlations))
}
