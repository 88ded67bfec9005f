package query

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestMatchWildcard(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"", "", true},
		{"", "a", false},
		{"*", "", true},
		{"*", "anything", true},
		{"?", "", false},
		{"?", "a", true},
		{"?", "é", true},
		{"?", "ab", false},
		{"adm*", "admin", true},
		{"adm*", "Administrator", true},
		{"ADM*", "admin", true},
		{"adm*", "xadmin", false},
		{"*min", "admin", true},
		{"*min", "admins", false},
		{"a*n", "admin", true},
		{"a*n", "an", true},
		{"a*n", "a", false},
		{"a?min", "admin", true},
		{"a?min", "amin", false},
		{"*a*b*c*", "xxaxxbxxcxx", true},
		{"*a*b*c*", "xxaxxcxxbxx", false},
		{"a*b*a", "abba", true},
		{"a*ab", "aaab", true},
		{"*aab", "aaaab", true},
		{`a\*b`, "a*b", true},
		{`a\*b`, "axb", false},
		{`a\?`, "a?", true},
		{`a\?`, "ab", false},
		{`a\\b`, `a\b`, true},
		{`a\b`, `ab`, true},
		{`a\`, `a\`, true},
		{`a\`, `a`, false},
		{"CITTÀ", "città", true},
		{"*Σ*", "σ", true},
		{"10.0.*", "10.0.3.4", true},
		{"**a**", "a", true},
	}
	for _, tt := range tests {
		if got := MatchWildcard(tt.pattern, tt.s); got != tt.want {
			t.Errorf("MatchWildcard(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
		if got := refMatch(tt.pattern, tt.s); got != tt.want {
			t.Errorf("refMatch(%q, %q) = %v, want %v (the reference is wrong)", tt.pattern, tt.s, got, tt.want)
		}
	}
}

// refMatch is the obvious dynamic-programming matcher the fuzzer compares
// MatchWildcard with.
func refMatch(pattern, s string) bool {
	type el struct {
		r    rune
		kind byte // 'l' literal, '?' one, '*' any
	}
	var pat []el
	pr := []rune(pattern)
	for i := 0; i < len(pr); i++ {
		switch pr[i] {
		case '*':
			pat = append(pat, el{kind: '*'})
		case '?':
			pat = append(pat, el{kind: '?'})
		case '\\':
			if i+1 < len(pr) {
				i++
			}
			pat = append(pat, el{r: unicode.ToLower(pr[i]), kind: 'l'})
		default:
			pat = append(pat, el{r: unicode.ToLower(pr[i]), kind: 'l'})
		}
	}
	var str []rune
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		str = append(str, unicode.ToLower(r))
		i += n
	}
	// m[i][j]: pat[:i] matches str[:j]
	m := make([][]bool, len(pat)+1)
	for i := range m {
		m[i] = make([]bool, len(str)+1)
	}
	m[0][0] = true
	for i := 1; i <= len(pat); i++ {
		for j := 0; j <= len(str); j++ {
			switch p := pat[i-1]; p.kind {
			case '*':
				m[i][j] = m[i-1][j] || (j > 0 && m[i][j-1])
			case '?':
				m[i][j] = j > 0 && m[i-1][j-1]
			default:
				m[i][j] = j > 0 && m[i-1][j-1] && p.r == str[j-1]
			}
		}
	}
	return m[len(pat)][len(str)]
}

func FuzzMatchWildcard(f *testing.F) {
	f.Add("adm*", "Administrator")
	f.Add("*a*b?c*", "xxaxxbycxx")
	f.Add(`a\*b\\c\?`, `a*b\c?`)
	f.Add("??*", "é")
	f.Add("*Σ*", "σς")
	f.Fuzz(func(t *testing.T, pattern, s string) {
		if len(pattern)*len(s) > 1<<20 {
			return // keep the quadratic reference fast
		}
		got, want := MatchWildcard(pattern, s), refMatch(pattern, s)
		if got != want {
			t.Fatalf("MatchWildcard(%q, %q) = %v, reference says %v", pattern, s, got, want)
		}
		if want && !strings.ContainsAny(pattern, `*?\`) && !strings.EqualFold(pattern, s) && utf8.ValidString(s) && utf8.ValidString(pattern) {
			// Without wildcards a match means equality up to case.
			if !strings.EqualFold(pattern, s) {
				t.Fatalf("plain pattern %q matched %q", pattern, s)
			}
		}
	})
}

func BenchmarkMatchWildcard(b *testing.B) {
	s := strings.Repeat("a", 1000)
	b.Run("typical", func(b *testing.B) {
		for b.Loop() {
			MatchWildcard("*admin*", "svc-Administrator-01")
		}
	})
	b.Run("hostile", func(b *testing.B) {
		for b.Loop() {
			MatchWildcard("*a*a*a*a*a*a*a*a*b", s)
		}
	})
}
