package sigma

import (
	"errors"
	"testing"
)

// FuzzParseFile: any input parses or fails with a positioned *ParseError,
// never panics. Seeds include inputs from sigma-go's corpus (MIT, Copyright
// (c) 2020 Bradley Kemp; see testdata/fuzz/NOTICE).
func FuzzParseFile(f *testing.F) {
	f.Add("title: t\nlogsource: {product: linux}\ndetection:\n  s: {a|contains|all: [x, y]}\n  k: [evil]\n  condition: s or k\n")
	f.Add("action: global\ndetection:\n  condition: s\n---\ndetection:\n  s: {a: x}\n---\naction: repeat\ndetection:\n  s: {a: y}\n")
	f.Fuzz(func(t *testing.T, doc string) {
		file, err := ParseFile("fuzz.yml", []byte(doc), &Options{SlashRegexKeywords: true})
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T %v is not a *ParseError", err, err)
			}
			return
		}
		for _, r := range file.Rules {
			if r.Supported() && r.Detection.Condition == nil {
				t.Fatalf("supported rule without condition")
			}
		}
	})
}

// FuzzCondition: the condition grammar never panics and only refers to
// declared search identifiers.
func FuzzCondition(f *testing.F) {
	for _, s := range []string{"sel", "sel and not filter", "1 of sel* or all of them", "(sel or (kw and not filter_1))", "all of filter_*", "sel | count() > 5", "not not sel"} {
		f.Add(s)
	}
	names := []string{"sel", "sel2", "filter_1", "filter_2", "kw", "_x"}
	f.Fuzz(func(t *testing.T, cond string) {
		e, err := ParseCondition(cond, names)
		if err != nil {
			return
		}
		for _, r := range Refs(e) {
			found := false
			for _, n := range names {
				found = found || n == r
			}
			if !found {
				t.Fatalf("reference to undeclared %q", r)
			}
		}
	})
}

// FuzzPattern: a parsed pattern written back parses to the same pattern.
func FuzzPattern(f *testing.F) {
	for _, s := range []string{`*\cmd.exe`, `a\*b`, `a\\*b`, `\\\\srv\share`, `x?y*`, `\`, `\\\*`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p := ParsePattern(s)
		q := ParsePattern(p.String())
		if p.String() != q.String() {
			t.Fatalf("%q: %q then %q", s, p.String(), q.String())
		}
	})
}
