package netsum

import (
	"bytes"
	"crypto/sha1" //nolint:gosec // Community ID v1 is defined over SHA-1; it is an identifier, not a security control
	"encoding/base64"
	"encoding/binary"
)

// IP protocol numbers used by the summaries.
const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
	protoSCTP   = 132
)

// icmpCounterpart maps ICMP request/response types to their counterpart, as
// Community ID v1 (and Zeek's connection keys) do. Types absent from the
// map are one-way: their "ports" are type and code.
var icmp4Counterpart = map[uint8]uint8{
	8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17,
}

var icmp6Counterpart = map[uint8]uint8{
	128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135, 130: 131, 131: 130, 144: 145, 145: 144,
}

// icmpPorts returns the pseudo ports of an ICMP message: (type,
// counterpart type) for request/response types, else (type, code), and
// whether the message is one-way.
func icmpPorts(v6 bool, typ, code uint8) (sport, dport uint16, oneWay bool) {
	m := icmp4Counterpart
	if v6 {
		m = icmp6Counterpart
	}
	if c, ok := m[typ]; ok {
		return uint16(typ), uint16(c), false
	}
	return uint16(typ), uint16(code), true
}

// CommunityID computes the Community ID v1 flow hash (seed 0) of a flow
// given in any direction. For ICMP and ICMPv6, sport and dport are the
// ICMP type and code of a packet of the flow (they are mapped as the
// specification says). Addresses are 4 or 16 bytes.
func CommunityID(src, dst []byte, proto uint8, sport, dport uint16) string {
	return communityID(0, src, dst, proto, sport, dport)
}

func communityID(seed uint16, src, dst []byte, proto uint8, sport, dport uint16) string {
	oneWay := false
	hasPorts := true
	switch proto {
	case protoICMP:
		sport, dport, oneWay = icmpPorts(false, uint8(sport), uint8(dport))
	case protoICMPv6:
		sport, dport, oneWay = icmpPorts(true, uint8(sport), uint8(dport))
	case protoTCP, protoUDP, protoSCTP:
	default:
		hasPorts = false
	}
	if !oneWay {
		c := bytes.Compare(src, dst)
		if c > 0 || (c == 0 && sport > dport) {
			src, dst = dst, src
			sport, dport = dport, sport
		}
	}
	var buf [2 + 16 + 16 + 2 + 4]byte
	b := buf[:0]
	b = binary.BigEndian.AppendUint16(b, seed)
	b = append(b, src...)
	b = append(b, dst...)
	b = append(b, proto, 0)
	if hasPorts {
		b = binary.BigEndian.AppendUint16(b, sport)
		b = binary.BigEndian.AppendUint16(b, dport)
	}
	sum := sha1.Sum(b) //nolint:gosec // see import
	return "1:" + base64.StdEncoding.EncodeToString(sum[:])
}
