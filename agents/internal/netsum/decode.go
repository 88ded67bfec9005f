package netsum

import (
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// TCP flag bits as they appear in the header's flags byte.
const (
	flagFIN = 0x01
	flagSYN = 0x02
	flagRST = 0x04
	flagPSH = 0x08
	flagACK = 0x10
)

// packet is what the flow table needs from one decoded frame. It points
// into the frame's bytes (payload) and is valid until the next Decode.
type packet struct {
	ts       int64 // Unix nanoseconds
	v6       bool
	src, dst [16]byte // IPv4 in the first 4 bytes
	proto    uint8
	sport    uint16 // TCP/UDP port; ICMP type
	dport    uint16 // TCP/UDP port; ICMP code
	ipLen    int    // IP total length from the header (Zeek's ip_bytes)
	flags    uint8  // TCP flags
	seq, ack uint32
	// payloadLen is the transport payload length from the headers (it
	// may exceed len(payload) when the snap length cut the frame).
	payloadLen int
	payload    []byte
}

// decoder decodes frames of the link types pcap files and live captures
// give, with preallocated layers: decoding a frame allocates nothing.
type decoder struct {
	eth    layers.Ethernet
	sll    layers.LinuxSLL
	loop   layers.Loopback
	dot1q  layers.Dot1Q
	ip4    layers.IPv4
	ip6    layers.IPv6
	ip6ext layers.IPv6ExtensionSkipper
	tcp    layers.TCP
	udp    layers.UDP
	icmp4  layers.ICMPv4
	icmp6  layers.ICMPv6
	pay    gopacket.Payload

	eth0    *gopacket.DecodingLayerParser
	sll0    *gopacket.DecodingLayerParser
	loop0   *gopacket.DecodingLayerParser
	rawV4   *gopacket.DecodingLayerParser
	rawV6   *gopacket.DecodingLayerParser
	decoded []gopacket.LayerType

	// Counters of frames that gave no summary input, by reason.
	notIP, fragments, malformed uint64
}

func newDecoder() *decoder {
	d := &decoder{decoded: make([]gopacket.LayerType, 0, 12)}
	all := []gopacket.DecodingLayer{&d.eth, &d.sll, &d.loop, &d.dot1q, &d.ip4, &d.ip6, &d.ip6ext, &d.tcp, &d.udp, &d.icmp4, &d.icmp6, &d.pay}
	mk := func(first gopacket.LayerType) *gopacket.DecodingLayerParser {
		// A sparse array of decoders indexed by layer type: cheaper per
		// layer than the default map.
		dlc := gopacket.DecodingLayerContainer(gopacket.DecodingLayerSparse(nil))
		for _, l := range all {
			dlc = dlc.Put(l)
		}
		p := gopacket.NewDecodingLayerParser(first)
		p.SetDecodingLayerContainer(dlc)
		p.IgnoreUnsupported = true
		return p
	}
	d.eth0 = mk(layers.LayerTypeEthernet)
	d.sll0 = mk(layers.LayerTypeLinuxSLL)
	d.loop0 = mk(layers.LayerTypeLoopback)
	d.rawV4 = mk(layers.LayerTypeIPv4)
	d.rawV6 = mk(layers.LayerTypeIPv6)
	return d
}

// supportedLink reports whether frames of the link type can be decoded.
func supportedLink(lt layers.LinkType) bool {
	switch lt {
	case layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL, layers.LinkTypeNull, layers.LinkTypeLoop,
		layers.LinkTypeRaw, layers.LinkTypeIPv4, layers.LinkTypeIPv6, 12, 14:
		return true
	}
	return false
}

// decode fills p from one frame and reports whether it is an IP packet of
// a flow (TCP, UDP, ICMP, ICMPv6 or another IP protocol).
func (d *decoder) decode(lt layers.LinkType, data []byte, p *packet) bool {
	var parser *gopacket.DecodingLayerParser
	switch lt {
	case layers.LinkTypeRaw, layers.LinkTypeIPv4, layers.LinkTypeIPv6, 12, 14:
		if len(data) == 0 {
			d.malformed++
			return false
		}
		if data[0]>>4 == 6 {
			parser = d.rawV6
		} else {
			parser = d.rawV4
		}
	case layers.LinkTypeEthernet:
		parser = d.eth0
	case layers.LinkTypeLinuxSLL:
		parser = d.sll0
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		parser = d.loop0
	default:
		d.notIP++
		return false
	}
	d.decoded = d.decoded[:0]
	if err := parser.DecodeLayers(data, &d.decoded); err != nil && len(d.decoded) == 0 {
		d.malformed++
		return false
	}
	var ipPayload []byte // the IP layer's payload, for header arithmetic
	ipHdrLen := 0
	haveIP := false
	p.proto, p.sport, p.dport, p.flags, p.seq, p.ack = 0, 0, 0, 0, 0, 0
	p.payload, p.payloadLen = nil, 0
	transportTotal := 0
	for _, t := range d.decoded {
		switch t {
		case layers.LayerTypeIPv4:
			if haveIP { // tunnelled IP: we summarise the outer packet only
				continue
			}
			haveIP = true
			p.v6 = false
			p.src, p.dst = [16]byte{}, [16]byte{}
			copy(p.src[:4], d.ip4.SrcIP.To4())
			copy(p.dst[:4], d.ip4.DstIP.To4())
			p.proto = uint8(d.ip4.Protocol)
			p.ipLen = int(d.ip4.Length)
			ipHdrLen = int(d.ip4.IHL) * 4
			ipPayload = d.ip4.Payload
			transportTotal = p.ipLen - ipHdrLen
			if d.ip4.FragOffset != 0 {
				d.fragments++
				return false
			}
		case layers.LayerTypeIPv6:
			if haveIP {
				continue
			}
			haveIP = true
			p.v6 = true
			copy(p.src[:], d.ip6.SrcIP.To16())
			copy(p.dst[:], d.ip6.DstIP.To16())
			p.proto = uint8(d.ip6.NextHeader)
			p.ipLen = int(d.ip6.Length) + 40
			ipPayload = d.ip6.Payload
			transportTotal = int(d.ip6.Length)
		case layers.LayerTypeIPv6HopByHop, layers.LayerTypeIPv6Routing, layers.LayerTypeIPv6Destination:
			p.proto = uint8(d.ip6ext.NextHeader)
		case layers.LayerTypeIPv6Fragment:
			d.fragments++
			return false
		case layers.LayerTypeTCP:
			if !haveIP || p.proto != protoTCP {
				continue
			}
			p.sport, p.dport = uint16(d.tcp.SrcPort), uint16(d.tcp.DstPort)
			p.seq, p.ack = d.tcp.Seq, d.tcp.Ack
			p.flags = tcpFlags(&d.tcp)
			ext := len(ipPayload) - len(d.tcp.Contents) - len(d.tcp.Payload)
			p.payloadLen = max(transportTotal-ext-len(d.tcp.Contents), 0)
			p.payload = d.tcp.Payload
			return true
		case layers.LayerTypeUDP:
			if !haveIP || p.proto != protoUDP {
				continue
			}
			p.sport, p.dport = uint16(d.udp.SrcPort), uint16(d.udp.DstPort)
			p.payloadLen = max(int(d.udp.Length)-8, 0)
			p.payload = d.udp.Payload
			if len(p.payload) > p.payloadLen {
				p.payload = p.payload[:p.payloadLen]
			}
			return true
		case layers.LayerTypeICMPv4:
			if !haveIP || p.proto != protoICMP {
				continue
			}
			p.sport, p.dport = uint16(d.icmp4.TypeCode.Type()), uint16(d.icmp4.TypeCode.Code())
			p.payloadLen = max(transportTotal-8, 0)
			return true
		case layers.LayerTypeICMPv6:
			if !haveIP || p.proto != protoICMPv6 {
				continue
			}
			p.sport, p.dport = uint16(d.icmp6.TypeCode.Type()), uint16(d.icmp6.TypeCode.Code())
			ext := len(ipPayload) - len(d.icmp6.Contents) - len(d.icmp6.Payload)
			p.payloadLen = max(transportTotal-ext-8, 0)
			return true
		}
	}
	if !haveIP {
		d.notIP++
		return false
	}
	switch p.proto {
	case protoTCP, protoUDP, protoICMP, protoICMPv6:
		// the transport header was cut or malformed
		d.malformed++
		return false
	}
	p.payloadLen = max(transportTotal, 0)
	return true
}

func tcpFlags(t *layers.TCP) uint8 {
	var f uint8
	if t.FIN {
		f |= flagFIN
	}
	if t.SYN {
		f |= flagSYN
	}
	if t.RST {
		f |= flagRST
	}
	if t.PSH {
		f |= flagPSH
	}
	if t.ACK {
		f |= flagACK
	}
	return f
}
