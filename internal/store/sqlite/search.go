package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/query"
)

// compiler turns a resolved query tree into a WHERE expression over the
// table aliased d. Every term compiles to an expression that is 0 or 1,
// never NULL, so NOT of a term on a missing field is true (as in
// Elasticsearch's must_not).
type compiler struct {
	schema store.Schema
	sb     strings.Builder
	args   []any
}

func (c *compiler) node(n query.Node) error {
	switch n := n.(type) {
	case *query.All:
		c.sb.WriteString("1")
	case *query.And:
		return c.list(n.Nodes, " AND ", "1")
	case *query.Or:
		return c.list(n.Nodes, " OR ", "0")
	case *query.Not:
		c.sb.WriteString("NOT ")
		return c.list([]query.Node{n.Node}, "", "")
	case *query.Term:
		return c.term(n)
	default:
		return fmt.Errorf("%w: query node %T", store.ErrInvalid, n)
	}
	return nil
}

func (c *compiler) list(nodes []query.Node, sep, empty string) error {
	if len(nodes) == 0 {
		c.sb.WriteString(empty)
		return nil
	}
	c.sb.WriteByte('(')
	for i, n := range nodes {
		if i > 0 {
			c.sb.WriteString(sep)
		}
		if err := c.node(n); err != nil {
			return err
		}
	}
	c.sb.WriteByte(')')
	return nil
}

// fieldPath is the JSON path of a field in the fields column. Schema
// names are plain; anything else is refused rather than quoted.
func fieldPath(name string) (string, error) {
	for _, r := range name {
		plain := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._@-", r)
		if !plain {
			return "", fmt.Errorf("%w: field name %q", store.ErrInvalid, name)
		}
	}
	return `'$."` + name + `"'`, nil
}

// valueSQL is the SQL expression of a scalar field's stored value.
func valueSQL(schema store.Schema, def event.FieldDef) (string, error) {
	if def.Name == schema.TimeField && def.Type == event.Date && !def.Array {
		return "d.ts", nil
	}
	p, err := fieldPath(def.Name)
	if err != nil {
		return "", err
	}
	return "json_extract(d.fields, " + p + ")", nil
}

func (c *compiler) term(t *query.Term) error {
	p, err := fieldPath(t.Field)
	if err != nil {
		return err
	}
	if t.Op == query.OpExists {
		c.sb.WriteString("(json_type(d.fields, " + p + ") IS NOT NULL)")
		return nil
	}
	if t.Array {
		c.sb.WriteString("EXISTS (SELECT 1 FROM json_each(d.fields, " + p + ") WHERE ")
		if err := c.cond(t, "value"); err != nil {
			return err
		}
		c.sb.WriteString(")")
		return nil
	}
	x, err := valueSQL(c.schema, event.FieldDef{Name: t.Field, Type: t.Type})
	if err != nil {
		return err
	}
	c.sb.WriteString("IFNULL(")
	if err := c.cond(t, x); err != nil {
		return err
	}
	c.sb.WriteString(", 0)")
	return nil
}

var cmpOps = map[query.Op]string{query.OpEq: "=", query.OpLt: "<", query.OpLte: "<=", query.OpGt: ">", query.OpGte: ">="}

// cond writes the test of one value expression x against a term.
func (c *compiler) cond(t *query.Term, x string) error {
	bad := func() error {
		return fmt.Errorf("%w: operator %d on %s field %q", store.ErrInvalid, t.Op, t.Type, t.Field)
	}
	w := func(sql string, args ...any) error {
		c.sb.WriteString("(" + sql + ")")
		c.args = append(c.args, args...)
		return nil
	}
	switch t.Type {
	case event.Keyword:
		switch t.Op {
		case query.OpEq, query.OpPhrase:
			return w("csirt_ieq("+x+", ?)", t.Str)
		case query.OpWildcard:
			return w("csirt_wild(?, "+x+")", t.Str)
		}
	case event.Text:
		switch t.Op {
		case query.OpEq, query.OpPhrase:
			toks := query.Tokenize(t.Str)
			if len(toks) == 0 {
				return w("0")
			}
			return w("instr("+x+", ?) > 0", " "+strings.Join(toks, " ")+" ")
		case query.OpWildcard:
			return w("csirt_tokwild(?, "+x+")", t.Str)
		}
	case event.Long, event.Double:
		if op, ok := cmpOps[t.Op]; ok {
			var arg any = t.Num
			if t.Num == math.Trunc(t.Num) && math.Abs(t.Num) < 1<<62 {
				arg = int64(t.Num)
			}
			return w(x+" "+op+" ?", arg)
		}
	case event.Date:
		if op, ok := cmpOps[t.Op]; ok {
			return w(x+" "+op+" ?", unixNano(t.Time))
		}
	case event.IP:
		if op, ok := cmpOps[t.Op]; ok {
			return w(x+" "+op+" ?", ipKey(t.Addr))
		}
		if t.Op == query.OpCIDR {
			lo, hi := prefixRange(t.Prefix)
			return w(x+" BETWEEN ? AND ?", lo, hi)
		}
	case event.Bool:
		if t.Op == query.OpEq {
			b := 0
			if t.Bool {
				b = 1
			}
			return w(x+" = ?", b)
		}
	}
	return bad()
}

// unixNano is t in Unix nanoseconds, clamped to the int64 range.
func unixNano(t time.Time) int64 {
	switch {
	case t.Before(time.Unix(0, math.MinInt64)):
		return math.MinInt64
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// where builds the full predicate of a search or an aggregation: scope,
// time range and query.
func where(sc store.Scope, schema store.Schema, q string, from, to time.Time) (string, []any, error) {
	n, err := query.Compile(q, schema)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %w", store.ErrInvalid, err)
	}
	scope, args := scopeSQL(sc, "d")
	c := &compiler{schema: schema, args: args}
	c.sb.WriteString(scope)
	if !from.IsZero() || !to.IsZero() {
		if schema.TimeField == "" {
			return "", nil, fmt.Errorf("%w: a time range on a collection without a time field", store.ErrInvalid)
		}
		if !from.IsZero() {
			c.sb.WriteString(" AND d.ts >= ?")
			c.args = append(c.args, unixNano(from))
		}
		if !to.IsZero() {
			c.sb.WriteString(" AND d.ts < ?")
			c.args = append(c.args, unixNano(to))
		}
	}
	if _, all := n.(*query.All); !all {
		c.sb.WriteString(" AND ")
		if err := c.node(n); err != nil {
			return "", nil, err
		}
	}
	return c.sb.String(), c.args, nil
}

// orderBy builds the ORDER BY list: the requested fields with missing
// values last (as Elasticsearch sorts), a list field by its smallest value
// ascending or its largest descending, and the id as the final tiebreak.
func orderBy(schema store.Schema, sorts []store.SortField) (string, error) {
	var parts []string
	if len(sorts) == 0 && schema.TimeField != "" {
		parts = append(parts, "d.ts DESC")
	}
	for _, s := range sorts {
		def, ok := schema.Field(s.Field)
		if !ok {
			return "", fmt.Errorf("%w: sort on %q, which is not a field of the collection", store.ErrInvalid, s.Field)
		}
		if def.Type == event.Text {
			return "", fmt.Errorf("%w: sort on text field %q", store.ErrInvalid, s.Field)
		}
		// SQLite orders NULL first ascending and last descending.
		dir := " ASC NULLS LAST"
		if s.Desc {
			dir = " DESC"
		}
		var x string
		if def.Array {
			p, err := fieldPath(def.Name)
			if err != nil {
				return "", err
			}
			agg := "min"
			if s.Desc {
				agg = "max"
			}
			x = "(SELECT " + agg + "(value) FROM json_each(d.fields, " + p + "))"
		} else {
			var err error
			if x, err = valueSQL(schema, def); err != nil {
				return "", err
			}
		}
		parts = append(parts, x+dir)
	}
	parts = append(parts, "d.id ASC")
	return strings.Join(parts, ", "), nil
}

// Search runs a query and returns one page of documents and the total.
func (s *Store) Search(ctx context.Context, sc store.Scope, c store.Collection, r store.SearchRequest) (store.SearchResult, error) {
	schema, err := s.begin(sc, c)
	if err != nil {
		return store.SearchResult{}, err
	}
	size := r.Size
	if size == 0 {
		size = store.DefaultPage
	}
	if size < 0 || size > store.MaxPage || r.Offset < 0 || r.Offset+size > store.MaxWindow {
		return store.SearchResult{}, fmt.Errorf("%w: page size %d at offset %d (size at most %d, offset+size at most %d)",
			store.ErrInvalid, r.Size, r.Offset, store.MaxPage, store.MaxWindow)
	}
	w, args, err := where(sc, schema, r.Query, r.From, r.To)
	if err != nil {
		return store.SearchResult{}, err
	}
	order, err := orderBy(schema, r.Sort)
	if err != nil {
		return store.SearchResult{}, err
	}
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return store.SearchResult{}, fmt.Errorf("sqlite: search %s: %w", c, err)
	}
	defer func() { _ = tx.Rollback() }()
	t := table(c)
	var res store.SearchResult
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM `+t+` AS d WHERE `+w, args...).Scan(&res.Total); err != nil {
		return store.SearchResult{}, fmt.Errorf("sqlite: search %s: counting: %w", c, err)
	}
	if res.Total == 0 || int64(r.Offset) >= res.Total {
		return res, nil
	}
	//nolint:gosec // G202: table, predicate and order are built from constants and schema names; values are bound
	rows, err := tx.QueryContext(ctx, `SELECT d.id, d.tenant, d.seq, d.source FROM `+t+` AS d WHERE `+w+
		` ORDER BY `+order+` LIMIT ? OFFSET ?`, append(args, size, r.Offset)...)
	if err != nil {
		return store.SearchResult{}, fmt.Errorf("sqlite: search %s: %w", c, err)
	}
	defer func() { _ = rows.Close() }()
	res.Docs = make([]store.Doc, 0, min(int64(size), res.Total-int64(r.Offset)))
	for rows.Next() {
		var d store.Doc
		var src string
		if err := rows.Scan(&d.ID, &d.Tenant, &d.Version.Seq, &src); err != nil {
			return store.SearchResult{}, fmt.Errorf("sqlite: search %s: %w", c, err)
		}
		d.Source = []byte(src)
		res.Docs = append(res.Docs, d)
	}
	if err := rows.Err(); err != nil {
		return store.SearchResult{}, fmt.Errorf("sqlite: search %s: %w", c, err)
	}
	return res, nil
}

// Aggregate counts matching documents per field value or per time bucket.
func (s *Store) Aggregate(ctx context.Context, sc store.Scope, c store.Collection, r store.AggRequest) (store.AggResult, error) {
	schema, err := s.begin(sc, c)
	if err != nil {
		return store.AggResult{}, err
	}
	if (r.Terms == nil) == (r.Histogram == nil) {
		return store.AggResult{}, fmt.Errorf("%w: an aggregation needs exactly one of Terms and Histogram", store.ErrInvalid)
	}
	w, args, err := where(sc, schema, r.Query, r.From, r.To)
	if err != nil {
		return store.AggResult{}, err
	}
	var q string
	var qargs []any
	var def event.FieldDef
	switch {
	case r.Terms != nil:
		var ok bool
		if def, ok = schema.Field(r.Terms.Field); !ok {
			return store.AggResult{}, fmt.Errorf("%w: terms on %q, which is not a field of the collection", store.ErrInvalid, r.Terms.Field)
		}
		switch def.Type {
		case event.Keyword, event.IP, event.Long, event.Double, event.Bool:
		default:
			return store.AggResult{}, fmt.Errorf("%w: terms on %s field %q (keyword, ip, number or boolean only)", store.ErrInvalid, def.Type, def.Name)
		}
		size := r.Terms.Size
		if size == 0 {
			size = 10
		}
		if size < 0 || size > 1000 {
			return store.AggResult{}, fmt.Errorf("%w: terms size %d (at most 1000)", store.ErrInvalid, r.Terms.Size)
		}
		p, err := fieldPath(def.Name)
		if err != nil {
			return store.AggResult{}, err
		}
		if def.Array {
			q = `SELECT j.value AS k, count(DISTINCT d.rid) AS n FROM ` + table(c) + ` AS d, json_each(d.fields, ` + p +
				`) AS j WHERE ` + w + ` GROUP BY k ORDER BY n DESC, k ASC LIMIT ?`
		} else {
			x, err := valueSQL(schema, def)
			if err != nil {
				return store.AggResult{}, err
			}
			q = `SELECT ` + x + ` AS k, count(*) AS n FROM ` + table(c) + ` AS d WHERE ` + w +
				` AND ` + x + ` IS NOT NULL GROUP BY k ORDER BY n DESC, k ASC LIMIT ?`
		}
		qargs = append(append(qargs, args...), size)
	default:
		h := r.Histogram
		var ok bool
		if def, ok = schema.Field(h.Field); !ok || def.Type != event.Date || def.Array {
			return store.AggResult{}, fmt.Errorf("%w: histogram on %q, which is not a date field of the collection", store.ErrInvalid, h.Field)
		}
		if h.Interval < time.Second || h.Interval%time.Second != 0 {
			return store.AggResult{}, fmt.Errorf("%w: histogram interval %s (a whole number of seconds, at least 1 s)", store.ErrInvalid, h.Interval)
		}
		x, err := valueSQL(schema, def)
		if err != nil {
			return store.AggResult{}, err
		}
		iv := strconv.FormatInt(int64(h.Interval), 10)
		q = `SELECT b AS k, count(*) AS n FROM (SELECT ` + x + ` - (((` + x + ` % ` + iv + `) + ` + iv + `) % ` + iv +
			`) AS b FROM ` + table(c) + ` AS d WHERE ` + w + ` AND ` + x + ` IS NOT NULL) GROUP BY b ORDER BY b`
		qargs = args
	}
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return store.AggResult{}, fmt.Errorf("sqlite: aggregate %s: %w", c, err)
	}
	defer func() { _ = tx.Rollback() }()
	var res store.AggResult
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM `+table(c)+` AS d WHERE `+w, args...).Scan(&res.Total); err != nil {
		return store.AggResult{}, fmt.Errorf("sqlite: aggregate %s: counting: %w", c, err)
	}
	rows, err := tx.QueryContext(ctx, q, qargs...)
	if err != nil {
		return store.AggResult{}, fmt.Errorf("sqlite: aggregate %s: %w", c, err)
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var k any
		var b store.Bucket
		if err := rows.Scan(&k, &b.Count); err != nil {
			return store.AggResult{}, fmt.Errorf("sqlite: aggregate %s: %w", c, err)
		}
		if r.Histogram != nil {
			ns, _ := k.(int64)
			b.Time = time.Unix(0, ns).UTC()
			b.Key = b.Time.Format(time.RFC3339Nano)
		} else {
			b.Key = bucketKey(def.Type, k)
		}
		res.Buckets = append(res.Buckets, b)
	}
	if err := rows.Err(); err != nil {
		return store.AggResult{}, fmt.Errorf("sqlite: aggregate %s: %w", c, err)
	}
	return res, nil
}

// bucketKey formats a stored value as a bucket key: numbers in decimal,
// booleans true/false, addresses in canonical text.
func bucketKey(t event.Type, k any) string {
	switch x := k.(type) {
	case int64:
		if t == event.Bool {
			return strconv.FormatBool(x != 0)
		}
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case string:
		if t == event.IP {
			return ipFromKey(x)
		}
		return x
	case []byte:
		if t == event.IP {
			return ipFromKey(string(x))
		}
		return string(x)
	}
	return fmt.Sprint(k)
}
