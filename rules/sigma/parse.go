package sigma

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// DocKind says what a YAML document of a rule file is.
type DocKind uint8

// Document kinds.
const (
	DocRule DocKind = iota
	DocFilter
	DocCorrelation
)

// File is what one rule file holds, in document order.
type File struct {
	Rules        []*Rule
	Filters      []*Filter
	Correlations []*RawDocument
	// Skipped lists documents that are not Sigma at all (no detection,
	// logsource, correlation or filter key: a pipeline configuration, test
	// metadata). They are reported, not parsed and not counted as rules.
	Skipped []Skipped
}

// Skipped is a YAML document that is not a Sigma rule, filter or correlation.
type Skipped struct {
	Pos    Pos
	Reason string
}

// MaxDocuments bounds the documents read from one file.
const MaxDocuments = 10000

// ParseFile reads every YAML document of a rule file. Documents with
// `action: global` are merged into the following documents until `action:
// reset`; `action: repeat` repeats the previous document with its own keys
// laid over it (the rule collections of the Sigma specification). It stops at
// the first malformed document and returns a *ParseError.
func ParseFile(file string, data []byte, opts *Options) (*File, error) {
	if opts == nil {
		opts = &Options{}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	out := &File{}
	var global, prev *yaml.Node
	for n := 0; ; n++ {
		if n >= MaxDocuments {
			return out, &ParseError{File: file, Msg: fmt.Sprintf("more than %d documents", MaxDocuments)}
		}
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return out, yamlError(file, err)
		}
		if len(doc.Content) == 0 {
			continue
		}
		root := doc.Content[0]
		if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
			continue
		}
		if root.Kind != yaml.MappingNode {
			return out, errAt(file, root, "a rule document must be a mapping")
		}
		if a := lookup(root, "action"); a != nil {
			switch a.Value {
			case "global":
				global = withoutKey(root, "action")
				continue
			case "reset":
				global = nil
				continue
			case "repeat":
				if prev == nil {
					return out, errAt(file, a, "action: repeat without a previous document")
				}
				root = merge(prev, withoutKey(root, "action"))
			default:
				return out, errAt(file, a, "unknown action %q (want global, reset or repeat)", a.Value)
			}
		} else if global != nil {
			root = merge(global, root)
		}
		prev = root
		if lookup(root, "detection") == nil && lookup(root, "logsource") == nil &&
			lookup(root, "correlation") == nil && lookup(root, "filter") == nil {
			out.Skipped = append(out.Skipped, Skipped{Pos: posOf(root),
				Reason: "not a Sigma document (no detection, logsource, correlation or filter key)"})
			continue
		}
		switch {
		case lookup(root, "correlation") != nil:
			out.Correlations = append(out.Correlations, &RawDocument{File: file, Pos: posOf(root), Node: root})
		case lookup(root, "filter") != nil && lookup(root, "detection") == nil:
			f, err := parseFilter(file, root, opts)
			if err != nil {
				return out, err
			}
			out.Filters = append(out.Filters, f)
		default:
			r, err := parseRule(file, root, opts)
			if err != nil {
				return out, err
			}
			out.Rules = append(out.Rules, r)
		}
	}
	return out, nil
}

// ParseRule parses a file that must hold exactly one detection rule.
func ParseRule(file string, data []byte, opts *Options) (*Rule, error) {
	f, err := ParseFile(file, data, opts)
	if err != nil {
		return nil, err
	}
	if len(f.Rules) != 1 || len(f.Filters) != 0 || len(f.Correlations) != 0 {
		return nil, &ParseError{File: file, Line: 1, Col: 1, Msg: fmt.Sprintf("want one detection rule, found %d rules, %d filters, %d correlations", len(f.Rules), len(f.Filters), len(f.Correlations))}
	}
	return f.Rules[0], nil
}

func yamlError(file string, err error) *ParseError {
	msg := err.Error()
	line := 0
	// yaml.v3 messages read "yaml: line N: ..."
	if rest, ok := strings.CutPrefix(msg, "yaml: line "); ok {
		if i := strings.IndexByte(rest, ':'); i > 0 {
			if n, err := strconv.Atoi(rest[:i]); err == nil {
				line = n
				msg = strings.TrimSpace(rest[i+1:])
			}
		}
	}
	return &ParseError{File: file, Line: line, Col: 1, Msg: "invalid YAML: " + msg}
}

// lookup returns the value of key in a mapping node.
func lookup(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func withoutKey(m *yaml.Node, key string) *yaml.Node {
	c := *m
	c.Content = nil
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value != key {
			c.Content = append(c.Content, m.Content[i], m.Content[i+1])
		}
	}
	return &c
}

// merge lays over on base: mappings merge key by key, anything else is
// replaced.
func merge(base, over *yaml.Node) *yaml.Node {
	if base == nil {
		return over
	}
	if base.Kind != yaml.MappingNode || over.Kind != yaml.MappingNode {
		return over
	}
	out := *base
	out.Content = append([]*yaml.Node(nil), base.Content...)
	for i := 0; i+1 < len(over.Content); i += 2 {
		k, v := over.Content[i], over.Content[i+1]
		replaced := false
		for j := 0; j+1 < len(out.Content); j += 2 {
			if out.Content[j].Value == k.Value {
				out.Content[j+1] = merge(out.Content[j+1], v)
				replaced = true
				break
			}
		}
		if !replaced {
			out.Content = append(out.Content, k, v)
		}
	}
	out.Line, out.Column = over.Line, over.Column
	return &out
}

func scalarString(file string, n *yaml.Node, what string) (string, error) {
	if n == nil {
		return "", nil
	}
	if n.Kind != yaml.ScalarNode {
		return "", errAt(file, n, "%s must be a string", what)
	}
	if n.Tag == "!!null" {
		return "", nil
	}
	return n.Value, nil
}

func stringList(file string, n *yaml.Node, what string) ([]string, error) {
	if n == nil {
		return nil, nil
	}
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return nil, nil
		}
		return []string{n.Value}, nil
	case yaml.SequenceNode:
		out := make([]string, 0, len(n.Content))
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return nil, errAt(file, c, "%s must be a list of strings", what)
			}
			out = append(out, c.Value)
		}
		return out, nil
	}
	return nil, errAt(file, n, "%s must be a list of strings", what)
}

func parseLogSource(file string, n *yaml.Node) (LogSource, error) {
	var ls LogSource
	if n == nil {
		return ls, nil
	}
	if n.Kind != yaml.MappingNode {
		return ls, errAt(file, n, "logsource must be a mapping")
	}
	var err error
	for _, f := range []struct {
		key string
		dst *string
	}{{"product", &ls.Product}, {"category", &ls.Category}, {"service", &ls.Service}, {"definition", &ls.Definition}} {
		if *f.dst, err = scalarString(file, lookup(n, f.key), "logsource."+f.key); err != nil {
			return ls, err
		}
	}
	return ls, nil
}

func parseRule(file string, root *yaml.Node, opts *Options) (*Rule, error) {
	r := &Rule{File: file, Pos: posOf(root), Node: root}
	var err error
	for _, f := range []struct {
		key string
		dst *string
	}{
		{"id", &r.ID}, {"name", &r.Name}, {"title", &r.Title}, {"status", &r.Status},
		{"description", &r.Description}, {"author", &r.Author}, {"date", &r.Date},
		{"modified", &r.Modified}, {"level", &r.Level},
	} {
		if *f.dst, err = scalarString(file, lookup(root, f.key), f.key); err != nil {
			return nil, err
		}
	}
	for _, f := range []struct {
		key string
		dst *[]string
	}{{"tags", &r.Tags}, {"references", &r.References}, {"falsepositives", &r.FalsePositives}, {"fields", &r.Fields}} {
		if *f.dst, err = stringList(file, lookup(root, f.key), f.key); err != nil {
			return nil, err
		}
	}
	if r.LogSource, err = parseLogSource(file, lookup(root, "logsource")); err != nil {
		return nil, err
	}
	det := lookup(root, "detection")
	if det == nil {
		return nil, errAt(file, root, "rule has no detection section")
	}
	r.Detection, r.Unsupported, err = parseDetection(file, det, opts, "condition")
	if err != nil {
		return nil, err
	}
	return r, nil
}

func parseFilter(file string, root *yaml.Node, opts *Options) (*Filter, error) {
	f := &Filter{File: file, Pos: posOf(root), Node: root}
	var err error
	for _, fl := range []struct {
		key string
		dst *string
	}{{"id", &f.ID}, {"title", &f.Title}, {"description", &f.Description}} {
		if *fl.dst, err = scalarString(file, lookup(root, fl.key), fl.key); err != nil {
			return nil, err
		}
	}
	if f.LogSource, err = parseLogSource(file, lookup(root, "logsource")); err != nil {
		return nil, err
	}
	fn := lookup(root, "filter")
	if fn.Kind != yaml.MappingNode {
		return nil, errAt(file, fn, "filter must be a mapping")
	}
	rn := lookup(fn, "rules")
	if rn == nil {
		return nil, errAt(file, fn, "filter has no rules list")
	}
	if f.Rules, err = stringList(file, rn, "filter.rules"); err != nil {
		return nil, err
	}
	f.Detection, f.Unsupported, err = parseDetection(file, withoutKey(fn, "rules"), opts, "condition")
	if err != nil {
		return nil, err
	}
	return f, nil
}

func parseDetection(file string, det *yaml.Node, opts *Options, condKey string) (*Detection, []Unsupported, error) {
	det = deref(det)
	if det == nil || det.Kind != yaml.MappingNode {
		return nil, nil, errAt(file, det, "detection must be a mapping")
	}
	d := &Detection{Searches: map[string]*Search{}}
	var unsup []Unsupported
	var condNode *yaml.Node
	for i := 0; i+1 < len(det.Content); i += 2 {
		k, v := det.Content[i], det.Content[i+1]
		switch k.Value {
		case condKey:
			condNode = v
			continue
		case "timeframe":
			unsup = append(unsup, Unsupported{Pos: posOf(k), Reason: "detection timeframe (Sigma 1 aggregation) is not supported; use a correlation rule"})
			continue
		}
		if _, dup := d.Searches[k.Value]; dup {
			return nil, nil, errAt(file, k, "duplicate search identifier %q", k.Value)
		}
		s, u, err := parseSearch(file, k, v, opts)
		if err != nil {
			return nil, nil, err
		}
		unsup = append(unsup, u...)
		d.Searches[k.Value] = s
		d.Order = append(d.Order, k.Value)
	}
	if condNode == nil {
		return nil, nil, errAt(file, det, "detection has no condition")
	}
	d.Pos = posOf(condNode)
	var conds []*yaml.Node
	switch condNode.Kind {
	case yaml.ScalarNode:
		conds = []*yaml.Node{condNode}
	case yaml.SequenceNode:
		conds = condNode.Content
	default:
		return nil, nil, errAt(file, condNode, "condition must be a string or a list of strings")
	}
	if len(conds) == 0 {
		return nil, nil, errAt(file, condNode, "empty condition list")
	}
	var exprs []Expr
	for _, c := range conds {
		if c.Kind != yaml.ScalarNode {
			return nil, nil, errAt(file, c, "condition must be a string")
		}
		d.Text = append(d.Text, c.Value)
		e, err := ParseCondition(c.Value, d.Order)
		if err != nil {
			var agg *aggregationError
			var ce *ConditionError
			pos := posOf(c)
			if errors.As(err, &ce) && c.Style == 0 && !strings.Contains(c.Value, "\n") {
				pos.Col += ce.Offset
			} else if errors.As(err, &agg) && c.Style == 0 {
				pos.Col += agg.Offset
			}
			if errors.As(err, &agg) {
				unsup = append(unsup, Unsupported{Pos: pos, Reason: agg.Msg})
				continue
			}
			return nil, nil, &ParseError{File: file, Line: pos.Line, Col: pos.Col, Msg: err.Error()}
		}
		exprs = append(exprs, e)
	}
	switch len(exprs) {
	case 0:
	case 1:
		d.Condition = exprs[0]
	default:
		d.Condition = Or{X: exprs}
	}
	return d, unsup, nil
}

// deref follows a YAML alias (`*name`) to its anchored node.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 8; i++ {
		n = n.Alias
	}
	return n
}

func parseSearch(file string, k, v *yaml.Node, opts *Options) (*Search, []Unsupported, error) {
	v = deref(v)
	s := &Search{Name: k.Value, Pos: posOf(k)}
	var unsup []Unsupported
	addMap := func(m *yaml.Node) error {
		var alt []*FieldMatch
		for i := 0; i+1 < len(m.Content); i += 2 {
			fm, u, err := parseFieldMatch(file, m.Content[i], m.Content[i+1], opts)
			if err != nil {
				return err
			}
			if u != nil {
				unsup = append(unsup, *u)
				continue
			}
			alt = append(alt, fm)
		}
		if len(m.Content) == 0 {
			return errAt(file, m, "empty search map")
		}
		s.Alts = append(s.Alts, alt)
		return nil
	}
	switch v.Kind {
	case yaml.MappingNode:
		if err := addMap(v); err != nil {
			return nil, nil, err
		}
	case yaml.SequenceNode:
		if len(v.Content) == 0 {
			return nil, nil, errAt(file, v, "search %q is an empty list", k.Value)
		}
		var kw []*yaml.Node
		for _, item := range v.Content {
			item = deref(item)
			switch item.Kind {
			case yaml.MappingNode:
				if err := addMap(item); err != nil {
					return nil, nil, err
				}
			case yaml.ScalarNode:
				kw = append(kw, item)
			default:
				return nil, nil, errAt(file, item, "search %q: a list item must be a map or a value", k.Value)
			}
		}
		if len(kw) > 0 {
			seq := &yaml.Node{Kind: yaml.SequenceNode, Content: kw, Line: kw[0].Line, Column: kw[0].Column}
			fm, u, err := parseFieldMatch(file, &yaml.Node{Kind: yaml.ScalarNode, Value: "", Line: v.Line, Column: v.Column}, seq, opts)
			if err != nil {
				return nil, nil, err
			}
			if u != nil {
				unsup = append(unsup, *u)
			} else {
				s.Alts = append(s.Alts, []*FieldMatch{fm})
			}
		}
	case yaml.ScalarNode:
		fm, u, err := parseFieldMatch(file, &yaml.Node{Kind: yaml.ScalarNode, Value: "", Line: v.Line, Column: v.Column}, v, opts)
		if err != nil {
			return nil, nil, err
		}
		if u != nil {
			unsup = append(unsup, *u)
		} else {
			s.Alts = append(s.Alts, []*FieldMatch{fm})
		}
	default:
		return nil, nil, errAt(file, v, "search %q must be a map or a list", k.Value)
	}
	return s, unsup, nil
}

func parseFieldMatch(file string, k, v *yaml.Node, opts *Options) (*FieldMatch, *Unsupported, error) {
	v = deref(v)
	parts := strings.Split(k.Value, "|")
	fm := &FieldMatch{Field: parts[0], Modifiers: parts[1:], Pos: posOf(k)}
	for _, m := range fm.Modifiers {
		if m == "" {
			return nil, nil, errAt(file, k, "empty modifier in %q", k.Value)
		}
	}
	var items []*yaml.Node
	switch v.Kind {
	case yaml.ScalarNode:
		items = []*yaml.Node{v}
	case yaml.SequenceNode:
		items = v.Content
		if len(items) == 0 {
			return nil, nil, errAt(file, v, "field %q has an empty list of values", k.Value)
		}
	default:
		return nil, nil, errAt(file, v, "field %q: values must be a value or a list of values", k.Value)
	}
	raw := make([]*string, len(items))
	for i, it := range items {
		it = deref(it)
		if it.Kind != yaml.ScalarNode {
			return nil, nil, errAt(file, it, "field %q: a value must be a scalar", k.Value)
		}
		if it.Tag == "!!null" {
			continue
		}
		s := it.Value
		raw[i] = &s
	}
	vals, all, neq, err := buildValues(fm.Modifiers, raw, opts, fm.Field == "")
	if err != nil {
		var u *unsupportedError
		if errors.As(err, &u) {
			return nil, &Unsupported{Pos: posOf(k), Reason: fmt.Sprintf("%s: %s", displayKey(k.Value), u.msg)}, nil
		}
		return nil, nil, errAt(file, k, "%s: %v", displayKey(k.Value), err)
	}
	for i := range vals {
		if i < len(items) && len(vals) == len(items) {
			vals[i].Pos = posOf(items[i])
		} else {
			vals[i].Pos = posOf(v)
		}
	}
	fm.Values, fm.All, fm.Neq = vals, all, neq
	return fm, nil, nil
}

func displayKey(k string) string {
	if k == "" {
		return "keywords"
	}
	return k
}
