package l7

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

func TestParseHTTPRequest(t *testing.T) {
	raw := "POST /submit?q=1 HTTP/1.1\r\n" +
		"hOsT:  www.example.com:8080 \r\n" +
		"User-Agent: curl/8.5.0\r\n" +
		"X-Folded: a\r\n  b\r\n" +
		"Content-Length: 5\r\n" +
		"Host: second.example\r\n" +
		"\r\nhello" + "GET /next HTTP/1.0\r\n\r\n"
	req, n, err := ParseHTTPRequest([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	want := HTTPRequest{Method: "POST", URI: "/submit?q=1", Version: "1.1", Host: "www.example.com:8080", UserAgent: "curl/8.5.0", ContentLength: 5}
	if req != want {
		t.Errorf("req = %+v\nwant %+v", req, want)
	}
	if !strings.HasPrefix(raw[n:], "hello") {
		t.Fatalf("consumed %d, rest %q", n, raw[n:])
	}
	// Pipelining: skip the body and parse the next request.
	next := raw[n+int(req.ContentLength):]
	req2, n2, err := ParseHTTPRequest([]byte(next))
	if err != nil || req2.Method != "GET" || req2.URI != "/next" || req2.Version != "1.0" || req2.Host != "" || req2.ContentLength != -1 || n2 != len(next) {
		t.Errorf("second request = %+v, %d, %v", req2, n2, err)
	}
}

func TestParseHTTPRequestVariants(t *testing.T) {
	tests := []struct {
		raw  string
		want HTTPRequest
	}{
		{"GET / HTTP/1.1\nHost: a\n\n", HTTPRequest{Method: "GET", URI: "/", Version: "1.1", Host: "a", ContentLength: -1}},
		{"PUT /x HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\nContent-Length: 9\r\n\r\n",
			HTTPRequest{Method: "PUT", URI: "/x", Version: "1.1", ContentLength: 9, Chunked: true}},
		{"CUSTOM-M * HTTP/2.0\r\nContent-Length: -4\r\n\r\n", HTTPRequest{Method: "CUSTOM-M", URI: "*", Version: "2.0", ContentLength: -1}},
		{"GET /\xc3\xa8 HTTP/1.1\r\nUser-Agent: t\x01\\\r\n\r\n", HTTPRequest{Method: "GET", URI: `/\xc3\xa8`, Version: "1.1", UserAgent: `t\x01\x5c`, ContentLength: -1}},
		{"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", HTTPRequest{Method: "CONNECT", URI: "example.com:443", Version: "1.1", Host: "example.com:443", ContentLength: -1}},
	}
	for _, tc := range tests {
		got, n, err := ParseHTTPRequest([]byte(tc.raw))
		if err != nil || got != tc.want || n != len(tc.raw) {
			t.Errorf("%q:\n got %+v %d %v\nwant %+v %d", tc.raw, got, n, err, tc.want, len(tc.raw))
		}
	}
	long := "GET /" + strings.Repeat("a", 3000) + " HTTP/1.1\r\n\r\n"
	if got, _, err := ParseHTTPRequest([]byte(long)); err != nil || len(got.URI) != MaxFieldLen {
		t.Errorf("long URI: len %d, %v", len(got.URI), err)
	}
}

func TestParseHTTPRequestErrors(t *testing.T) {
	tests := map[string]struct {
		raw  string
		want error
	}{
		"tls bytes":        {"\x16\x03\x01\x02\x00\x01", ErrMalformed},
		"lowercase space":  {" GET / HTTP/1.1\r\n", ErrMalformed},
		"no version":       {"GET /\r\n\r\n", ErrMalformed},
		"bad version":      {"GET / HTTP/1.x\r\n\r\n", ErrMalformed},
		"ctl in URI":       {"GET /a\x00b HTTP/1.1\r\n\r\n", ErrMalformed},
		"long method":      {strings.Repeat("A", 40) + " / HTTP/1.1\r\n\r\n", ErrMalformed},
		"too many headers": {"GET / HTTP/1.1\r\n" + strings.Repeat("X: y\r\n", MaxHTTPHeaders+1) + "\r\n", ErrMalformed},
		"head too large":   {"GET / HTTP/1.1\r\nX: " + strings.Repeat("y", MaxHTTPHeaderBytes), ErrMalformed},
		"empty":            {"", ErrIncomplete},
		"method only":      {"GET", ErrIncomplete},
		"headers cut":      {"GET / HTTP/1.1\r\nHost: a\r\n", ErrIncomplete},
		"bad line early":   {"GET /\r\nHost: a", ErrMalformed},
	}
	for name, tc := range tests {
		if _, n, err := ParseHTTPRequest([]byte(tc.raw)); !errors.Is(err, tc.want) || n != 0 {
			t.Errorf("%s: err = %v, n = %d, want %v", name, err, n, tc.want)
		}
	}
	// Every proper prefix of a valid request is incomplete, never malformed.
	raw := "GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: x\r\n\r\n"
	for i := range len(raw) {
		if _, _, err := ParseHTTPRequest([]byte(raw[:i])); !errors.Is(err, ErrIncomplete) {
			t.Fatalf("prefix %q: err = %v, want ErrIncomplete", raw[:i], err)
		}
	}
}

func TestParseHTTPResponse(t *testing.T) {
	tests := []struct {
		raw  string
		want HTTPResponse
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", HTTPResponse{Version: "1.1", StatusCode: 200, Reason: "OK", ContentLength: 12}},
		{"HTTP/1.0 304 Not Modified\r\n\r\n", HTTPResponse{Version: "1.0", StatusCode: 304, Reason: "Not Modified", ContentLength: -1}},
		{"HTTP/1.1 204\r\n\r\n", HTTPResponse{Version: "1.1", StatusCode: 204, ContentLength: -1}},
		{"HTTP/1.1 404 Nicht gefunden \xff\nTransfer-Encoding: chunked\n\n", HTTPResponse{Version: "1.1", StatusCode: 404, Reason: `Nicht gefunden \xff`, ContentLength: -1, Chunked: true}},
	}
	for _, tc := range tests {
		got, n, err := ParseHTTPResponse([]byte(tc.raw + "body"))
		if err != nil || got != tc.want || n != len(tc.raw) {
			t.Errorf("%q:\n got %+v %d %v\nwant %+v", tc.raw, got, n, err, tc.want)
		}
	}
	for _, bad := range []string{"HTTP/1.1 20 OK\r\n\r\n", "HTTP/1.1 2000\r\n\r\n", "SSH-2.0-OpenSSH\r\n", "HTTP/x.1 200 OK\r\n\r\n", "HTTP/1.1 200 OK\r\n" + strings.Repeat("X: y\r\n", MaxHTTPHeaders+1) + "\r\n"} {
		if _, _, err := ParseHTTPResponse([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: err = %v, want ErrMalformed", bad, err)
		}
	}
	raw := "HTTP/1.1 301 Moved Permanently\r\nLocation: /\r\n\r\n"
	for i := range len(raw) {
		if _, _, err := ParseHTTPResponse([]byte(raw[:i])); !errors.Is(err, ErrIncomplete) {
			t.Fatalf("prefix %q: err = %v, want ErrIncomplete", raw[:i], err)
		}
	}
}

func TestLooksLikeHTTP(t *testing.T) {
	for _, b := range []string{"GET / HTTP/1.1", "G", "OPTIONS * HTTP/1.1", "PROPFIND /dav"} {
		if !LooksLikeHTTPRequest([]byte(b)) {
			t.Errorf("LooksLikeHTTPRequest(%q) = false", b)
		}
	}
	for _, b := range []string{"", "GETX / HTTP/1.1", "get / HTTP/1.1", "\x16\x03\x01", "SSH-2.0"} {
		if LooksLikeHTTPRequest([]byte(b)) {
			t.Errorf("LooksLikeHTTPRequest(%q) = true", b)
		}
	}
	if !LooksLikeHTTPResponse([]byte("HTTP/1.1 200 OK")) || LooksLikeHTTPResponse([]byte("HTTP/1.1")) {
		t.Error("LooksLikeHTTPResponse")
	}
}

func unsetDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// TestHTTPAgainstZeek parses every request and response of the HTTP
// connections of wikipedia.pcap and Teredo.pcap (pipelined requests included, bodies
// skipped by Content-Length) and compares them with Zeek's http.log:
// method, host, URI, user agent, reply version, status code and message.
func TestHTTPAgainstZeek(t *testing.T) {
	for _, tc := range []struct{ trace, log string }{
		{"pcaps/zeek/Traces/wikipedia.pcap", "pcaps/zeek/Baseline/opt.basic/http.log"},
		{"pcaps/zeek/Traces/tunnels/Teredo.pcap", "pcaps/zeek/Baseline/core.tunnels.teredo/http.log"},
	} {
		t.Run(tc.trace, func(t *testing.T) { httpAgainstZeek(t, tc.trace, tc.log) })
	}
}

func httpAgainstZeek(t *testing.T, trace, log string) {
	c := readPcap(t, sharedFile(t, trace))
	rows := zeekLog(t, sharedFile(t, log))
	type tx struct {
		req  HTTPRequest
		resp *HTTPResponse
	}
	byConn := map[string][]tx{}
	for _, s := range c.tcp {
		if !LooksLikeHTTPRequest(s.client) {
			continue
		}
		var txs []tx
		for b := s.client; len(b) > 0; {
			req, n, err := ParseHTTPRequest(b)
			if err != nil {
				t.Errorf("%v: ParseHTTPRequest: %v", s.orig, err)
				break
			}
			txs = append(txs, tx{req: req})
			b = b[n+max(0, int(req.ContentLength)):]
		}
		i := 0
		for b := s.server; len(b) > 0 && i < len(txs); {
			resp, n, err := ParseHTTPResponse(b)
			if err != nil {
				t.Errorf("%v: ParseHTTPResponse: %v", s.orig, err)
				break
			}
			b = b[n:]
			if resp.Chunked {
				m, err := SkipChunkedBody(b)
				if err != nil {
					t.Errorf("%v: SkipChunkedBody: %v", s.orig, err)
					break
				}
				b = b[m:]
			}
			if !resp.Chunked && resp.StatusCode >= 200 && resp.StatusCode != 204 && resp.StatusCode != 304 && txs[i].req.Method != "HEAD" {
				b = b[min(len(b), max(0, int(resp.ContentLength))):]
			}
			if resp.StatusCode >= 200 {
				txs[i].resp = &resp
				i++
			}
		}
		byConn[s.orig.String()+" "+s.resp.String()] = txs
	}
	compared := 0
	for _, row := range rows {
		key := joinHostPort(row["id.orig_h"], row["id.orig_p"]) + " " + joinHostPort(row["id.resp_h"], row["id.resp_p"])
		depth, _ := strconv.Atoi(row["trans_depth"])
		txs := byConn[key]
		if depth < 1 || depth > len(txs) {
			t.Errorf("%s depth %d: we parsed %d requests", key, depth, len(txs))
			continue
		}
		got := txs[depth-1]
		fields := [][3]string{
			{"method", got.req.Method, row["method"]},
			{"host", unsetDash(got.req.Host), row["host"]},
			{"uri", UnescapeURI(got.req.URI), row["uri"]}, // Zeek logs the unescaped URI
			{"user_agent", unsetDash(got.req.UserAgent), row["user_agent"]},
		}
		if got.resp != nil {
			// Zeek's http.log version is the reply's version.
			reason := unsetDash(got.resp.Reason)
			if got.resp.Reason == "" {
				reason = "<empty>" // what Zeek logs for a missing reason phrase
			}
			fields = append(fields, [3]string{"version", got.resp.Version, row["version"]},
				[3]string{"status_code", strconv.Itoa(got.resp.StatusCode), row["status_code"]},
				[3]string{"status_msg", reason, row["status_msg"]})
		} else if row["status_code"] != "-" {
			t.Errorf("%s depth %d: no response parsed, Zeek has %s", key, depth, row["status_code"])
		}
		for _, f := range fields {
			if f[1] != f[2] {
				t.Errorf("%s depth %d: %s %q, Zeek %q", key, depth, f[0], f[1], f[2])
			}
		}
		compared++
	}
	t.Logf("%d http.log rows compared", compared)
	if compared == 0 {
		t.Fatal("nothing compared")
	}
}

func TestSkipChunkedBody(t *testing.T) {
	body := "4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nExpires: never\r\n\r\n"
	stream := body + "HTTP/1.1 200 OK\r\n\r\n"
	n, err := SkipChunkedBody([]byte(stream))
	if err != nil || n != len(body) {
		t.Fatalf("SkipChunkedBody = %d, %v; want %d", n, err, len(body))
	}
	if n, err := SkipChunkedBody([]byte("0\n\n")); err != nil || n != 3 {
		t.Errorf("bare LF last chunk: %d %v", n, err)
	}
	for i := range len(body) {
		if _, err := SkipChunkedBody([]byte(body[:i])); !errors.Is(err, ErrIncomplete) {
			t.Fatalf("prefix %d: err = %v, want ErrIncomplete", i, err)
		}
	}
	for _, bad := range []string{"zz\r\n", "4\r\nWikiXX", "10000000000000000\r\n", strings.Repeat("1", maxChunkLine+1), "0\r\n" + strings.Repeat("X: y\r\n", MaxHTTPHeaders+2)} {
		if _, err := SkipChunkedBody([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%.30q: err = %v, want ErrMalformed", bad, err)
		}
	}
}

func TestUnescapeURI(t *testing.T) {
	for in, want := range map[string]string{
		"/a%20b%21":       "/a b!",
		"/plain":          "/plain",
		"/%zz%4":          "/%zz%4",
		"/%00%5c%C3%A8":   `/\x00\x5c\xc3\xa8`,
		`/\xc3%41`:        `/\xc3A`,
		"/search?q=a%2Bb": "/search?q=a+b",
	} {
		if got := UnescapeURI(in); got != want {
			t.Errorf("UnescapeURI(%q) = %q, want %q", in, got, want)
		}
	}
}
