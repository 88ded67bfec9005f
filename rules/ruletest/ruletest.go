// Package ruletest runs rule test cases written as data: a YAML file names
// the rules to load, the input events and the expected matches. The same
// runner serves `go test` and `csirt rules test`.
//
// Format (paths are relative to the test file):
//
//	rules: [../sigma/ssh_bruteforce.yml]   # files or directories
//	mapping: default                        # or none
//	cases:
//	  - name: ten failures then a success
//	    events:                             # YAML maps (nested or dotted names)
//	      - {"@timestamp": "2025-01-01T00:00:00Z", event.dataset: sshd, ...}
//	    events_file: events.jsonl           # and/or JSON lines
//	    expect:                             # every match, nothing else
//	      - rule: <id, name or title>
//	        count: 1                        # default 1
//
// A correlation alert counts as a match of the correlation rule. An empty
// expect list asserts that nothing matches.
package ruletest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/csirt-toscana/platform/rules/mapping"
	"github.com/csirt-toscana/platform/rules/ruleset"
)

// File is a parsed test file.
type File struct {
	Rules   []string `yaml:"rules"`
	Mapping string   `yaml:"mapping"`
	Cases   []Case   `yaml:"cases"`
}

// Case is one test case.
type Case struct {
	Name       string           `yaml:"name"`
	Events     []map[string]any `yaml:"events"`
	EventsFile string           `yaml:"events_file"`
	Expect     []Expect         `yaml:"expect"`
}

// Expect is one expected rule with its number of matches.
type Expect struct {
	Rule  string `yaml:"rule"`
	Count *int   `yaml:"count"`
}

// Result is the outcome of one case.
type Result struct {
	File     string
	Case     string
	Failures []string // empty: passed
}

// IsTestFile reports whether a file name is a rule test file.
func IsTestFile(name string) bool {
	return strings.HasSuffix(name, ".test.yml") || strings.HasSuffix(name, ".test.yaml")
}

// Find returns the test files under root.
func Find(fsys fs.FS, root string) ([]string, error) {
	var out []string
	err := fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && IsTestFile(d.Name()) {
			out = append(out, p)
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

// RunFile runs every case of one test file. An error means the file or
// its rules could not be loaded; failing cases are in the results.
func RunFile(fsys fs.FS, file string) ([]Result, error) {
	data, err := fs.ReadFile(fsys, file)
	if err != nil {
		return nil, err
	}
	var tf File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&tf); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	m, err := mapping.ByName(tf.Mapping)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	dir := path.Dir(file)
	var roots []string
	for _, r := range tf.Rules {
		roots = append(roots, path.Join(dir, r))
	}
	if len(roots) == 0 {
		return nil, fmt.Errorf("%s: no rules listed", file)
	}
	set, err := ruleset.Load(fsys, roots, ruleset.Options{Mapping: m})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	names := map[string]string{} // id, name or title -> canonical label
	for _, r := range set.Collection.Rules {
		for _, k := range []string{r.ID, r.Name, r.Title} {
			if k != "" {
				names[k] = r.Ref()
			}
		}
	}
	for _, r := range set.Correlations {
		for _, k := range []string{r.ID, r.Name, r.Title} {
			if k != "" {
				names[k] = r.Ref()
			}
		}
	}
	var results []Result
	for ci, c := range tf.Cases {
		res := Result{File: file, Case: c.Name}
		if res.Case == "" {
			res.Case = fmt.Sprintf("case %d", ci+1)
		}
		fail := func(format string, args ...any) { res.Failures = append(res.Failures, fmt.Sprintf(format, args...)) }
		var inputs [][]byte
		for _, e := range c.Events {
			b, err := json.Marshal(e)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: event: %w", file, res.Case, err)
			}
			inputs = append(inputs, b)
		}
		if c.EventsFile != "" {
			data, err := fs.ReadFile(fsys, path.Join(dir, c.EventsFile))
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", file, res.Case, err)
			}
			sc := bufio.NewScanner(bytes.NewReader(data))
			sc.Buffer(make([]byte, 1<<20), 16<<20)
			for sc.Scan() {
				if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
					inputs = append(inputs, append([]byte(nil), line...))
				}
			}
		}
		run, err := set.NewRunner()
		if err != nil {
			return nil, err
		}
		got := map[string]int{}
		for i, in := range inputs {
			e, err := ruleset.DecodeEvent(in)
			if err != nil {
				fail("event %d: %v", i+1, err)
				continue
			}
			ms, alerts := run.Process(e)
			for _, m := range ms {
				got[m.Rule.Ref()]++
			}
			for _, a := range alerts {
				got[a.Rule.Ref()]++
			}
		}
		for _, a := range run.Flush() {
			got[a.Rule.Ref()]++
		}
		want := map[string]int{}
		for _, x := range c.Expect {
			label, ok := names[x.Rule]
			if !ok {
				fail("expected rule %q is not loaded", x.Rule)
				continue
			}
			n := 1
			if x.Count != nil {
				n = *x.Count
			}
			want[label] += n
		}
		var keys []string
		for k := range got {
			keys = append(keys, k)
		}
		for k := range want {
			if _, ok := got[k]; !ok {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			if got[k] != want[k] {
				fail("rule %s: %d matches, want %d", k, got[k], want[k])
			}
		}
		results = append(results, res)
	}
	return results, nil
}
