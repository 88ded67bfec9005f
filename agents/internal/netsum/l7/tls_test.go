package l7

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// helloSpec describes a ClientHello for buildClientHello.
type helloSpec struct {
	version  uint16
	ciphers  []uint16
	exts     []uint16 // extension types in wire order; bodies derive from the fields below
	sni      string
	alpn     []string
	groups   []uint16
	pf       []uint8
	sigAlgs  []uint16
	versions []uint16
	session  int // session id length
}

func be16(b []byte, v uint16) []byte { return append(b, byte(v>>8), byte(v)) }

func u16List(vs []uint16) []byte {
	var b []byte
	for _, v := range vs {
		b = be16(b, v)
	}
	return b
}

// body returns the hello's handshake body (without the 4-byte header).
func (s helloSpec) body() []byte {
	b := be16(nil, s.version)
	b = append(b, make([]byte, 32)...) // random
	b = append(b, byte(s.session))
	b = append(b, make([]byte, s.session)...)
	b = be16(b, uint16(2*len(s.ciphers)))
	b = append(b, u16List(s.ciphers)...)
	b = append(b, 1, 0) // null compression
	var exts []byte
	for _, e := range s.exts {
		var body []byte
		switch e {
		case extServerName:
			entry := append([]byte{0}, be16(nil, uint16(len(s.sni)))...)
			entry = append(entry, s.sni...)
			body = append(be16(nil, uint16(len(entry))), entry...)
		case extALPN:
			var list []byte
			for _, p := range s.alpn {
				list = append(list, byte(len(p)))
				list = append(list, p...)
			}
			body = append(be16(nil, uint16(len(list))), list...)
		case extSupportedGroups:
			body = append(be16(nil, uint16(2*len(s.groups))), u16List(s.groups)...)
		case extECPointFormats:
			body = append([]byte{byte(len(s.pf))}, s.pf...)
		case extSignatureAlgs:
			body = append(be16(nil, uint16(2*len(s.sigAlgs))), u16List(s.sigAlgs)...)
		case extSupportedVersions:
			body = append([]byte{byte(2 * len(s.versions))}, u16List(s.versions)...)
		case 0x0015: // padding
			body = make([]byte, 7)
		}
		exts = be16(exts, e)
		exts = be16(exts, uint16(len(body)))
		exts = append(exts, body...)
	}
	if s.exts != nil {
		b = be16(b, uint16(len(exts)))
		b = append(b, exts...)
	}
	return b
}

// records wraps a handshake message of type typ in TLS records of at most
// fragment bytes each.
func records(typ byte, body []byte, fragment int) []byte {
	msg := append([]byte{typ, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
	var out []byte
	for len(msg) > 0 {
		n := min(fragment, len(msg))
		out = append(out, tlsRecordHandshake, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

func (s helloSpec) stream(fragment int) []byte {
	return records(tlsTypeClientHello, s.body(), fragment)
}

// ja4ReadmeSpec is the example of the JA4 specification (FoxIO, JA4 README
// "t13d1516h2_8daaf6152771_e5627efa2ab1"), with GREASE values added in
// every list, which the fingerprint must ignore.
func ja4ReadmeSpec() helloSpec {
	return helloSpec{
		version: 0x0303,
		ciphers: []uint16{0x5a5a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8,
			0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035},
		exts: []uint16{0x2a2a, 0x0000, 0x0017, 0xff01, 0x000a, 0x000b, 0x0023, 0x0010, 0x0005, 0x000d,
			0x0012, 0x0033, 0x002d, 0x002b, 0x001b, 0x4469, 0x0015, 0xfafa},
		sni:      "www.example.com",
		alpn:     []string{"h2", "http/1.1"},
		groups:   []uint16{0x3a3a, 0x001d, 0x0017, 0x0018},
		pf:       []uint8{0},
		sigAlgs:  []uint16{0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601},
		versions: []uint16{0x7a7a, 0x0304, 0x0303},
		session:  32,
	}
}

func TestJA4SpecExample(t *testing.T) {
	h, err := ParseClientHello(ja4ReadmeSpec().stream(1 << 14))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := h.JA4(), "t13d1516h2_8daaf6152771_e5627efa2ab1"; got != want {
		t.Errorf("JA4 = %s, want %s", got, want)
	}
	wantRaw := "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_" +
		"0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601"
	if got := h.JA4Raw(); got != wantRaw {
		t.Errorf("JA4_r =\n %s\nwant\n %s", got, wantRaw)
	}
	if h.SNI != "www.example.com" || !slices.Equal(h.ALPN, []string{"h2", "http/1.1"}) || h.MaxVersion() != 0x0304 {
		t.Errorf("hello = %+v", h)
	}
}

// TestJA4SigalgGREASE uses FoxIO's sigalg-grease.pcapng vector (expected
// JA4 and the original-order raw lists from their test data), with a
// GREASE value added to the signature algorithms.
func TestJA4SigalgGREASE(t *testing.T) {
	spec := helloSpec{
		version: 0x0303,
		ciphers: []uint16{0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035},
		exts: []uint16{0xfe0d, 0x0010, 0x0017, 0x0033, 0x44cd, 0xff01, 0x000a, 0x000d, 0x0023, 0x002b, 0x000b, 0xca34,
			0x002d, 0x0000, 0x0005, 0x001b, 0x0012},
		sni:      "optimizationguide-pa.googleapis.com",
		alpn:     []string{"h2", "http/1.1"},
		groups:   []uint16{0x11ec, 0x001d},
		pf:       []uint8{0},
		sigAlgs:  []uint16{0x0a0a, 0x0904, 0x0905, 0x0906, 0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601},
		versions: []uint16{0x0304, 0x0303},
	}
	h, err := ParseClientHello(spec.stream(512))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := h.JA4(), "t13d1517h2_8daaf6152771_cb7bf5808d99"; got != want {
		t.Errorf("JA4 = %s, want %s", got, want)
	}
}

// TestJA3SpecExample uses the example of the JA3 README (salesforce/ja3):
// "769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,0-10-11,23-24-25,0"
// with MD5 ada70206e40642a3e4461f35503241d5; GREASE values are added and
// must be dropped.
func TestJA3SpecExample(t *testing.T) {
	spec := helloSpec{
		version: 769,
		ciphers: []uint16{0x0a0a, 47, 53, 5, 10, 49161, 49162, 49171, 49172, 50, 56, 19, 4},
		exts:    []uint16{0, 0xdada, 10, 11},
		sni:     "a.example",
		groups:  []uint16{0x2a2a, 23, 24, 25},
		pf:      []uint8{0},
	}
	h, err := ParseClientHello(spec.stream(1 << 14))
	if err != nil {
		t.Fatal(err)
	}
	full, sum := h.JA3()
	if full != "769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,0-10-11,23-24-25,0" || sum != "ada70206e40642a3e4461f35503241d5" {
		t.Errorf("JA3 = %s %s", full, sum)
	}
	// Without SNI and ALPN, JA4 says 'i' and "00".
	if got := h.JA4(); !strings.HasPrefix(got, "t10d1203") {
		t.Errorf("JA4 = %s, want prefix t10d1203", got)
	}
	spec.exts = []uint16{10, 11}
	h, _ = ParseClientHello(spec.stream(1 << 14))
	if got := h.JA4(); !strings.HasPrefix(got, "t10i120200_") {
		t.Errorf("JA4 = %s, want prefix t10i120200_", got)
	}
}

func TestJA4EdgeCases(t *testing.T) {
	tests := []struct {
		h    ClientHello
		want string
	}{
		{ClientHello{LegacyVersion: 0x0300}, "ts3i000000_000000000000_000000000000"},
		{ClientHello{LegacyVersion: 0x9999, CipherSuites: []uint16{1}}, "t00i010000_"},
		{ClientHello{LegacyVersion: 0x0303, ALPN: []string{"x"}}, "t12i0000xx_"},
		{ClientHello{LegacyVersion: 0x0303, ALPN: []string{`\xab-\xcd`}}, "t12i0000ad_"},
		{ClientHello{LegacyVersion: 0x0303, ALPN: []string{""}}, "t12i000000_"},
		// The examples of the JA4 specification for non-alphanumeric ALPN
		// bytes; values are given as ParseClientHello stores them.
		{ClientHello{LegacyVersion: 0x0303, ALPN: []string{`\xab`}}, "t12i0000ab_"},
		{ClientHello{LegacyVersion: 0x0303, ALPN: []string{" "}}, "t12i000020_"},
		{ClientHello{LegacyVersion: 0x0303, ALPN: []string{`\xab\xcd`}}, "t12i0000ad_"},
		{ClientHello{LegacyVersion: 0x0303, ALPN: []string{" a"}}, "t12i000021_"},
		{ClientHello{LegacyVersion: 0x0303, ALPN: []string{`0\xab`}}, "t12i00003b_"},
		{ClientHello{LegacyVersion: 0x0303, ALPN: []string{"a "}}, "t12i000060_"},
		{ClientHello{LegacyVersion: 0x0303, ALPN: []string{`01\xab\xcd`}}, "t12i00003d_"},
		{ClientHello{LegacyVersion: 0x0303, ALPN: []string{`0\xab\xcd1`}}, "t12i000001_"},
		{ClientHello{LegacyVersion: 0x0303, ALPN: []string{`\x5c`}}, "t12i00005c_"},
		{ClientHello{LegacyVersion: 0x0303, CipherSuites: make([]uint16, 120), Extensions: make([]uint16, 101)}, "t12d9999"},
	}
	for _, tc := range tests {
		if got := tc.h.JA4(); !strings.HasPrefix(got, tc.want) || len(got) != 36 {
			t.Errorf("JA4(%+v) = %s, want prefix %s", tc.h, got, tc.want)
		}
	}
}

func TestParseClientHelloFragmentedAndCut(t *testing.T) {
	spec := ja4ReadmeSpec()
	whole, err := ParseClientHello(spec.stream(1 << 14))
	if err != nil {
		t.Fatal(err)
	}
	for _, frag := range []int{1, 3, 50, 200} {
		s := spec.stream(frag)
		h, err := ParseClientHello(s)
		if err != nil {
			t.Fatalf("fragment %d: %v", frag, err)
		}
		if h.JA4() != whole.JA4() || h.SNI != whole.SNI {
			t.Errorf("fragment %d: %s != %s", frag, h.JA4(), whole.JA4())
		}
		for n := range len(s) {
			if _, err := ParseClientHello(s[:n]); !errors.Is(err, ErrIncomplete) {
				t.Fatalf("fragment %d, %d/%d bytes: err = %v, want ErrIncomplete", frag, n, len(s), err)
			}
		}
	}
	// Bytes after the hello (the next records) are ignored.
	s := append(spec.stream(1<<14), 0x14, 3, 3, 0, 1, 1)
	if _, err := ParseClientHello(s); err != nil {
		t.Errorf("trailing record: %v", err)
	}
}

func TestParseClientHelloMalformed(t *testing.T) {
	good := ja4ReadmeSpec().stream(1 << 14)
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	tests := map[string][]byte{
		"application data record": mut(func(b []byte) []byte { b[0] = 23; return b }),
		"record version 2":        mut(func(b []byte) []byte { b[1] = 2; return b }),
		"server hello type":       mut(func(b []byte) []byte { b[5] = tlsTypeServerHello; return b }),
		"odd cipher length":       helloSpec{version: 0x0303, ciphers: []uint16{1}}.oddCiphers(),
		"extension overrun": records(tlsTypeClientHello, append(helloSpec{version: 0x0303, ciphers: []uint16{1}}.body(),
			0, 8, 0, 0, 0, 9, 1, 2, 3, 4), 1<<14),
		"zero-length record": {22, 3, 1, 0, 0},
		"http":               []byte("GET / HTTP/1.1\r\n\r\n"),
	}
	for name, b := range tests {
		if _, err := ParseClientHello(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

func (s helloSpec) oddCiphers() []byte {
	b := s.body()
	// cipher length field sits after version, random and session id.
	off := 2 + 32 + 1 + s.session
	b[off+1] = 3
	return records(tlsTypeClientHello, b, 1<<14)
}

func TestLooksLikeTLS(t *testing.T) {
	if !LooksLikeTLS(ja4ReadmeSpec().stream(1<<14)) || !LooksLikeTLS([]byte{22, 3, 1}) {
		t.Error("hello not detected")
	}
	for _, b := range [][]byte{nil, {22, 3}, {23, 3, 3, 0, 10}, {22, 3, 1, 0, 0}, {22, 3, 1, 0, 10, 11}, []byte("GET / HTTP/1.1")} {
		if LooksLikeTLS(b) {
			t.Errorf("LooksLikeTLS(%x) = true", b)
		}
	}
}

// recordingConn keeps what a connection reads and writes.
type recordingConn struct {
	net.Conn
	mu          sync.Mutex
	read, wrote []byte
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.read = append(c.read, p[:n]...)
	c.mu.Unlock()
	return n, err
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.wrote = append(c.wrote, p...)
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func selfSignedCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "l7.test"},
		DNSNames: []string{"l7.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestRealGoHandshake runs a real crypto/tls handshake over loopback and
// decodes both directions' bytes.
func TestRealGoHandshake(t *testing.T) {
	for _, tc := range []struct {
		name string
		max  uint16
	}{{"tls13", tls.VersionTLS13}, {"tls12", tls.VersionTLS12}} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			cert := selfSignedCert(t)
			done := make(chan error, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					done <- err
					return
				}
				defer c.Close()
				srv := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}, MaxVersion: tc.max})
				done <- srv.Handshake()
			}()
			raw, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			rec := &recordingConn{Conn: raw}
			cli := tls.Client(rec, &tls.Config{ServerName: "l7.test", InsecureSkipVerify: true, //nolint:gosec // self-signed test server
				NextProtos: []string{"h2", "http/1.1"}})
			if err := cli.Handshake(); err != nil {
				t.Fatal(err)
			}
			state := cli.ConnectionState()
			_ = cli.Close()
			if err := <-done; err != nil {
				t.Fatalf("server handshake: %v", err)
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			h, err := ParseClientHello(rec.wrote)
			if err != nil {
				t.Fatalf("ParseClientHello: %v", err)
			}
			if h.SNI != "l7.test" || !slices.Equal(h.ALPN, []string{"h2", "http/1.1"}) || h.MaxVersion() != tls.VersionTLS13 {
				t.Errorf("hello = SNI %q ALPN %v version %x", h.SNI, h.ALPN, h.MaxVersion())
			}
			for _, e := range []uint16{extServerName, extALPN, extSupportedVersions, extSupportedGroups, extSignatureAlgs} {
				if !slices.Contains(h.Extensions, e) {
					t.Errorf("extension %d missing from %v", e, h.Extensions)
				}
			}
			if !slices.Contains(h.CipherSuites, tls.TLS_AES_128_GCM_SHA256) || len(h.Curves) == 0 || len(h.SignatureAlgorithms) == 0 {
				t.Errorf("lists: ciphers %v curves %v sigalgs %v", h.CipherSuites, h.Curves, h.SignatureAlgorithms)
			}
			if ja4 := h.JA4(); !strings.HasPrefix(ja4, "t13d") || ja4[8:10] != "h2" {
				t.Errorf("JA4 = %s", ja4)
			}
			s, err := ParseServerHello(rec.read)
			if err != nil {
				t.Fatalf("ParseServerHello: %v", err)
			}
			if s.NegotiatedVersion() != state.Version || s.CipherSuite != state.CipherSuite {
				t.Errorf("server hello %+v, negotiated version %x cipher %x", s, state.Version, state.CipherSuite)
			}
			if _, err := ParseServerHello(rec.wrote); !errors.Is(err, ErrMalformed) {
				t.Errorf("ParseServerHello(client bytes) = %v, want ErrMalformed", err)
			}
		})
	}
}

// TestTLSAgainstZeek decodes the TLS trace of the Zeek baselines and
// compares with ssl.log: server_name, version and cipher.
func TestTLSAgainstZeek(t *testing.T) {
	c := readPcap(t, sharedFile(t, "pcaps/zeek/Traces/tls/tls1.2.pcap"))
	rows := zeekLog(t, sharedFile(t, "pcaps/zeek/Baseline/scripts.base.protocols.ssl.tls-1.2/ssl.log"))
	// IANA names of the suites in the trace, as Zeek logs them.
	cipherNames := map[uint16]string{0x0004: "TLS_RSA_WITH_RC4_128_MD5"}
	versionNames := map[uint16]string{0x0301: "TLSv10", 0x0302: "TLSv11", 0x0303: "TLSv12", 0x0304: "TLSv13"}
	for _, row := range rows {
		var st *tcpStream
		for _, s := range c.tcp {
			if s.orig.Addr().String() == row["id.orig_h"] && joinHostPort(row["id.resp_h"], row["id.resp_p"]) == s.resp.String() {
				st = s
			}
		}
		if st == nil {
			t.Fatalf("no TCP stream for ssl.log row %v", row)
		}
		h, err := ParseClientHello(st.client)
		if err != nil {
			t.Fatalf("ParseClientHello: %v", err)
		}
		sni := h.SNI
		if sni == "" {
			sni = "-"
		}
		if sni != row["server_name"] {
			t.Errorf("SNI %q, Zeek %q", sni, row["server_name"])
		}
		s, err := ParseServerHello(st.server)
		if err != nil {
			t.Fatalf("ParseServerHello: %v", err)
		}
		if versionNames[s.NegotiatedVersion()] != row["version"] || cipherNames[s.CipherSuite] != row["cipher"] {
			t.Errorf("server hello %+v, Zeek %s %s", s, row["version"], row["cipher"])
		}
		// Expected JA3 computed independently on the same trace by the
		// reference tool of the JA3 authors (salesforce/ja3, Python, 1.0).
		if _, md5hex := h.JA3(); md5hex != "bd9c99b3a0f752c3ab8b052a79e9de3e" {
			t.Errorf("JA3 = %s, the ja3 tool says bd9c99b3a0f752c3ab8b052a79e9de3e", md5hex)
		}
	}
}

func tlsServer(c net.Conn, cert tls.Certificate) *tls.Conn {
	return tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}})
}

func tlsClient(c net.Conn) *tls.Conn {
	return tls.Client(c, &tls.Config{ServerName: "l7.test", InsecureSkipVerify: true, //nolint:gosec // self-signed test server
		NextProtos: []string{"h2", "http/1.1"}})
}
