package l7

import (
	"encoding/binary"
	"net/netip"
	"strconv"
)

// DNSQuestion is one entry of a DNS question section.
type DNSQuestion struct {
	Name        string // rendered by the rules of DNSName
	Type, Class uint16 // Class keeps the mDNS unicast-response bit
}

// DNSAnswer is one resource record of a DNS answer section.
//
// Data renders the record like Zeek's dns.log answers: A/AAAA as address
// text; CNAME, NS, PTR, DNAME and SRV as the target name; MX as
// "preference name"; TXT/SPF as "TXT <len> <string>" per character-string
// joined by spaces; SOA as the primary name server; other types as
// "<TYPE>" followed by the record length, e.g. "<RRSIG 156 bytes>"; Data is
// capped at MaxFieldLen bytes.
type DNSAnswer struct {
	Name string
	Type uint16
	TTL  uint32
	Data string
}

// DNSMessage is the decoded header, questions and answers of a DNS message.
// Authority and additional sections are not decoded.
type DNSMessage struct {
	ID                 uint16
	Response           bool
	Truncated          bool
	Authoritative      bool
	RecursionDesired   bool
	RecursionAvailable bool
	Opcode             int
	RCode              int
	Questions          []DNSQuestion
	Answers            []DNSAnswer
	// QDCount and ANCount are the counts the header announced (the slices
	// hold at most MaxDNSQuestions and MaxDNSAnswers entries).
	QDCount, ANCount int
}

// DNS record types the decoder renders specially.
const (
	dnsTypeA     = 1
	dnsTypeNS    = 2
	dnsTypeCNAME = 5
	dnsTypeSOA   = 6
	dnsTypePTR   = 12
	dnsTypeMX    = 15
	dnsTypeTXT   = 16
	dnsTypeAAAA  = 28
	dnsTypeSRV   = 33
	dnsTypeDNAME = 39
	dnsTypeSPF   = 99
)

const dnsHeaderLen = 12

// maxDNSJumps bounds the compression pointers followed for one name: a
// name has at most 127 labels, so more jumps than that mean a loop.
const maxDNSJumps = 128

var (
	errDNSShortHeader   = &decodeError{msg: "DNS message shorter than its 12-byte header"}
	errDNSNameTooLong   = &decodeError{msg: "DNS name longer than 255 bytes"}
	errDNSLabelType     = &decodeError{msg: "DNS label with reserved type bits (0x40/0x80)"}
	errDNSPointerLoop   = &decodeError{msg: "DNS compression pointers loop or chain too long"}
	errDNSPointerRange  = &decodeError{msg: "DNS compression pointer beyond the message"}
	errDNSTruncatedName = &decodeError{msg: "DNS message ends inside a name"}
	errDNSTruncatedRR   = &decodeError{msg: "DNS message ends inside a record"}
	errDNSRDataOverrun  = &decodeError{msg: "DNS record data overruns its RDLENGTH"}
)

// ParseDNS decodes one DNS message (a UDP payload, or one message from
// SplitTCPDNS). Names are bounded (255 bytes, 63-byte labels), compression
// pointers must stay inside the message and may not loop, and at most
// MaxDNSQuestions questions and MaxDNSAnswers answers are decoded. On error
// the returned message holds the header and whatever records were decoded
// before the error, so a truncated response still yields its question.
func ParseDNS(msg []byte) (DNSMessage, error) {
	var m DNSMessage
	if len(msg) < dnsHeaderLen {
		return m, errDNSShortHeader
	}
	m.ID = binary.BigEndian.Uint16(msg[0:2])
	flags := binary.BigEndian.Uint16(msg[2:4])
	m.Response = flags&0x8000 != 0
	m.Opcode = int(flags>>11) & 0xf
	m.Authoritative = flags&0x0400 != 0
	m.Truncated = flags&0x0200 != 0
	m.RecursionDesired = flags&0x0100 != 0
	m.RecursionAvailable = flags&0x0080 != 0
	m.RCode = int(flags & 0xf)
	m.QDCount = int(binary.BigEndian.Uint16(msg[4:6]))
	m.ANCount = int(binary.BigEndian.Uint16(msg[6:8]))

	off := dnsHeaderLen
	var nameBuf [maxRenderedName]byte
	var names nameCache
	if nq := min(m.QDCount, MaxDNSQuestions); nq > 0 {
		m.Questions = make([]DNSQuestion, 0, nq)
	}
	for i := 0; i < m.QDCount; i++ {
		name, next, err := readName(msg, off, nameBuf[:0])
		if err != nil {
			return m, err
		}
		if next+4 > len(msg) {
			return m, errDNSTruncatedRR
		}
		q := DNSQuestion{
			Type:  binary.BigEndian.Uint16(msg[next:]),
			Class: binary.BigEndian.Uint16(msg[next+2:]),
		}
		off = next + 4
		if i < MaxDNSQuestions {
			q.Name = names.get(name)
			m.Questions = append(m.Questions, q)
		}
	}
	if na := min(m.ANCount, MaxDNSAnswers); na > 0 {
		m.Answers = make([]DNSAnswer, 0, na)
	}
	for i := 0; i < m.ANCount && i < MaxDNSAnswers; i++ {
		name, next, err := readName(msg, off, nameBuf[:0])
		if err != nil {
			return m, err
		}
		if next+10 > len(msg) {
			return m, errDNSTruncatedRR
		}
		a := DNSAnswer{
			Name: names.get(name),
			Type: binary.BigEndian.Uint16(msg[next:]),
			TTL:  binary.BigEndian.Uint32(msg[next+4:]),
		}
		rdlen := int(binary.BigEndian.Uint16(msg[next+8:]))
		start := next + 10
		end := start + rdlen
		if end > len(msg) {
			return m, errDNSTruncatedRR
		}
		a.Data, err = renderRData(msg, start, end, a.Type, nameBuf[:0], &names)
		if err != nil {
			return m, err
		}
		m.Answers = append(m.Answers, a)
		off = end
	}
	return m, nil
}

// nameCache returns a string for a rendered name, reusing one of the last
// few strings when equal: the names of a response mostly repeat the
// question's, so this saves most name allocations.
type nameCache struct {
	recent [4]string
	next   int
}

func (c *nameCache) get(b []byte) string {
	for _, s := range c.recent {
		if s == string(b) && s != "" {
			return s
		}
	}
	s := string(b)
	c.recent[c.next] = s
	c.next = (c.next + 1) % len(c.recent)
	return s
}

// maxRenderedName is the largest rendered name: 255 wire bytes where every
// byte may be escaped as \DDD.
const maxRenderedName = 4 * MaxDNSNameLen

// readName decodes the (possibly compressed) name at msg[off:], appending
// its presentation form to dst. It returns the rendered name and the offset
// just after the name in the original position.
//
// Rendering: labels joined by '.', ASCII letters lowercased (as Zeek does),
// bytes outside 0x21..0x7e and the characters '.', '\\' inside a label
// escaped as \DDD (decimal, the ECS convention); the root name renders as
// the empty string.
func readName(msg []byte, off int, dst []byte) ([]byte, int, error) {
	next := -1 // offset after the name in the original position
	base := len(dst)
	jumps := 0
	wire := 0 // wire length of the name, including length octets
	for {
		if off >= len(msg) {
			return dst, 0, errDNSTruncatedName
		}
		c := int(msg[off])
		switch c & 0xc0 {
		case 0x00:
			off++
			wire++
			if c == 0 {
				if next < 0 {
					next = off
				}
				if wire > MaxDNSNameLen {
					return dst, 0, errDNSNameTooLong
				}
				return dst, next, nil
			}
			wire += c
			if wire > MaxDNSNameLen {
				return dst, 0, errDNSNameTooLong
			}
			if off+c > len(msg) {
				return dst, 0, errDNSTruncatedName
			}
			if len(dst) > base {
				dst = append(dst, '.')
			}
			for _, b := range msg[off : off+c] {
				dst = appendNameByte(dst, b)
			}
			off += c
		case 0xc0:
			if off+1 >= len(msg) {
				return dst, 0, errDNSTruncatedName
			}
			ptr := int(binary.BigEndian.Uint16(msg[off:]) & 0x3fff)
			if next < 0 {
				next = off + 2
			}
			jumps++
			if jumps > maxDNSJumps {
				return dst, 0, errDNSPointerLoop
			}
			if ptr >= len(msg) {
				return dst, 0, errDNSPointerRange
			}
			off = ptr
		default:
			return dst, 0, errDNSLabelType
		}
	}
}

func appendNameByte(dst []byte, b byte) []byte {
	switch {
	case b >= 'A' && b <= 'Z':
		return append(dst, b+('a'-'A'))
	case b == '.' || b == '\\' || b <= 0x20 || b >= 0x7f:
		return append(dst, '\\', '0'+b/100, '0'+(b/10)%10, '0'+b%10)
	default:
		return append(dst, b)
	}
}

// renderRData renders the data of a record of type t found at msg[start:end].
func renderRData(msg []byte, start, end int, t uint16, buf []byte, names *nameCache) (string, error) {
	rd := msg[start:end]
	switch t {
	case dnsTypeA:
		if len(rd) != 4 {
			return "", &decodeError{msg: "DNS A record data is not 4 bytes"}
		}
		return netip.AddrFrom4([4]byte(rd)).String(), nil
	case dnsTypeAAAA:
		if len(rd) != 16 {
			return "", &decodeError{msg: "DNS AAAA record data is not 16 bytes"}
		}
		return netip.AddrFrom16([16]byte(rd)).String(), nil
	case dnsTypeCNAME, dnsTypeNS, dnsTypePTR, dnsTypeDNAME, dnsTypeSOA:
		name, next, err := readName(msg[:end], start, buf)
		if err != nil {
			return "", err
		}
		if t != dnsTypeSOA && next != end {
			return "", errDNSRDataOverrun
		}
		return names.get(name), nil
	case dnsTypeMX:
		if len(rd) < 3 {
			return "", errDNSTruncatedRR
		}
		buf = strconv.AppendUint(buf, uint64(binary.BigEndian.Uint16(rd)), 10)
		buf = append(buf, ' ')
		name, next, err := readName(msg[:end], start+2, buf)
		if err != nil {
			return "", err
		}
		if next != end {
			return "", errDNSRDataOverrun
		}
		return string(name), nil
	case dnsTypeSRV:
		if len(rd) < 7 {
			return "", errDNSTruncatedRR
		}
		name, next, err := readName(msg[:end], start+6, buf)
		if err != nil {
			return "", err
		}
		if next != end {
			return "", errDNSRDataOverrun
		}
		return string(name), nil
	case dnsTypeTXT, dnsTypeSPF:
		return renderTXT(rd)
	default:
		buf = append(buf, '<')
		buf = append(buf, DNSTypeName(t)...)
		buf = append(buf, ' ')
		buf = strconv.AppendInt(buf, int64(len(rd)), 10)
		buf = append(buf, " bytes>"...)
		return string(buf), nil
	}
}

// renderTXT renders TXT character-strings as Zeek does: "TXT <len> <text>"
// for each string, joined by single spaces; non-printable bytes are
// escaped as \xHH. The result is capped at MaxFieldLen bytes.
func renderTXT(rd []byte) (string, error) {
	out := make([]byte, 0, min(len(rd)+16, MaxFieldLen))
	for i := 0; i < len(rd); {
		n := int(rd[i])
		i++
		if i+n > len(rd) {
			return "", &decodeError{msg: "DNS TXT character-string overruns its record"}
		}
		if len(out) > 0 {
			out = append(out, ' ')
		}
		out = append(out, "TXT "...)
		out = strconv.AppendInt(out, int64(n), 10)
		out = append(out, ' ')
		for _, b := range rd[i : i+n] {
			if b < 0x20 || b >= 0x7f {
				out = append(out, '\\', 'x', hexDigits[b>>4], hexDigits[b&0xf])
			} else {
				out = append(out, b)
			}
		}
		i += n
		if len(out) >= MaxFieldLen {
			out = out[:MaxFieldLen]
			break
		}
	}
	return string(out), nil
}

const hexDigits = "0123456789abcdef"

// SplitTCPDNS splits a TCP DNS byte stream (RFC 1035 section 4.2.2: each
// message preceded by a 2-byte length) into whole messages. rest holds the
// bytes of an incomplete trailing message (keep them and append the next
// segment). Zero-length frames are skipped. The returned slices alias
// stream.
func SplitTCPDNS(stream []byte) (msgs [][]byte, rest []byte) {
	for {
		msg, r, ok := NextTCPDNS(stream)
		if !ok {
			return msgs, r
		}
		if len(msg) > 0 {
			msgs = append(msgs, msg)
		}
		stream = r
	}
}

// NextTCPDNS returns the first length-prefixed DNS message of a TCP stream
// and the bytes after it, without allocating. ok is false when the stream
// does not hold a whole message; rest is then the stream itself.
func NextTCPDNS(stream []byte) (msg, rest []byte, ok bool) {
	if len(stream) < 2 {
		return nil, stream, false
	}
	n := int(binary.BigEndian.Uint16(stream))
	if len(stream) < 2+n {
		return nil, stream, false
	}
	return stream[2 : 2+n : 2+n], stream[2+n:], true
}

// LooksLikeDNS reports whether b plausibly starts a DNS message (a UDP
// payload, or a TCP message after its length prefix): a known opcode, zero
// Z bit, sane section counts, and a first question whose name and class
// decode.
func LooksLikeDNS(b []byte) bool {
	if len(b) < dnsHeaderLen+5 {
		return false
	}
	flags := binary.BigEndian.Uint16(b[2:4])
	switch (flags >> 11) & 0xf {
	case 0, 1, 2, 4, 5:
	default:
		return false
	}
	if flags&0x0040 != 0 { // Z must be zero
		return false
	}
	qd := binary.BigEndian.Uint16(b[4:6])
	an := binary.BigEndian.Uint16(b[6:8])
	ns := binary.BigEndian.Uint16(b[8:10])
	ar := binary.BigEndian.Uint16(b[10:12])
	response := flags&0x8000 != 0
	if qd > 16 || an > 512 || ns > 512 || ar > 512 {
		return false
	}
	if qd == 0 && (!response || an == 0) { // mDNS responses carry no question
		return false
	}
	if !response && an > 16 { // queries rarely carry answers
		return false
	}
	var buf [maxRenderedName]byte
	_, next, err := readName(b, dnsHeaderLen, buf[:0])
	if err != nil || next+4 > len(b) {
		return false
	}
	// The class follows the type in a question and in a record.
	switch binary.BigEndian.Uint16(b[next+2:]) & 0x7fff {
	case 1, 3, 4, 254, 255:
		return true
	}
	return false
}
