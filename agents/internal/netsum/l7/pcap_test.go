package l7

import (
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/csirt-toscana/platform/internal/testenv"
)

// This file is a minimal, test-only pcap reader: it returns UDP datagrams
// and the first bytes of each TCP stream direction (in sequence order), so
// that the decoders can be fed real traffic from the shared traces. The
// production capture path lives in the netsum package.

// sharedFile returns the path of a file under the shared test data.
func sharedFile(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(testenv.SharedData(t), filepath.FromSlash(rel))
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("shared test file missing: %v", err)
	}
	return p
}

type packetSource interface {
	ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	LinkType() layers.LinkType
}

type udpDatagram struct {
	src, dst netip.AddrPort
	payload  []byte
}

// tcpStream is one TCP connection: the originator (SYN sender, else first
// sender) and both directions' reassembled leading bytes.
type tcpStream struct {
	orig, resp     netip.AddrPort
	client, server []byte
}

type tcpDir struct {
	next    uint32
	started bool
	gap     bool
	buf     *[]byte
}

const maxStreamBytes = 256 << 10

type capture struct {
	udp []udpDatagram
	tcp []*tcpStream
}

func readPcap(t testing.TB, path string) capture {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open pcap: %v", err)
	}
	defer f.Close()
	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	var r packetSource
	if magic == [4]byte{0x0a, 0x0d, 0x0d, 0x0a} { // pcapng section header block
		r, err = pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	} else {
		r, err = pcapgo.NewReader(f)
	}
	if err != nil {
		t.Fatalf("read capture header of %s: %v", path, err)
	}
	var c capture
	streams := map[[2]netip.AddrPort]*tcpStream{}
	dirs := map[[2]netip.AddrPort]*tcpDir{}
	for {
		data, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read packet in %s: %v", path, err)
		}
		pkt := gopacket.NewPacket(data, r.LinkType(), gopacket.DecodeOptions{Lazy: true, NoCopy: true})
		c.add(pkt, streams, dirs)
	}
	return c
}

// add records one decoded packet; Teredo payloads (IPv6 in UDP) are
// decoded and added too.
func (c *capture) add(pkt gopacket.Packet, streams map[[2]netip.AddrPort]*tcpStream, dirs map[[2]netip.AddrPort]*tcpDir) {
	var src, dst netip.Addr
	switch ip := pkt.NetworkLayer().(type) {
	case *layers.IPv4:
		src, _ = netip.AddrFromSlice(ip.SrcIP.To4())
		dst, _ = netip.AddrFromSlice(ip.DstIP.To4())
	case *layers.IPv6:
		src, _ = netip.AddrFromSlice(ip.SrcIP)
		dst, _ = netip.AddrFromSlice(ip.DstIP)
	default:
		return
	}
	switch l4 := pkt.TransportLayer().(type) {
	case *layers.UDP:
		if inner := teredoIPv6(l4.Payload); inner != nil {
			c.add(gopacket.NewPacket(inner, layers.LayerTypeIPv6, gopacket.DecodeOptions{Lazy: true, NoCopy: true}), streams, dirs)
			return
		}
		c.udp = append(c.udp, udpDatagram{
			src:     netip.AddrPortFrom(src, uint16(l4.SrcPort)),
			dst:     netip.AddrPortFrom(dst, uint16(l4.DstPort)),
			payload: append([]byte(nil), l4.Payload...),
		})
	case *layers.TCP:
		s := netip.AddrPortFrom(src, uint16(l4.SrcPort))
		d := netip.AddrPortFrom(dst, uint16(l4.DstPort))
		key := [2]netip.AddrPort{s, d}
		rev := [2]netip.AddrPort{d, s}
		st := streams[key]
		if st == nil {
			st = streams[rev]
		}
		if st == nil || (l4.SYN && !l4.ACK && st.orig == s && len(st.client) > 0) {
			st = &tcpStream{orig: s, resp: d}
			if l4.SYN && l4.ACK { // first seen is the SYN-ACK: flip
				st.orig, st.resp = d, s
			}
			streams[[2]netip.AddrPort{st.orig, st.resp}] = st
			delete(dirs, key)
			delete(dirs, rev)
			c.tcp = append(c.tcp, st)
		}
		dir := dirs[key]
		if dir == nil {
			dir = &tcpDir{}
			if s == st.orig {
				dir.buf = &st.client
			} else {
				dir.buf = &st.server
			}
			dirs[key] = dir
		}
		seq := l4.Seq
		if l4.SYN {
			dir.next, dir.started = seq+1, true
			return
		}
		payload := l4.Payload
		if len(payload) == 0 || dir.gap {
			return
		}
		if !dir.started {
			dir.next, dir.started = seq, true
		}
		if diff := int32(dir.next - seq); diff > 0 { // overlap or retransmission
			if int(diff) >= len(payload) {
				return
			}
			payload = payload[diff:]
		} else if diff < 0 {
			dir.gap = true // missing segment: stop here
			return
		}
		if len(*dir.buf)+len(payload) <= maxStreamBytes {
			*dir.buf = append(*dir.buf, payload...)
		}
		dir.next += uint32(len(payload))
	}

}

// teredoIPv6 returns the IPv6 packet inside a Teredo UDP payload (RFC 4380:
// optional authentication and origin indication headers, then IPv6), or
// nil when the payload is not one.
func teredoIPv6(p []byte) []byte {
	if len(p) >= 13 && p[0] == 0 && p[1] == 1 { // authentication header
		n := 13 + int(p[2]) + int(p[3])
		if n > len(p) {
			return nil
		}
		p = p[n:]
	}
	if len(p) >= 8 && p[0] == 0 && p[1] == 0 { // origin indication
		p = p[8:]
	}
	if len(p) < 40 || p[0]>>4 != 6 || int(p[4])<<8|int(p[5]) != len(p)-40 {
		return nil
	}
	return p
}
