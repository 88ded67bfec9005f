package engine

import (
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/csirt-toscana/platform/rules/sigma"
)

// strMatcher matches one Sigma string pattern against a field value. The
// pattern is lower-cased at compile time unless cased; the value passed is
// then the lower-cased one.
type strMatcher struct {
	kind  uint8 // mExact, mPrefix, mSuffix, mContains, mGlob
	lit   string
	toks  []sigma.Token
	cased bool
}

const (
	mExact uint8 = iota
	mPrefix
	mSuffix
	mContains
	mGlob
	mAny // `*` alone
)

func newStrMatcher(p sigma.Pattern, cased bool) strMatcher {
	toks := make([]sigma.Token, len(p))
	copy(toks, p)
	if !cased {
		for i := range toks {
			if toks[i].Kind == sigma.TokLit {
				toks[i].Lit = strings.ToLower(toks[i].Lit)
			}
		}
	}
	m := strMatcher{kind: mGlob, toks: toks, cased: cased}
	lit := func(t sigma.Token) bool { return t.Kind == sigma.TokLit }
	star := func(t sigma.Token) bool { return t.Kind == sigma.TokStar }
	switch {
	case len(toks) == 0:
		m.kind, m.lit = mExact, ""
	case len(toks) == 1 && lit(toks[0]):
		m.kind, m.lit = mExact, toks[0].Lit
	case len(toks) == 1 && star(toks[0]):
		m.kind = mAny
	case len(toks) == 2 && lit(toks[0]) && star(toks[1]):
		m.kind, m.lit = mPrefix, toks[0].Lit
	case len(toks) == 2 && star(toks[0]) && lit(toks[1]):
		m.kind, m.lit = mSuffix, toks[1].Lit
	case len(toks) == 3 && star(toks[0]) && lit(toks[1]) && star(toks[2]):
		m.kind, m.lit = mContains, toks[1].Lit
	}
	return m
}

func (m *strMatcher) match(s string) bool {
	switch m.kind {
	case mExact:
		return s == m.lit
	case mPrefix:
		return strings.HasPrefix(s, m.lit)
	case mSuffix:
		return strings.HasSuffix(s, m.lit)
	case mContains:
		return strings.Contains(s, m.lit)
	case mAny:
		return true
	}
	return globMatch(m.toks, s)
}

// globMatch matches tokens against s; `*` backtracks to the last star only
// (the classic linear-space wildcard algorithm, generalised to literal runs).
func globMatch(toks []sigma.Token, s string) bool {
	ti, si := 0, 0
	starT, starS := -1, 0
	for {
		if ti < len(toks) {
			t := toks[ti]
			switch t.Kind {
			case sigma.TokStar:
				starT, starS = ti, si
				ti++
				continue
			case sigma.TokLit:
				if strings.HasPrefix(s[si:], t.Lit) {
					ti++
					si += len(t.Lit)
					continue
				}
			case sigma.TokOne:
				if si < len(s) {
					_, n := utf8.DecodeRuneInString(s[si:])
					ti++
					si += n
					continue
				}
			case sigma.TokDash:
				if si < len(s) {
					r, n := utf8.DecodeRuneInString(s[si:])
					if r == '-' || r == '/' || r == '–' || r == '—' || r == '―' {
						ti++
						si += n
						continue
					}
				}
			}
		} else if si == len(s) {
			return true
		}
		// Mismatch: let the last star swallow one more character.
		if starT < 0 || starS >= len(s) {
			return false
		}
		_, n := utf8.DecodeRuneInString(s[starS:])
		starS += n
		ti, si = starT+1, starS
	}
}

// valueMatcher is one compiled sigma.Value.
type valueMatcher struct {
	kind     sigma.ValueKind
	strs     []strMatcher // KindString: any alternative
	cased    bool
	re       *regexp.Regexp
	prefix   netip.Prefix
	op       sigma.CompareOp
	num      float64
	exists   bool
	ref      int // KindFieldRef: interned field
	timePart string
}

// matchElem tests one element of a field (its original and lower-cased
// forms and, for numbers and dates, the raw value).
func (v *valueMatcher) matchElem(orig, lower string, raw any) bool {
	switch v.kind {
	case sigma.KindString:
		s := lower
		if v.cased {
			s = orig
		}
		for i := range v.strs {
			if v.strs[i].match(s) {
				return true
			}
		}
		return false
	case sigma.KindRegex:
		return v.re.MatchString(orig)
	case sigma.KindCIDR:
		a, err := netip.ParseAddr(orig)
		return err == nil && v.prefix.Contains(a.Unmap())
	case sigma.KindCompare:
		n, ok := toNumber(orig, raw)
		if !ok {
			return false
		}
		switch v.op {
		case sigma.OpGT:
			return n > v.num
		case sigma.OpGTE:
			return n >= v.num
		case sigma.OpLT:
			return n < v.num
		default:
			return n <= v.num
		}
	case sigma.KindTimePart:
		t, ok := toTime(orig, raw)
		if !ok {
			return false
		}
		var n int
		switch v.timePart {
		case "minute":
			n = t.Minute()
		case "hour":
			n = t.Hour()
		case "day":
			n = t.Day()
		case "week":
			_, n = t.ISOWeek()
		case "month":
			n = int(t.Month())
		case "year":
			n = t.Year()
		}
		return float64(n) == v.num
	}
	return false
}

func toNumber(s string, raw any) (float64, bool) {
	switch x := raw.(type) {
	case int64:
		return float64(x), true
	case float64:
		return x, true
	case int:
		return float64(x), true
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	return n, err == nil
}

func toTime(s string, raw any) (time.Time, bool) {
	if t, ok := raw.(time.Time); ok {
		return t.UTC(), true
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}
