package query

import (
	"strconv"
	"strings"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
)

// String returns the operator's name: eq, wildcard, phrase, lt, lte, gt,
// gte, cidr or exists.
func (o Op) String() string {
	switch o {
	case OpEq:
		return "eq"
	case OpWildcard:
		return "wildcard"
	case OpPhrase:
		return "phrase"
	case OpLt:
		return "lt"
	case OpLte:
		return "lte"
	case OpGt:
		return "gt"
	case OpGte:
		return "gte"
	case OpCIDR:
		return "cidr"
	case OpExists:
		return "exists"
	}
	return "op(" + strconv.Itoa(int(o)) + ")"
}

// Format writes a resolved tree in a compact, stable form for logs, tests
// and "explain" output, e.g.
//
//	(AND [user.name eq "root"] (NOT [source.ip cidr 10.0.0.0/8]))
//
// All is written as *.
func Format(n Node) string {
	var b strings.Builder
	format(&b, n)
	return b.String()
}

func format(b *strings.Builder, n Node) {
	switch n := n.(type) {
	case *All:
		b.WriteString("*")
	case *And:
		formatList(b, "AND", n.Nodes)
	case *Or:
		formatList(b, "OR", n.Nodes)
	case *Not:
		b.WriteString("(NOT ")
		format(b, n.Node)
		b.WriteString(")")
	case *Term:
		b.WriteString("[")
		b.WriteString(n.Field)
		b.WriteString(" ")
		b.WriteString(n.Op.String())
		if n.Op != OpExists {
			b.WriteString(" ")
			b.WriteString(termValue(n))
		}
		b.WriteString("]")
	case nil:
		b.WriteString("<nil>")
	default:
		b.WriteString("<?>")
	}
}

func formatList(b *strings.Builder, name string, nodes []Node) {
	b.WriteString("(")
	b.WriteString(name)
	for _, c := range nodes {
		b.WriteString(" ")
		format(b, c)
	}
	b.WriteString(")")
}

func termValue(t *Term) string {
	if t.Op == OpCIDR {
		return t.Prefix.String()
	}
	switch t.Type {
	case event.Keyword, event.Text:
		return strconv.Quote(t.Str)
	case event.Long, event.Double:
		return strconv.FormatFloat(t.Num, 'g', -1, 64)
	case event.Date:
		return t.Time.Format(time.RFC3339Nano)
	case event.IP:
		return t.Addr.String()
	case event.Bool:
		return strconv.FormatBool(t.Bool)
	}
	return "?"
}
