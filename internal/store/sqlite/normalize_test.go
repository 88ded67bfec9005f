package sqlite

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"
)

func TestAppendFields(t *testing.T) {
	for _, s := range []string{"", "plain", `quote " and \ backslash`, "ctl \x00\x01\n\t\x1f", "città €", "bad \xff utf8", "\u2028"} {
		var got string
		if err := json.Unmarshal(appendJSONString(nil, s), &got); err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		want, _ := json.Marshal(s)
		var w string
		_ = json.Unmarshal(want, &w)
		if got != w {
			t.Errorf("appendJSONString(%q) decodes to %q, want %q", s, got, w)
		}
	}
	fields := map[string]any{"a.b": "x", "n": int64(-42), "f": 1.5, "t": true, "l": []any{"a", int64(1)}}
	var got map[string]any
	if err := json.Unmarshal(appendFields(nil, fields), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"a.b": "x", "n": -42.0, "f": 1.5, "t": true, "l": []any{"a", 1.0}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("appendFields = %v, want %v", got, want)
	}
}

func TestIPKeys(t *testing.T) {
	for _, s := range []string{"10.0.0.1", "::1", "2001:db8::8a2e:370:7334", "::ffff:1.2.3.4"} {
		a := netip.MustParseAddr(s)
		if got, want := ipFromKey(ipKey(a)), a.Unmap().String(); got != want {
			t.Errorf("ipFromKey(ipKey(%s)) = %s, want %s", s, got, want)
		}
	}
	lo, hi := prefixRange(netip.MustParsePrefix("10.1.0.0/16"))
	if lo != ipKey(netip.MustParseAddr("10.1.0.0")) || hi != ipKey(netip.MustParseAddr("10.1.255.255")) {
		t.Errorf("prefixRange(10.1.0.0/16) = %s %s", lo, hi)
	}
	lo, hi = prefixRange(netip.MustParsePrefix("2001:db8::/32"))
	if lo != ipKey(netip.MustParseAddr("2001:db8::")) || hi != ipKey(netip.MustParseAddr("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")) {
		t.Errorf("prefixRange(2001:db8::/32) = %s %s", lo, hi)
	}
}

func TestEqualLower(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"Root", "root", true}, {"CITTÀ", "città", true}, {"root", "roots", false},
		{"", "", true}, {"a\xffb", "A\xffB", true}, {"a\xffb", "a\xfeb", false}, {"K", "\u212a", true},
	} {
		if got := equalLower(tc.a, tc.b); got != tc.want {
			t.Errorf("equalLower(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
