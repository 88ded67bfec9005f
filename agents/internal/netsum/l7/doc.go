// Package l7 decodes the application headers the agent summarises from
// captured traffic: DNS messages (UDP and TCP framing), the TLS ClientHello
// and ServerHello (with JA3 and JA4 fingerprints), and HTTP/1.x request and
// response heads. Every decoder reads untrusted bytes, is bounded (lengths,
// counts, compression jumps), never panics, and returns only the named
// fields: no payload is kept or returned.
//
// Decoders that read a TCP stream return ErrIncomplete when the bytes end
// before the structure does (the caller may retry with more bytes) and an
// error wrapping ErrMalformed when the bytes cannot be what was asked for.
//
// Conventions of the returned strings (they go into events as they are):
//   - DNS names: labels joined by '.', ASCII letters lowercased as Zeek's
//     dns.log does, the root as "", and bytes outside 0x21..0x7e plus '.'
//     and '\' inside a label escaped as \DDD (the ECS convention).
//   - Every other string (SNI, ALPN, URI, Host, User-Agent, reason, TXT
//     data): bytes outside printable ASCII and the backslash escaped as
//     \xHH, length capped (MaxFieldLen, or 255 for SNI and Host).
//   - Type and code names follow Zeek's spelling (DNSTypeName,
//     DNSRCodeName), so summaries compare with Zeek logs.
//
// Not decoded: DNS authority and additional sections, NetBIOS name
// encoding (port 137), SSL 2.0 hellos, HTTP/0.9 and HTTP/2, QUIC framing
// (ClientHello.JA4QUIC exists for callers that extract the hello).
package l7

import "errors"

// ErrIncomplete reports that the input ends before the structure being
// decoded does: more bytes of the stream are needed.
var ErrIncomplete = errors.New("l7: incomplete input: more bytes are needed")

// ErrMalformed is wrapped by every error about input that is not a valid
// message of the requested protocol (or exceeds a decoder limit).
var ErrMalformed = errors.New("l7: malformed input")

// Limits applied by the decoders. Input beyond them is rejected (ErrMalformed)
// or, for free-text fields, truncated to MaxFieldLen bytes.
const (
	// MaxFieldLen caps free-text string fields (URI, user agent, reason,
	// DNS TXT data, ALPN values) returned to callers.
	MaxFieldLen = 2048
	// MaxHTTPHeaderBytes is the largest HTTP request or response head
	// (start line and headers) accepted.
	MaxHTTPHeaderBytes = 8 << 10
	// MaxHTTPHeaders is the largest number of header lines accepted.
	MaxHTTPHeaders = 100
	// MaxDNSQuestions and MaxDNSAnswers cap the records decoded from one
	// DNS message; further records are ignored.
	MaxDNSQuestions = 8
	MaxDNSAnswers   = 64
	// MaxDNSNameLen is the longest domain name (wire form, RFC 1035).
	MaxDNSNameLen = 255
	// MaxDNSLabelLen is the longest label (RFC 1035).
	MaxDNSLabelLen = 63
	// MaxTLSHandshake is the largest ClientHello/ServerHello body accepted.
	MaxTLSHandshake = 64 << 10
	// MaxTLSListLen caps each list decoded from a hello (cipher suites,
	// extensions, groups, signature algorithms, ALPN values).
	MaxTLSListLen = 512
)

// decodeError is a malformed-input error with its reason.
type decodeError struct{ msg string }

func (e *decodeError) Error() string { return "l7: malformed input: " + e.msg }

func (e *decodeError) Unwrap() error { return ErrMalformed }
