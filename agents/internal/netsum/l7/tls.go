package l7

import (
	"encoding/binary"
)

// ClientHello holds the fields of a TLS ClientHello used for summaries and
// fingerprints. Lists keep the wire order and include GREASE values
// (RFC 8701); JA3 and JA4 drop them. SNI is the first host_name of the
// server_name extension with bytes outside printable ASCII escaped as
// \xHH; ALPN values are escaped the same way.
type ClientHello struct {
	LegacyVersion       uint16
	SupportedVersions   []uint16 // supported_versions extension (43), if sent
	CipherSuites        []uint16
	Extensions          []uint16 // extension types in wire order
	Curves              []uint16 // supported_groups extension (10)
	SignatureAlgorithms []uint16 // signature_algorithms extension (13)
	PointFormats        []uint8  // ec_point_formats extension (11)
	SNI                 string
	ALPN                []string
}

// ServerHello holds the fields of a TLS ServerHello used for summaries.
// SelectedVersion is the supported_versions extension's value (TLS 1.3),
// zero when absent; NegotiatedVersion combines both.
type ServerHello struct {
	Version         uint16
	CipherSuite     uint16
	SelectedVersion uint16
}

// NegotiatedVersion is SelectedVersion when the server sent one, else the
// legacy version field.
func (s ServerHello) NegotiatedVersion() uint16 {
	if s.SelectedVersion != 0 {
		return s.SelectedVersion
	}
	return s.Version
}

const (
	tlsRecordHandshake   = 22
	tlsRecordHeaderLen   = 5
	tlsMaxRecordLen      = 16384 + 2048 // TLSCiphertext limit
	tlsTypeClientHello   = 1
	tlsTypeServerHello   = 2
	extServerName        = 0
	extSupportedGroups   = 10
	extECPointFormats    = 11
	extSignatureAlgs     = 13
	extALPN              = 16
	extSupportedVersions = 43
)

var (
	errTLSNotHandshake  = &decodeError{msg: "not a TLS handshake record (content type is not 22)"}
	errTLSRecordVersion = &decodeError{msg: "TLS record version major is not 3"}
	errTLSRecordLen     = &decodeError{msg: "TLS record length is zero or above 18432"}
	errTLSWrongMsg      = &decodeError{msg: "first TLS handshake message is not the expected hello"}
	errTLSHandshakeLen  = &decodeError{msg: "TLS hello longer than 64 KiB"}
	errTLSShort         = &decodeError{msg: "TLS hello ends inside a field"}
	errTLSCipherLen     = &decodeError{msg: "TLS cipher suite list has an odd or zero length"}
	errTLSTooMany       = &decodeError{msg: "TLS hello list longer than the decoder limit (512 entries)"}
	errTLSExtension     = &decodeError{msg: "TLS extension overruns the extension block"}
	errTLSExtBody       = &decodeError{msg: "TLS extension body is inconsistent with its length"}
	errTLSTrailing      = &decodeError{msg: "TLS hello has trailing bytes after its extensions"}
)

// handshakeMessage returns the body of the first handshake message of a
// TLS stream, which must be of type want. The message may span several
// records; the result aliases stream when it lies in one record and is a
// fresh copy otherwise.
func handshakeMessage(stream []byte, want byte) ([]byte, error) {
	var acc []byte // joined fragments, once the message spans records
	off := 0
	for {
		if len(stream)-off < tlsRecordHeaderLen {
			return nil, ErrIncomplete
		}
		if stream[off] != tlsRecordHandshake {
			return nil, errTLSNotHandshake
		}
		if stream[off+1] != 3 {
			return nil, errTLSRecordVersion
		}
		reclen := int(binary.BigEndian.Uint16(stream[off+3:]))
		if reclen == 0 || reclen > tlsMaxRecordLen {
			return nil, errTLSRecordLen
		}
		start := off + tlsRecordHeaderLen
		end := start + reclen
		complete := end <= len(stream)
		if !complete {
			end = len(stream)
		}
		frag := stream[start:end]
		data := frag
		if acc != nil {
			acc = append(acc, frag...)
			data = acc
		}
		hlen := -1
		if len(data) >= 4 {
			if data[0] != want {
				return nil, errTLSWrongMsg
			}
			hlen = int(data[1])<<16 | int(data[2])<<8 | int(data[3])
			if hlen > MaxTLSHandshake {
				return nil, errTLSHandshakeLen
			}
			if len(data) >= 4+hlen {
				return data[4 : 4+hlen : 4+hlen], nil
			}
		}
		if !complete {
			return nil, ErrIncomplete
		}
		if acc == nil {
			size := 512
			if hlen >= 0 {
				size = 4 + hlen
			}
			acc = append(make([]byte, 0, size), frag...)
		}
		off = end
	}
}

// reader is a bounds-checked cursor over a hello body.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) u8() int {
	if len(r.b) < 1 {
		r.bad = true
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return int(v)
}

func (r *reader) u16() int {
	if len(r.b) < 2 {
		r.bad = true
		return 0
	}
	v := binary.BigEndian.Uint16(r.b)
	r.b = r.b[2:]
	return int(v)
}

func (r *reader) bytes(n int) []byte {
	if len(r.b) < n {
		r.bad = true
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// ParseClientHello decodes the ClientHello at the start of the client's
// TCP byte stream (the handshake may span several TLS records). It returns
// ErrIncomplete when the stream is cut before the end of the hello, and an
// error wrapping ErrMalformed when the bytes are not a TLS ClientHello.
// SSL 2.0 compatible hellos are not supported (ErrMalformed).
func ParseClientHello(stream []byte) (ClientHello, error) {
	var h ClientHello
	body, err := handshakeMessage(stream, tlsTypeClientHello)
	if err != nil {
		return h, err
	}
	r := reader{b: body}
	h.LegacyVersion = uint16(r.u16())
	r.bytes(32)     // random
	r.bytes(r.u8()) // legacy_session_id
	ciphers := r.bytes(r.u16())
	r.bytes(r.u8()) // legacy_compression_methods
	if r.bad {
		return h, errTLSShort
	}
	if len(ciphers) == 0 || len(ciphers)%2 != 0 {
		return h, errTLSCipherLen
	}
	if len(ciphers)/2 > MaxTLSListLen {
		return h, errTLSTooMany
	}
	var exts []byte
	if len(r.b) > 0 {
		exts = r.bytes(r.u16())
		if r.bad {
			return h, errTLSShort
		}
		if len(r.b) != 0 {
			return h, errTLSTrailing
		}
	}

	// First pass: validate the extension block, count extensions and find
	// the bodies the summary needs (first occurrence of each).
	var sni, groups, pointFormats, sigAlgs, alpn, versions []byte
	var hasSNI, hasGroups, hasPF, hasSig, hasALPN, hasVersions bool
	nExt := 0
	for e := exts; len(e) > 0; {
		if len(e) < 4 {
			return h, errTLSExtension
		}
		typ := binary.BigEndian.Uint16(e)
		n := int(binary.BigEndian.Uint16(e[2:]))
		if len(e) < 4+n {
			return h, errTLSExtension
		}
		body := e[4 : 4+n : 4+n]
		e = e[4+n:]
		nExt++
		if nExt > MaxTLSListLen {
			return h, errTLSTooMany
		}
		switch typ {
		case extServerName:
			if !hasSNI {
				sni, hasSNI = body, true
			}
		case extSupportedGroups:
			if !hasGroups {
				groups, hasGroups = body, true
			}
		case extECPointFormats:
			if !hasPF {
				pointFormats, hasPF = body, true
			}
		case extSignatureAlgs:
			if !hasSig {
				sigAlgs, hasSig = body, true
			}
		case extALPN:
			if !hasALPN {
				alpn, hasALPN = body, true
			}
		case extSupportedVersions:
			if !hasVersions {
				versions, hasVersions = body, true
			}
		}
	}
	groups, err = u16ListBody(groups, 2)
	if err != nil {
		return h, err
	}
	sigAlgs, err = u16ListBody(sigAlgs, 2)
	if err != nil {
		return h, err
	}
	versions, err = u16ListBody(versions, 1)
	if err != nil {
		return h, err
	}
	if hasPF {
		pr := reader{b: pointFormats}
		pointFormats = pr.bytes(pr.u8())
		if pr.bad || len(pr.b) != 0 {
			return h, errTLSExtBody
		}
	}

	// One backing array for every uint16 list.
	total := len(ciphers)/2 + nExt + len(groups)/2 + len(sigAlgs)/2 + len(versions)/2
	backing := make([]uint16, 0, total)
	backing, h.CipherSuites = appendU16s(backing, ciphers)
	mark := len(backing)
	for e := exts; len(e) > 0; {
		n := int(binary.BigEndian.Uint16(e[2:]))
		backing = append(backing, binary.BigEndian.Uint16(e))
		e = e[4+n:]
	}
	h.Extensions = backing[mark:len(backing):len(backing)]
	if hasGroups {
		backing, h.Curves = appendU16s(backing, groups)
	}
	if hasSig {
		backing, h.SignatureAlgorithms = appendU16s(backing, sigAlgs)
	}
	if hasVersions {
		_, h.SupportedVersions = appendU16s(backing, versions)
	}
	if hasPF {
		h.PointFormats = append([]uint8(nil), pointFormats...)
	}
	if hasSNI {
		if h.SNI, err = parseSNI(sni); err != nil {
			return h, err
		}
	}
	if hasALPN {
		if h.ALPN, err = parseALPN(alpn); err != nil {
			return h, err
		}
	}
	return h, nil
}

// u16ListBody strips the length prefix (lenBytes long) of an extension body
// holding a list of uint16 values and checks it.
func u16ListBody(body []byte, lenBytes int) ([]byte, error) {
	if body == nil {
		return nil, nil
	}
	r := reader{b: body}
	var n int
	if lenBytes == 1 {
		n = r.u8()
	} else {
		n = r.u16()
	}
	list := r.bytes(n)
	if r.bad || len(r.b) != 0 || len(list)%2 != 0 {
		return nil, errTLSExtBody
	}
	if len(list)/2 > MaxTLSListLen {
		return nil, errTLSTooMany
	}
	return list, nil
}

func appendU16s(backing []uint16, raw []byte) ([]uint16, []uint16) {
	mark := len(backing)
	for i := 0; i+1 < len(raw); i += 2 {
		backing = append(backing, binary.BigEndian.Uint16(raw[i:]))
	}
	return backing, backing[mark:len(backing):len(backing)]
}

// parseSNI returns the first host_name entry of a server_name extension.
func parseSNI(body []byte) (string, error) {
	r := reader{b: body}
	list := r.bytes(r.u16())
	if r.bad || len(r.b) != 0 {
		return "", errTLSExtBody
	}
	lr := reader{b: list}
	for len(lr.b) > 0 {
		typ := lr.u8()
		name := lr.bytes(lr.u16())
		if lr.bad {
			return "", errTLSExtBody
		}
		if typ == 0 {
			return escapedString(name, MaxDNSNameLen), nil
		}
	}
	return "", nil
}

// parseALPN returns the protocol names of an ALPN extension. All names
// share one string allocation when none needs escaping.
func parseALPN(body []byte) ([]string, error) {
	r := reader{b: body}
	list := r.bytes(r.u16())
	if r.bad || len(r.b) != 0 {
		return nil, errTLSExtBody
	}
	count := 0
	clean := true
	for lr := (reader{b: list}); len(lr.b) > 0; {
		p := lr.bytes(lr.u8())
		if lr.bad {
			return nil, errTLSExtBody
		}
		count++
		if count > MaxTLSListLen {
			return nil, errTLSTooMany
		}
		if !printable(p) {
			clean = false
		}
	}
	out := make([]string, 0, count)
	var all string
	if clean {
		all = string(list)
	}
	pos := 0
	for lr := (reader{b: list}); len(lr.b) > 0; {
		n := lr.u8()
		p := lr.bytes(n)
		if clean {
			out = append(out, all[pos+1:pos+1+n])
		} else {
			out = append(out, escapedString(p, MaxFieldLen))
		}
		pos += 1 + n
	}
	return out, nil
}

func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c >= 0x7f || c == '\\' {
			return false
		}
	}
	return true
}

// escapedString converts b to a string, escaping bytes outside printable
// ASCII and the backslash as \xHH, and caps the result at limit bytes.
func escapedString(b []byte, limit int) string {
	if printable(b) {
		if len(b) > limit {
			b = b[:limit]
		}
		return string(b)
	}
	out := make([]byte, 0, min(len(b)*2, limit))
	for _, c := range b {
		if len(out) >= limit {
			break
		}
		if c < 0x20 || c >= 0x7f || c == '\\' {
			out = append(out, '\\', 'x', hexDigits[c>>4], hexDigits[c&0xf])
		} else {
			out = append(out, c)
		}
	}
	if len(out) > limit {
		out = out[:limit]
	}
	return string(out)
}

// ParseServerHello decodes the ServerHello at the start of the server's
// TCP byte stream. It returns ErrIncomplete when the stream is cut before
// the end of the hello.
func ParseServerHello(stream []byte) (ServerHello, error) {
	var s ServerHello
	body, err := handshakeMessage(stream, tlsTypeServerHello)
	if err != nil {
		return s, err
	}
	r := reader{b: body}
	s.Version = uint16(r.u16())
	r.bytes(32)     // random
	r.bytes(r.u8()) // legacy_session_id_echo
	s.CipherSuite = uint16(r.u16())
	r.u8() // legacy_compression_method
	if r.bad {
		return s, errTLSShort
	}
	if len(r.b) == 0 {
		return s, nil
	}
	exts := r.bytes(r.u16())
	if r.bad {
		return s, errTLSShort
	}
	for len(exts) > 0 {
		if len(exts) < 4 {
			return s, errTLSExtension
		}
		typ := binary.BigEndian.Uint16(exts)
		n := int(binary.BigEndian.Uint16(exts[2:]))
		if len(exts) < 4+n {
			return s, errTLSExtension
		}
		if typ == extSupportedVersions && s.SelectedVersion == 0 {
			if n != 2 {
				return s, errTLSExtBody
			}
			s.SelectedVersion = binary.BigEndian.Uint16(exts[4:])
		}
		exts = exts[4+n:]
	}
	return s, nil
}

// LooksLikeTLS reports whether b plausibly starts a TLS (or SSL 3.0)
// handshake stream: a handshake record header with a sane version and
// length, and, when present, a ClientHello or ServerHello message type.
func LooksLikeTLS(b []byte) bool {
	if len(b) < 3 || b[0] != tlsRecordHandshake || b[1] != 3 || b[2] > 4 {
		return false
	}
	if len(b) >= 5 {
		n := int(binary.BigEndian.Uint16(b[3:]))
		if n == 0 || n > tlsMaxRecordLen {
			return false
		}
	}
	if len(b) >= 6 && b[5] != tlsTypeClientHello && b[5] != tlsTypeServerHello {
		return false
	}
	return true
}

// IsGREASE reports whether v is a GREASE value (RFC 8701): 0x0a0a,
// 0x1a1a, ..., 0xfafa.
func IsGREASE(v uint16) bool {
	return v&0x0f0f == 0x0a0a && v>>8 == v&0xff
}

// TLSVersion returns the protocol ("tls", "ssl", "dtls") and version text
// ("1.2", "3.0", ...) of a TLS version number in the ECS tls.version_protocol
// and tls.version style; both are empty for unknown values.
func TLSVersion(v uint16) (protocol, version string) {
	switch v {
	case 0x0002:
		return "ssl", "2.0"
	case 0x0300:
		return "ssl", "3.0"
	case 0x0301:
		return "tls", "1.0"
	case 0x0302:
		return "tls", "1.1"
	case 0x0303:
		return "tls", "1.2"
	case 0x0304:
		return "tls", "1.3"
	case 0xfeff:
		return "dtls", "1.0"
	case 0xfefd:
		return "dtls", "1.2"
	case 0xfefc:
		return "dtls", "1.3"
	}
	return "", ""
}

// MaxVersion is the highest non-GREASE version the client offers: the
// largest supported_versions entry when that extension is present, else
// the legacy version field (the JA4 rule).
func (h ClientHello) MaxVersion() uint16 {
	best := uint16(0)
	for _, v := range h.SupportedVersions {
		if !IsGREASE(v) && v > best {
			best = v
		}
	}
	if best == 0 {
		return h.LegacyVersion
	}
	return best
}
