package l7

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// checkPrintable fails when a decoded string holds bytes outside printable
// ASCII: every string the decoders return is escaped.
func checkPrintable(t *testing.T, what, s string, limit int) {
	t.Helper()
	if len(s) > limit {
		t.Fatalf("%s longer than %d: %d", what, limit, len(s))
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			t.Fatalf("%s has unescaped byte %#x: %q", what, s[i], s)
		}
	}
}

func checkErr(t *testing.T, err error) {
	t.Helper()
	if err != nil && !errors.Is(err, ErrIncomplete) && !errors.Is(err, ErrMalformed) {
		t.Fatalf("error %v is neither ErrIncomplete nor ErrMalformed", err)
	}
}

func FuzzParseDNS(f *testing.F) {
	for _, s := range dnsSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseDNS(b)
		checkErr(t, err)
		if len(m.Questions) > MaxDNSQuestions || len(m.Answers) > MaxDNSAnswers {
			t.Fatalf("caps exceeded: %d questions, %d answers", len(m.Questions), len(m.Answers))
		}
		for _, q := range m.Questions {
			checkPrintable(t, "question name", q.Name, maxRenderedName)
		}
		for _, a := range m.Answers {
			checkPrintable(t, "answer name", a.Name, maxRenderedName)
			checkPrintable(t, "answer data", a.Data, MaxFieldLen)
		}
		_ = LooksLikeDNS(b)
		msgs, rest := SplitTCPDNS(b)
		total := len(rest)
		for _, m := range msgs {
			total += 2 + len(m)
		}
		if total > len(b) {
			t.Fatalf("SplitTCPDNS accounts for %d of %d bytes", total, len(b))
		}
	})
}

func FuzzParseClientHello(f *testing.F) {
	for _, s := range tlsSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseClientHello(b)
		checkErr(t, err)
		if err == nil {
			checkPrintable(t, "SNI", h.SNI, MaxDNSNameLen)
			for _, p := range h.ALPN {
				checkPrintable(t, "ALPN", p, MaxFieldLen)
			}
			if ja4 := h.JA4(); len(ja4) != 36 || ja4 != h.JA4() {
				t.Fatalf("JA4 %q", ja4)
			}
			if full, sum := h.JA3(); len(sum) != 32 || !strings.HasPrefix(full, fmt.Sprint(h.LegacyVersion)+",") {
				t.Fatalf("JA3 %q %q", full, sum)
			}
			_ = h.JA4Raw()
		}
		_, err = ParseServerHello(b)
		checkErr(t, err)
		_ = LooksLikeTLS(b)
	})
}

func FuzzParseHTTPRequest(f *testing.F) {
	for _, s := range httpRequestSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, n, err := ParseHTTPRequest(b)
		checkErr(t, err)
		_ = LooksLikeHTTPRequest(b)
		if err != nil {
			return
		}
		if n <= 0 || n > len(b) || n > MaxHTTPHeaderBytes {
			t.Fatalf("consumed %d of %d", n, len(b))
		}
		for _, s := range []string{req.Method, req.URI, req.Version, req.UserAgent, UnescapeURI(req.URI)} {
			checkPrintable(t, "request field", s, MaxFieldLen*4)
		}
		checkPrintable(t, "host", req.Host, MaxDNSNameLen)
		again, n2, err := ParseHTTPRequest(b[:n])
		if err != nil || again != req || n2 != n {
			t.Fatalf("re-parsing the consumed head gives %+v %d %v, want %+v %d", again, n2, err, req, n)
		}
	})
}

func FuzzParseHTTPResponse(f *testing.F) {
	for _, s := range httpResponseSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		resp, n, err := ParseHTTPResponse(b)
		checkErr(t, err)
		_ = LooksLikeHTTPResponse(b)
		if err == nil {
			if n <= 0 || n > len(b) || resp.StatusCode < 0 || resp.StatusCode > 999 {
				t.Fatalf("response %+v consumed %d of %d", resp, n, len(b))
			}
			checkPrintable(t, "reason", resp.Reason, MaxFieldLen)
			b = b[n:]
		}
		m, err := SkipChunkedBody(b)
		checkErr(t, err)
		if m < 0 || m > len(b) {
			t.Fatalf("chunked body of %d bytes in %d", m, len(b))
		}
	})
}

// Seeds: real messages produced by Go's own DNS, TLS and HTTP
// implementations and the hand-built messages of the unit tests.

func dnsSeeds(tb testing.TB) [][]byte {
	q := append(rawHeader(9, 0x0100, 1, 0), 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0, 1, 0, 1)
	resp := buildResponse(tb)
	tcp := append([]byte{byte(len(q) >> 8), byte(len(q))}, q...)
	return [][]byte{q, resp, tcp, append(rawHeader(1, 0, 1, 0), 0xc0, 12, 0, 1, 0, 1)}
}

func tlsSeeds(tb testing.TB) [][]byte {
	seeds := [][]byte{ja4ReadmeSpec().stream(1 << 14), ja4ReadmeSpec().stream(100)}
	if t, ok := tb.(*testing.T); ok {
		c, s := goHandshakeBytes(t)
		seeds = append(seeds, c, s)
	}
	return seeds
}

func httpRequestSeeds(tb testing.TB) [][]byte {
	req, _ := http.NewRequest(http.MethodPost, "http://www.example.com/upload?x=%41", strings.NewReader("body"))
	req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64)")
	var buf bytes.Buffer
	if err := req.Write(&buf); err != nil {
		tb.Fatal(err)
	}
	return [][]byte{buf.Bytes(), []byte("GET / HTTP/1.1\nHost: a\n\n"), []byte("GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\n\r\n")}
}

func httpResponseSeeds(tb testing.TB) [][]byte {
	var buf bytes.Buffer
	resp := &http.Response{StatusCode: 200, ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{"Content-Type": {"text/plain"}},
		Body: nopCloser{strings.NewReader("hello")}, ContentLength: -1, TransferEncoding: []string{"chunked"}}
	if err := resp.Write(&buf); err != nil {
		tb.Fatal(err)
	}
	return [][]byte{buf.Bytes(), []byte("HTTP/1.0 304 Not Modified\r\nContent-Length: 0\r\n\r\n"), []byte("4\r\nWiki\r\n0\r\n\r\n")}
}

type nopCloser struct{ *strings.Reader }

func (nopCloser) Close() error { return nil }

// goHandshakeBytes runs a crypto/tls handshake and returns both streams.
func goHandshakeBytes(t *testing.T) (client, server []byte) {
	t.Helper()
	cert := selfSignedCert(t)
	a, b := net.Pipe()
	rec := &recordingConn{Conn: a}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv := tlsServer(b, cert)
		_ = srv.SetDeadline(time.Now().Add(10 * time.Second))
		_ = srv.Handshake()
		_ = b.Close() // not srv.Close: its close_notify would wait on the pipe
	}()
	cli := tlsClient(rec)
	_ = cli.SetDeadline(time.Now().Add(10 * time.Second))
	if err := cli.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	_ = a.Close()
	<-done
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]byte(nil), rec.wrote...), append([]byte(nil), rec.read...)
}

// TestWriteFuzzCorpus regenerates testdata/fuzz/<Fuzz>/ from the seeds
// (run with L7_WRITE_CORPUS=1); the committed corpus is what it wrote.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("L7_WRITE_CORPUS") == "" {
		t.Skip("set L7_WRITE_CORPUS=1 to regenerate testdata/fuzz")
	}
	sets := map[string][][]byte{
		"FuzzParseDNS":          dnsSeeds(t),
		"FuzzParseClientHello":  tlsSeeds(t),
		"FuzzParseHTTPRequest":  httpRequestSeeds(t),
		"FuzzParseHTTPResponse": httpResponseSeeds(t),
	}
	for name, seeds := range sets {
		dir := filepath.Join("testdata", "fuzz", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, s := range seeds {
			var buf bytes.Buffer
			w := bufio.NewWriter(&buf)
			fmt.Fprintf(w, "go test fuzz v1\n[]byte(%q)\n", s)
			_ = w.Flush()
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
