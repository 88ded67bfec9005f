package query

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Tokenize splits free text into the tokens that text fields are matched by.
// A token is a maximal run of Unicode letters (category L) or numbers
// (category N); every other character, including combining marks (M),
// punctuation and spaces, separates tokens. Tokens are lower-cased rune by
// rune (strings.ToLower). Invalid UTF-8 bytes are separators.
//
// Every backend must tokenise exactly like this. Elasticsearch mirrors it
// with a pattern tokenizer on [^\p{L}\p{N}]+ followed by a lowercase filter.
func Tokenize(s string) []string {
	var out []string
	start := -1
	for i, r := range s {
		if isTokenRune(r) {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			out = append(out, strings.ToLower(s[start:i]))
			start = -1
		}
	}
	if start >= 0 {
		out = append(out, strings.ToLower(s[start:]))
	}
	return out
}

// isTokenRune reports whether r belongs to a token: \p{L} or \p{N}.
func isTokenRune(r rune) bool {
	if r < utf8.RuneSelf {
		return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9'
	}
	return unicode.IsLetter(r) || unicode.IsNumber(r)
}
