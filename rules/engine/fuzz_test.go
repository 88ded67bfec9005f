package engine_test

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/rules/engine"
	"github.com/csirt-toscana/platform/rules/mapping"
	"github.com/csirt-toscana/platform/rules/sigma"
)

// matchesBoth evaluates with and without the literal prefilter; the two must
// agree.
func matchesBoth(t *testing.T, r *sigma.Rule, eventJSON []byte) {
	e, err := engine.DecodeLoose(eventJSON)
	if err != nil {
		return
	}
	var got [2]int
	for i, nopf := range []bool{false, true} {
		b, err := engine.CompileRules([]*sigma.Rule{r}, nil, engine.Options{Mapping: mapping.None(), NoPrefilter: nopf})
		if err != nil {
			return
		}
		got[i] = len(b.NewEvaluator().Eval(e, nil))
	}
	if got[0] != got[1] {
		t.Fatalf("prefilter changes the result: %d with, %d without", got[0], got[1])
	}
}

// FuzzRuleMatches parses a rule, compiles it and evaluates an event.
// Seeds include inputs from sigma-go's corpus (MIT, Copyright (c) 2020
// Bradley Kemp; see testdata/fuzz/NOTICE).
func FuzzRuleMatches(f *testing.F) {
	f.Add("detection:\n  s:\n    a|contains: x\n  condition: s\n", `{"a":"axb"}`)
	f.Add("detection:\n  k: [evil, 'b*d']\n  condition: k\n", `{"m":"bad"}`)
	f.Fuzz(func(t *testing.T, rule, ev string) {
		r, err := sigma.ParseRule("fuzz.yml", []byte(rule), nil)
		if err != nil || !r.Supported() {
			return
		}
		matchesBoth(t, r, []byte(ev))
	})
}

// FuzzModifier applies a modifier chain to a value and matches a field
// value with it.
func FuzzModifier(f *testing.F) {
	for _, m := range []string{"contains", "startswith", "endswith", "contains|all", "base64", "base64offset|contains",
		"wide|base64offset|contains", "utf16le", "utf16be", "utf16", "windash|contains", "re", "re|i", "re|m|s", "cidr",
		"gt", "gte", "lt", "lte", "exists", "fieldref", "cased", "neq", "expand", "hour", "minute", "day", "week", "month", "year"} {
		f.Add(m, "x*y?z", "axbyczd")
	}
	f.Add("cidr", "10.0.0.0/8", "10.1.2.3")
	f.Add("re", "^a.*[0-9]{2}$", "abc12")
	f.Fuzz(func(t *testing.T, mods, value, field string) {
		key := "a"
		if mods != "" {
			key += "|" + mods
		}
		doc := map[string]any{"title": "fuzz", "detection": map[string]any{"s": map[string]any{key: value}, "condition": "s"}}
		y, err := yaml.Marshal(doc)
		if err != nil {
			return
		}
		r, err := sigma.ParseRule("fuzz.yml", y, &sigma.Options{Placeholders: map[string][]string{"p": {"v1", "v2"}}})
		if err != nil || !r.Supported() {
			return
		}
		ev, err := yamlToJSON(map[string]any{"a": field, "b": field})
		if err != nil {
			return
		}
		matchesBoth(t, r, ev)
	})
}

// schemaOnly keeps the fields an event of a closed dataset can carry.
func schemaOnly(e event.Event) event.Event {
	out := event.Event{}
	for k, v := range e {
		if _, ok := event.Lookup(k); ok || strings.HasPrefix(k, "labels.") {
			out[k] = v
		}
	}
	return out
}

// FuzzClosedDataset compiles a rule for the zeek dns logsource, whose
// dataset is closed, and evaluates a DNS event made of schema fields. The
// prefilter must not change the result; a rule the engine says nothing
// about matches exactly as with the dataset open; a rule evaluated on its
// other tests matches only where it matched with the dataset open.
func FuzzClosedDataset(f *testing.F) {
	f.Add("detection:\n  z: {Z: 0}\n  q: {query|contains: '.'}\n  condition: not z and q\n", `{"dns":{"question":{"name":"a.example.org"}}}`)
	f.Add("detection:\n  s: {query|endswith: '.onion.to'}\n  condition: s\n", `{"dns":{"question":{"name":"x.onion.to"}}}`)
	f.Add("detection:\n  s: {query: x}\n  z: {Z: 1}\n  condition: s or z\n", `{"dns":{"question":{"name":"x"}}}`)
	f.Add("detection:\n  k: [evil]\n  f: {rejected: 'T'}\n  condition: k and not f\n", `{"dns":{"question":{"name":"evil.example"}}}`)
	f.Add("detection:\n  s: {query|fieldref: answers}\n  condition: s\n", `{"dns":{"question":{"name":"a"},"answers":{"data":["a"]}}}`)
	open := openMapping()
	f.Fuzz(func(t *testing.T, rule, ev string) {
		r, err := sigma.ParseRule("fuzz.yml", []byte(rule), nil)
		if err != nil || !r.Supported() {
			return
		}
		r.LogSource = sigma.LogSource{Product: "zeek", Service: "dns"}
		loose, err := engine.DecodeLoose([]byte(ev))
		if err != nil {
			return
		}
		e := schemaOnly(loose)
		e["event.dataset"] = "dns"
		var got [2]int
		var b *engine.Bundle
		for i, nopf := range []bool{false, true} {
			b, err = engine.CompileRules([]*sigma.Rule{r}, nil, engine.Options{Mapping: mapping.Default(), NoPrefilter: nopf})
			if err != nil {
				return
			}
			got[i] = len(b.NewEvaluator().Eval(e, nil))
		}
		if got[0] != got[1] {
			t.Fatalf("prefilter changes the result: %d with, %d without", got[0], got[1])
		}
		ob, err := engine.CompileRules([]*sigma.Rule{r}, nil, engine.Options{Mapping: open})
		if err != nil {
			t.Fatalf("compiles with the dataset closed but not open: %v", err)
		}
		was := len(ob.NewEvaluator().Eval(e, nil))
		notes := b.ClosedNotes()
		switch {
		case len(notes) == 0 && got[0] != was:
			t.Fatalf("no field outside the schema, yet %d matches closed, %d open", got[0], was)
		case len(notes) > 0 && !notes[0].Evaluated && (got[0] != 0 || len(b.Skipped()) != 1):
			t.Fatalf("rule not evaluated (%s) but %d matches, skipped %v", notes[0].Reason, got[0], b.Skipped())
		case got[0] > was:
			t.Fatalf("%d matches closed, only %d open (%v)", got[0], was, notes)
		}
	})
}
