package intel

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Limits on single values.
const (
	maxDomainLen = 253
	maxLabelLen  = 63
	maxURLLen    = 8192
	maxEmailLen  = 320
	// MinPrefixV4 and MinPrefixV6 are the shortest CIDR prefixes accepted as
	// indicators: a feed listing 0.0.0.0/0 (or any very wide range) would
	// otherwise turn every event into a finding.
	MinPrefixV4 = 8
	MinPrefixV6 = 16
)

// Normalize returns the canonical form of value as an indicator of type t,
// or an error saying why it is not one. For the IP types the family must
// agree with t; use NormalizeIP when the family is not known in advance.
func Normalize(t Type, value string) (string, error) {
	value = strings.TrimSpace(value)
	if value == "" {
		return "", errors.New("empty value")
	}
	switch t {
	case IPv4, IPv6, CIDR:
		got, v, err := NormalizeIP(value)
		if err != nil {
			return "", err
		}
		if got != t {
			return "", fmt.Errorf("%q is %s, not %s", value, got, t)
		}
		return v, nil
	case Domain:
		return normalizeDomain(value, false)
	case URL:
		return normalizeURL(value, true)
	case MD5, SHA1, SHA256:
		return normalizeHash(t, value)
	case Email:
		return normalizeEmail(value)
	}
	return "", fmt.Errorf("unknown indicator type %q (want one of %s)", t, typeList())
}

// NormalizeIP parses an address or a CIDR prefix and says which it is:
// IPv4 or IPv6 for an address (IPv4-mapped IPv6 addresses become IPv4,
// zones are dropped), CIDR for a prefix (masked to its network address; a
// full-length prefix is an address).
func NormalizeIP(value string) (Type, string, error) {
	value = strings.TrimSpace(value)
	if strings.Contains(value, "/") {
		p, err := netip.ParsePrefix(value)
		if err != nil {
			return "", "", fmt.Errorf("%q is not an IP address or CIDR prefix", value)
		}
		a, bits := p.Addr(), p.Bits()
		if a.Is4In6() && bits >= 96 {
			a, bits = a.Unmap(), bits-96
		}
		if bits == a.BitLen() {
			return addrType(a), a.String(), nil
		}
		if a.Is4() && bits < MinPrefixV4 || !a.Is4() && bits < MinPrefixV6 {
			return "", "", fmt.Errorf("CIDR %q is wider than the accepted minimum (/%d for IPv4, /%d for IPv6)", value, MinPrefixV4, MinPrefixV6)
		}
		p, _ = a.Prefix(bits)
		return CIDR, p.String(), nil
	}
	a, err := netip.ParseAddr(value)
	if err != nil {
		return "", "", fmt.Errorf("%q is not an IP address", value)
	}
	a = a.WithZone("").Unmap()
	return addrType(a), a.String(), nil
}

func addrType(a netip.Addr) Type {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

// normalizeHash lower-cases a hex digest and checks its length.
func normalizeHash(t Type, value string) (string, error) {
	want := map[Type]int{MD5: 32, SHA1: 40, SHA256: 64}[t]
	if len(value) != want {
		return "", fmt.Errorf("%s digest must be %d hex digits, got %d characters", t, want, len(value))
	}
	b := []byte(value)
	for i, c := range b {
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		case c >= 'A' && c <= 'F':
			b[i] = c + 'a' - 'A'
		default:
			return "", fmt.Errorf("%s digest has a non-hex character at offset %d", t, i)
		}
	}
	return string(b), nil
}

// hashType tells a digest's type by its length (0 for none).
func hashType(s string) Type {
	switch len(s) {
	case 32:
		return MD5
	case 40:
		return SHA1
	case 64:
		return SHA256
	}
	return ""
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isHexByte(s[i]) {
			return false
		}
	}
	return s != ""
}

func isHexByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// normalizeDomain returns a lower-case name without trailing dot, with
// internationalised labels in punycode ("xn--..."). Indicators need at least
// two labels; lookups (allowSingle) accept one.
func normalizeDomain(s string, allowSingle bool) (string, error) {
	if canonicalASCIIName(s) {
		if !allowSingle && !strings.Contains(s, ".") {
			return "", fmt.Errorf("%q is a single-label name, not a domain", s)
		}
		if lastLabelNumeric(s) {
			return "", fmt.Errorf("%q looks like an IP address, not a domain", s)
		}
		return s, nil
	}
	if len(s) > 4*maxDomainLen {
		return "", fmt.Errorf("domain name longer than %d bytes", maxDomainLen)
	}
	if !utf8.ValidString(s) {
		return "", errors.New("domain name is not valid UTF-8")
	}
	// The ideographic and full-width full stops separate labels too (UTS #46).
	s = strings.NewReplacer("\u3002", ".", "\uff0e", ".", "\uff61", ".").Replace(s)
	s = strings.TrimSuffix(s, ".")
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		s = strings.ToLower(s)
	} else {
		s = strings.ToLower(norm.NFKC.String(strings.ToLower(s)))
	}
	if s == "" {
		return "", errors.New("empty domain name")
	}
	labels := strings.Split(s, ".")
	if !allowSingle && len(labels) < 2 {
		return "", fmt.Errorf("%q is a single-label name, not a domain", s)
	}
	var b strings.Builder
	for i, l := range labels {
		if l == "" {
			return "", fmt.Errorf("domain %q has an empty label", s)
		}
		if i > 0 {
			b.WriteByte('.')
		}
		enc, err := encodeLabel(l)
		if err != nil {
			return "", fmt.Errorf("domain %q: %w", s, err)
		}
		b.WriteString(enc)
	}
	out := b.String()
	if len(out) > maxDomainLen {
		return "", fmt.Errorf("domain name longer than %d bytes", maxDomainLen)
	}
	if lastLabelNumeric(out) {
		return "", fmt.Errorf("%q looks like an IP address, not a domain", s)
	}
	return out, nil
}

// encodeLabel checks one lower-case label and punycode-encodes it when it
// is not ASCII.
func encodeLabel(l string) (string, error) {
	ascii := true
	for _, r := range l {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
		case r >= utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r)):
			ascii = false
		default:
			return "", fmt.Errorf("label %q has a character not allowed in a host name (%q)", l, r)
		}
	}
	if !ascii {
		enc, err := punycodeEncode(l)
		if err != nil {
			return "", err
		}
		l = "xn--" + enc
	}
	if len(l) > maxLabelLen {
		return "", fmt.Errorf("label longer than %d bytes", maxLabelLen)
	}
	return l, nil
}

// canonicalASCIIName reports whether s is already a canonical name: ASCII
// lower-case letters, digits, '-', '_' in non-empty labels, no trailing dot.
// It lets lookups skip all allocation on the common path.
func canonicalASCIIName(s string) bool {
	if s == "" || len(s) > maxDomainLen {
		return false
	}
	labelLen := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			labelLen++
			if labelLen > maxLabelLen {
				return false
			}
		case c == '.':
			if labelLen == 0 {
				return false
			}
			labelLen = 0
		default:
			return false
		}
	}
	return labelLen > 0
}

func lastLabelNumeric(s string) bool {
	last := s[strings.LastIndexByte(s, '.')+1:]
	for i := 0; i < len(last); i++ {
		if last[i] < '0' || last[i] > '9' {
			return false
		}
	}
	return true
}

// defaultPorts are dropped from normalised URLs.
var defaultPorts = map[string]string{"http": "80", "https": "443", "ftp": "21", "ws": "80", "wss": "443"}

// normalizeURL applies conservative normalisation (RFC 3986 section 6.2.2
// plus scheme-based defaults): scheme and host lower-cased, host in IDNA
// form or canonical IP, default port dropped, empty path made "/",
// percent-escapes upper-cased, fragment dropped. Path and query are
// otherwise kept byte for byte. Without a scheme, assumeHTTP prefixes
// "http://" (indicators from lists often omit it); otherwise it is an
// error.
func normalizeURL(s string, assumeHTTP bool) (string, error) {
	if len(s) > maxURLLen {
		return "", fmt.Errorf("URL longer than %d bytes", maxURLLen)
	}
	i := strings.Index(s, "://")
	scheme := ""
	if i < 0 {
		if !assumeHTTP {
			return "", errors.New("URL has no scheme")
		}
		scheme = "http"
	} else {
		scheme, s = strings.ToLower(s[:i]), s[i+3:]
		if !validScheme(scheme) {
			return "", fmt.Errorf("URL scheme %q is not valid", scheme)
		}
	}
	end := strings.IndexAny(s, "/?#")
	if end < 0 {
		end = len(s)
	}
	authority, rest := s[:end], s[end:]
	if h := strings.IndexByte(rest, '#'); h >= 0 {
		rest = rest[:h]
	}
	for i := 0; i < len(rest); i++ {
		if rest[i] < 0x20 || rest[i] == 0x7f || rest[i] == ' ' {
			return "", fmt.Errorf("URL has a space or control character at offset %d of its path", i)
		}
	}
	if rest == "" || rest[0] == '?' {
		rest = "/" + rest
	}
	userinfo := ""
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		userinfo, authority = authority[:at+1], authority[at+1:]
		for i := 0; i < len(userinfo); i++ {
			if userinfo[i] <= ' ' || userinfo[i] == 0x7f {
				return "", errors.New("URL user information has a space or control character")
			}
		}
	}
	host, port, err := splitHostPort(authority)
	if err != nil {
		return "", err
	}
	host, err = normalizeHost(host)
	if err != nil {
		return "", fmt.Errorf("URL host: %w", err)
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 0 || n > 65535 {
			return "", fmt.Errorf("URL port %q is not a number from 0 to 65535", port)
		}
		port = strconv.Itoa(n)
		if defaultPorts[scheme] == port {
			port = ""
		}
	}
	var b strings.Builder
	b.Grow(len(scheme) + 3 + len(userinfo) + len(host) + len(port) + 1 + len(rest))
	b.WriteString(scheme)
	b.WriteString("://")
	writeUpperEscapes(&b, userinfo)
	b.WriteString(host)
	if port != "" {
		b.WriteByte(':')
		b.WriteString(port)
	}
	writeUpperEscapes(&b, rest)
	return b.String(), nil
}

func validScheme(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '+', c == '-', c == '.':
		default:
			return false
		}
	}
	return true
}

func splitHostPort(a string) (host, port string, err error) {
	if strings.HasPrefix(a, "[") {
		end := strings.IndexByte(a, ']')
		if end < 0 {
			return "", "", errors.New("URL host has '[' without ']'")
		}
		host, rest := a[:end+1], a[end+1:]
		if rest != "" {
			if rest[0] != ':' {
				return "", "", errors.New("URL has characters after the IPv6 host")
			}
			port = rest[1:]
		}
		return host, port, nil
	}
	if c := strings.LastIndexByte(a, ':'); c >= 0 {
		return a[:c], a[c+1:], nil
	}
	return a, "", nil
}

// normalizeHost normalises a URL host: a bracketed IPv6 address, an IPv4
// address, or a name (one label allowed).
func normalizeHost(h string) (string, error) {
	if h == "" {
		return "", errors.New("empty host")
	}
	if strings.HasPrefix(h, "[") {
		a, err := netip.ParseAddr(strings.TrimSuffix(h[1:], "]"))
		if err != nil || !a.Is6() {
			return "", fmt.Errorf("%q is not an IPv6 address", h)
		}
		a = a.WithZone("")
		if a.Is4In6() {
			return a.Unmap().String(), nil
		}
		return "[" + a.String() + "]", nil
	}
	if a, err := netip.ParseAddr(h); err == nil && a.Is4() {
		return a.String(), nil
	}
	return normalizeDomain(h, true)
}

// writeUpperEscapes copies s, upper-casing the hex digits of %xx escapes
// and percent-encoding bytes outside ASCII (the IRI to URI mapping of RFC
// 3987, which also keeps invalid UTF-8 out of indicator values).
func writeUpperEscapes(b *strings.Builder, s string) {
	const hexDigits = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%' && i+2 < len(s) && isHex(s[i+1:i+3]):
			b.WriteByte('%')
			b.WriteString(strings.ToUpper(s[i+1 : i+3]))
			i += 2
		case c >= 0x80:
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
		default:
			b.WriteByte(c)
		}
	}
}

// urlHost returns the normalised host of a normalised URL (without
// brackets for IPv6).
func urlHost(u string) string {
	i := strings.Index(u, "://")
	if i < 0 {
		return ""
	}
	s := u[i+3:]
	if end := strings.IndexAny(s, "/?#"); end >= 0 {
		s = s[:end]
	}
	if at := strings.LastIndexByte(s, '@'); at >= 0 {
		s = s[at+1:]
	}
	if strings.HasPrefix(s, "[") {
		if end := strings.IndexByte(s, ']'); end >= 0 {
			return s[1:end]
		}
		return ""
	}
	if c := strings.LastIndexByte(s, ':'); c >= 0 {
		s = s[:c]
	}
	return s
}

// normalizeEmail lower-cases an address (local part included: mail systems
// treat it case-insensitively in practice) and normalises its domain.
func normalizeEmail(s string) (string, error) {
	if len(s) > maxEmailLen {
		return "", fmt.Errorf("e-mail address longer than %d bytes", maxEmailLen)
	}
	s = strings.TrimPrefix(s, "mailto:")
	if strings.HasPrefix(s, "<") && strings.HasSuffix(s, ">") {
		s = s[1 : len(s)-1]
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return "", fmt.Errorf("%q is not an e-mail address (want local@domain)", s)
	}
	local := s[:at]
	if len(local) > 64 {
		return "", errors.New("e-mail local part longer than 64 bytes")
	}
	for _, r := range local {
		if r <= ' ' || r == 0x7f || r == '<' || r == '>' || r == '@' || r == utf8.RuneError {
			return "", fmt.Errorf("e-mail local part %q has a character not allowed (%q)", local, r)
		}
	}
	domain, err := normalizeDomain(s[at+1:], false)
	if err != nil {
		return "", fmt.Errorf("e-mail domain: %w", err)
	}
	return strings.ToLower(local) + "@" + domain, nil
}

// refang undoes the usual defanging of shared indicators: hxxp, [.], (.),
// [dot], [:], [@], [at].
func refang(s string) string {
	if !strings.ContainsAny(s, "[({") && !strings.HasPrefix(strings.ToLower(s), "hxxp") {
		return s
	}
	s = defang.Replace(s)
	if len(s) >= 4 && strings.EqualFold(s[:4], "hxxp") {
		s = "http" + s[4:]
	}
	return s
}

var defang = strings.NewReplacer("[.]", ".", "(.)", ".", "{.}", ".", "[dot]", ".", "[:]", ":", "[://]", "://",
	"[@]", "@", "[at]", "@")

// Detect tells the type of a bare value (as found in a plain list) and
// returns it normalised. Defanged values (hxxp://, evil[.]com) are
// refanged first.
func Detect(value string) (Type, string, error) {
	v := refang(strings.TrimSpace(value))
	switch {
	case v == "":
		return "", "", errors.New("empty value")
	case strings.Contains(v, "://"):
		n, err := normalizeURL(v, false)
		return URL, n, err
	}
	if t, n, err := NormalizeIP(v); err == nil {
		return t, n, nil
	} else if slash := strings.IndexByte(v, '/'); slash >= 0 {
		if _, perr := netip.ParseAddr(v[:slash]); perr == nil && isDigits(v[slash+1:]) {
			return "", "", err // a prefix, but not an acceptable one
		}
		n, err := normalizeURL(v, true)
		return URL, n, err
	}
	if t := hashType(v); t != "" && isHex(v) {
		n, err := normalizeHash(t, v)
		return t, n, err
	}
	if strings.Contains(v, "@") {
		n, err := normalizeEmail(v)
		return Email, n, err
	}
	n, err := normalizeDomain(v, false)
	if err != nil {
		return "", "", fmt.Errorf("cannot tell the type of %q: %w", value, err)
	}
	return Domain, n, nil
}
