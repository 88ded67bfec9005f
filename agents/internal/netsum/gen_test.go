package netsum

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// frameBuilder builds Ethernet frames for tests, fuzz seeds and benchmarks.
type frameBuilder struct {
	buf gopacket.SerializeBuffer
	opt gopacket.SerializeOptions
}

func newFrameBuilder() *frameBuilder {
	return &frameBuilder{buf: gopacket.NewSerializeBuffer(), opt: gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}}
}

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
)

// tcp returns an Ethernet/IPv4/TCP frame (a fresh slice).
func (b *frameBuilder) tcp(t testing.TB, src, dst net.IP, sport, dport uint16, flags uint8, seq, ack uint32, payload []byte) []byte {
	eth := &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src, DstIP: dst}
	if src.To4() == nil {
		eth.EthernetType = layers.EthernetTypeIPv6
	}
	tc := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: seq, Ack: ack, Window: 65535,
		SYN: flags&flagSYN != 0, ACK: flags&flagACK != 0, FIN: flags&flagFIN != 0, RST: flags&flagRST != 0, PSH: flags&flagPSH != 0}
	var err error
	if src.To4() == nil {
		ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: src, DstIP: dst}
		_ = tc.SetNetworkLayerForChecksum(ip6)
		err = gopacket.SerializeLayers(b.buf, b.opt, eth, ip6, tc, gopacket.Payload(payload))
	} else {
		_ = tc.SetNetworkLayerForChecksum(ip)
		err = gopacket.SerializeLayers(b.buf, b.opt, eth, ip, tc, gopacket.Payload(payload))
	}
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), b.buf.Bytes()...)
}

// udp returns an Ethernet/IPv4/UDP frame.
func (b *frameBuilder) udp(t testing.TB, src, dst net.IP, sport, dport uint16, payload []byte) []byte {
	eth := &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: src, DstIP: dst}
	u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	_ = u.SetNetworkLayerForChecksum(ip)
	if err := gopacket.SerializeLayers(b.buf, b.opt, eth, ip, u, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), b.buf.Bytes()...)
}

// dnsQuery builds a DNS query (or response with one A answer) for name.
func dnsMessage(id uint16, name string, response bool) []byte {
	m := make([]byte, 12)
	binary.BigEndian.PutUint16(m, id)
	if response {
		binary.BigEndian.PutUint16(m[2:], 0x8180)
		binary.BigEndian.PutUint16(m[6:], 1)
	} else {
		binary.BigEndian.PutUint16(m[2:], 0x0100)
	}
	binary.BigEndian.PutUint16(m[4:], 1)
	for _, label := range splitLabels(name) {
		m = append(m, byte(len(label)))
		m = append(m, label...)
	}
	m = append(m, 0, 0, 1, 0, 1)
	if response {
		m = append(m, 0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 9)
	}
	return m
}

func splitLabels(name string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(name); i++ {
		if i == len(name) || name[i] == '.' {
			out = append(out, name[start:i])
			start = i + 1
		}
	}
	return out
}

// timedFrame is a frame with its capture time.
type timedFrame struct {
	ts   time.Time
	data []byte
}

// httpSession returns the frames of a complete HTTP/1.1 exchange between
// client:sport and server:80, starting at t0.
func httpSession(t testing.TB, b *frameBuilder, client, server net.IP, sport uint16, t0 time.Time) []timedFrame {
	req := []byte("GET /index.html?q=1 HTTP/1.1\r\nHost: www.example.test\r\nUser-Agent: test-agent/1\r\n\r\n")
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
	var cs, ss uint32 = 1000, 5000
	step := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Millisecond) }
	return []timedFrame{
		{step(0), b.tcp(t, client, server, sport, 80, flagSYN, cs, 0, nil)},
		{step(1), b.tcp(t, server, client, 80, sport, flagSYN|flagACK, ss, cs+1, nil)},
		{step(2), b.tcp(t, client, server, sport, 80, flagACK, cs+1, ss+1, nil)},
		{step(3), b.tcp(t, client, server, sport, 80, flagACK|flagPSH, cs+1, ss+1, req)},
		{step(4), b.tcp(t, server, client, 80, sport, flagACK|flagPSH, ss+1, cs+1+uint32(len(req)), resp)},
		{step(5), b.tcp(t, client, server, sport, 80, flagACK|flagFIN, cs+1+uint32(len(req)), ss+1+uint32(len(resp)), nil)},
		{step(6), b.tcp(t, server, client, 80, sport, flagACK|flagFIN, ss+1+uint32(len(resp)), cs+2+uint32(len(req)), nil)},
		{step(7), b.tcp(t, client, server, sport, 80, flagACK, cs+2+uint32(len(req)), ss+2+uint32(len(resp)), nil)},
	}
}

func ciFor(ts time.Time, n int) gopacket.CaptureInfo {
	return gopacket.CaptureInfo{Timestamp: ts, CaptureLength: n, Length: n}
}
