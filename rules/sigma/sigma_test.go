package sigma

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/csirt-toscana/platform/internal/testenv"
)

func TestParsePattern(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // Pattern.String
	}{
		{`abc`, `abc`},
		{`*\cmd.exe`, `*\\cmd.exe`},
		{`a\*b`, `a\*b`},
		{`a\\*b`, `a\\*b`}, // backslash then wildcard
		{`a\\\*b`, `a\\\*b`},
		{`\\\\server`, `\\\\server`},
		{`a?b**c`, `a?b*c`},
		{`C:\Windows\`, `C:\\Windows\\`},
	} {
		got := ParsePattern(tc.in).String()
		if got != tc.want {
			t.Errorf("ParsePattern(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	// `a\\*b`: literal backslash followed by a wildcard.
	p := ParsePattern(`a\\*b`)
	if len(p) != 3 || p[0].Lit != `a\` || p[1].Kind != TokStar {
		t.Errorf("a\\\\*b parsed as %#v", p)
	}
}

func TestModifiers(t *testing.T) {
	rule := func(field string, values ...string) string {
		s := "title: t\nlogsource: {product: x}\ndetection:\n  sel:\n    " + field + ":\n"
		for _, v := range values {
			s += "      - '" + v + "'\n"
		}
		return s + "  condition: sel\n"
	}
	for _, tc := range []struct {
		field  string
		values []string
		check  func(t *testing.T, fm *FieldMatch)
	}{
		{"a|contains", []string{"x"}, func(t *testing.T, fm *FieldMatch) {
			if got := fm.Values[0].Alts[0].String(); got != "*x*" {
				t.Errorf("contains: %q", got)
			}
		}},
		{"a|startswith", []string{"x"}, func(t *testing.T, fm *FieldMatch) {
			if got := fm.Values[0].Alts[0].String(); got != "x*" {
				t.Errorf("startswith: %q", got)
			}
		}},
		{"a|endswith", []string{"x"}, func(t *testing.T, fm *FieldMatch) {
			if got := fm.Values[0].Alts[0].String(); got != "*x" {
				t.Errorf("endswith: %q", got)
			}
		}},
		{"a|base64", []string{"abc"}, func(t *testing.T, fm *FieldMatch) {
			if got := fm.Values[0].Alts[0].String(); got != "YWJj" {
				t.Errorf("base64: %q", got)
			}
		}},
		// pySigma's documented example: /bin/bash -> L2Jpbi9iYXNo, 9iaW4vYmFza, vYmluL2Jhc2
		{"a|base64offset|contains", []string{"/bin/bash"}, func(t *testing.T, fm *FieldMatch) {
			var got []string
			for _, p := range fm.Values[0].Alts {
				got = append(got, p.String())
			}
			want := []string{"*L2Jpbi9iYXNo*", "*9iaW4vYmFza*", "*vYmluL2Jhc2*"}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("base64offset: %q, want %q", got, want)
			}
		}},
		{"a|wide|base64", []string{"cmd"}, func(t *testing.T, fm *FieldMatch) {
			if got := fm.Values[0].Alts[0].String(); got != "YwBtAGQA" {
				t.Errorf("wide|base64: %q", got)
			}
		}},
		{"a|utf16be|base64", []string{"cmd"}, func(t *testing.T, fm *FieldMatch) {
			if got := fm.Values[0].Alts[0].String(); got != "AGMAbQBk" {
				t.Errorf("utf16be|base64: %q", got)
			}
		}},
		{"a|utf16|base64", []string{"cmd"}, func(t *testing.T, fm *FieldMatch) {
			if got := fm.Values[0].Alts[0].String(); got != "//5jAG0AZAA=" {
				t.Errorf("utf16|base64: %q", got)
			}
		}},
		{"a|windash|contains", []string{" -f "}, func(t *testing.T, fm *FieldMatch) {
			if got := fm.Values[0].Alts[0].String(); got != "* [-/]f *" {
				t.Errorf("windash: %q", got)
			}
		}},
		{"a|re|i", []string{"^ab+c$"}, func(t *testing.T, fm *FieldMatch) {
			v := fm.Values[0]
			if v.Kind != KindRegex || !v.Regex.MatchString("ABBC") {
				t.Errorf("re|i: %v", v.Regex)
			}
		}},
		{"a|cidr", []string{"10.0.0.0/8"}, func(t *testing.T, fm *FieldMatch) {
			if fm.Values[0].Kind != KindCIDR || fm.Values[0].Prefix.String() != "10.0.0.0/8" {
				t.Errorf("cidr: %+v", fm.Values[0])
			}
		}},
		{"a|gte", []string{"5"}, func(t *testing.T, fm *FieldMatch) {
			if v := fm.Values[0]; v.Kind != KindCompare || v.Op != OpGTE || v.Num != 5 {
				t.Errorf("gte: %+v", v)
			}
		}},
		{"a|contains|all", []string{"x", "y"}, func(t *testing.T, fm *FieldMatch) {
			if !fm.All || len(fm.Values) != 2 {
				t.Errorf("all: %+v", fm)
			}
		}},
		{"a|exists", []string{"true"}, func(t *testing.T, fm *FieldMatch) {
			if v := fm.Values[0]; v.Kind != KindExists || !v.Exists {
				t.Errorf("exists: %+v", v)
			}
		}},
		{"a|fieldref", []string{"b"}, func(t *testing.T, fm *FieldMatch) {
			if v := fm.Values[0]; v.Kind != KindFieldRef || v.Ref != "b" {
				t.Errorf("fieldref: %+v", v)
			}
		}},
		{"a|hour", []string{"3"}, func(t *testing.T, fm *FieldMatch) {
			if v := fm.Values[0]; v.Kind != KindTimePart || v.TimePart != "hour" || v.Num != 3 {
				t.Errorf("hour: %+v", v)
			}
		}},
		{"a|cased|neq", []string{"X"}, func(t *testing.T, fm *FieldMatch) {
			if !fm.Neq || !fm.Values[0].Cased {
				t.Errorf("cased|neq: %+v", fm)
			}
		}},
	} {
		r, err := ParseRule("t.yml", []byte(rule(tc.field, tc.values...)), nil)
		if err != nil {
			t.Errorf("%s: %v", tc.field, err)
			continue
		}
		if !r.Supported() {
			t.Errorf("%s: unsupported: %v", tc.field, r.Unsupported)
			continue
		}
		tc.check(t, r.Detection.Searches["sel"].Alts[0][0])
	}
}

func TestUnsupportedAndErrors(t *testing.T) {
	for _, tc := range []struct {
		name, doc   string
		unsupported string // substring of the reason
		err         string // substring of the error
		line, col   int
	}{
		{name: "placeholder", doc: "title: t\ndetection:\n  sel:\n    a|expand: '%Servers%'\n  condition: sel\n", unsupported: "%Servers%"},
		{name: "aggregation", doc: "title: t\ndetection:\n  sel:\n    a: x\n  condition: sel | count() by b > 3\n", unsupported: "aggregation"},
		{name: "lookahead", doc: "title: t\ndetection:\n  sel:\n    a|re: 'x(?=y)'\n  condition: sel\n", unsupported: "RE2"},
		{name: "unknown modifier", doc: "title: t\ndetection:\n  sel:\n    a|frobnicate: x\n  condition: sel\n", unsupported: "frobnicate"},
		{name: "unknown search", doc: "title: t\ndetection:\n  sel:\n    a: x\n  condition: sel and other\n", err: "unknown search identifier", line: 5, col: 22},
		{name: "no condition", doc: "title: t\ndetection:\n  sel:\n    a: x\n", err: "no condition", line: 3, col: 3},
		{name: "bad yaml", doc: "title: t\ndetection: [\n", err: "invalid YAML"},
		{name: "bad cidr", doc: "title: t\ndetection:\n  sel:\n    a|cidr: nonsense\n  condition: sel\n", err: "cidr", line: 4, col: 5},
		{name: "base64 wildcard", doc: "title: t\ndetection:\n  sel:\n    a|base64: 'x*'\n  condition: sel\n", err: "wildcards"},
		{name: "paren", doc: "title: t\ndetection:\n  sel:\n    a: x\n  condition: (sel\n", err: "missing )"},
	} {
		r, err := ParseRule("t.yml", []byte(tc.doc), nil)
		if tc.err != "" {
			var pe *ParseError
			if !errors.As(err, &pe) || !strings.Contains(pe.Msg, tc.err) {
				t.Errorf("%s: error %v, want *ParseError with %q", tc.name, err, tc.err)
				continue
			}
			if tc.line != 0 && (pe.Line != tc.line || pe.Col != tc.col) {
				t.Errorf("%s: at %d:%d, want %d:%d (%v)", tc.name, pe.Line, pe.Col, tc.line, tc.col, pe)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if r.Supported() || !strings.Contains(r.Unsupported[0].Reason, tc.unsupported) {
			t.Errorf("%s: unsupported = %v, want %q", tc.name, r.Unsupported, tc.unsupported)
		}
	}
}

func TestCondition(t *testing.T) {
	names := []string{"sel1", "sel2", "filter_a", "filter_b", "_hidden", "kw"}
	for _, tc := range []struct{ in, want string }{
		{"sel1", "sel1"},
		{"sel1 and not sel2", "and(sel1,not(sel2))"},
		{"sel1 or sel2 and kw", "or(sel1,and(sel2,kw))"},
		{"(sel1 or sel2) and kw", "and(or(sel1,sel2),kw)"},
		{"1 of sel*", "or(sel1,sel2)"},
		{"all of sel* and not 1 of filter_*", "and(and(sel1,sel2),not(or(filter_a,filter_b)))"},
		{"1 of them", "or(sel1,sel2,filter_a,filter_b,kw)"},
		{"all of them", "and(sel1,sel2,filter_a,filter_b,kw)"},
		{"not not sel1", "not(not(sel1))"},
		{"sel1 AND NOT sel2", "and(sel1,not(sel2))"},
	} {
		e, err := ParseCondition(tc.in, names)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if got := exprString(e); got != tc.want {
			t.Errorf("%q = %s, want %s", tc.in, got, tc.want)
		}
	}
	for _, bad := range []string{"", "sel1 and", "sel1 sel2", "(sel1", "1 of nothing*", "sel1 $ sel2", "all sel1"} {
		if _, err := ParseCondition(bad, names); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func exprString(e Expr) string {
	join := func(op string, xs []Expr) string {
		var parts []string
		for _, x := range xs {
			parts = append(parts, exprString(x))
		}
		return op + "(" + strings.Join(parts, ",") + ")"
	}
	switch x := e.(type) {
	case And:
		return join("and", x.X)
	case Or:
		return join("or", x.X)
	case Not:
		return "not(" + exprString(x.X) + ")"
	case Ref:
		return x.Name
	}
	return "?"
}

func TestCollectionActions(t *testing.T) {
	doc := `action: global
title: base
logsource: {product: linux}
detection:
  condition: sel
---
id: a
detection:
  sel: {f: x}
---
action: repeat
id: b
detection:
  sel: {f: y}
---
action: reset
---
title: filter
logsource: {product: linux}
filter:
  rules: [a]
  selection: {u: root}
  condition: selection
---
title: corr
correlation:
  type: event_count
  rules: [a]
  timespan: 1m
  condition: {gte: 2}
`
	f, err := ParseFile("c.yml", []byte(doc), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Rules) != 2 || len(f.Filters) != 1 || len(f.Correlations) != 1 {
		t.Fatalf("rules %d filters %d correlations %d", len(f.Rules), len(f.Filters), len(f.Correlations))
	}
	for i, want := range []string{"x", "y"} {
		r := f.Rules[i]
		if r.Title != "base" || r.LogSource.Product != "linux" {
			t.Errorf("rule %d: global not applied: %+v", i, r)
		}
		if got := r.Detection.Searches["sel"].Alts[0][0].Values[0].Raw; got != want {
			t.Errorf("rule %d: value %q, want %q", i, got, want)
		}
	}
	if fl := f.Filters[0]; !reflect.DeepEqual(fl.Rules, []string{"a"}) || fl.Detection.Searches["selection"] == nil {
		t.Errorf("filter: %+v", fl)
	}
	if f.Correlations[0].Pos.Line != 25 {
		t.Errorf("correlation at line %d", f.Correlations[0].Pos.Line)
	}
}

// Every document of the specification's schema tests is accepted: rules and
// filters here, correlations kept for rules/correlation (which parses them
// in its own tests).
func TestSpecSchemaDocuments(t *testing.T) {
	dir := filepath.Join(testenv.SharedData(t), "sigma-spec", "tests", "schema")
	c, err := LoadFS(os.DirFS(dir), ".", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range c.Errors {
		t.Error(e)
	}
	for _, r := range c.Rules {
		if !r.Supported() {
			t.Errorf("%s: %v", r.File, r.Unsupported)
		}
	}
	for _, f := range c.Filters {
		if !f.Supported() || len(f.Rules) == 0 {
			t.Errorf("%s: %+v", f.File, f)
		}
	}
	if len(c.Rules) != 2 || len(c.Filters) != 2 || len(c.Correlations) != 8 {
		t.Errorf("rules %d filters %d correlations %d, want 2, 2, 8", len(c.Rules), len(c.Filters), len(c.Correlations))
	}
}

func TestYAMLAliases(t *testing.T) {
	doc := "title: t\ndetection:\n  a: &vals\n    f: [x, y]\n  b: *vals\n  condition: a and b\n"
	r, err := ParseRule("t.yml", []byte(doc), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(r.Detection.Searches["b"].Alts[0][0].Values); got != 2 {
		t.Errorf("alias search has %d values", got)
	}
}
