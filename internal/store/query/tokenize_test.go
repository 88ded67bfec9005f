package query

import (
	"reflect"
	"testing"
)

func TestTokenize(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"  ...  ", nil},
		{"Failed password for root", []string{"failed", "password", "for", "root"}},
		{"from 10.1.2.3 port 22 ssh2", []string{"from", "10", "1", "2", "3", "port", "22", "ssh2"}},
		{"user=ADMIN;uid=0", []string{"user", "admin", "uid", "0"}},
		{"GET /wp-login.php?x=1 HTTP/1.1", []string{"get", "wp", "login", "php", "x", "1", "http", "1", "1"}},
		{"Città di Firenze—Ufficio", []string{"città", "di", "firenze", "ufficio"}},
		{"snake_case and dash-case", []string{"snake", "case", "and", "dash", "case"}},
		{"x²+Ⅻ", []string{"x²", "ⅻ"}},      // \p{N} includes No and Nl
		{"cafe\u0301", []string{"cafe"}},   // a combining mark separates
		{"a\xffb", []string{"a", "b"}},     // invalid UTF-8 separates
		{"ΣΊΣΥΦΟΣ", []string{"σίσυφοσ"}},   // per-rune lower-casing, no final sigma
		{"İstanbul", []string{"istanbul"}}, // per-rune, like Lucene's LowerCaseFilter
		{"日本語テキスト", []string{"日本語テキスト"}},   // no segmentation inside letter runs
	}
	for _, tt := range tests {
		if got := Tokenize(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Tokenize(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func BenchmarkTokenize(b *testing.B) {
	s := `Nov 22 23:11:56 srv-01 sshd[1234]: Failed password for invalid user admin from 203.0.113.7 port 52211 ssh2`
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		Tokenize(s)
	}
}
