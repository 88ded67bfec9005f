package query

import "testing"

// TestDocExamples keeps the examples of docs/query.md honest.
func TestDocExamples(t *testing.T) {
	for _, q := range []string{
		`event.dataset:sshd AND "failed password" AND NOT user.name:(root OR adm*)`,
		`source.ip:10.0.0.0/8 destination.port>=1024 @timestamp>=2026-01-01`,
		`user.name:"Mario Rossi"`, `user.name:*min`, `user.name:a*n`, `user.name:adm?n`,
		`NOT user.name:*`, `destination.port >= 1024`, `destination.port:[1 TO 1023}`,
		`@timestamp>=2026-01-01T08:00:00Z`, `@timestamp:[2026-01-01 TO 2026-01-08}`,
		`@timestamp:2026-01-02`, `source.ip:2001:db8::1`, `source.ip:2001:db8::/32`,
		`source.ip:[10.0.0.1 TO 10.0.0.9]`, `url.path:*.php`, `url.path:"/a*b"`,
		`message:"password for root"`, `message:10.1.2.3`, `message:wp-login`, `message:pass*`,
		`user.name:* AND NOT user.name:root`, `-user.name:root`, `user.name:svc-backup`,
		`destination.port:-1`, `a OR b AND NOT c`, `(a OR b) AND NOT c`,
		`user.name:(root OR admin OR adm*)`, `event.category:(network authentication)`,
		`destination.port:(22 OR 2222 OR [8000 TO 8100])`, `user.name:(* AND NOT root)`,
		`file.path:C\:\\Windows\\Temp\\*`, `user.name:mario\ rossi`, `url.query:a\=b\(1\)`,
		`user.name:\*`, `url.original:http://x.it/a`, `@timestamp>2026-01-01T10:00:00Z`,
		`file.path:"C:\Windows\System32\cmd.exe"`,
		`event.dataset:sshd AND "failed password" AND NOT source.ip:10.0.0.0/8`,
		`event.category:authentication AND event.outcome:failure AND user.name:(root OR admin*)`,
		`http.response.status_code>=500 AND url.path:/wp-*`,
		`tags:tor-exit OR related.ip:(185.220.100.0/22 OR 2a0b:f4c2::/40)`,
		`dns.question.name:*.duckdns.org AND NOT dns.response_code:nxdomain`,
		`network.bytes>1000000000 AND network.direction:outbound AND @timestamp>=2026-01-01`,
		`process.name:(powershell.exe OR pwsh.exe) AND process.command_line:*-enc*`,
	} {
		if _, err := Compile(q, testEvents); err != nil {
			t.Errorf("Compile(%q): %v", q, err)
		}
	}
	for _, q := range []string{`message:wp-*`, `destination.port:8.5`, `source.ip:10.*`, `user.name:10.0.0.0/8`} {
		if _, err := Compile(q, testEvents); err == nil {
			t.Errorf("Compile(%q): no error, the docs say it is refused", q)
		}
	}
}
