package ruletest_test

import (
	"os"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/csirt-toscana/platform/rules/ruletest"
)

func TestRunFile(t *testing.T) {
	fsys := os.DirFS("testdata")
	files, err := ruletest.Find(fsys, ".")
	if err != nil || len(files) == 0 {
		t.Fatalf("finding test files: %v %v", files, err)
	}
	for _, f := range files {
		res, err := ruletest.RunFile(fsys, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			for _, m := range r.Failures {
				t.Errorf("%s: %s: %s", r.File, r.Case, m)
			}
		}
	}
}

func TestRunFileReportsFailures(t *testing.T) {
	rule, err := os.ReadFile("testdata/rules/ssh_failed.yml")
	if err != nil {
		t.Fatal(err)
	}
	fsys := fstest.MapFS{
		"r.yml": {Data: rule},
		"x.test.yml": {Data: []byte(`rules: [r.yml]
cases:
  - name: wrong count
    events:
      - {"@timestamp": "2026-01-01T10:00:00Z", event.dataset: sshd, message: "Failed password for root"}
    expect:
      - rule: ssh_failed_password
        count: 2
  - name: unknown rule
    events: []
    expect:
      - rule: nope
`)},
	}
	res, err := ruletest.RunFile(fsys, "x.test.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || len(res[0].Failures) != 1 || len(res[1].Failures) == 0 {
		t.Fatalf("results: %+v", res)
	}
	if !strings.Contains(res[0].Failures[0], "1 matches, want 2") {
		t.Errorf("failure message: %q", res[0].Failures[0])
	}
}
