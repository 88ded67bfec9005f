package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/csirt-toscana/platform/internal/store"
)

// execer is what the write statements run on: the writing connection or a
// bulk transaction.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Put creates or replaces a document; on time-series collections a stored
// document is never replaced.
func (s *Store) Put(ctx context.Context, sc store.Scope, c store.Collection, d store.Doc, _ store.WriteOptions) (store.Version, error) {
	schema, err := s.begin(sc, c)
	if err != nil {
		return store.Version{}, err
	}
	r, err := prepare(sc, schema, d)
	if err != nil {
		return store.Version{}, err
	}
	v, err := s.put(ctx, s.w, sc, c, schema, r)
	if err != nil {
		return store.Version{}, fmt.Errorf("sqlite: put %s/%s: %w", c, d.ID, err)
	}
	return v, nil
}

func (s *Store) put(ctx context.Context, x execer, sc store.Scope, c store.Collection, schema store.Schema, r *row) (store.Version, error) {
	t := table(c)
	seq := s.seq.Add(1)
	args := []any{r.id, r.tenant, r.tsArg(), seq, string(r.source), string(r.fields)}
	if schema.TimeSeries {
		res, err := x.ExecContext(ctx, `INSERT INTO `+t+` (id, tenant, ts, seq, source, fields)
			VALUES (?, ?, ?, ?, ?, jsonb(?)) ON CONFLICT (id) DO NOTHING`, args...)
		if err != nil {
			return store.Version{}, err
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return store.Version{Seq: seq}, err
		}
		// Already stored: a no-op returning the stored version, if the
		// stored document is inside the scope.
		where, wargs := scopeSQL(sc, t)
		var old int64
		err = x.QueryRowContext(ctx, `SELECT seq FROM `+t+` WHERE id = ? AND `+where,
			append([]any{r.id}, wargs...)...).Scan(&old)
		if errors.Is(err, sql.ErrNoRows) {
			return store.Version{}, fmt.Errorf("%w: id %s is taken by another tenant's document", store.ErrOutOfScope, r.id)
		}
		return store.Version{Seq: old}, err
	}
	where, wargs := scopeSQL(sc, t)
	var got int64
	err := x.QueryRowContext(ctx, `INSERT INTO `+t+` (id, tenant, ts, seq, source, fields)
		VALUES (?, ?, ?, ?, ?, jsonb(?)) ON CONFLICT (id) DO UPDATE SET
		tenant = excluded.tenant, ts = excluded.ts, seq = excluded.seq,
		source = excluded.source, fields = excluded.fields
		WHERE `+where+` RETURNING seq`, append(args, wargs...)...).Scan(&got)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Version{}, fmt.Errorf("%w: id %s is taken by another tenant's document", store.ErrOutOfScope, r.id)
	}
	return store.Version{Seq: got}, err
}

// Create stores a new document; ErrExists if the id is taken.
func (s *Store) Create(ctx context.Context, sc store.Scope, c store.Collection, d store.Doc, _ store.WriteOptions) (store.Version, error) {
	schema, err := s.begin(sc, c)
	if err != nil {
		return store.Version{}, err
	}
	r, err := prepare(sc, schema, d)
	if err != nil {
		return store.Version{}, err
	}
	seq := s.seq.Add(1)
	// The conflict target is the collection-wide id: a taken id is taken
	// whoever owns it, and nothing of the other document is read.
	//nolint:gosec // G202: the table name is a constant; values are bound
	res, err := s.w.ExecContext(ctx, `INSERT INTO `+table(c)+` (id, tenant, ts, seq, source, fields)
		VALUES (?, ?, ?, ?, ?, jsonb(?)) ON CONFLICT (id) DO NOTHING`,
		r.id, r.tenant, r.tsArg(), seq, string(r.source), string(r.fields))
	if err != nil {
		return store.Version{}, fmt.Errorf("sqlite: create %s/%s: %w", c, d.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return store.Version{}, fmt.Errorf("sqlite: create %s/%s: %w", c, d.ID, err)
	}
	if n == 0 {
		return store.Version{}, fmt.Errorf("sqlite: create %s/%s: %w", c, d.ID, store.ErrExists)
	}
	return store.Version{Seq: seq}, nil
}

// Get returns one document in scope.
func (s *Store) Get(ctx context.Context, sc store.Scope, c store.Collection, id string) (store.Doc, error) {
	if _, err := s.begin(sc, c); err != nil {
		return store.Doc{}, err
	}
	if err := store.ValidID(id); err != nil {
		return store.Doc{}, err
	}
	t := table(c)
	where, wargs := scopeSQL(sc, t)
	d := store.Doc{ID: id}
	var src string
	err := s.r.QueryRowContext(ctx, `SELECT tenant, seq, source FROM `+t+` WHERE id = ? AND `+where,
		append([]any{id}, wargs...)...).Scan(&d.Tenant, &d.Version.Seq, &src)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Doc{}, fmt.Errorf("sqlite: get %s/%s: %w", c, id, store.ErrNotFound)
	}
	if err != nil {
		return store.Doc{}, fmt.Errorf("sqlite: get %s/%s: %w", c, id, err)
	}
	d.Source = []byte(src)
	return d, nil
}

// Update replaces a document if its version is still d.Version.
func (s *Store) Update(ctx context.Context, sc store.Scope, c store.Collection, d store.Doc, _ store.WriteOptions) (store.Version, error) {
	schema, err := s.begin(sc, c)
	if err != nil {
		return store.Version{}, err
	}
	if schema.TimeSeries {
		return store.Version{}, fmt.Errorf("%w: %s is append-only: Update is not available", store.ErrInvalid, c)
	}
	if d.Version.IsZero() {
		return store.Version{}, fmt.Errorf("%w: update %s/%s without the version read by Get", store.ErrInvalid, c, d.ID)
	}
	r, err := prepare(sc, schema, d)
	if err != nil {
		return store.Version{}, err
	}
	t := table(c)
	where, wargs := scopeSQL(sc, t)
	seq := s.seq.Add(1)
	//nolint:gosec // G202: the table name and scope predicate are constants; values are bound
	res, err := s.w.ExecContext(ctx, `UPDATE `+t+` SET tenant = ?, ts = ?, seq = ?, source = ?, fields = jsonb(?)
		WHERE id = ? AND seq = ? AND `+where,
		append([]any{r.tenant, r.tsArg(), seq, string(r.source), string(r.fields), r.id, d.Version.Seq}, wargs...)...)
	if err != nil {
		return store.Version{}, fmt.Errorf("sqlite: update %s/%s: %w", c, d.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return store.Version{}, fmt.Errorf("sqlite: update %s/%s: %w", c, d.ID, err)
	} else if n == 0 {
		return store.Version{}, fmt.Errorf("sqlite: update %s/%s: %w", c, d.ID, s.missOrConflict(ctx, sc, c, d.ID))
	}
	return store.Version{Seq: seq}, nil
}

// Delete removes a document, conditionally on v when v is not zero.
func (s *Store) Delete(ctx context.Context, sc store.Scope, c store.Collection, id string, v store.Version, _ store.WriteOptions) error {
	if _, err := s.begin(sc, c); err != nil {
		return err
	}
	if err := store.ValidID(id); err != nil {
		return err
	}
	t := table(c)
	where, wargs := scopeSQL(sc, t)
	//nolint:gosec // G202: the table name and scope predicate are constants; values are bound
	q := `DELETE FROM ` + t + ` WHERE id = ? AND ` + where
	args := append([]any{id}, wargs...)
	if !v.IsZero() {
		q += ` AND seq = ?`
		args = append(args, v.Seq)
	}
	res, err := s.w.ExecContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("sqlite: delete %s/%s: %w", c, id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: delete %s/%s: %w", c, id, err)
	} else if n == 0 {
		return fmt.Errorf("sqlite: delete %s/%s: %w", c, id, s.missOrConflict(ctx, sc, c, id))
	}
	return nil
}

// missOrConflict tells why a conditional write changed nothing: the
// document is gone (or outside the scope) or its version moved on.
func (s *Store) missOrConflict(ctx context.Context, sc store.Scope, c store.Collection, id string) error {
	t := table(c)
	where, wargs := scopeSQL(sc, t)
	var one int
	err := s.w.QueryRowContext(ctx, `SELECT 1 FROM `+t+` WHERE id = ? AND `+where,
		append([]any{id}, wargs...)...).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return store.ErrNotFound
	case err != nil:
		return err
	}
	return store.ErrConflict
}
