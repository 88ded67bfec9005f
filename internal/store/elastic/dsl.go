package elastic

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/query"
)

// The range date_nanos can hold: [1970-01-01, 2262-04-11].
var (
	minNanos = time.Unix(0, 0).UTC()
	maxNanos = time.Unix(0, math.MaxInt64).UTC()
)

func matchAll() M  { return M{"match_all": M{}} }
func matchNone() M { return M{"match_none": M{}} }

// CompileQuery turns a resolved query tree into the query DSL, following
// the semantics documented on query.Op.
func CompileQuery(n query.Node) (M, error) {
	switch n := n.(type) {
	case nil, *query.All:
		return matchAll(), nil
	case *query.And:
		if len(n.Nodes) == 0 {
			return matchAll(), nil
		}
		list, err := compileList(n.Nodes)
		if err != nil {
			return nil, err
		}
		if len(list) == 1 {
			return list[0], nil
		}
		return M{"bool": M{"filter": list}}, nil
	case *query.Or:
		if len(n.Nodes) == 0 {
			return matchNone(), nil
		}
		list, err := compileList(n.Nodes)
		if err != nil {
			return nil, err
		}
		if len(list) == 1 {
			return list[0], nil
		}
		return M{"bool": M{"should": list, "minimum_should_match": 1}}, nil
	case *query.Not:
		inner, err := CompileQuery(n.Node)
		if err != nil {
			return nil, err
		}
		return M{"bool": M{"must_not": []M{inner}}}, nil
	case *query.Term:
		return compileTerm(n)
	}
	return nil, fmt.Errorf("%w: unknown query node %T", store.ErrInvalid, n)
}

func compileList(nodes []query.Node) ([]M, error) {
	out := make([]M, 0, len(nodes))
	for _, c := range nodes {
		q, err := CompileQuery(c)
		if err != nil {
			return nil, err
		}
		out = append(out, q)
	}
	return out, nil
}

func badOp(t *query.Term) error {
	return fmt.Errorf("%w: operator %d is not defined on %s field %s", store.ErrInvalid, t.Op, t.Type, t.Field)
}

var rangeOps = map[query.Op]string{query.OpLt: "lt", query.OpLte: "lte", query.OpGt: "gt", query.OpGte: "gte"}

func compileTerm(t *query.Term) (M, error) {
	f := t.Field
	if t.Op == query.OpExists {
		return M{"exists": M{"field": f}}, nil
	}
	switch t.Type {
	case event.Keyword:
		switch t.Op {
		case query.OpEq, query.OpPhrase:
			return M{"term": M{f: M{"value": t.Str, "case_insensitive": true}}}, nil
		case query.OpWildcard:
			return M{"wildcard": M{f: M{"value": esWildcard(t.Str), "case_insensitive": true}}}, nil
		}
	case event.Text:
		// Text is searched on its tokens (see tokenFields), which the
		// whitespace analyzer indexes as they are.
		tf := tokensField + "." + f
		switch t.Op {
		case query.OpEq, query.OpPhrase:
			toks := query.Tokenize(t.Str)
			switch {
			case len(toks) == 0:
				return matchNone(), nil
			case len(toks) == 1 && t.Op == query.OpEq:
				return M{"term": M{tf: M{"value": toks[0]}}}, nil
			}
			return M{"match_phrase": M{tf: M{"query": strings.Join(toks, " "), "analyzer": "whitespace"}}}, nil
		case query.OpWildcard:
			return M{"wildcard": M{tf: M{"value": esWildcard(t.Str), "case_insensitive": true}}}, nil
		}
	case event.Long, event.Double:
		v := numValue(t)
		if t.Op == query.OpEq {
			return M{"term": M{f: M{"value": v}}}, nil
		}
		if op, ok := rangeOps[t.Op]; ok {
			return M{"range": M{f: M{op: v}}}, nil
		}
	case event.IP:
		switch t.Op {
		case query.OpEq:
			return M{"term": M{f: M{"value": t.Addr.String()}}}, nil
		case query.OpCIDR:
			return M{"term": M{f: M{"value": t.Prefix.Masked().String()}}}, nil
		}
		if op, ok := rangeOps[t.Op]; ok {
			return M{"range": M{f: M{op: t.Addr.String()}}}, nil
		}
	case event.Date:
		if t.Op == query.OpEq {
			if t.Time.Before(minNanos) || t.Time.After(maxNanos) {
				return matchNone(), nil
			}
			return M{"term": M{f: M{"value": formatTime(t.Time)}}}, nil
		}
		if op, ok := rangeOps[t.Op]; ok {
			return dateRange(f, op, t.Time), nil
		}
	case event.Bool:
		if t.Op == query.OpEq {
			return M{"term": M{f: M{"value": t.Bool}}}, nil
		}
	}
	return nil, badOp(t)
}

// numValue keeps integral values integral in the JSON (a long field would
// not parse 1e+21, and 3 reads better than 3.0).
func numValue(t *query.Term) any {
	if t.Num == math.Trunc(t.Num) && math.Abs(t.Num) < 1<<63 {
		return int64(t.Num)
	}
	return t.Num
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// dateRange is a range on a date_nanos field, whose values lie in
// [minNanos, maxNanos]: a bound outside is resolved here, as Elasticsearch
// refuses it.
func dateRange(f, op string, t time.Time) M {
	exists := M{"exists": M{"field": f}}
	switch {
	case t.Before(minNanos):
		if op == "gt" || op == "gte" {
			return exists
		}
		return matchNone()
	case t.After(maxNanos):
		if op == "lt" || op == "lte" {
			return exists
		}
		return matchNone()
	}
	// Always both bounds: with an open bound, a date_histogram on a
	// date_nanos field fails in Elasticsearch 8 ("nanoseconds are
	// [-9223372036854775808] are before the epoch") as it turns the
	// query's bounds into milliseconds.
	r := M{op: formatTime(t), "format": "strict_date_optional_time_nanos"}
	if op == "gt" || op == "gte" {
		r["lte"] = formatTime(maxNanos)
	} else {
		r["gte"] = formatTime(minNanos)
	}
	return M{"range": M{f: r}}
}

// timeRange is the request's range [from, to) on the time field, as one
// clause with both bounds (see dateRange).
func timeRange(f string, from, to time.Time) M {
	switch {
	case from.IsZero():
		return dateRange(f, "lt", to)
	case to.IsZero():
		return dateRange(f, "gte", from)
	case !from.Before(to), !to.After(minNanos), from.After(maxNanos):
		return matchNone()
	}
	if from.Before(minNanos) {
		from = minNanos
	}
	r := M{"gte": formatTime(from), "format": "strict_date_optional_time_nanos"}
	if to.After(maxNanos) {
		r["lte"] = formatTime(maxNanos)
	} else {
		r["lt"] = formatTime(to)
	}
	return M{"range": M{f: r}}
}

// esWildcard rewrites a query-language pattern (see query.MatchWildcard)
// into Lucene's wildcard syntax: the same *, ? and \ escapes, with a
// trailing lone \ made an explicit literal backslash.
func esWildcard(p string) string {
	var b strings.Builder
	b.Grow(len(p) + 2)
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch c {
		case '*', '?':
			b.WriteByte(c)
		case '\\':
			if i+1 < len(p) {
				i++
				switch p[i] {
				case '*', '?', '\\':
					b.WriteByte('\\')
				}
				b.WriteByte(p[i]) // other escaped bytes are plain literals
			} else {
				b.WriteString(`\\`)
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
