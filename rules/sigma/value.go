package sigma

import (
	"encoding/base64"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"unicode/utf16"
)

// ParsePattern parses a Sigma string: `*` and `?` are wildcards, a
// backslash escapes `*`, `?` and itself, and any other backslash is literal.
func ParsePattern(s string) Pattern {
	var p Pattern
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			p = append(p, Token{Kind: TokLit, Lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '\\':
			if i+1 < len(s) && (s[i+1] == '*' || s[i+1] == '?' || s[i+1] == '\\') {
				lit.WriteByte(s[i+1])
				i++
			} else {
				lit.WriteByte('\\')
			}
		case '*':
			flush()
			if len(p) == 0 || p[len(p)-1].Kind != TokStar {
				p = append(p, Token{Kind: TokStar})
			}
		case '?':
			flush()
			p = append(p, Token{Kind: TokOne})
		default:
			lit.WriteByte(c)
		}
	}
	flush()
	return p
}

// Plain returns the pattern's text when it has no wildcard.
func (p Pattern) Plain() (string, bool) {
	var b strings.Builder
	for _, t := range p {
		if t.Kind != TokLit {
			return "", false
		}
		b.WriteString(t.Lit)
	}
	return b.String(), true
}

// String writes the pattern back in Sigma syntax (dash classes as `[-/]`).
func (p Pattern) String() string {
	var b strings.Builder
	for _, t := range p {
		switch t.Kind {
		case TokLit:
			for _, r := range t.Lit {
				if r == '*' || r == '?' || r == '\\' {
					b.WriteByte('\\')
				}
				b.WriteRune(r)
			}
		case TokStar:
			b.WriteByte('*')
		case TokOne:
			b.WriteByte('?')
		case TokDash:
			b.WriteString("[-/]")
		}
	}
	return b.String()
}

func (p Pattern) withStar(front, back bool) Pattern {
	out := make(Pattern, 0, len(p)+2)
	if front && (len(p) == 0 || p[0].Kind != TokStar) {
		out = append(out, Token{Kind: TokStar})
	}
	out = append(out, p...)
	if back && (len(out) == 0 || out[len(out)-1].Kind != TokStar) {
		out = append(out, Token{Kind: TokStar})
	}
	return out
}

func (p Pattern) mapLits(f func(string) string) Pattern {
	out := make(Pattern, len(p))
	for i, t := range p {
		if t.Kind == TokLit {
			t.Lit = f(t.Lit)
		}
		out[i] = t
	}
	return out
}

// windashChars are the characters the windash modifier makes interchangeable.
const windashChars = "-/–—―"

func (p Pattern) windash() Pattern {
	var out Pattern
	for _, t := range p {
		if t.Kind != TokLit {
			out = append(out, t)
			continue
		}
		start := 0
		for i, r := range t.Lit {
			if strings.ContainsRune(windashChars, r) {
				if i > start {
					out = append(out, Token{Kind: TokLit, Lit: t.Lit[start:i]})
				}
				out = append(out, Token{Kind: TokDash})
				start = i + len(string(r))
			}
		}
		if start < len(t.Lit) {
			out = append(out, Token{Kind: TokLit, Lit: t.Lit[start:]})
		}
	}
	return out
}

func utf16Bytes(s string, bigEndian bool) string {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 0, 2*len(u))
	for _, c := range u {
		if bigEndian {
			b = append(b, byte(c>>8), byte(c))
		} else {
			b = append(b, byte(c), byte(c>>8))
		}
	}
	return string(b)
}

// base64Offsets returns the three base64 forms of s that appear in the
// encoding of any text containing s, whatever its offset (pySigma's
// base64offset).
func base64Offsets(s string) []string {
	starts := [3]int{0, 2, 3}
	ends := [3]int{0, 3, 2}
	out := make([]string, 0, 3)
	for i := 0; i < 3; i++ {
		enc := base64.StdEncoding.EncodeToString([]byte(strings.Repeat(" ", i) + s))
		end := len(enc)
		if e := ends[(len(s)+i)%3]; e > 0 {
			end -= e
		}
		if starts[i] < end {
			out = append(out, enc[starts[i]:end])
		}
	}
	return out
}

// knownModifiers lists the modifiers of the specification (v2.1.0).
var knownModifiers = map[string]bool{
	"contains": true, "startswith": true, "endswith": true, "all": true, "exists": true,
	"cased": true, "neq": true, "windash": true, "re": true, "i": true, "m": true, "s": true,
	"base64": true, "base64offset": true, "utf16le": true, "utf16be": true, "utf16": true,
	"wide": true, "lt": true, "lte": true, "gt": true, "gte": true, "minute": true,
	"hour": true, "day": true, "week": true, "month": true, "year": true, "cidr": true,
	"expand": true, "fieldref": true,
}

// unsupportedError marks a modifier or value the engine cannot evaluate, as
// opposed to a malformed rule.
type unsupportedError struct{ msg string }

func (e *unsupportedError) Error() string { return e.msg }

func unsupportedf(format string, args ...any) error {
	return &unsupportedError{msg: fmt.Sprintf(format, args...)}
}

// Options tune parsing.
type Options struct {
	// Placeholders gives the values of `%name%` placeholders used with the
	// expand modifier. A placeholder without values makes the rule
	// unsupported.
	Placeholders map[string][]string
	// SlashRegexKeywords treats keywords written as /regex/ as regular
	// expressions (a non-standard convention of some engines, off by
	// default).
	SlashRegexKeywords bool
}

// buildValues applies a field's modifiers to its raw values. raw holds nil
// for a YAML null. It returns a plain error for malformed input and an
// *unsupportedError for a feature the engine does not evaluate.
func buildValues(mods []string, raw []*string, opts *Options, keyword bool) (vals []Value, all, neq bool, err error) {
	for _, m := range mods {
		if !knownModifiers[m] {
			return nil, false, false, unsupportedf("unknown modifier %q", m)
		}
	}
	has := func(name string) bool {
		for _, m := range mods {
			if m == name {
				return true
			}
		}
		return false
	}
	all, neq = has("all"), has("neq")
	cased := has("cased")
	for _, r := range raw {
		if r == nil {
			if len(mods) > 0 {
				return nil, false, false, fmt.Errorf("null cannot take modifiers")
			}
			vals = append(vals, Value{Kind: KindNull, Raw: "null"})
			continue
		}
		s := *r
		v, err := buildValue(mods, s, cased, opts, keyword)
		if err != nil {
			return nil, false, false, err
		}
		vals = append(vals, v...)
	}
	return vals, all, neq, nil
}

func buildValue(mods []string, s string, cased bool, opts *Options, keyword bool) ([]Value, error) {
	v := Value{Kind: KindString, Raw: s, Cased: cased}
	switch {
	case len(mods) > 0 && mods[0] == "re" || containsMod(mods, "re"):
		expr := s
		flags := ""
		for _, m := range mods {
			switch m {
			case "i", "m", "s":
				flags += m
			case "re", "cased", "all", "neq":
			default:
				return nil, fmt.Errorf("modifier %q cannot be combined with re", m)
			}
		}
		if flags != "" {
			expr = "(?" + flags + ")" + expr
		}
		re, err := regexp.Compile(expr)
		if err != nil {
			return nil, unsupportedf("regular expression %q is not supported by RE2: %v", s, err)
		}
		v.Kind, v.Regex = KindRegex, re
		return []Value{v}, nil
	case containsMod(mods, "cidr"):
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("cidr: %q is not a network: %w", s, err)
		}
		v.Kind, v.Prefix = KindCIDR, p.Masked()
		return []Value{v}, nil
	case containsMod(mods, "exists"):
		b, err := strconv.ParseBool(s)
		if err != nil {
			return nil, fmt.Errorf("exists takes true or false, not %q", s)
		}
		v.Kind, v.Exists = KindExists, b
		return []Value{v}, nil
	case containsMod(mods, "fieldref"):
		for _, m := range mods {
			switch m {
			case "fieldref", "neq", "all", "cased":
			default:
				return nil, unsupportedf("fieldref combined with %s is not supported", m)
			}
		}
		v.Kind, v.Ref = KindFieldRef, s
		return []Value{v}, nil
	}
	for _, m := range mods {
		switch m {
		case "gt", "gte", "lt", "lte":
			n, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
			if err != nil || math.IsNaN(n) {
				return nil, fmt.Errorf("%s needs a number, not %q", m, s)
			}
			v.Kind, v.Num = KindCompare, n
			v.Op = map[string]CompareOp{"gt": OpGT, "gte": OpGTE, "lt": OpLT, "lte": OpLTE}[m]
			return []Value{v}, nil
		case "minute", "hour", "day", "week", "month", "year":
			n, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
			if err != nil {
				return nil, fmt.Errorf("%s needs a number, not %q", m, s)
			}
			v.Kind, v.Num, v.TimePart = KindTimePart, n, m
			return []Value{v}, nil
		}
	}
	// A string pattern transformed by the modifiers, in order.
	var alts []Pattern
	if keyword && opts.SlashRegexKeywords && len(mods) == 0 && len(s) > 2 && s[0] == '/' && s[len(s)-1] == '/' {
		re, err := regexp.Compile(s[1 : len(s)-1])
		if err == nil {
			v.Kind, v.Regex = KindRegex, re
			return []Value{v}, nil
		}
	}
	if containsMod(mods, "expand") {
		exp, err := expandPlaceholders(s, opts)
		if err != nil {
			return nil, err
		}
		for _, e := range exp {
			alts = append(alts, ParsePattern(e))
		}
	} else {
		alts = []Pattern{ParsePattern(s)}
	}
	for _, m := range mods {
		next := alts[:0:0]
		for _, p := range alts {
			switch m {
			case "contains":
				next = append(next, p.withStar(true, true))
			case "startswith":
				next = append(next, p.withStar(false, true))
			case "endswith":
				next = append(next, p.withStar(true, false))
			case "windash":
				next = append(next, p.windash())
			case "utf16le", "wide":
				next = append(next, p.mapLits(func(s string) string { return utf16Bytes(s, false) }))
			case "utf16be":
				next = append(next, p.mapLits(func(s string) string { return utf16Bytes(s, true) }))
			case "utf16":
				q := p.mapLits(func(s string) string { return utf16Bytes(s, false) })
				if len(q) > 0 && q[0].Kind == TokLit {
					q[0].Lit = "\xff\xfe" + q[0].Lit
				} else {
					q = append(Pattern{{Kind: TokLit, Lit: "\xff\xfe"}}, q...)
				}
				next = append(next, q)
			case "base64", "base64offset":
				plain, ok := p.Plain()
				if !ok {
					return nil, fmt.Errorf("%s cannot encode a value with wildcards (%q)", m, s)
				}
				if m == "base64" {
					next = append(next, Pattern{{Kind: TokLit, Lit: base64.StdEncoding.EncodeToString([]byte(plain))}})
				} else {
					for _, e := range base64Offsets(plain) {
						next = append(next, Pattern{{Kind: TokLit, Lit: e}})
					}
				}
			case "all", "cased", "neq", "expand":
				next = append(next, p)
			default:
				return nil, fmt.Errorf("modifier %q cannot be applied to a string", m)
			}
		}
		alts = next
	}
	v.Alts = alts
	return []Value{v}, nil
}

func containsMod(mods []string, m string) bool {
	for _, x := range mods {
		if x == m {
			return true
		}
	}
	return false
}

// expandPlaceholders replaces `%name%` placeholders by their values (every
// combination); `\%` is a plain percent sign.
func expandPlaceholders(s string, opts *Options) ([]string, error) {
	out := []string{""}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) && s[i+1] == '%' {
			for j := range out {
				out[j] += "%"
			}
			i++
			continue
		}
		if c == '%' {
			end := strings.IndexByte(s[i+1:], '%')
			if end < 0 {
				return nil, fmt.Errorf("unterminated placeholder in %q", s)
			}
			name := s[i+1 : i+1+end]
			vals := opts.Placeholders[name]
			if len(vals) == 0 {
				return nil, unsupportedf("placeholder %%%s%% (expand) has no values configured", name)
			}
			var next []string
			for _, o := range out {
				for _, v := range vals {
					next = append(next, o+v)
				}
			}
			out = next
			i += end + 1
			continue
		}
		for j := range out {
			out[j] += string(c)
		}
	}
	return out, nil
}

// RegexLiteral returns a literal every match of re must contain, lower-cased
// (for prefiltering), or "" when there is none.
func RegexLiteral(re *regexp.Regexp) string {
	t, err := syntax.Parse(re.String(), syntax.Perl)
	if err != nil {
		return ""
	}
	return strings.ToLower(requiredLiteral(t.Simplify()))
}

func requiredLiteral(t *syntax.Regexp) string {
	switch t.Op {
	case syntax.OpLiteral:
		return string(t.Rune)
	case syntax.OpCapture, syntax.OpPlus:
		return requiredLiteral(t.Sub[0])
	case syntax.OpRepeat:
		if t.Min >= 1 {
			return requiredLiteral(t.Sub[0])
		}
	case syntax.OpConcat:
		best := ""
		for _, s := range t.Sub {
			if l := requiredLiteral(s); len(l) > len(best) {
				best = l
			}
		}
		return best
	}
	return ""
}
