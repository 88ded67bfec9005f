package netsum

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/gopacket/layers"

	"github.com/csirt-toscana/platform/internal/event"
)

var fuzzLinks = []layers.LinkType{layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL, layers.LinkTypeRaw, layers.LinkTypeNull}

// fuzzInput packs frames as the fuzz target reads them: a link type
// selector byte, then frames each prefixed by a 2-byte length.
func fuzzInput(link byte, frames ...[]byte) []byte {
	out := []byte{link}
	for _, f := range frames {
		out = binary.BigEndian.AppendUint16(out, uint16(len(f))) //nolint:gosec // test frames are small
		out = append(out, f...)
	}
	return out
}

func fuzzSeeds(t testing.TB) [][]byte {
	b := newFrameBuilder()
	c, s := net.IPv4(192, 0, 2, 1), net.IPv4(198, 51, 100, 1)
	var http [][]byte
	for _, f := range httpSession(t, b, c, s, 40000, t0) {
		http = append(http, f.data)
	}
	hello := []byte{0x16, 0x03, 0x01, 0x00, 0x2f, 0x01, 0x00, 0x00, 0x2b, 0x03, 0x03}
	hello = append(hello, make([]byte, 32)...)
	hello = append(hello, 0, 0, 2, 0x13, 0x01, 1, 0, 0, 0)
	tls := [][]byte{
		b.tcp(t, c, s, 40001, 443, flagSYN, 1, 0, nil),
		b.tcp(t, s, c, 443, 40001, flagSYN|flagACK, 9, 2, nil),
		b.tcp(t, c, s, 40001, 443, flagACK|flagPSH, 2, 10, hello),
	}
	dns := [][]byte{
		b.udp(t, c, s, 5353, 53, dnsMessage(1, "x.example.test", false)),
		b.udp(t, s, c, 53, 5353, dnsMessage(1, "x.example.test", true)),
	}
	raw := http[3][14:] // the IPv4 packet of the request
	return [][]byte{
		fuzzInput(0, http...),
		fuzzInput(0, tls...),
		fuzzInput(0, dns...),
		fuzzInput(2, raw),
		fuzzInput(1, append([]byte{0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 8, 0}, raw...)),
		fuzzInput(0, http[0][:20], http[1][:40]),
	}
}

// FuzzPacketDecode feeds arbitrary frames through decoding, the flow table
// and the l7 decoders: nothing may panic, the table stays within its cap
// and every summary is a valid event.
func FuzzPacketDecode(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		lt := fuzzLinks[int(data[0])%len(fuzzLinks)]
		s := New(Config{MaxFlows: 4, StreamBuffer: 512, Emit: func(e event.Event) {
			if err := checkEvent(e); err != nil {
				t.Fatalf("invalid summary: %v", err)
			}
		}})
		rest := data[1:]
		ts := t0
		for len(rest) > 0 {
			n := len(rest)
			if len(rest) >= 2 {
				n = min(int(binary.BigEndian.Uint16(rest)), len(rest)-2)
				rest = rest[2:]
			}
			s.Packet(ts, lt, rest[:n])
			rest = rest[n:]
			ts = ts.Add(time.Second)
			if st := s.Stats(); st.ActiveFlows > 4 || st.BufferBytes < 0 {
				t.Fatalf("table over its bounds: %+v", st)
			}
		}
		s.Flush()
		if st := s.Stats(); st.ActiveFlows != 0 || st.BufferBytes != 0 {
			t.Fatalf("state left after flush: %+v", st)
		}
	})
}

// TestWriteFuzzCorpus regenerates the committed seed corpus when
// NETSUM_WRITE_CORPUS=1.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("NETSUM_WRITE_CORPUS") != "1" {
		t.Skip("set NETSUM_WRITE_CORPUS=1 to rewrite testdata/fuzz/FuzzPacketDecode")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzPacketDecode")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	for i, s := range fuzzSeeds(t) {
		body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(s)) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
