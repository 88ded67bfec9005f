package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"math"

	"github.com/csirt-toscana/platform/internal/store"
)

// Scan reads every matching document by keyset pagination: each page is
// one query that resumes after the last row of the previous page, so a
// page costs the same at the start and at the end of a large collection
// (OFFSET would re-read every skipped row). Between pages no transaction
// or connection is held, so fn may use the store and the write-ahead log
// can be checkpointed during a long scan.
//
// Two keys serve, both unique and stable for a document's life (an upsert
// keeps the row id):
//
//   - regional scope, no time range: the row id, so the scan walks the
//     table in the order documents were first stored (a rowid range per
//     page);
//   - tenant scope or a time range: first the documents without a time
//     value by row id, then the others by (time, row id), so that every
//     page is a range of the (tenant, ts) or (ts) index, whose entries
//     are ordered by time and then row id; ordering such a scan by row id
//     alone would make SQLite sort the whole tenant or range on every page.
//     The keyset predicate is a row value, (ts, rid) > (?, ?), which SQLite
//     turns into an index range (the equivalent OR form is planned as two
//     index scans and a sort).
func (s *Store) Scan(ctx context.Context, sc store.Scope, c store.Collection, r store.ScanRequest, fn func(store.Doc) error) error {
	schema, err := s.begin(sc, c)
	if err != nil {
		return err
	}
	if fn == nil {
		return fmt.Errorf("%w: scan of %s without a callback", store.ErrInvalid, c)
	}
	size, err := r.Page()
	if err != nil {
		return err
	}
	w, args, err := where(sc, schema, r.Query, r.From, r.To)
	if err != nil {
		return err
	}
	ranged := !r.From.IsZero() || !r.To.IsZero()
	sc2 := scanner{s: s, c: c, size: size, fn: fn}
	base := `SELECT d.rid, d.ts, d.id, d.tenant, d.seq, d.source FROM ` + table(c) + ` AS d WHERE ` + w
	if sc.Regional() && !ranged {
		return sc2.run(ctx, base+` AND d.rid > ? ORDER BY d.rid LIMIT ?`, args, byRowID)
	}
	if !ranged { // a time range never matches a document without a time value
		if err := sc2.run(ctx, base+` AND d.ts IS NULL AND d.rid > ? ORDER BY d.rid LIMIT ?`, args, byRowID); err != nil {
			return err
		}
	}
	return sc2.run(ctx, base+` AND d.ts IS NOT NULL AND (d.ts, d.rid) > (?, ?) ORDER BY d.ts, d.rid LIMIT ?`, args, byTime)
}

// keyset says which columns a scan phase resumes after.
type keyset int

const (
	byRowID keyset = iota // d.rid > ?
	byTime                // (d.ts, d.rid) > (?, ?)
)

type scanner struct {
	s    *Store
	c    store.Collection
	size int
	fn   func(store.Doc) error
}

// scanRow is a document read by a scan with its position.
type scanRow struct {
	rid int64
	ts  sql.NullInt64
	doc store.Doc
}

// run pages through one phase of a scan: q ends with the keyset
// predicate's placeholders and LIMIT ?.
func (x *scanner) run(ctx context.Context, q string, args []any, k keyset) error {
	lastRID, lastTS := int64(math.MinInt64), int64(math.MinInt64)
	page := make([]scanRow, 0, min(x.size, 1024))
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		a := append([]any(nil), args...)
		if k == byTime {
			a = append(a, lastTS)
		}
		a = append(a, lastRID, x.size)
		var err error
		if page, err = x.page(ctx, q, a, page[:0]); err != nil {
			return fmt.Errorf("sqlite: scan %s: %w", x.c, err)
		}
		for i := range page {
			if err := x.fn(page[i].doc); err != nil {
				return err
			}
		}
		if len(page) < x.size {
			return nil
		}
		last := page[len(page)-1]
		lastRID, lastTS = last.rid, last.ts.Int64
	}
}

// page reads one page into buf; the rows are closed before fn sees them.
func (x *scanner) page(ctx context.Context, q string, args []any, buf []scanRow) ([]scanRow, error) {
	rows, err := x.s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var row scanRow
		var src string
		if err := rows.Scan(&row.rid, &row.ts, &row.doc.ID, &row.doc.Tenant, &row.doc.Version.Seq, &src); err != nil {
			return nil, err
		}
		row.doc.Source = []byte(src)
		buf = append(buf, row)
	}
	return buf, rows.Err()
}
