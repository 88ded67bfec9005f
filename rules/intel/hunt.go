package intel

import (
	"strings"
)

// huntFields are the searchable fields of the events collection (see
// docs/schema.md) where a retro-hunt looks for an indicator of each type.
var huntFields = map[Type][]string{
	IPv4:   {"source.ip", "destination.ip", "related.ip"},
	IPv6:   {"source.ip", "destination.ip", "related.ip"},
	CIDR:   {"source.ip", "destination.ip", "related.ip"},
	Domain: {"dns.question.name", "url.domain", "destination.domain", "source.domain", "tls.client.server_name", "related.hosts"},
	URL:    {"url.original"},
}

// maxHuntQuery is the query language's limit on a query's length.
const maxHuntQuery = 4096

// HuntQuery returns a query in the store's query language (docs/query.md)
// that finds stored events mentioning the indicator, for a retro-hunt over
// the events collection: addresses and CIDRs on the address fields, a
// domain and its subdomains on the host-name fields, a URL on
// url.original. ok is false for types the events schema has no
// searchable field for (hashes, e-mail addresses) and for values too long
// for a query.
func (ind *Indicator) HuntQuery() (q string, ok bool) {
	fields := huntFields[ind.Type]
	if len(fields) == 0 {
		return "", false
	}
	var value string
	switch ind.Type {
	case IPv4, IPv6, CIDR:
		value = ind.Value
	case Domain:
		// The exact name quoted (no wildcard, no leading '-' read as NOT),
		// and every subdomain.
		value = "(" + quoteQuery(ind.Value) + " OR *." + ind.Value + ")"
	case URL:
		value = quoteQuery(ind.Value)
	}
	var b strings.Builder
	for i, f := range fields {
		if i > 0 {
			b.WriteString(" OR ")
		}
		b.WriteString(f)
		b.WriteByte(':')
		b.WriteString(value)
	}
	if b.Len() > maxHuntQuery {
		return "", false
	}
	return b.String(), true
}

// quoteQuery writes s as a quoted query value, escaping '"' and '\'.
func quoteQuery(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}
