package l7

import (
	"crypto/md5" //nolint:gosec // JA3 is defined as an MD5 digest; not used for security
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
)

// JA3 returns the JA3 fingerprint string of the hello (SSLVersion,Ciphers,
// Extensions,EllipticCurves,EllipticCurvePointFormats: decimal values joined
// by '-', GREASE values removed) and its MD5 digest in lowercase hex.
func (h ClientHello) JA3() (full string, md5hex string) {
	buf := make([]byte, 0, 64+6*(len(h.CipherSuites)+len(h.Extensions)+len(h.Curves))+4*len(h.PointFormats))
	buf = strconv.AppendUint(buf, uint64(h.LegacyVersion), 10)
	buf = append(buf, ',')
	buf = appendDecimalList(buf, h.CipherSuites)
	buf = append(buf, ',')
	buf = appendDecimalList(buf, h.Extensions)
	buf = append(buf, ',')
	buf = appendDecimalList(buf, h.Curves)
	buf = append(buf, ',')
	for i, p := range h.PointFormats {
		if i > 0 {
			buf = append(buf, '-')
		}
		buf = strconv.AppendUint(buf, uint64(p), 10)
	}
	sum := md5.Sum(buf) //nolint:gosec // JA3 is defined as an MD5 digest
	return string(buf), hex.EncodeToString(sum[:])
}

func appendDecimalList(buf []byte, vs []uint16) []byte {
	first := true
	for _, v := range vs {
		if IsGREASE(v) {
			continue
		}
		if !first {
			buf = append(buf, '-')
		}
		first = false
		buf = strconv.AppendUint(buf, uint64(v), 10)
	}
	return buf
}

// JA4 returns the JA4 TLS client fingerprint (FoxIO specification) of a
// hello received over TCP, e.g. "t13d1516h2_8daaf6152771_e5627efa2ab1".
func (h ClientHello) JA4() string {
	return h.ja4('t')
}

// JA4QUIC returns the JA4 fingerprint for a hello carried in QUIC (prefix
// 'q'); the rest of the computation is identical.
func (h ClientHello) JA4QUIC() string {
	return h.ja4('q')
}

func (h ClientHello) ja4(proto byte) string {
	out := make([]byte, 0, 36)
	out = append(out, proto)
	out = append(out, ja4Version(h.MaxVersion())...)
	if slices.Contains(h.Extensions, extServerName) {
		out = append(out, 'd')
	} else {
		out = append(out, 'i')
	}

	var scratch [128]uint16 // grows on the heap for unusually long lists
	ciphers := appendNonGREASE(scratch[:0], h.CipherSuites)
	out = appendCount2(out, len(ciphers))
	nExt := 0
	for _, e := range h.Extensions {
		if !IsGREASE(e) {
			nExt++
		}
	}
	out = appendCount2(out, nExt)
	out = appendALPNChars(out, h.ALPN)
	out = append(out, '_')

	slices.Sort(ciphers)
	out = appendTruncatedHash(out, ciphers, nil, len(ciphers) == 0)

	out = append(out, '_')
	exts := scratch[:0]
	for _, e := range h.Extensions {
		if !IsGREASE(e) && e != extServerName && e != extALPN {
			exts = append(exts, e)
		}
	}
	slices.Sort(exts)
	var sigScratch [64]uint16
	sigs := appendNonGREASE(sigScratch[:0], h.SignatureAlgorithms)
	out = appendTruncatedHash(out, exts, sigs, len(exts) == 0)
	return string(out)
}

// JA4Raw returns JA4's raw form ("JA4_r"): the same prefix, then the sorted
// cipher suites, and the sorted extensions (without SNI and ALPN) and the
// signature algorithms in wire order, all as 4-digit hex, unhashed.
func (h ClientHello) JA4Raw() string {
	full := h.JA4()
	out := []byte(full[:11])
	var scratch [128]uint16
	ciphers := appendNonGREASE(scratch[:0], h.CipherSuites)
	slices.Sort(ciphers)
	out = appendHexList(out, ciphers)
	out = append(out, '_')
	exts := scratch[:0]
	for _, e := range h.Extensions {
		if !IsGREASE(e) && e != extServerName && e != extALPN {
			exts = append(exts, e)
		}
	}
	slices.Sort(exts)
	out = appendHexList(out, exts)
	sigs := appendNonGREASE(scratch[:0], h.SignatureAlgorithms)
	if len(sigs) > 0 {
		out = append(out, '_')
		out = appendHexList(out, sigs)
	}
	return string(out)
}

// ja4Version maps a TLS version number to JA4's two characters.
func ja4Version(v uint16) string {
	switch v {
	case 0x0304:
		return "13"
	case 0x0303:
		return "12"
	case 0x0302:
		return "11"
	case 0x0301:
		return "10"
	case 0x0300:
		return "s3"
	case 0x0002:
		return "s2"
	case 0xfeff:
		return "d1"
	case 0xfefd:
		return "d2"
	case 0xfefc:
		return "d3"
	}
	return "00"
}

func appendNonGREASE(dst, vs []uint16) []uint16 {
	for _, v := range vs {
		if !IsGREASE(v) {
			dst = append(dst, v)
		}
	}
	return dst
}

// appendCount2 appends n as two decimal digits, capped at 99.
func appendCount2(out []byte, n int) []byte {
	n = min(n, 99)
	return append(out, byte('0'+n/10), byte('0'+n%10))
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
}

// appendALPNChars appends the first and last characters of the first ALPN
// value ("00" without ALPN); when either is not alphanumeric, the first and
// last hex digits of the value are used instead.
func appendALPNChars(out []byte, alpn []string) []byte {
	if len(alpn) == 0 || alpn[0] == "" {
		return append(out, '0', '0')
	}
	first, last := alpnEdges(alpn[0])
	if isAlnum(first) && isAlnum(last) {
		return append(out, first, last)
	}
	return append(out, hexDigits[first>>4], hexDigits[last&0xf])
}

// alpnEdges returns the first and last raw bytes of an ALPN value as
// stored by ParseClientHello (which escapes bytes outside printable ASCII,
// and the backslash itself, as \xHH: every backslash starts an escape, so
// the escaping can be undone at both ends).
func alpnEdges(v string) (first, last byte) {
	first, last = v[0], v[len(v)-1]
	if len(v) >= 4 && v[0] == '\\' && v[1] == 'x' {
		if b, ok := unhex2(v[2], v[3]); ok {
			first = b
		}
	}
	if n := len(v); n >= 4 && v[n-4] == '\\' && v[n-3] == 'x' {
		if b, ok := unhex2(v[n-2], v[n-1]); ok {
			last = b
		}
	}
	return first, last
}

func unhex2(hi, lo byte) (byte, bool) {
	h, ok1 := unhex(hi)
	l, ok2 := unhex(lo)
	return h<<4 | l, ok1 && ok2
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// appendTruncatedHash appends the first 12 hex digits of the SHA-256 of
// list (4-digit lowercase hex joined by ',') followed, when tail is not
// empty, by '_' and tail in the same form; zero appends "000000000000".
func appendTruncatedHash(out []byte, list, tail []uint16, zero bool) []byte {
	if zero {
		return append(out, "000000000000"...)
	}
	var tmp [1024]byte // grows on the heap for unusually long lists
	s := appendHexList(tmp[:0], list)
	if len(tail) > 0 {
		s = append(s, '_')
		s = appendHexList(s, tail)
	}
	sum := sha256.Sum256(s)
	var hx [64]byte
	hex.Encode(hx[:], sum[:])
	return append(out, hx[:12]...)
}

func appendHexList(dst []byte, vs []uint16) []byte {
	for i, v := range vs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, hexDigits[v>>12], hexDigits[(v>>8)&0xf], hexDigits[(v>>4)&0xf], hexDigits[v&0xf])
	}
	return dst
}
