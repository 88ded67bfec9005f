package l7

import (
	"testing"
)

func BenchmarkParseDNSQuery(b *testing.B) {
	msg := dnsSeeds(b)[0]
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := ParseDNS(msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseDNSResponse(b *testing.B) {
	msg := buildResponse(b) // 10 answers of 10 types, compressed names
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := ParseDNS(msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLooksLikeDNS(b *testing.B) {
	msg := dnsSeeds(b)[0]
	b.ReportAllocs()
	for b.Loop() {
		if !LooksLikeDNS(msg) {
			b.Fatal("not DNS")
		}
	}
}

func BenchmarkParseClientHello(b *testing.B) {
	stream := ja4ReadmeSpec().stream(1 << 14) // a Chrome-like hello: 16 ciphers, 18 extensions
	b.ReportAllocs()
	b.SetBytes(int64(len(stream)))
	for b.Loop() {
		if _, err := ParseClientHello(stream); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseClientHelloTwoRecords(b *testing.B) {
	stream := ja4ReadmeSpec().stream(300)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseClientHello(stream); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkJA3(b *testing.B) {
	h, err := ParseClientHello(ja4ReadmeSpec().stream(1 << 14))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_, _ = h.JA3()
	}
}

func BenchmarkJA4(b *testing.B) {
	h, err := ParseClientHello(ja4ReadmeSpec().stream(1 << 14))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = h.JA4()
	}
}

func BenchmarkParseHTTPRequest(b *testing.B) {
	req := []byte("GET /wiki/Special:Search?search=toscana&go=Go HTTP/1.1\r\n" +
		"Host: it.wikipedia.org\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
		"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n" +
		"Accept-Language: it-IT,it;q=0.8,en-US;q=0.5,en;q=0.3\r\n" +
		"Accept-Encoding: gzip, deflate, br\r\n" +
		"Connection: keep-alive\r\n" +
		"Cookie: session=0123456789abcdef\r\n\r\n")
	b.ReportAllocs()
	b.SetBytes(int64(len(req)))
	for b.Loop() {
		if _, _, err := ParseHTTPRequest(req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseHTTPResponse(b *testing.B) {
	resp := []byte("HTTP/1.1 200 OK\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nServer: nginx\r\n" +
		"Content-Type: text/html; charset=UTF-8\r\nContent-Length: 1234\r\nConnection: keep-alive\r\n\r\n")
	b.ReportAllocs()
	b.SetBytes(int64(len(resp)))
	for b.Loop() {
		if _, _, err := ParseHTTPResponse(resp); err != nil {
			b.Fatal(err)
		}
	}
}
