package correlation

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// IsCorrelation reports whether a YAML document (a document node or its
// mapping) is a correlation rule: a mapping with a top-level `correlation`
// key.
func IsCorrelation(doc *yaml.Node) bool {
	doc = unwrap(doc)
	if doc == nil || doc.Kind != yaml.MappingNode {
		return false
	}
	for i := 0; i+1 < len(doc.Content); i += 2 {
		if doc.Content[i].Value == "correlation" {
			return true
		}
	}
	return false
}

func unwrap(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		n = n.Content[0]
	}
	return n
}

// ParseBytes parses every correlation document of a (multi-document) YAML
// file. Documents without a top-level `correlation` key (Sigma detection
// rules, filters) are skipped: they are the detection parser's. The first
// error is returned as a *ParseError.
func ParseBytes(data []byte, file string) ([]*Rule, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out []*Rule
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, yamlError(file, err)
		}
		if !IsCorrelation(&doc) {
			continue
		}
		r, err := Parse(&doc, file)
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
}

func yamlError(file string, err error) *ParseError {
	msg := err.Error()
	line := 0
	// yaml.v3 reports "yaml: line N: ..."
	if rest, ok := strings.CutPrefix(msg, "yaml: line "); ok {
		if n, after, ok := strings.Cut(rest, ":"); ok {
			if v, err := strconv.Atoi(n); err == nil {
				line = v
				msg = "invalid YAML:" + after
			}
		}
	}
	return &ParseError{File: file, Line: line, Col: 1, Msg: msg}
}

// Parse reads one correlation document (the document node or its mapping
// node). Unknown keys inside `correlation:` are errors; unknown top-level
// keys are allowed (Sigma lets rules carry custom attributes).
func Parse(doc *yaml.Node, file string) (*Rule, error) {
	p := parser{file: file}
	r := p.rule(unwrap(doc), doc)
	if p.err != nil {
		return nil, p.err
	}
	return r, nil
}

type parser struct {
	file string
	err  *ParseError
}

func (p *parser) fail(n *yaml.Node, format string, args ...any) {
	if p.err != nil {
		return
	}
	e := &ParseError{File: p.file, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Col = n.Line, n.Column
	}
	p.err = e
}

func pos(n *yaml.Node) Pos { return Pos{Line: n.Line, Col: n.Column} }

func (p *parser) str(key, n *yaml.Node) string {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.fail(n, "%s: want a string", key.Value)
		return ""
	}
	return n.Value
}

// strs reads a string or a list of strings.
func (p *parser) strs(key, n *yaml.Node) []string {
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		return []string{n.Value}
	}
	if n.Kind != yaml.SequenceNode {
		p.fail(n, "%s: want a list of strings", key.Value)
		return nil
	}
	out := make([]string, 0, len(n.Content))
	for _, it := range n.Content {
		if it.Kind != yaml.ScalarNode || it.Tag == "!!null" {
			p.fail(it, "%s: want a list of strings", key.Value)
			return nil
		}
		out = append(out, it.Value)
	}
	return out
}

func (p *parser) boolean(key, n *yaml.Node) bool {
	if n.Kind != yaml.ScalarNode {
		p.fail(n, "%s: want true or false", key.Value)
		return false
	}
	switch strings.ToLower(n.Value) {
	case "true", "yes":
		return true
	case "false", "no":
		return false
	}
	p.fail(n, "%s: want true or false, got %q", key.Value, n.Value)
	return false
}

func (p *parser) rule(m, doc *yaml.Node) *Rule {
	if m == nil {
		p.fail(doc, "empty document")
		return nil
	}
	if m.Kind != yaml.MappingNode {
		p.fail(m, "a correlation rule must be a mapping")
		return nil
	}
	r := &Rule{File: p.file, Pos: pos(m)}
	var corr *yaml.Node
	var corrKey *yaml.Node
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content) && p.err == nil; i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if seen[k.Value] {
			p.fail(k, "key %q given twice", k.Value)
			break
		}
		seen[k.Value] = true
		switch k.Value {
		case "title":
			r.Title = p.str(k, v)
		case "id":
			r.ID = p.str(k, v)
		case "name":
			r.Name = p.str(k, v)
		case "status":
			r.Status = p.str(k, v)
		case "description":
			r.Description = p.str(k, v)
		case "author":
			r.Author = p.str(k, v)
		case "date":
			r.Date = p.str(k, v)
		case "modified":
			r.Modified = p.str(k, v)
		case "taxonomy":
			r.Taxonomy = p.str(k, v)
		case "level":
			r.Level = p.str(k, v)
			switch r.Level {
			case "informational", "low", "medium", "high", "critical":
			default:
				p.fail(v, "level: %q is not one of informational, low, medium, high, critical", r.Level)
			}
		case "references":
			r.References = p.strs(k, v)
		case "tags":
			r.Tags = p.strs(k, v)
		case "fields":
			r.Fields = p.strs(k, v)
		case "falsepositives":
			r.Falsepositives = p.strs(k, v)
		case "generate":
			r.Generate = p.boolean(k, v)
		case "correlation":
			corrKey, corr = k, v
		case "logsource", "detection":
			p.fail(k, "a correlation rule cannot have %q (that is a detection rule)", k.Value)
		}
	}
	if p.err != nil {
		return nil
	}
	if corr == nil {
		p.fail(m, "missing correlation section")
		return nil
	}
	p.section(r, corrKey, corr)
	if p.err != nil {
		return nil
	}
	return r
}

func (p *parser) section(r *Rule, key, c *yaml.Node) {
	if c.Kind != yaml.MappingNode {
		p.fail(c, "correlation: want a mapping")
		return
	}
	var typeNode, rulesNode, tsNode, condNode *yaml.Node
	seen := map[string]bool{}
	for i := 0; i+1 < len(c.Content) && p.err == nil; i += 2 {
		k, v := c.Content[i], c.Content[i+1]
		if seen[k.Value] {
			p.fail(k, "correlation: key %q given twice", k.Value)
			return
		}
		seen[k.Value] = true
		switch k.Value {
		case "type":
			typeNode = v
			r.Type = Type(p.str(k, v))
			r.TypePos = pos(v)
		case "rules":
			rulesNode = v
			p.rules(r, v)
		case "group-by":
			r.GroupBy = p.strs(k, v)
			r.GroupByPos = pos(v)
		case "timespan":
			tsNode = v
			r.Timespan = p.timespan(k, v)
			r.TimespanPos = pos(v)
		case "condition":
			condNode = v
			p.condition(r, v)
		case "aliases":
			p.aliases(r, v)
		case "generate":
			r.Generate = p.boolean(k, v)
		default:
			p.fail(k, "correlation: unknown key %q (want type, rules, group-by, timespan, condition, aliases, generate)", k.Value)
		}
	}
	if p.err != nil {
		return
	}
	switch {
	case typeNode == nil:
		p.fail(c, "correlation: missing type (one of %s)", typeList())
	case !r.Type.valid():
		p.fail(typeNode, "correlation: unknown type %q (want one of %s)", r.Type, typeList())
	case rulesNode == nil:
		p.fail(c, "correlation: missing rules")
	case len(r.Rules) == 0:
		p.fail(rulesNode, "correlation: rules is empty")
	case tsNode == nil:
		p.fail(c, "correlation: missing timespan")
	case len(r.GroupBy) == 0 && !seen["group-by"]:
		p.fail(c, "correlation: missing group-by")
	case condNode == nil && !r.Type.temporal():
		p.fail(c, "correlation: %s needs a condition", r.Type)
	}
	if p.err != nil {
		return
	}
	if r.Type.needsField() && len(r.Condition.Field) == 0 {
		p.fail(condNode, "correlation: %s needs condition.field", r.Type)
		return
	}
	if !r.Type.needsField() && len(r.Condition.Field) > 0 {
		p.fail(condNode, "correlation: condition.field is only for value_count, value_sum, value_avg and value_percentile")
		return
	}
	if condNode != nil && len(r.Condition.Comparisons) == 0 {
		p.fail(condNode, "correlation: condition has no comparison (gt, gte, lt, lte, eq, neq)")
		return
	}
	if r.Type.temporal() && !r.Condition.Monotone() {
		p.fail(condNode, "correlation: a %s condition may only use gt or gte", r.Type)
		return
	}
	if r.Type == TemporalOrdered && len(r.Rules) < 2 && condNode == nil {
		p.fail(rulesNode, "correlation: temporal_ordered needs at least two rules")
		return
	}
	if r.Type != TemporalOrdered {
		seenRule := map[string]bool{}
		for i, ref := range r.Rules {
			if seenRule[ref] {
				p.fail(&yaml.Node{Line: r.RulesPos[i].Line, Column: r.RulesPos[i].Col}, "correlation.rules: %q listed twice", ref)
				return
			}
			seenRule[ref] = true
		}
	}
	seenGB := map[string]bool{}
	for _, g := range r.GroupBy {
		if seenGB[g] {
			p.fail(c, "correlation: group-by field %q given twice", g)
			return
		}
		seenGB[g] = true
	}
	for alias := range r.Aliases {
		if !seenGB[alias] {
			// An alias not used in group-by is allowed by the spec but is
			// almost always a typo: say so.
			p.fail(c, "correlation: alias %q is not used in group-by", alias)
			return
		}
	}
}

func typeList() string {
	s := make([]string, len(Types))
	for i, t := range Types {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

func (p *parser) rules(r *Rule, v *yaml.Node) {
	items := []*yaml.Node{v}
	if v.Kind == yaml.SequenceNode {
		items = v.Content
	}
	for _, it := range items {
		if it.Kind != yaml.ScalarNode || it.Tag == "!!null" || it.Value == "" {
			p.fail(it, "correlation.rules: want a list of rule ids or names")
			return
		}
		r.Rules = append(r.Rules, it.Value)
		r.RulesPos = append(r.RulesPos, pos(it))
	}
}

// ParseTimespan reads a Sigma timespan: a positive integer followed by s, m,
// h or d (lower case), e.g. 90m.
func ParseTimespan(s string) (time.Duration, error) {
	if len(s) < 2 {
		return 0, fmt.Errorf("timespan %q: want a number followed by s, m, h or d (e.g. 10m)", s)
	}
	unit := map[byte]time.Duration{'s': time.Second, 'm': time.Minute, 'h': time.Hour, 'd': 24 * time.Hour}[s[len(s)-1]]
	n, err := strconv.ParseUint(s[:len(s)-1], 10, 32)
	if unit == 0 || err != nil || n == 0 {
		return 0, fmt.Errorf("timespan %q: want a positive number followed by s, m, h or d (e.g. 10m)", s)
	}
	return time.Duration(n) * unit, nil
}

func (p *parser) timespan(k, v *yaml.Node) time.Duration {
	s := p.str(k, v)
	if p.err != nil {
		return 0
	}
	d, err := ParseTimespan(s)
	if err != nil {
		p.fail(v, "correlation.%v", err)
	}
	return d
}

func (p *parser) condition(r *Rule, v *yaml.Node) {
	r.Condition.Pos = pos(v)
	if v.Kind != yaml.MappingNode {
		p.fail(v, "correlation.condition: want a mapping such as {gte: 10}")
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := v.Content[i], v.Content[i+1]
		if seen[k.Value] {
			p.fail(k, "correlation.condition: %q given twice", k.Value)
			return
		}
		seen[k.Value] = true
		switch op := Op(k.Value); op {
		case GT, GTE, LT, LTE, EQ, NEQ:
			if val.Kind != yaml.ScalarNode {
				p.fail(val, "correlation.condition.%s: want a number", op)
				return
			}
			f, err := strconv.ParseFloat(val.Value, 64)
			if err != nil {
				p.fail(val, "correlation.condition.%s: %q is not a number", op, val.Value)
				return
			}
			r.Condition.Comparisons = append(r.Condition.Comparisons, Comparison{Op: op, Value: f, Pos: pos(k)})
		case "field":
			r.Condition.Field = p.strs(k, val)
			if len(r.Condition.Field) == 0 && p.err == nil {
				p.fail(val, "correlation.condition.field is empty")
			}
		default:
			p.fail(k, "correlation.condition: unknown key %q (want gt, gte, lt, lte, eq, neq, field)", k.Value)
			return
		}
	}
}

func (p *parser) aliases(r *Rule, v *yaml.Node) {
	r.AliasesPos = pos(v)
	if v.Kind != yaml.MappingNode {
		p.fail(v, "correlation.aliases: want a mapping alias -> rule -> field")
		return
	}
	r.Aliases = map[string]map[string]string{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, m := v.Content[i], v.Content[i+1]
		if _, dup := r.Aliases[k.Value]; dup {
			p.fail(k, "correlation.aliases: %q given twice", k.Value)
			return
		}
		if m.Kind != yaml.MappingNode {
			p.fail(m, "correlation.aliases.%s: want a mapping rule -> field", k.Value)
			return
		}
		fields := map[string]string{}
		for j := 0; j+1 < len(m.Content); j += 2 {
			rk, fv := m.Content[j], m.Content[j+1]
			if fv.Kind != yaml.ScalarNode || fv.Value == "" {
				p.fail(fv, "correlation.aliases.%s.%s: want a field name", k.Value, rk.Value)
				return
			}
			fields[rk.Value] = fv.Value
		}
		r.Aliases[k.Value] = fields
	}
}
