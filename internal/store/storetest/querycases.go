package storetest

// The query-language conformance data: a small events dataset and queries
// with the documents each must return, worked out by hand from the
// semantics in internal/store/query/ast.go and docs/query.md. Every backend
// must return exactly these ids (in any order) for every case, in regional
// scope over the events collection. A disagreement is a bug in a backend or
// in this file, never a tolerance.
//
// The dataset exercises: nested and dotted keys (also both in one document),
// mixed-case keywords, text with punctuation and non-ASCII letters, lists
// (event.category, tags, related.ip, host.ip), IPv4 and IPv6, a timestamp
// written with a +02:00 offset, a null field, an empty list, documents
// missing most fields, and network.bytes beyond 32 bits. The events schema
// has no boolean or double field, so neither is covered here.

// QueryDoc is one event of the query dataset. Source holds ECS fields with
// nested or dotted keys; organization.id is not in Source: backends write it
// from Tenant.
type QueryDoc struct {
	ID     string
	Tenant string
	Source map[string]any
}

// QueryCase is a query and the ids of the documents it must return, in any
// order. An empty Want means no document matches.
type QueryCase struct {
	Name  string
	Query string
	Want  []string
}

// BadQueryCase is a query the backends must refuse (store.ErrInvalid
// wrapping a *query.ParseError); WantErr is a substring of the error text.
type BadQueryCase struct {
	Name    string
	Query   string
	WantErr string
}

// QueryDataset returns the 30 documents of the query conformance cases
// (ids q01 to q30, tenants t1 and t2), freshly built on every call so that
// callers may modify them.
func QueryDataset() []QueryDoc {
	return []QueryDoc{
		{"q01", "t1", map[string]any{
			"@timestamp":  "2026-03-01T08:00:00Z",
			"event":       map[string]any{"dataset": "sshd", "category": []any{"authentication"}, "outcome": "failure", "original": "Mar  1 08:00:00 srv-01 sshd[1234]: Failed password for root from 203.0.113.7 port 52211 ssh2"},
			"source":      map[string]any{"ip": "203.0.113.7", "port": 52211},
			"destination": map[string]any{"ip": "10.1.0.5", "port": 22},
			"user":        map[string]any{"name": "root"},
			"message":     "Failed password for root from 203.0.113.7 port 52211 ssh2",
			"related":     map[string]any{"ip": []any{"203.0.113.7", "10.1.0.5"}},
			"host":        map[string]any{"name": "srv-01"},
			"tags":        []any{"ssh", "bruteforce"},
		}},
		{"q02", "t1", map[string]any{
			"@timestamp":  "2026-03-01T08:00:05Z",
			"event":       map[string]any{"dataset": "sshd", "category": []any{"authentication"}, "outcome": "failure"},
			"source":      map[string]any{"ip": "203.0.113.7"},
			"destination": map[string]any{"ip": "10.1.0.5", "port": 22},
			"user":        map[string]any{"name": "Admin"},
			"message":     "Failed password for invalid user Admin from 203.0.113.7 port 52213 ssh2",
			"related":     map[string]any{"ip": []any{"203.0.113.7", "10.1.0.5"}},
			"host":        map[string]any{"name": "srv-01"},
			"tags":        []any{"ssh"},
		}},
		{"q03", "t1", map[string]any{
			"@timestamp":  "2026-03-01T09:15:00.250Z",
			"event":       map[string]any{"dataset": "sshd", "category": []any{"authentication"}, "outcome": "success"},
			"source":      map[string]any{"ip": "10.1.2.3"},
			"destination": map[string]any{"ip": "10.1.0.5", "port": 22},
			"user":        map[string]any{"name": "mario.rossi"},
			"message":     "Accepted publickey for mario.rossi from 10.1.2.3 port 40022 ssh2: ED25519 SHA256:abc",
			"related":     map[string]any{"ip": []any{"10.1.2.3", "10.1.0.5"}},
			"host":        map[string]any{"name": "srv-01"},
		}},
		{"q04", "t2", map[string]any{
			"@timestamp":  "2026-03-02T10:00:00Z",
			"event":       map[string]any{"dataset": "sshd", "category": []any{"authentication"}, "outcome": "failure"},
			"source":      map[string]any{"ip": "2001:db8:85a3::8a2e:370:7334"},
			"destination": map[string]any{"ip": "2001:db8:1::10", "port": 2222},
			"user":        map[string]any{"name": "ROOT"},
			"message":     "Failed password for ROOT from 2001:db8:85a3::8a2e:370:7334 port 6000 ssh2",
			"related":     map[string]any{"ip": []any{"2001:db8:85a3::8a2e:370:7334", "2001:db8:1::10"}},
			"host":        map[string]any{"name": "fw-comune"},
			"tags":        []any{"ssh", "ipv6"},
		}},
		{"q05", "t2", map[string]any{
			"@timestamp":  "2026-03-02T11:00:00Z",
			"event":       map[string]any{"dataset": "nginx.access", "category": []any{"web"}, "outcome": "failure", "original": `198.51.100.23 - - [02/Mar/2026:11:00:00 +0000] "GET /wp-login.php HTTP/1.1" 404 153 "-" "Mozilla/5.0"`},
			"source":      map[string]any{"ip": "198.51.100.23"},
			"destination": map[string]any{"ip": "10.2.0.80", "port": 443},
			"http":        map[string]any{"response": map[string]any{"status_code": 404}},
			"url":         map[string]any{"path": "/wp-login.php"},
			"message":     "GET /wp-login.php HTTP/1.1 404",
			"network":     map[string]any{"bytes": 153},
			"related":     map[string]any{"ip": []any{"198.51.100.23", "10.2.0.80"}},
			"tags":        []any{"web", "scanner"},
		}},
		{"q06", "t2", map[string]any{
			"@timestamp":  "2026-03-02T11:00:01Z",
			"event":       map[string]any{"dataset": "nginx.access", "category": []any{"web"}, "outcome": "success"},
			"source":      map[string]any{"ip": "198.51.100.24"},
			"destination": map[string]any{"ip": "10.2.0.80", "port": 443},
			"http":        map[string]any{"response": map[string]any{"status_code": 200}},
			"url":         map[string]any{"path": "/index.html"},
			"message":     "GET /index.html HTTP/1.1 200",
			"network":     map[string]any{"bytes": 5120},
			"related":     map[string]any{"ip": []any{"198.51.100.24", "10.2.0.80"}},
			"tags":        []any{"web"},
		}},
		{"q07", "t2", map[string]any{
			"@timestamp":  "2026-03-02T11:05:00Z",
			"event":       map[string]any{"dataset": "nginx.access", "category": []any{"web"}, "outcome": "failure"},
			"source":      map[string]any{"ip": "198.51.100.23"},
			"destination": map[string]any{"ip": "10.2.0.80", "port": 443},
			"http":        map[string]any{"response": map[string]any{"status_code": 500}},
			"url":         map[string]any{"path": "/api/v1/login"},
			"message":     "POST /api/v1/login HTTP/1.1 500 - upstream timed out",
			"network":     map[string]any{"bytes": 0},
			"tags":        []any{"web"},
		}},
		{"q08", "t2", map[string]any{
			"@timestamp":  "2026-03-03T00:00:00Z",
			"event":       map[string]any{"dataset": "nginx.access", "category": []any{"web"}, "outcome": "failure"},
			"source":      map[string]any{"ip": "192.0.2.200"},
			"destination": map[string]any{"ip": "10.2.0.81", "port": 80},
			"http":        map[string]any{"response": map[string]any{"status_code": 503}},
			"url":         map[string]any{"path": "/Status"},
			"message":     "GET /Status HTTP/1.0 503 Service Unavailable",
			"network":     map[string]any{"bytes": 512},
		}},
		{"q09", "t1", map[string]any{
			"@timestamp":  "2026-03-03T02:00:00Z",
			"event":       map[string]any{"dataset": "flow", "category": []any{"network"}},
			"source":      map[string]any{"ip": "10.1.0.7", "port": 51000},
			"destination": map[string]any{"ip": "185.220.101.4", "port": 443},
			"network":     map[string]any{"bytes": int64(4500000000), "direction": "outbound", "transport": "tcp"},
			"related":     map[string]any{"ip": []any{"10.1.0.7", "185.220.101.4"}},
			"tags":        []any{"tor-exit", "exfil"},
			"message":     "flow 10.1.0.7:51000 -> 185.220.101.4:443 tcp",
		}},
		{"q10", "t1", map[string]any{
			"@timestamp":  "2026-03-03T02:10:00Z",
			"event":       map[string]any{"dataset": "flow", "category": []any{"network"}},
			"source":      map[string]any{"ip": "10.1.0.8"},
			"destination": map[string]any{"ip": "10.1.0.5", "port": 3389},
			"network":     map[string]any{"bytes": 1024, "direction": "internal"},
			"related":     map[string]any{"ip": []any{"10.1.0.8", "10.1.0.5"}},
		}},
		{"q11", "t2", map[string]any{
			"@timestamp":  "2026-03-03T03:00:00Z",
			"event":       map[string]any{"dataset": "flow", "category": []any{"network"}},
			"source":      map[string]any{"ip": "2001:db8:1::10"},
			"destination": map[string]any{"ip": "2a00:1450:4002::65", "port": 443},
			"network":     map[string]any{"bytes": int64(1099511627776), "direction": "outbound"},
			"related":     map[string]any{"ip": []any{"2001:db8:1::10", "2a00:1450:4002::65"}},
		}},
		{"q12", "t1", map[string]any{
			"@timestamp":  "2026-03-04T12:00:00Z",
			"event":       map[string]any{"dataset": "dns", "category": []any{"network"}},
			"source":      map[string]any{"ip": "10.1.0.9"},
			"destination": map[string]any{"ip": "10.1.0.53", "port": 53},
			"dns":         map[string]any{"question": map[string]any{"name": "evil.duckdns.org", "type": "A"}},
			"message":     "query evil.duckdns.org A from 10.1.0.9",
			"related":     map[string]any{"ip": []any{"10.1.0.9", "10.1.0.53"}},
			"tags":        []any{"dns", "ioc"},
		}},
		{"q13", "t1", map[string]any{
			"@timestamp": "2026-03-04T12:30:00Z",
			"event":      map[string]any{"dataset": "sudo", "category": []any{"process", "iam"}},
			"user":       map[string]any{"name": "mario.rossi", "target": map[string]any{"name": "root"}},
			"process":    map[string]any{"name": "sudo"},
			"message":    "mario.rossi : TTY=pts/0 ; PWD=/home/mario.rossi ; USER=root ; COMMAND=/usr/bin/systemctl restart nginx",
			"host":       map[string]any{"name": "srv-01", "ip": []any{"10.1.0.5", "fe80::1"}},
		}},
		{"q14", "t2", map[string]any{
			"@timestamp": "2026-03-05T09:00:00Z",
			"event":      map[string]any{"dataset": "windows.sysmon", "category": []any{"process"}},
			"user":       map[string]any{"name": `CORP\Administrator`},
			"process":    map[string]any{"name": "powershell.exe", "command_line": "powershell.exe -nop -enc SQBFAFgA"},
			"message":    "Process Create: powershell.exe -nop -enc SQBFAFgA",
			"host":       map[string]any{"name": "pc-ragioneria", "ip": []any{"10.2.5.20"}},
		}},
		{"q15", "t2", map[string]any{
			"@timestamp":  "2026-03-05T10:00:00Z",
			"event":       map[string]any{"dataset": "fortigate", "category": []any{"network"}, "type": []any{"denied", "connection"}, "original": "<134>date=2026-03-05 time=10:00:00 devname=FG100 action=deny srcip=45.33.32.156 dstip=10.2.0.1 dstport=23"},
			"source":      map[string]any{"ip": "45.33.32.156"},
			"destination": map[string]any{"ip": "10.2.0.1", "port": 23},
			"message":     "deny tcp 45.33.32.156:41000 -> 10.2.0.1:23 (telnet) policy=7",
			"network":     map[string]any{"bytes": 60},
			"related":     map[string]any{"ip": []any{"45.33.32.156", "10.2.0.1"}},
			"tags":        []any{"scanner", "firewall"},
		}},
		{"q16", "t1", map[string]any{
			"@timestamp": "2026-03-05T11:00:00Z",
			"event":      map[string]any{"dataset": "app.unparsed"},
			"message":    "Città di Firenze: backup completato (100%)",
		}},
		{"q17", "t1", map[string]any{
			"@timestamp": "2026-03-05T12:00:00Z",
			"event":      map[string]any{"dataset": "sshd", "category": []any{"authentication"}},
			"source":     map[string]any{"ip": "10.1.2.3"},
			"user":       map[string]any{"name": nil},
			"tags":       []any{},
			"message":    "Connection closed by 10.1.2.3 port 5000 [preauth]",
		}},
		{"q18", "t2", map[string]any{
			"@timestamp":  "2026-03-06T06:00:00Z",
			"event":       map[string]any{"dataset": "cisco.asa", "category": []any{"network"}, "original": `%ASA-4-106023: Deny udp src outside:203.0.113.99/5353 dst inside:10.2.0.9/5353 by access-group "outside_in"`},
			"source":      map[string]any{"ip": "203.0.113.99"},
			"destination": map[string]any{"ip": "10.2.0.9", "port": 5353},
			"tags":        []any{"firewall"},
		}},
		{"q19", "t1", map[string]any{
			"@timestamp":  "2026-03-06T07:00:00Z",
			"event":       map[string]any{"dataset": "nginx.access", "category": []any{"web"}, "outcome": "success"},
			"source":      map[string]any{"ip": "10.1.2.50"},
			"destination": map[string]any{"ip": "10.1.0.80", "port": 8080},
			"http":        map[string]any{"response": map[string]any{"status_code": 302}},
			"url":         map[string]any{"path": "/login"},
			"user":        map[string]any{"name": "svc-backup"},
			"message":     "POST /login HTTP/1.1 302",
			"network":     map[string]any{"bytes": 2048},
		}},
		{"q20", "t1", map[string]any{
			"@timestamp":  "2026-03-06T08:00:00Z",
			"event":       map[string]any{"dataset": "sshd", "category": []any{"authentication"}, "outcome": "failure"},
			"source":      map[string]any{"ip": "203.0.113.8"},
			"destination": map[string]any{"ip": "10.1.0.5", "port": 22},
			"user":        map[string]any{"name": "administrator"},
			"message":     "Failed password for invalid user administrator from 203.0.113.8 port 40000 ssh2",
			"related":     map[string]any{"ip": []any{"203.0.113.8", "10.1.0.5"}},
			"tags":        []any{"ssh", "bruteforce"},
		}},
		{"q21", "t2", map[string]any{
			"@timestamp":  "2026-03-06T09:00:00Z",
			"event":       map[string]any{"dataset": "sshd", "category": []any{"authentication"}, "outcome": "failure"},
			"source":      map[string]any{"ip": "198.51.100.99"},
			"destination": map[string]any{"port": 22},
			"user":        map[string]any{"name": "adm1n"},
			"message":     "Invalid user adm1n from 198.51.100.99 port 2222",
		}},
		{"q22", "t2", map[string]any{
			"@timestamp":  "2026-03-06T10:00:00Z",
			"event":       map[string]any{"dataset": "nginx.access", "category": []any{"web"}, "outcome": "success"},
			"source":      map[string]any{"ip": "192.0.2.10"},
			"destination": map[string]any{"port": 443},
			"http":        map[string]any{"response": map[string]any{"status_code": 200}},
			"url":         map[string]any{"path": "/files/report*2026.pdf"},
			"message":     "Downloaded report*2026.pdf (2.5 MB)",
			"network":     map[string]any{"bytes": 2621440},
		}},
		// Dotted keys only.
		{"q23", "t1", map[string]any{
			"@timestamp":       "2026-03-07T00:00:00Z",
			"event.dataset":    "sshd",
			"event.category":   []any{"authentication"},
			"event.outcome":    "failure",
			"source.ip":        "203.0.113.250",
			"destination.port": 22,
			"user.name":        "Root",
			"message":          "Failed password for Root from 203.0.113.250 port 1 ssh2",
			"related.ip":       []any{"203.0.113.250"},
		}},
		// Nested and dotted keys under the same prefix.
		{"q24", "t2", map[string]any{
			"@timestamp":       "2026-03-07T01:00:00Z",
			"event":            map[string]any{"dataset": "flow", "category": []any{"network"}},
			"source":           map[string]any{"ip": "172.16.5.4"},
			"source.port":      5060,
			"destination.port": 5060,
			"network":          map[string]any{"bytes": 300},
			"message":          "SIP REGISTER from 172.16.5.4",
		}},
		// Written with an offset: 2026-03-03T23:30:00Z.
		{"q25", "t1", map[string]any{
			"@timestamp":  "2026-03-04T01:30:00+02:00",
			"event":       map[string]any{"dataset": "flow", "category": []any{"network"}},
			"source":      map[string]any{"ip": "10.1.0.7"},
			"destination": map[string]any{"ip": "8.8.8.8", "port": 53},
			"network":     map[string]any{"bytes": 80, "direction": "outbound"},
			"related":     map[string]any{"ip": []any{"10.1.0.7", "8.8.8.8"}},
		}},
		{"q26", "t2", map[string]any{
			"@timestamp":  "2026-03-04T20:00:00Z",
			"event":       map[string]any{"dataset": "suricata", "category": []any{"network", "intrusion_detection"}},
			"source":      map[string]any{"ip": "185.220.101.4"},
			"destination": map[string]any{"ip": "10.2.0.80", "port": 80},
			"message":     "ET TOR Known Tor Exit Node Traffic group 4",
			"related":     map[string]any{"ip": []any{"185.220.101.4", "10.2.0.80"}},
			"tags":        []any{"ioc", "tor-exit"},
		}},
		{"q27", "t1", map[string]any{
			"@timestamp": "2026-03-05T07:59:59Z",
			"event":      map[string]any{"dataset": "vpn", "category": []any{"authentication", "network"}, "outcome": "success"},
			"source":     map[string]any{"ip": "2001:db8:85a3::1"},
			"user":       map[string]any{"name": "Mario.Rossi"},
			"message":    "VPN login ok for Mario.Rossi",
			"related":    map[string]any{"ip": []any{"2001:db8:85a3::1", "10.1.0.1"}},
		}},
		{"q28", "t2", map[string]any{
			"@timestamp":  "2026-03-07T12:00:00Z",
			"event":       map[string]any{"dataset": "nginx.access", "category": []any{"web"}, "outcome": "failure"},
			"source":      map[string]any{"ip": "198.51.100.23"},
			"destination": map[string]any{"port": 443},
			"http":        map[string]any{"response": map[string]any{"status_code": 404}},
			"url":         map[string]any{"path": "/.env"},
			"message":     "GET /.env HTTP/1.1 404",
			"network":     map[string]any{"bytes": 153},
			"tags":        []any{"web", "scanner"},
		}},
		// Almost empty.
		{"q29", "t1", map[string]any{
			"@timestamp": "2026-03-01T00:00:00Z",
			"event":      map[string]any{"dataset": "heartbeat"},
		}},
		{"q30", "t2", map[string]any{
			"@timestamp": "2026-03-02T00:00:00Z",
			"event":      map[string]any{"dataset": "app", "category": []any{"authentication"}, "outcome": "failure"},
			"user":       map[string]any{"name": "guest"},
			"message":    "password failed for user guest",
		}},
	}
}

// allQueryDocs lists every id of QueryDataset.
var allQueryDocs = []string{"q01", "q02", "q03", "q04", "q05", "q06", "q07", "q08", "q09", "q10",
	"q11", "q12", "q13", "q14", "q15", "q16", "q17", "q18", "q19", "q20",
	"q21", "q22", "q23", "q24", "q25", "q26", "q27", "q28", "q29", "q30"}

// QueryCases are run in regional scope over the events collection holding
// QueryDataset, with no time range.
var QueryCases = []QueryCase{
	// Everything.
	{"empty query", ``, allQueryDocs},
	{"star", `*`, allQueryDocs},

	// Keyword equality ignores case.
	{"keyword eq", `user.name:root`, []string{"q01", "q04", "q23"}},
	{"keyword eq upper case query", `user.name:MARIO.ROSSI`, []string{"q03", "q13", "q27"}},
	{"keyword quoted is exact", `user.name:"Admin"`, []string{"q02"}},
	{"keyword with hyphen", `user.name:svc-backup`, []string{"q19"}},
	{"keyword escaped backslash", `user.name:corp\\administrator`, []string{"q14"}},
	{"keyword quoted backslash", `user.name:"CORP\\Administrator"`, []string{"q14"}},
	{"keyword quoted backslash kept", `user.name:"CORP\Administrator"`, []string{"q14"}},
	{"keyword case of path", `url.path:/status`, []string{"q08"}},
	{"keyword literal star escaped", `url.path:/files/report\*2026.pdf`, []string{"q22"}},

	// Keyword wildcards.
	{"wildcard trailing", `user.name:adm*`, []string{"q02", "q20", "q21"}},
	{"wildcard leading", `user.name:*rossi`, []string{"q03", "q13", "q27"}},
	{"wildcard middle", `user.name:a*n`, []string{"q02", "q21"}},
	{"wildcard question mark", `user.name:adm?n`, []string{"q02", "q21"}},
	{"wildcard both ends", `url.path:*login*`, []string{"q05", "q07", "q19"}},
	{"wildcard after escaped backslash", `user.name:corp\\*`, []string{"q14"}},
	{"wildcard around literal star", `url.path:*\**`, []string{"q22"}},
	{"wildcard upper case pattern", `host.name:SRV-*`, []string{"q01", "q02", "q03", "q13"}},
	{"wildcard domain suffix", `dns.question.name:*.duckdns.org`, []string{"q12"}},
	{"wildcard inside command line", `process.command_line:*-enc*`, []string{"q14"}},

	// Text fields: words and phrases.
	{"text word", `message:password`, []string{"q01", "q02", "q04", "q20", "q23", "q30"}},
	{"text number word", `message:404`, []string{"q05", "q28"}},
	{"text phrase", `message:"failed password"`, []string{"q01", "q02", "q04", "q20", "q23"}},
	{"text phrase ignores case", `message:"FAILED PASSWORD FOR ROOT"`, []string{"q01", "q04", "q23"}},
	{"text unquoted punctuation is a phrase", `message:wp-login`, []string{"q05"}},
	{"text address as phrase", `message:10.1.2.3`, []string{"q03", "q17"}},
	{"text non-ASCII word", `message:CITTÀ`, []string{"q16"}},
	{"text phrase across punctuation", `message:"backup completato 100"`, []string{"q16"}},
	{"text wildcard", `message:admin*`, []string{"q02", "q20"}},
	{"text wildcard question mark", `message:ss?2`, []string{"q01", "q02", "q03", "q04", "q20", "q23"}},
	{"text phrase in event.original", `event.original:"srcip 45.33.32.156"`, []string{"q15"}},
	{"text field group is AND", `message:(failed invalid)`, []string{"q02", "q20"}},

	// Terms without a field search message and event.original.
	{"default field word", `deny`, []string{"q15", "q18"}},
	{"default field only in event.original", `mozilla`, []string{"q05"}},
	{"default field phrase", `"access group"`, []string{"q18"}},
	{"default field two words", `failed root`, []string{"q01", "q04", "q23"}},
	{"default field wildcard", `tel*`, []string{"q15"}},

	// Numbers.
	{"long eq", `destination.port:22`, []string{"q01", "q02", "q03", "q20", "q21", "q23"}},
	{"range inclusive", `destination.port:[22 TO 80]`, []string{"q01", "q02", "q03", "q08", "q12", "q15", "q20", "q21", "q23", "q25", "q26"}},
	{"range exclusive", `destination.port:{22 TO 80}`, []string{"q12", "q15", "q25"}},
	{"range mixed", `destination.port:[53 TO 443}`, []string{"q08", "q12", "q25", "q26"}},
	{"range open upper", `destination.port:[5000 TO *]`, []string{"q18", "q19", "q24"}},
	{"gte", `destination.port>=3389`, []string{"q10", "q18", "q19", "q24"}},
	{"gte status", `http.response.status_code>=500`, []string{"q07", "q08"}},
	{"lt status", `http.response.status_code < 300`, []string{"q06", "q22"}},
	{"beyond 32 bits", `network.bytes>4294967295`, []string{"q09", "q11"}},
	{"range from zero", `network.bytes:[0 TO 153]`, []string{"q05", "q07", "q15", "q25", "q28"}},
	{"field group with a range", `destination.port:(22 OR [5000 TO 6000])`, []string{"q01", "q02", "q03", "q18", "q20", "q21", "q23", "q24"}},

	// Times.
	{"date range of bare dates", `@timestamp:[2026-03-02 TO 2026-03-03}`, []string{"q04", "q05", "q06", "q07", "q30"}},
	{"time range inclusive ends", `@timestamp:[2026-03-02T11:00:00Z TO 2026-03-03T00:00:00Z]`, []string{"q05", "q06", "q07", "q08"}},
	{"time gt excludes the bound", `@timestamp>2026-03-06T09:00:00Z`, []string{"q22", "q23", "q24", "q28"}},
	{"stored offset compared as an instant", `@timestamp:[2026-03-03T23:00:00Z TO 2026-03-04T00:00:00Z}`, []string{"q25"}},
	{"whole day", `@timestamp:2026-03-01`, []string{"q01", "q02", "q03", "q29"}},
	{"query offset", `@timestamp<2026-03-01T09:00:00+01:00`, []string{"q29"}},
	{"fractional seconds", `@timestamp>2026-03-01T09:15:00.1Z AND @timestamp<2026-03-01T09:15:00.3Z`, []string{"q03"}},

	// IP addresses.
	{"cidr v4 /24", `source.ip:203.0.113.0/24`, []string{"q01", "q02", "q18", "q20", "q23"}},
	{"cidr v4 /8", `source.ip:10.0.0.0/8`, []string{"q03", "q09", "q10", "q12", "q17", "q19", "q25"}},
	{"cidr v6 /48", `source.ip:2001:db8:85a3::/48`, []string{"q04", "q27"}},
	{"cidr v6 /32", `source.ip:2001:db8::/32`, []string{"q04", "q11", "q27"}},
	{"ip eq v6 long form", `source.ip:2001:DB8:85A3:0:0:8A2E:370:7334`, []string{"q04"}},
	{"ip eq v4", `destination.ip:10.2.0.80`, []string{"q05", "q06", "q07", "q26"}},
	{"ip range", `source.ip:[198.51.100.0 TO 198.51.100.24]`, []string{"q05", "q06", "q07", "q28"}},
	{"cidr on a list", `related.ip:185.220.100.0/22`, []string{"q09", "q26"}},
	{"ip eq on a list", `related.ip:10.1.0.5`, []string{"q01", "q02", "q03", "q10", "q20"}},
	{"cidr v6 on a list", `host.ip:fe80::/10`, []string{"q13"}},
	{"cidr v4 on a list", `host.ip:10.0.0.0/8`, []string{"q13", "q14"}},
	{"nested and dotted keys", `source.port:5060 AND source.ip:172.16.0.0/12`, []string{"q24"}},

	// Lists.
	{"list keyword", `event.category:network`, []string{"q09", "q10", "q11", "q12", "q15", "q18", "q24", "q25", "q26", "q27"}},
	{"list field group AND", `event.category:(authentication AND network)`, []string{"q27"}},
	{"list field group OR", `event.category:(process OR iam)`, []string{"q13", "q14"}},
	{"list wildcard", `tags:tor*`, []string{"q09", "q26"}},
	{"list ignores case", `tags:SCANNER`, []string{"q05", "q15", "q28"}},

	// Existence.
	{"exists skips null", `user.name:*`, []string{"q01", "q02", "q03", "q04", "q13", "q14", "q19", "q20", "q21", "q23", "q27", "q30"}},
	{"missing", `NOT user.name:*`, []string{"q05", "q06", "q07", "q08", "q09", "q10", "q11", "q12", "q15", "q16", "q17", "q18", "q22", "q24", "q25", "q26", "q28", "q29"}},
	{"exists skips empty list", `tags:*`, []string{"q01", "q02", "q04", "q05", "q06", "q07", "q09", "q12", "q15", "q18", "q20", "q26", "q28"}},
	{"exists and missing", `destination.ip:* AND NOT related.ip:*`, []string{"q07", "q08", "q18", "q19"}},

	// Boolean operators.
	{"NOT matches a missing field", `event.dataset:sshd AND NOT user.name:root`, []string{"q02", "q03", "q17", "q20", "q21"}},
	{"NOT range matches a missing field", `NOT destination.port<1024`, []string{"q04", "q10", "q13", "q14", "q16", "q17", "q18", "q19", "q24", "q27", "q29", "q30"}},
	{"AND before OR", `user.name:root OR user.name:admin AND destination.port:22`, []string{"q01", "q02", "q04", "q23"}},
	{"parentheses", `(user.name:root OR user.name:admin) AND destination.port:2222`, []string{"q04"}},
	{"juxtaposition is AND", `event.dataset:nginx.access http.response.status_code:404`, []string{"q05", "q28"}},
	{"minus is NOT", `event.dataset:nginx.access -tags:scanner`, []string{"q06", "q07", "q08", "q19", "q22"}},
	{"NOT of a group", `event.category:authentication AND NOT (event.outcome:failure OR source.ip:10.0.0.0/8)`, []string{"q27"}},
	{"double negation", `NOT NOT user.name:guest`, []string{"q30"}},
	{"OR across types", `http.response.status_code:404 OR source.ip:2001:db8::/32`, []string{"q04", "q05", "q11", "q27", "q28"}},
	{"time and list", `@timestamp>=2026-03-06 AND tags:scanner`, []string{"q28"}},
	{"tenant field", `organization.id:t2 AND event.dataset:sshd`, []string{"q04", "q21"}},
	{"no match", `user.name:nobody`, nil},
}

// BadQueryCases must be refused by every backend.
var BadQueryCases = []BadQueryCase{
	{"unknown field", `sorce.ip:10.0.0.1`, `unknown field "sorce.ip"`},
	{"CIDR on a keyword field", `user.name:10.0.0.0/8`, `CIDR works on IP fields only`},
	{"range on a keyword field", `user.name:[a TO z]`, `range on keyword field "user.name"`},
	{"comparison on a text field", `message>5`, `range on text field "message"`},
	{"impossible date", `@timestamp>2026-02-30`, `field "@timestamp" takes dates`},
	{"not a date", `@timestamp:[yesterday TO *]`, `field "@timestamp" takes dates`},
	{"decimal on a long field", `destination.port:22.5`, `field "destination.port" takes whole numbers`},
	{"wildcard on an IP field", `source.ip:10.*`, `wildcards work on keyword and text fields only`},
	{"bad IP address", `source.ip:10.0.0.300`, `field "source.ip" takes IP addresses`},
	{"unclosed parenthesis", `(user.name:root OR user.name:admin`, `"(" is never closed`},
	{"extra closing parenthesis", `user.name:root)`, `unexpected ")"`},
	{"unclosed quote", `message:"failed password`, `quoted string is never closed`},
	{"dangling AND", `user.name:root AND`, `AND needs a term on both sides`},
	{"range without TO", `destination.port:[1 5]`, `expected " TO " in the range`},
}
