//go:build linux

package netns

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func TestDNSAnswer(t *testing.T) {
	q := DNSQuery(0x1234, "abc.tunnel.example", 16)
	a := dnsAnswer(q)
	if a == nil {
		t.Fatal("no answer to a well-formed query")
	}
	if !bytes.Equal(a[:2], q[:2]) || binary.BigEndian.Uint16(a[2:]) != 0x8180 || binary.BigEndian.Uint16(a[6:]) != 1 {
		t.Errorf("answer header % x, query header % x", a[:12], q[:12])
	}
	if !bytes.Equal(a[12:len(q)], q[12:]) {
		t.Errorf("the answer does not repeat the question")
	}
	if got := a[len(a)-4:]; !bytes.Equal(got, []byte{192, 0, 2, 7}) {
		t.Errorf("answer address % x", got)
	}
	for _, bad := range [][]byte{nil, q[:11], q[:len(q)-1], append(q[:12:12], 63, 'a')} {
		if dnsAnswer(bad) != nil {
			t.Errorf("answer to the malformed query % x", bad)
		}
	}
}

// FuzzDNSAnswer: any datagram gives a well-formed answer or nil, never a
// panic.
func FuzzDNSAnswer(f *testing.F) {
	f.Add(DNSQuery(1, "www.example.test", 1))
	f.Add(DNSQuery(2, "a.b", 16))
	f.Add([]byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 200, 'x'})
	f.Fuzz(func(t *testing.T, q []byte) {
		a := dnsAnswer(q)
		if a == nil {
			return
		}
		if len(a) < 12+16 || !bytes.Equal(a[:2], q[:2]) || !bytes.Equal(a[12:len(a)-16], q[12:len(a)-16]) {
			t.Fatalf("answer % x to % x", a, q)
		}
	})
}
