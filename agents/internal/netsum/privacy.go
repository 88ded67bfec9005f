package netsum

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/csirt-toscana/platform/internal/policy"
)

// DefaultInternal are the internal networks when the policy names none:
// RFC 1918, RFC 4193 (unique local IPv6) and loopback.
var DefaultInternal = []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "127.0.0.0/8", "::1/128"}

// HashKeySize is the length of the pseudonymisation key.
const HashKeySize = 32

// Privacy applies the capture policy's scope and privacy rules: traffic
// to or from excluded networks or ports is never summarised, and internal
// addresses are optionally replaced by a keyed pseudonym.
//
// Pseudonym format: the IPv6 address in fd00::/8 whose last 15 bytes are
// the first 15 bytes of HMAC-SHA256(key, A), where A is the address in its
// 16-byte form (IPv4 as ::ffff:a.b.c.d). The result is a valid IP (so the
// field keeps its type and the CIDR queries keep working on other
// addresses), the same address always gives the same pseudonym on one
// agent, and it cannot be reversed without the agent's key.
type Privacy struct {
	excludeNets  []netip.Prefix
	excludePorts map[uint16]bool
	internal     []netip.Prefix
	hash         bool
	key          []byte
}

// NewPrivacy builds the rules from the capture policy. key is the agent's
// local pseudonymisation key; it is required when HashInternal is set.
func NewPrivacy(c policy.Capture, key []byte) (*Privacy, error) {
	p := &Privacy{hash: c.HashInternal, excludePorts: map[uint16]bool{}}
	var err error
	if p.excludeNets, err = parsePrefixes("capture.exclude.networks", c.Exclude.Networks); err != nil {
		return nil, err
	}
	for _, port := range c.Exclude.Ports {
		if port < 1 || port > 65535 {
			return nil, fmt.Errorf("capture.exclude.ports: %d is not a port number (1-65535)", port)
		}
		p.excludePorts[uint16(port)] = true
	}
	internal := c.Internal
	if len(internal) == 0 {
		internal = DefaultInternal
	}
	if p.internal, err = parsePrefixes("capture.internal_networks", internal); err != nil {
		return nil, err
	}
	if p.hash {
		if len(key) < 16 {
			return nil, errors.New("capture.hash_internal is set but the agent has no pseudonymisation key of at least 16 bytes: check the agent's state directory")
		}
		p.key = append([]byte(nil), key...)
	}
	return p, nil
}

func parsePrefixes(field string, list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		s = strings.TrimSpace(s)
		if !strings.Contains(s, "/") {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("%s: %q is neither a CIDR nor an address", field, s)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		pr, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a CIDR such as 192.0.2.0/24: %w", field, s, err)
		}
		out = append(out, pr.Masked())
	}
	return out, nil
}

func toAddr(b [16]byte, v6 bool) netip.Addr {
	if v6 {
		return netip.AddrFrom16(b)
	}
	return netip.AddrFrom4([4]byte{b[0], b[1], b[2], b[3]})
}

func inAny(list []netip.Prefix, a netip.Addr) bool {
	for _, p := range list {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (pv *Privacy) excluded(p *packet) bool {
	if len(pv.excludeNets) > 0 &&
		(inAny(pv.excludeNets, toAddr(p.src, p.v6)) || inAny(pv.excludeNets, toAddr(p.dst, p.v6))) {
		return true
	}
	if len(pv.excludePorts) > 0 && (p.proto == protoTCP || p.proto == protoUDP) &&
		(pv.excludePorts[p.sport] || pv.excludePorts[p.dport]) {
		return true
	}
	return false
}

// Internal reports whether an address is in the internal networks.
func (pv *Privacy) Internal(a netip.Addr) bool { return inAny(pv.internal, a.Unmap()) }

// shown returns the address as it appears in summaries and whether it was
// pseudonymised.
func (pv *Privacy) shown(a netip.Addr) (netip.Addr, bool) {
	if pv == nil || !pv.hash || !pv.Internal(a) {
		return a, false
	}
	return Pseudonym(pv.key, a), true
}

// Pseudonym is the keyed pseudonym of an address (see Privacy).
func Pseudonym(key []byte, a netip.Addr) netip.Addr {
	m := hmac.New(sha256.New, key)
	b := a.As16()
	m.Write(b[:])
	sum := m.Sum(nil)
	var out [16]byte
	out[0] = 0xfd
	copy(out[1:], sum[:15])
	return netip.AddrFrom16(out)
}

// BPFExclusion returns the BPF expression excluding the policy's networks
// and ports ("" when there are none), to be ANDed with the policy filter.
func BPFExclusion(c policy.Capture) (string, error) {
	nets, err := parsePrefixes("capture.exclude.networks", c.Exclude.Networks)
	if err != nil {
		return "", err
	}
	var terms []string
	for _, n := range nets {
		terms = append(terms, "net "+n.String())
	}
	for _, p := range c.Exclude.Ports {
		if p < 1 || p > 65535 {
			return "", fmt.Errorf("capture.exclude.ports: %d is not a port number (1-65535)", p)
		}
		terms = append(terms, "port "+strconv.Itoa(p))
	}
	if len(terms) == 0 {
		return "", nil
	}
	return "not (" + strings.Join(terms, " or ") + ")", nil
}

// CaptureFilter is the complete BPF filter of a capture policy: the
// policy's own filter ANDed with the exclusions. IPv6 traffic inside VLANs
// is matched too ("vlan" clauses are added by the caller when needed).
func CaptureFilter(c policy.Capture) (string, error) {
	ex, err := BPFExclusion(c)
	if err != nil {
		return "", err
	}
	user := strings.TrimSpace(c.BPF)
	switch {
	case user == "" && ex == "":
		return "", nil
	case user == "":
		return ex, nil
	case ex == "":
		return user, nil
	}
	return "(" + user + ") and " + ex, nil
}
