package query

import (
	"unicode"
	"unicode/utf8"
)

// MatchWildcard reports whether the whole of s matches pattern, ignoring
// case. In the pattern, * matches any run of characters (also none), ?
// matches exactly one character (one rune), and \ makes the next character
// literal (\*, \?, \\); a \ at the very end matches a backslash. Case is
// ignored rune by rune: two runes are equal when their unicode.ToLower forms
// are. Invalid UTF-8 bytes in s count as one character each.
//
// This is the meaning of OpWildcard for every backend; Str of an OpWildcard
// term uses this pattern syntax. The match runs in O(len(pattern) ×
// len(s)) time at worst with no recursion and no allocation beyond the
// pattern's rune list, so hostile patterns cannot blow up.
func MatchWildcard(pattern, s string) bool {
	pat := compileWildcard(pattern)
	return pat.match(s)
}

// wildcard is a parsed pattern: one element per pattern character.
type wildcard []wcElem

type wcElem struct {
	kind wcKind
	r    rune // lower-cased literal for wcLit
}

type wcKind uint8

const (
	wcLit wcKind = iota
	wcOne        // ?
	wcAny        // *
)

func compileWildcard(pattern string) wildcard {
	out := make(wildcard, 0, len(pattern))
	for i := 0; i < len(pattern); {
		r, n := utf8.DecodeRuneInString(pattern[i:])
		i += n
		switch r {
		case '*':
			if len(out) > 0 && out[len(out)-1].kind == wcAny {
				continue // ** is *
			}
			out = append(out, wcElem{kind: wcAny})
		case '?':
			out = append(out, wcElem{kind: wcOne})
		case '\\':
			if i < len(pattern) {
				r, n = utf8.DecodeRuneInString(pattern[i:])
				i += n
			}
			out = append(out, wcElem{kind: wcLit, r: unicode.ToLower(r)})
		default:
			out = append(out, wcElem{kind: wcLit, r: unicode.ToLower(r)})
		}
	}
	return out
}

// match is the classic glob matcher: advance greedily and, on a mismatch,
// go back to the last * and let it swallow one more character. Only the
// last * is ever revisited (an earlier one can never help once a later one
// matched), so the work is bounded by len(p) × len(s).
func (p wildcard) match(s string) bool {
	pi, si := 0, 0
	starP, starS := -1, 0 // pattern index after the last *, and where it resumed in s
	for si < len(s) {
		r, n := utf8.DecodeRuneInString(s[si:])
		if pi < len(p) {
			switch e := p[pi]; e.kind {
			case wcAny:
				starP, starS = pi+1, si
				pi++
				continue
			case wcOne:
				pi++
				si += n
				continue
			case wcLit:
				if e.r == unicode.ToLower(r) {
					pi++
					si += n
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		// Let the last * take one more character and retry after it.
		_, n = utf8.DecodeRuneInString(s[starS:])
		starS += n
		pi, si = starP, starS
	}
	for pi < len(p) && p[pi].kind == wcAny {
		pi++
	}
	return pi == len(p)
}
