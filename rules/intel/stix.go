package intel

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
)

// tlpMarkings are the STIX 2.1 predefined TLP 1.0 marking definitions and
// the OASIS TLP 2.0 marking definitions (extension-definition--60a3c5c5-...).
var tlpMarkings = map[string]TLP{
	"marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9": TLPClear, // TLP:WHITE
	"marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da": TLPGreen,
	"marking-definition--f88d31f6-486f-44da-b317-01333bde0b82": TLPAmber,
	"marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed": TLPRed,
	"marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487": TLPClear, // TLP 2.0
	"marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb": TLPGreen,
	"marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421": TLPAmber,
	"marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003": TLPAmberStrict,
	"marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1": TLPRed,
}

// stixObject holds the properties of STIX objects this package reads.
type stixObject struct {
	Type           flexString      `json:"type"`
	ID             flexString      `json:"id"`
	Name           flexString      `json:"name"`
	Description    flexString      `json:"description"`
	Pattern        flexString      `json:"pattern"`
	PatternType    flexString      `json:"pattern_type"`
	ValidFrom      flexString      `json:"valid_from"`
	ValidUntil     flexString      `json:"valid_until"`
	Created        flexString      `json:"created"`
	Modified       flexString      `json:"modified"`
	Confidence     flexString      `json:"confidence"`
	Revoked        flexBool        `json:"revoked"`
	Labels         flexTags        `json:"labels"`
	IndicatorTypes flexTags        `json:"indicator_types"`
	MarkingRefs    []flexString    `json:"object_marking_refs"`
	DefinitionType flexString      `json:"definition_type"`
	Definition     json.RawMessage `json:"definition"`
	Extensions     json.RawMessage `json:"extensions"`
}

// ParseSTIX reads STIX 2.1 (and 2.0) content: a bundle, a TAXII envelope,
// a list of objects or a single object. Indicator objects with pattern
// type "stix" give one indicator per single-observable alternative of
// their pattern (see docs/intel.md); the rest is skipped with a warning.
// valid_from and valid_until give first seen and expiry, confidence is
// kept, object_marking_refs pointing at TLP marking definitions (the
// predefined ones or definitions in the same input) give the TLP.
func ParseSTIX(r io.Reader, opts Options) ([]Indicator, []Warning, error) {
	c := newCollector(FormatSTIX, opts)
	data, err := readAll(FormatSTIX, r, c.opts.MaxBytes)
	if err != nil {
		return nil, nil, err
	}
	objs, parent, err := stixObjects(FormatSTIX, data)
	if err != nil {
		return nil, nil, err
	}
	if err := parseSTIXObjects(c, objs, parent); err != nil {
		return nil, nil, err
	}
	out, warns := c.result()
	return out, warns, nil
}

// stixObjects finds the object list of a bundle, envelope, list or single
// object.
func stixObjects(f Format, data []byte) ([]json.RawMessage, string, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, "", &ParseError{Format: f, Msg: "empty input (want a STIX bundle)"}
	}
	if trimmed[0] == '[' {
		var objs []json.RawMessage
		if err := decodeJSON(f, data, &objs, "a list of STIX objects"); err != nil {
			return nil, "", err
		}
		return objs, "", nil
	}
	var top struct {
		Type    flexString        `json:"type"`
		ID      flexString        `json:"id"`
		Objects []json.RawMessage `json:"objects"`
	}
	if err := decodeJSON(f, data, &top, "a STIX bundle"); err != nil {
		return nil, "", err
	}
	switch {
	case top.Objects != nil:
		return top.Objects, string(top.ID), nil
	case top.Type == "bundle":
		return nil, string(top.ID), nil // an empty bundle
	case top.Type != "":
		return []json.RawMessage{data}, "", nil
	}
	return nil, "", &ParseError{Format: f, Msg: `no "objects" list and no "type": this is not a STIX bundle or object`}
}

func parseSTIXObjects(c *collector, raws []json.RawMessage, parent string) error {
	objs := make([]*stixObject, len(raws))
	markings := map[string]TLP{}
	for i, rm := range raws {
		var o stixObject
		if err := json.Unmarshal(rm, &o); err != nil {
			c.warn(0, fmt.Sprintf("objects[%d]", i), "skipped: %v", err)
			continue
		}
		objs[i] = &o
		if o.Type == "marking-definition" {
			if t, ok := markingTLP(&o); ok {
				markings[string(o.ID)] = t
			}
		}
	}
	patternTypes := map[string]int{}
	revoked := 0
	for i, o := range objs {
		if o == nil || o.Type != "indicator" {
			continue
		}
		where := fmt.Sprintf("objects[%d] %s", i, truncate(string(o.ID), 80))
		if o.Revoked {
			revoked++
			continue
		}
		pt := strings.ToLower(string(o.PatternType))
		if pt != "" && pt != "stix" {
			if len(patternTypes) < 64 {
				patternTypes[pt]++
			}
			continue
		}
		res, err := parsePattern(string(o.Pattern))
		if err != nil {
			c.warn(0, where, "skipped: %v", err)
			continue
		}
		if len(res.dropped) > 0 {
			verb := "skipped"
			if len(res.atoms) > 0 {
				verb = "kept the other alternatives"
			}
			c.warn(0, where, "%s: %s", verb, strings.Join(dedupe(res.dropped), "; "))
		}
		if len(res.atoms) == 0 {
			continue
		}
		var tlp TLP
		for _, m := range o.MarkingRefs {
			if t, ok := tlpMarkings[string(m)]; ok {
				tlp = tlp.Stricter(t)
			} else if t, ok := markings[string(m)]; ok {
				tlp = tlp.Stricter(t)
			}
		}
		conf := -1
		if n, ok := parseConfidence(string(o.Confidence)); ok {
			conf = n
		}
		first, _ := parseTime(string(o.ValidFrom))
		if first.IsZero() {
			first, _ = parseTime(string(o.Created))
		}
		last, _ := parseTime(string(o.Modified))
		expires, _ := parseTime(string(o.ValidUntil))
		var tags []string
		for _, t := range o.IndicatorTypes {
			tags = addTag(tags, t)
		}
		for _, t := range o.Labels {
			tags = addTag(tags, t)
		}
		desc := string(o.Description)
		if desc == "" {
			desc = string(o.Name)
		}
		for _, a := range res.atoms {
			if err := c.add(raw{
				typ: a.typ, value: a.value, confidence: conf, tlp: tlp, tags: tags, first: first, last: last,
				expires: expires, desc: desc,
				ref: Ref{Format: string(FormatSTIX), Parent: parent, ID: string(o.ID), Title: string(o.Name)},
			}, 0, where); err != nil {
				return err
			}
		}
	}
	if revoked > 0 {
		c.warn(0, "", "%d revoked indicators skipped", revoked)
	}
	pts := make([]string, 0, len(patternTypes))
	for t := range patternTypes {
		pts = append(pts, t)
	}
	sort.Strings(pts)
	for _, t := range pts {
		c.warn(0, "", "%d indicators with pattern_type %q skipped (only \"stix\" patterns are read)", patternTypes[t], t)
	}
	return nil
}

// markingTLP reads a TLP marking definition: STIX 2.0/2.1 definition_type
// "tlp" with definition.tlp, a TLP 2.0 extension (tlp_2_0), or a name
// "TLP:...".
func markingTLP(o *stixObject) (TLP, bool) {
	if o.DefinitionType == "tlp" && o.Definition != nil {
		var d struct {
			TLP flexString `json:"tlp"`
		}
		if json.Unmarshal(o.Definition, &d) == nil {
			if t, ok := ParseTLP(string(d.TLP)); ok {
				return t, true
			}
		}
	}
	if o.Extensions != nil {
		var ext map[string]struct {
			TLP2 flexString `json:"tlp_2_0"`
		}
		if json.Unmarshal(o.Extensions, &ext) == nil {
			for _, e := range ext {
				if t, ok := ParseTLP(string(e.TLP2)); ok {
					return t, true
				}
			}
		}
	}
	if strings.HasPrefix(strings.ToUpper(string(o.Name)), "TLP:") {
		return ParseTLP(string(o.Name))
	}
	return "", false
}

func dedupe(l []string) []string {
	var out []string
	for _, s := range l {
		out = addTag(out, s)
	}
	return out
}

// TAXIIPage is one page of a TAXII 2.1 collection's objects (the
// envelope of GET .../objects/): the indicators read from its objects and
// the paging state. The HTTP exchange is the caller's.
type TAXIIPage struct {
	Indicators []Indicator
	Warnings   []Warning
	More       bool   // more objects are available
	Next       string // the value for the next request's "next" parameter
}

// ParseTAXIIEnvelope reads a TAXII 2.1 envelope ({"more": bool, "next":
// "...", "objects": [...]}); objects are read as by ParseSTIX.
func ParseTAXIIEnvelope(r io.Reader, opts Options) (TAXIIPage, error) {
	c := newCollector(FormatTAXII, opts)
	data, err := readAll(FormatTAXII, r, c.opts.MaxBytes)
	if err != nil {
		return TAXIIPage{}, err
	}
	var env struct {
		More    flexBool          `json:"more"`
		Next    flexString        `json:"next"`
		Objects []json.RawMessage `json:"objects"`
	}
	if err := decodeJSON(FormatTAXII, data, &env, "a TAXII 2.1 envelope"); err != nil {
		return TAXIIPage{}, err
	}
	if err := parseSTIXObjects(c, env.Objects, ""); err != nil {
		return TAXIIPage{}, err
	}
	out, warns := c.result()
	return TAXIIPage{Indicators: out, Warnings: warns, More: bool(env.More), Next: string(env.Next)}, nil
}
