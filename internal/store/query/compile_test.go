package query

import (
	"errors"
	"strings"
	"testing"

	"github.com/csirt-toscana/platform/internal/event"
)

func TestCompile(t *testing.T) {
	// Bare terms search the default fields of testEvents: event.original and message.
	tests := []struct {
		query string
		want  string
	}{
		{``, `*`},
		{"  \t\n", `*`},
		{`*`, `*`},
		{`a OR *`, `*`},
		{`* a`, `(OR [event.original eq "a"] [message eq "a"])`},

		// keyword
		{`user.name:root`, `[user.name eq "root"]`},
		{`user.name: Root`, `[user.name eq "Root"]`},
		{`user.name : root`, `[user.name eq "root"]`},
		{`user.name :root`, `[user.name eq "root"]`},
		{`user.name:"root admin"`, `[user.name phrase "root admin"]`},
		{`user.name:"adm*"`, `[user.name phrase "adm*"]`},
		{`user.name:adm*`, `[user.name wildcard "adm*"]`},
		{`user.name:*dm?n`, `[user.name wildcard "*dm?n"]`},
		{`user.name:a\*b`, `[user.name eq "a*b"]`},
		{`user.name:a\*b*`, `[user.name wildcard "a\\*b*"]`},
		{`user.name:a\\b?`, `[user.name wildcard "a\\\\b?"]`},
		{`user.name:a\:b\ c\(d\)\"`, `[user.name eq "a:b c(d)\""]`},
		{`file.path:"C:\Windows\System32"`, `[file.path phrase "C:\\Windows\\System32"]`},
		{`file.path:"say \"hi\" \\o/"`, `[file.path phrase "say \"hi\" \\o/"]`},
		{`url.original:http://x/a:b`, `[url.original eq "http://x/a:b"]`},
		{`user.name:\*`, `[user.name eq "*"]`},
		{`user.name:**`, `[user.name wildcard "**"]`},
		{`user.name:*`, `[user.name exists]`},
		{`event.category:network`, `[event.category eq "network"]`},
		{`user.name:"10.0.0.0/8"`, `[user.name phrase "10.0.0.0/8"]`},
		{`user.name:-5`, `[user.name eq "-5"]`},
		{`user.name:a-b`, `[user.name eq "a-b"]`},

		// text
		{`message:Failed`, `[message eq "failed"]`},
		{`message:"Failed password"`, `[message phrase "Failed password"]`},
		{`message:"Failed"`, `[message phrase "Failed"]`},
		{`message:foo-bar`, `[message phrase "foo-bar"]`},
		{`message:10.1.2.3`, `[message phrase "10.1.2.3"]`},
		{`message:pass*`, `[message wildcard "pass*"]`},
		{`message:p?ss`, `[message wildcard "p?ss"]`},
		{`message:Città`, `[message eq "città"]`},

		// bare terms and phrases
		{`failed`, `(OR [event.original eq "failed"] [message eq "failed"])`},
		{`"failed password"`, `(OR [event.original phrase "failed password"] [message phrase "failed password"])`},
		{`fail*`, `(OR [event.original wildcard "fail*"] [message wildcard "fail*"])`},

		// numbers
		{`destination.port:22`, `[destination.port eq 22]`},
		{`destination.port:-1`, `[destination.port eq -1]`},
		{`destination.port:+1`, `[destination.port eq 1]`},
		{`destination.port:"22"`, `[destination.port eq 22]`},
		{`network.bytes>=9007199254740992`, `[network.bytes gte 9.007199254740992e+15]`},
		{`score:0.5`, `[score eq 0.5]`},
		{`score>-1.5e3`, `[score gt -1500]`},

		// ranges
		{`destination.port>=1024`, `[destination.port gte 1024]`},
		{`destination.port > 1024`, `[destination.port gt 1024]`},
		{`destination.port<5`, `[destination.port lt 5]`},
		{`destination.port<=5`, `[destination.port lte 5]`},
		{`destination.port:[1 TO 5]`, `(AND [destination.port gte 1] [destination.port lte 5])`},
		{`destination.port:{1 TO 5}`, `(AND [destination.port gt 1] [destination.port lt 5])`},
		{`destination.port:[1 TO 5}`, `(AND [destination.port gte 1] [destination.port lt 5])`},
		{`destination.port:{1 TO 5]`, `(AND [destination.port gt 1] [destination.port lte 5])`},
		{`destination.port:[ 1  TO  5 ]`, `(AND [destination.port gte 1] [destination.port lte 5])`},
		{`destination.port:[1024 TO *]`, `[destination.port gte 1024]`},
		{`destination.port:[* TO 1024}`, `[destination.port lt 1024]`},
		{`destination.port:[* TO *]`, `[destination.port exists]`},
		{`score:[0.5 TO 1.5]`, `(AND [score gte 0.5] [score lte 1.5])`},
		{`source.ip:[10.0.0.1 TO 10.0.0.9]`, `(AND [source.ip gte 10.0.0.1] [source.ip lte 10.0.0.9])`},
		{`source.ip>=::1`, `[source.ip gte ::1]`},

		// dates
		{`@timestamp>2026-01-01T00:00:00Z`, `[@timestamp gt 2026-01-01T00:00:00Z]`},
		{`@timestamp>=2026-01-01T10:00:00.123456789+02:00`, `[@timestamp gte 2026-01-01T08:00:00.123456789Z]`},
		{`@timestamp<2026-01-02`, `[@timestamp lt 2026-01-02T00:00:00Z]`},
		{`@timestamp:[2026-01-01 TO 2026-01-03}`, `(AND [@timestamp gte 2026-01-01T00:00:00Z] [@timestamp lt 2026-01-03T00:00:00Z])`},
		{`@timestamp:["2026-01-01T00:00:00Z" TO *]`, `[@timestamp gte 2026-01-01T00:00:00Z]`},
		{`@timestamp:2026-01-02`, `(AND [@timestamp gte 2026-01-02T00:00:00Z] [@timestamp lt 2026-01-03T00:00:00Z])`},
		{`@timestamp:2026-01-02T03:04:05Z`, `[@timestamp eq 2026-01-02T03:04:05Z]`},

		// IP
		{`source.ip:10.1.2.3`, `[source.ip eq 10.1.2.3]`},
		{`source.ip:10.1.2.3/8`, `[source.ip cidr 10.0.0.0/8]`},
		{`source.ip:2001:db8::1`, `[source.ip eq 2001:db8::1]`},
		{`source.ip:2001:DB8::/32`, `[source.ip cidr 2001:db8::/32]`},
		{`source.ip:"192.168.0.0/16"`, `[source.ip cidr 192.168.0.0/16]`},
		{`source.ip:::ffff:10.1.2.3`, `[source.ip eq 10.1.2.3]`},
		{`source.ip:::ffff:10.0.0.0/104`, `[source.ip cidr 10.0.0.0/8]`},
		{`related.ip:10.0.0.0/8`, `[related.ip cidr 10.0.0.0/8]`},

		// booleans
		{`nis2:true`, `[nis2 eq true]`},
		{`nis2:FALSE`, `[nis2 eq false]`},

		// boolean operators and precedence
		{`user.name:a AND user.name:b`, `(AND [user.name eq "a"] [user.name eq "b"])`},
		{`user.name:a user.name:b`, `(AND [user.name eq "a"] [user.name eq "b"])`},
		{`user.name:a OR user.name:b`, `(OR [user.name eq "a"] [user.name eq "b"])`},
		{`user.name:a OR user.name:b user.name:c`, `(OR [user.name eq "a"] (AND [user.name eq "b"] [user.name eq "c"]))`},
		{`user.name:a AND user.name:b OR user.name:c`, `(OR (AND [user.name eq "a"] [user.name eq "b"]) [user.name eq "c"])`},
		{`NOT user.name:a AND user.name:b`, `(AND (NOT [user.name eq "a"]) [user.name eq "b"])`},
		{`NOT (user.name:a AND user.name:b)`, `(NOT (AND [user.name eq "a"] [user.name eq "b"]))`},
		{`NOT(user.name:a)`, `(NOT [user.name eq "a"])`},
		{`-user.name:a`, `(NOT [user.name eq "a"])`},
		{`-"x y"`, `(NOT (OR [event.original phrase "x y"] [message phrase "x y"]))`},
		{`NOT NOT user.name:a`, `[user.name eq "a"]`},
		{`NOT NOT NOT user.name:a`, `(NOT [user.name eq "a"])`},
		{`--user.name:a`, `[user.name eq "a"]`},
		{`(user.name:a AND (user.name:b AND user.name:c))`, `(AND [user.name eq "a"] [user.name eq "b"] [user.name eq "c"])`},
		{`user.name:a OR (user.name:b OR (user.name:c))`, `(OR [user.name eq "a"] [user.name eq "b"] [user.name eq "c"])`},
		{`(((user.name:a)))`, `[user.name eq "a"]`},
		{`user.name:a AND(user.name:b)`, `(AND [user.name eq "a"] [user.name eq "b"])`},
		{`user.name:and`, `[user.name eq "and"]`},
		{`user.name:ANDY OR user.name:ORACLE`, `(OR [user.name eq "ANDY"] [user.name eq "ORACLE"])`},
		{`user.name:x NOTE`, `(AND [user.name eq "x"] (OR [event.original eq "note"] [message eq "note"]))`},

		// field groups
		{`user.name:(root OR admin)`, `(OR [user.name eq "root"] [user.name eq "admin"])`},
		{`user.name:(root admin)`, `(AND [user.name eq "root"] [user.name eq "admin"])`},
		{`user.name:(root AND NOT adm*)`, `(AND [user.name eq "root"] (NOT [user.name wildcard "adm*"]))`},
		{`user.name:(root OR (a b))`, `(OR [user.name eq "root"] (AND [user.name eq "a"] [user.name eq "b"]))`},
		{`user.name:("a b" OR c)`, `(OR [user.name phrase "a b"] [user.name eq "c"])`},
		{`destination.port:(22 OR [80 TO 90])`, `(OR [destination.port eq 22] (AND [destination.port gte 80] [destination.port lte 90]))`},
		{`user.name:(*)`, `[user.name exists]`},
		{`source.ip:(10.0.0.0/8 OR 2001:db8::/32)`, `(OR [source.ip cidr 10.0.0.0/8] [source.ip cidr 2001:db8::/32])`},
		{`message:(quick brown)`, `(AND [message eq "quick"] [message eq "brown"])`},
	}
	for _, tt := range tests {
		n, err := Compile(tt.query, testEvents)
		if err != nil {
			t.Errorf("Compile(%q): %v", tt.query, err)
			continue
		}
		if got := Format(n); got != tt.want {
			t.Errorf("Compile(%q)\n got %s\nwant %s", tt.query, got, tt.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		query string
		want  string // the whole error text
	}{
		{`sorce.ip:10.0.0.1`, `query: position 0: unknown field "sorce.ip"`},
		{`user.name:a AND sorce.ip:1`, `query: position 16: unknown field "sorce.ip"`},
		{`sorce.ip:(1 OR 2)`, `query: position 0: unknown field "sorce.ip"`},
		{`nope>3`, `query: position 0: unknown field "nope"`},
		{`destination.port:8.5`, `query: position 17: field "destination.port" takes whole numbers, not "8.5"`},
		{`destination.port:abc`, `query: position 17: field "destination.port" takes whole numbers, not "abc"`},
		{`destination.port>=1e2`, `query: position 18: field "destination.port" takes whole numbers, not "1e2"`},
		{`network.bytes:9007199254740993`, `query: position 14: "9007199254740993" is too large for field "network.bytes": the limit is ±9007199254740992`},
		{`network.bytes:99999999999999999999`, `query: position 14: "99999999999999999999" is too large for field "network.bytes": the limit is ±9007199254740992`},
		{`score:NaN`, `query: position 6: field "score" takes numbers, not "NaN"`},
		{`score:inf`, `query: position 6: field "score" takes numbers, not "inf"`},
		{`user.name:10.0.0.0/8`, `query: position 10: CIDR prefix 10.0.0.0/8 on keyword field "user.name": CIDR works on IP fields only (quote the value to search it as text)`},
		{`message:10.0.0.0/8`, `query: position 8: CIDR prefix 10.0.0.0/8 on text field "message": CIDR works on IP fields only (quote the value to search it as text)`},
		{`10.0.0.0/8`, `query: position 0: CIDR prefix 10.0.0.0/8 needs an IP field, as in source.ip:10.0.0.0/8`},
		{`destination.port:10.0.0.0/8`, `query: position 17: CIDR prefix 10.0.0.0/8 on long field "destination.port": CIDR works on IP fields only (quote the value to search it as text)`},
		{`user.name>3`, `query: position 0: range on keyword field "user.name": ranges work on numbers, dates and IP addresses`},
		{`user.name:[a TO b]`, `query: position 0: range on keyword field "user.name": ranges work on numbers, dates and IP addresses`},
		{`message<=x`, `query: position 0: range on text field "message": ranges work on numbers, dates and IP addresses`},
		{`nis2:[false TO true]`, `query: position 0: range on boolean field "nis2": ranges work on numbers, dates and IP addresses`},
		{`@timestamp>2026-13-01`, `query: position 11: field "@timestamp" takes dates such as 2026-01-02 or 2026-01-02T15:04:05Z, not "2026-13-01"`},
		{`@timestamp:yesterday`, `query: position 11: field "@timestamp" takes dates such as 2026-01-02 or 2026-01-02T15:04:05Z, not "yesterday"`},
		{`@timestamp>2026-01-01T00:00:00`, `query: position 11: field "@timestamp" takes dates such as 2026-01-02 or 2026-01-02T15:04:05Z, not "2026-01-01T00:00:00"`},
		{`source.ip:10.0.0.256`, `query: position 10: field "source.ip" takes IP addresses or CIDR prefixes, not "10.0.0.256"`},
		{`source.ip:10.0.0.0/33`, `query: position 10: field "source.ip" takes IP addresses or CIDR prefixes, not "10.0.0.0/33"`},
		{`source.ip:fe80::1%eth0`, `query: position 10: field "source.ip" takes IP addresses or CIDR prefixes, not "fe80::1%eth0"`},
		{`source.ip:10.*`, `query: position 10: wildcards work on keyword and text fields only; field "source.ip" has type ip; use a CIDR prefix such as 10.0.0.0/8`},
		{`destination.port:8*`, `query: position 17: wildcards work on keyword and text fields only; field "destination.port" has type long`},
		{`source.ip>10.0.0.0/8`, `query: position 10: a range bound on field "source.ip" must be an address, not a CIDR prefix "10.0.0.0/8"`},
		{`destination.port:[1* TO 5]`, `query: position 18: wildcards cannot be a range bound (field "destination.port")`},
		{`nis2:yes`, `query: position 5: field "nis2" takes true or false, not "yes"`},
		{`message:foo-*`, `query: position 8: a wildcard on text field "message" must be one word of letters and digits, not "foo-*"`},
		{`message:"..."`, `query: position 8: "..." has no letters or digits to search for in text field "message"`},
		{`message:""`, `query: position 8: "" has no letters or digits to search for in text field "message"`},
		{`-`, `query: position 0: "-" has no letters or digits to search for in text field "event.original"`},

		// syntax
		{`(user.name:a`, `query: position 0: "(" is never closed`},
		{`user.name:a (`, `query: position 12: "(" is never closed`},
		{`((user.name:a)`, `query: position 0: "(" is never closed`},
		{`user.name:a)`, `query: position 11: unexpected ")": no "(" to close`},
		{`)`, `query: position 0: unexpected ")": no "(" to close`},
		{`()`, `query: position 0: empty parentheses`},
		{`user.name:()`, `query: position 10: empty parentheses`},
		{`user.name:(a`, `query: position 10: "(" is never closed`},
		{`user.name:`, `query: position 10: expected a value after "user.name:"`},
		{`user.name: AND x`, `query: position 11: expected a value after "user.name:"`},
		{`user.name:)`, `query: position 10: expected a value after "user.name:"`},
		{`destination.port>=`, `query: position 18: expected a value after "destination.port>="`},
		{`destination.port< OR x`, `query: position 18: expected a value after "destination.port<"`},
		{`AND user.name:a`, `query: position 0: AND needs a term on both sides`},
		{`user.name:a AND`, `query: position 12: AND needs a term on both sides`},
		{`user.name:a OR`, `query: position 12: OR needs a term on both sides`},
		{`user.name:a OR OR x`, `query: position 12: OR needs a term on both sides`},
		{`user.name:a AND OR x`, `query: position 12: AND needs a term on both sides`},
		{`OR`, `query: position 0: OR needs a term on both sides`},
		{`NOT`, `query: position 0: NOT needs a term after it`},
		{`x NOT`, `query: position 2: NOT needs a term after it`},
		{`NOT OR x`, `query: position 0: NOT needs a term after it`},
		{`(NOT)`, `query: position 1: NOT needs a term after it`},
		{`"abc`, `query: position 0: quoted string is never closed`},
		{`user.name:"abc\"`, `query: position 10: quoted string is never closed`},
		{`user.name:abc\`, `query: position 13: \ at the end of the query escapes nothing`},
		{`:x`, `query: position 0: unexpected ':': a field name must come first`},
		{`>3`, `query: position 0: unexpected '>': a field name must come first`},
		{`user*:x`, `query: position 0: invalid field name "user*"`},
		{`us\er:x`, `query: position 0: invalid field name "us\\er"`},
		{`[1 TO 2]`, `query: position 0: a range needs a field, as in field:[1 TO 10]`},
		{`destination.port:[1 TO 2`, `query: position 17: range is never closed with "]" or "}"`},
		{`destination.port:[1 TO`, `query: position 17: range is never closed with "]" or "}"`},
		{`destination.port:[1 2]`, `query: position 20: expected " TO " in the range`},
		{`destination.port:[1 to 2]`, `query: position 20: expected " TO " in the range`},
		{`destination.port:[1]`, `query: position 19: expected " TO " in the range`},
		{`destination.port:[1 TO 2)`, `query: position 24: expected "]" or "}" to close the range, found ')'`},
		{`destination.port:[ TO 2]`, `query: position 19: a range bound is missing: use * for an open bound, as in [* TO 10]`},
		{`destination.port:[1 TO ]`, `query: position 23: expected a range bound, found ']'`},
		{`destination.port:[] TO 2]`, `query: position 18: expected a range bound, found ']'`},
		{"user.name:\xff", `query: position 10: query is not valid UTF-8`},
	}
	for _, tt := range tests {
		_, err := Compile(tt.query, testEvents)
		if err == nil {
			t.Errorf("Compile(%q): no error, want %s", tt.query, tt.want)
			continue
		}
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Errorf("Compile(%q): error %T is not a *ParseError", tt.query, err)
		}
		if got := err.Error(); got != tt.want {
			t.Errorf("Compile(%q)\n got %s\nwant %s", tt.query, got, tt.want)
		}
	}
}

func TestCompileLimits(t *testing.T) {
	long := strings.Repeat("a ", MaxQueryBytes/2) + "a"
	deep := strings.Repeat("(", MaxDepth) + "user.name:a" + strings.Repeat(")", MaxDepth)
	tooDeep := strings.Repeat("(", MaxDepth+1) + "user.name:a" + strings.Repeat(")", MaxDepth+1)
	nots := strings.Repeat("NOT ", MaxDepth+1) + "user.name:a"
	terms := strings.TrimSpace(strings.Repeat("user.name:a ", MaxTerms))
	tooMany := terms + " user.name:b"
	bare := strings.TrimSpace(strings.Repeat("a ", MaxTerms/2+1)) // two default fields each
	tests := []struct {
		query string
		want  string // "" = accepted
	}{
		{deep, ""},
		{terms, ""},
		{long, "query: position 4096: query is longer than 4096 bytes"},
		{tooDeep, "query: position 32: query is nested more than 32 levels deep"},
		{nots, "query: position 128: query is nested more than 32 levels deep"},
		{tooMany, "query: position 3082: query has more than 256 terms"},
		{bare, "query: position 256: query has more than 256 terms"},
	}
	for _, tt := range tests {
		_, err := Compile(tt.query, testEvents)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("Compile(%.40q...): %v", tt.query, err)
		case tt.want != "" && (err == nil || err.Error() != tt.want):
			t.Errorf("Compile(%.40q...): got %v, want %s", tt.query, err, tt.want)
		}
	}
}

func TestNoDefaultFields(t *testing.T) {
	s := testSchema{fields: testEvents.fields}
	_, err := Compile(`user.name:a failed`, s)
	want := `query: position 12: this collection has no default fields: name a field, as in field:value`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
	if _, err := Compile(`user.name:a`, s); err != nil {
		t.Fatal(err)
	}
}

func TestParseResolve(t *testing.T) {
	syn, err := Parse(`foo:bar`)
	if err != nil {
		t.Fatal(err)
	}
	if syn.String() != `foo:bar` {
		t.Errorf("String() = %q", syn.String())
	}
	if _, err := Resolve(syn, testEvents); err == nil {
		t.Error("Resolve: no error for an unknown field")
	}
	other := testSchema{fields: map[string]event.FieldDef{"foo": {Name: "foo", Type: event.Keyword}}}
	n, err := Resolve(syn, other)
	if err != nil {
		t.Fatal(err)
	}
	if got := Format(n); got != `[foo eq "bar"]` {
		t.Errorf("Resolve = %s", got)
	}
}

func TestTermFields(t *testing.T) {
	n, err := Compile(`related.ip:10.1.2.3`, testEvents)
	if err != nil {
		t.Fatal(err)
	}
	tm, ok := n.(*Term)
	if !ok {
		t.Fatalf("got %T", n)
	}
	if tm.Field != "related.ip" || tm.Type != event.IP || !tm.Array || tm.Op != OpEq || tm.Addr.String() != "10.1.2.3" {
		t.Errorf("term = %+v", tm)
	}
}
