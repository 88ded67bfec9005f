// Package sqlite is the embedded store of the single-node mode: every
// collection is a table in one SQLite file (WAL mode, memory-mapped reads),
// written through one connection and read through a pool. It implements
// store.Store and passes the conformance suite in internal/store/storetest.
//
// Each table holds, per document: the id (unique in the collection), the
// tenant, the collection's time field in Unix nanoseconds (indexed with and
// without the tenant), the version (a sequence number, unique and
// increasing across the whole store, so a deleted and re-created document
// never matches an old version), the source as returned to readers, and the
// schema's fields normalised for querying (see normalise), stored as JSONB
// so that json_extract and json_each do not re-parse text. Queries compile
// to SQL over those fields (search.go); the query language's case, token
// and wildcard rules run as Go functions registered on a private driver
// (funcs.go). Every statement that reads or changes existing documents
// carries the scope's tenant predicate (scopeSQL); the regional scope is the
// only one without it. Scan pages by keyset on an index (scan.go), never by
// OFFSET, so reading a whole collection costs one pass over it.
//
// One process opens a file at a time: versions come from an in-memory
// counter initialised at Open.
package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	msqlite "modernc.org/sqlite"

	"github.com/csirt-toscana/platform/internal/store"
)

// Options configure a Store.
type Options struct {
	// Path of the database file; created if missing.
	Path string
	// Logger; default logrus.StandardLogger().
	Logger logrus.FieldLogger
	// BusyTimeout is how long a statement waits for a lock held by another
	// connection; default 10 s.
	BusyTimeout time.Duration
	// Synchronous is SQLite's synchronous pragma: "FULL" (default: a
	// committed write survives a power loss) or "NORMAL" (survives a crash
	// of the process, not of the machine; faster).
	Synchronous string
	// ReadConns bounds the connections used by searches; default
	// GOMAXPROCS+1, at least 2.
	ReadConns int
}

func (o *Options) fill() error {
	if o.Path == "" {
		return fmt.Errorf("%w: sqlite: Options.Path is empty", store.ErrInvalid)
	}
	if strings.Contains(o.Path, ":memory:") || strings.Contains(o.Path, "?") {
		// The store reads and writes through separate connections, which
		// an in-memory database would not share.
		return fmt.Errorf("%w: sqlite: Options.Path %q must name a file (no :memory:, no query string)", store.ErrInvalid, o.Path)
	}
	if o.Logger == nil {
		o.Logger = logrus.StandardLogger()
	}
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = 10 * time.Second
	}
	switch o.Synchronous {
	case "":
		o.Synchronous = "FULL"
	case "FULL", "NORMAL":
	default:
		return fmt.Errorf("%w: sqlite: Options.Synchronous must be FULL or NORMAL, not %q", store.ErrInvalid, o.Synchronous)
	}
	if o.ReadConns <= 0 {
		o.ReadConns = max(runtime.GOMAXPROCS(0)+1, 2)
	}
	return nil
}

// Store is the SQLite implementation of store.Store.
type Store struct {
	opts   Options
	log    logrus.FieldLogger
	w      *sql.DB // the one writing connection
	r      *sql.DB // read-only connections
	seq    atomic.Int64
	closed atomic.Bool
}

var _ store.Store = (*Store)(nil)

// connector opens connections of the store's private driver, which carries
// the query functions (registerFuncs) without touching the process-wide
// "sqlite" driver.
type connector struct {
	drv *msqlite.Driver
	dsn string
}

func (c *connector) Connect(ctx context.Context) (driver.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return c.drv.Open(c.dsn)
}

func (c *connector) Driver() driver.Driver { return c.drv }

// Open opens (creating if needed) the database file and its tables.
func Open(ctx context.Context, o Options) (*Store, error) {
	if err := o.fill(); err != nil {
		return nil, err
	}
	drv := &msqlite.Driver{}
	if err := registerFuncs(drv); err != nil {
		return nil, fmt.Errorf("sqlite: registering query functions: %w", err)
	}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", o.BusyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous("+o.Synchronous+")")
	q.Add("_pragma", "cache_size(-32000)")
	q.Add("_pragma", "temp_store(MEMORY)")
	q.Add("_pragma", "mmap_size(1073741824)")
	base := o.Path + "?" + q.Encode()

	w := sql.OpenDB(&connector{drv: drv, dsn: base + "&_txlock=immediate"})
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxIdleTime(0)
	s := &Store{opts: o, log: o.Logger, w: w}
	if err := s.migrate(ctx); err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("sqlite: opening %s: %w", o.Path, err)
	}
	r := sql.OpenDB(&connector{drv: drv, dsn: base + "&_pragma=query_only(1)"})
	r.SetMaxOpenConns(o.ReadConns)
	r.SetMaxIdleConns(o.ReadConns)
	s.r = r
	o.Logger.WithField("path", o.Path).WithField("version", s.seq.Load()).Debug("sqlite store opened")
	return s, nil
}

// migrate creates the tables and indexes and loads the version counter.
func (s *Store) migrate(ctx context.Context) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	var maxSeq int64
	for _, c := range store.Collections {
		t := table(c)
		stmts := []string{
			`CREATE TABLE IF NOT EXISTS ` + t + ` (
				rid    INTEGER PRIMARY KEY,
				id     TEXT    NOT NULL UNIQUE,
				tenant TEXT    NOT NULL,
				ts     INTEGER,
				seq    INTEGER NOT NULL,
				source TEXT    NOT NULL,
				fields BLOB    NOT NULL -- JSONB
			)`,
			`CREATE INDEX IF NOT EXISTS ` + index(c, "tenant_ts") + ` ON ` + t + ` (tenant, ts)`,
			`CREATE INDEX IF NOT EXISTS ` + index(c, "ts") + ` ON ` + t + ` (ts)`,
		}
		for _, q := range stmts {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("creating table %s: %w", c, err)
			}
		}
		var m sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT max(seq) FROM `+t).Scan(&m); err != nil {
			return fmt.Errorf("reading versions of %s: %w", c, err)
		}
		maxSeq = max(maxSeq, m.Int64)
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	s.seq.Store(maxSeq)
	return nil
}

func table(c store.Collection) string { return `"c_` + string(c) + `"` }

func index(c store.Collection, name string) string { return `"c_` + string(c) + `_` + name + `"` }

// collection checks the name against the closed set and returns its schema.
func collection(c store.Collection) (store.Schema, error) {
	return store.SchemaOf(c)
}

// scopeSQL is the tenant predicate every statement carries, on the
// tenant column of the table named (or aliased) t.
func scopeSQL(s store.Scope, t string) (string, []any) {
	if s.Regional() {
		return "1", nil
	}
	return t + ".tenant = ?", []any{s.Tenant()}
}

// begin checks what every method checks first.
func (s *Store) begin(sc store.Scope, c store.Collection) (store.Schema, error) {
	if !sc.Valid() {
		return store.Schema{}, store.ErrUnscoped
	}
	if s.closed.Load() {
		return store.Schema{}, errors.New("sqlite: store is closed")
	}
	return collection(c)
}

// Refresh is a no-op: a committed write is visible to every later read.
func (s *Store) Refresh(_ context.Context, c store.Collection) error {
	_, err := collection(c)
	return err
}

// Close checkpoints the write-ahead log and closes the database. Writers
// from Bulk must be closed first.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	var errs []error
	if _, err := s.w.ExecContext(context.Background(), `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		errs = append(errs, fmt.Errorf("checkpointing: %w", err))
	}
	if err := s.r.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := s.w.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sqlite: closing %s: %w", s.opts.Path, err)
	}
	return nil
}
