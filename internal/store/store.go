// Package store is the platform's persistence contract: named collections of
// JSON documents, every access scoped to a tenant, optimistic concurrency,
// deterministic ids, bulk writes, search in the query language and
// aggregations. Two implementations satisfy it (internal/store/sqlite for the
// single-node mode, internal/store/elastic for the cluster); both run the
// conformance suite in internal/store/storetest.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Collection names a set of documents. The set is closed: a backend refuses
// any other name.
type Collection string

// The collections of DESIGN.md.
const (
	Events        Collection = "events"        // time series, retention by age
	Findings      Collection = "findings"      // time series
	Incidents     Collection = "incidents"     //
	Entities      Collection = "entities"      // one document per entity; its tenant is itself
	Contacts      Collection = "contacts"      //
	Agents        Collection = "agents"        //
	Users         Collection = "users"         // staff users live in RegionalTenant
	Notifications Collection = "notifications" // outbox
	Audit         Collection = "audit"         //
	RulesState    Collection = "rules_state"   //
	Intel         Collection = "intel"         // indicators, usually RegionalTenant
)

// Collections lists every collection.
var Collections = []Collection{Events, Findings, Incidents, Entities, Contacts, Agents, Users,
	Notifications, Audit, RulesState, Intel}

// TenantField is the field that holds a document's tenant, in every
// collection. Backends write it from Doc.Tenant.
const TenantField = "organization.id"

// RegionalTenant is the tenant of documents that belong to the CSIRT itself
// rather than to an entity (staff users, regional intel, regional rules).
// Entity ids never start with an underscore.
const RegionalTenant = "_regional"

// Scope is the tenant scope every read and write takes. Its fields are
// unexported: the only ways to make one are TenantScope and RegionalScope,
// and the zero Scope is refused by every method with ErrUnscoped, so an
// unscoped query cannot be expressed.
type Scope struct {
	tenant   string
	regional bool
}

// TenantScope is the scope of an entity user or of a component acting for
// one entity: it sees and writes only that tenant's documents.
func TenantScope(entityID string) Scope { return Scope{tenant: entityID} }

// RegionalScope is the scope of CSIRT staff and of central roles: every
// tenant is visible. Call sites should be few and easy to audit.
func RegionalScope() Scope { return Scope{regional: true} }

// Valid reports whether the scope was made by a constructor.
func (s Scope) Valid() bool { return s.regional || s.tenant != "" }

// Regional reports whether the scope covers every tenant.
func (s Scope) Regional() bool { return s.regional }

// Tenant returns the single tenant of a tenant scope ("" for regional).
func (s Scope) Tenant() string { return s.tenant }

// Allows reports whether a document of tenant t is inside the scope.
func (s Scope) Allows(t string) bool { return s.regional || (s.tenant != "" && s.tenant == t) }

func (s Scope) String() string {
	switch {
	case s.regional:
		return "regional"
	case s.tenant != "":
		return "tenant:" + s.tenant
	}
	return "unscoped"
}

// Check returns ErrUnscoped for the zero scope and ErrOutOfScope when a
// document of tenant t may not be touched in it. Backends call it first.
func (s Scope) Check(t string) error {
	if !s.Valid() {
		return ErrUnscoped
	}
	if t != "" && !s.Allows(t) {
		return fmt.Errorf("%w: document of tenant %q in scope %s", ErrOutOfScope, t, s)
	}
	return nil
}

// Errors callers branch on, wrapped with context by the backends.
var (
	ErrUnscoped   = errors.New("store: no tenant scope given")
	ErrOutOfScope = errors.New("store: outside the tenant scope")
	ErrNotFound   = errors.New("store: document not found")
	ErrConflict   = errors.New("store: version conflict")        // OCC: someone wrote first
	ErrExists     = errors.New("store: document already exists") // Create on a taken id
	ErrInvalid    = errors.New("store: invalid request")         // bad collection, id, query, field
)

// Version is the optimistic-concurrency token of a stored document. It is
// opaque to callers: take it from Get and pass it back to Update/Delete.
// SQLite uses Seq only; Elasticsearch uses its _seq_no and _primary_term.
type Version struct {
	Seq  int64
	Term int64
}

// IsZero reports whether v carries no version (a document not yet stored).
func (v Version) IsZero() bool { return v.Seq == 0 && v.Term == 0 }

// Doc is one stored document.
type Doc struct {
	ID      string          // deterministic, chosen by the writer; [A-Za-z0-9._:-], at most 256 bytes
	Tenant  string          // entity id or RegionalTenant; stored in TenantField
	Version Version         // set by reads; ignored by Put/Create
	Source  json.RawMessage // the JSON object; nested or dotted keys
}

// ValidID reports whether id is acceptable as a document id.
func ValidID(id string) error {
	if id == "" || len(id) > 256 {
		return fmt.Errorf("%w: document id must be 1 to 256 bytes", ErrInvalid)
	}
	if i := strings.IndexFunc(id, func(r rune) bool { return !idRune(r) }); i >= 0 {
		return fmt.Errorf("%w: document id %q has a character outside [A-Za-z0-9._:-]", ErrInvalid, id)
	}
	return nil
}

func idRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == ':' || r == '-'
}

// Refresh says when a write must be visible to search.
type Refresh int

const (
	RefreshDefault Refresh = iota // visible within the backend's refresh interval (ES: 1 s)
	RefreshWait                   // the call returns once the write is searchable
)

// WriteOptions tune one write.
type WriteOptions struct {
	Refresh Refresh
}

// SortField orders search results.
type SortField struct {
	Field string
	Desc  bool
}

// SearchRequest is a query in the query language (internal/store/query) with
// a time range on the collection's time field, a sort and a page.
type SearchRequest struct {
	Query    string    // "" matches every document in scope
	From, To time.Time // on the collection's time field; zero = open; From inclusive, To exclusive
	Sort     []SortField
	Size     int // default 100, at most MaxPage
	Offset   int // for paging; Offset+Size at most MaxWindow
}

// Paging limits.
const (
	DefaultPage = 100
	MaxPage     = 10000
	MaxWindow   = 10000
)

// ScanRequest selects the documents a Scan reads: a query in the query
// language and a time range, as in SearchRequest, without sort or window.
type ScanRequest struct {
	Query    string    // "" matches every document in scope
	From, To time.Time // on the collection's time field; zero = open; From inclusive, To exclusive
	PageSize int       // documents fetched per round trip; default DefaultScanPage, at most MaxPage
}

// DefaultScanPage is the page size of a ScanRequest that sets none.
const DefaultScanPage = 1000

// Page returns the request's page size with the default applied, or
// ErrInvalid when it is outside 1..MaxPage. Backends call it.
func (r ScanRequest) Page() (int, error) {
	switch {
	case r.PageSize == 0:
		return DefaultScanPage, nil
	case r.PageSize < 0 || r.PageSize > MaxPage:
		return 0, fmt.Errorf("%w: scan page size %d is outside 1..%d", ErrInvalid, r.PageSize, MaxPage)
	}
	return r.PageSize, nil
}

// SearchResult is a page of documents and the total number that matched.
type SearchResult struct {
	Total int64
	Docs  []Doc
}

// AggRequest counts the documents matching Query in the time range, either
// by the values of a field (Terms) or by time buckets (Histogram). Exactly
// one of the two is set.
type AggRequest struct {
	Query     string
	From, To  time.Time
	Terms     *TermsAgg
	Histogram *HistogramAgg
}

// TermsAgg counts documents per value of a keyword, IP, number or boolean
// field; buckets come sorted by count descending, then key ascending.
type TermsAgg struct {
	Field string
	Size  int // at most this many buckets; default 10, at most 1000
}

// HistogramAgg counts documents per fixed interval of a date field; buckets
// come in time order, empty buckets left out, bucket start aligned to
// multiples of Interval since the Unix epoch in UTC.
type HistogramAgg struct {
	Field    string
	Interval time.Duration // at least one second, a whole number of seconds
}

// Bucket is one aggregation bucket. Key is the field value formatted as a
// string (numbers in decimal, booleans true/false); Time is set for
// histogram buckets.
type Bucket struct {
	Key   string
	Time  time.Time
	Count int64
}

// AggResult holds the buckets and the number of documents that matched.
type AggResult struct {
	Total   int64
	Buckets []Bucket
}

// Store is implemented by every backend. All methods are safe for
// concurrent use. Every method takes a Scope; the zero Scope gives
// ErrUnscoped and a document outside the scope behaves as absent on reads
// and gives ErrOutOfScope on writes.
type Store interface {
	// Put creates or replaces the document with this id (idempotent: a
	// retried Put leaves one document). On the time-series collections
	// (events, findings) a document is never replaced: a second Put of the
	// same id is a no-op that returns the stored version.
	Put(ctx context.Context, s Scope, c Collection, d Doc, o WriteOptions) (Version, error)

	// Create stores a new document; ErrExists if the id is taken.
	Create(ctx context.Context, s Scope, c Collection, d Doc, o WriteOptions) (Version, error)

	// Get returns one document with its version; ErrNotFound if absent or
	// outside the scope.
	Get(ctx context.Context, s Scope, c Collection, id string) (Doc, error)

	// Update replaces a document only if its stored version is still
	// d.Version; ErrConflict otherwise, ErrNotFound if it is gone. Not
	// available on events and findings (ErrInvalid).
	Update(ctx context.Context, s Scope, c Collection, d Doc, o WriteOptions) (Version, error)

	// Delete removes a document. With a non-zero version it is conditional
	// (ErrConflict when the version moved on). Deleting an absent document
	// gives ErrNotFound.
	Delete(ctx context.Context, s Scope, c Collection, id string, v Version, o WriteOptions) error

	// Bulk returns a writer that batches Puts into one collection. See
	// BulkWriter for its durability contract.
	Bulk(s Scope, c Collection, o BulkOptions) (BulkWriter, error)

	// Search runs a query; the query's errors wrap ErrInvalid and carry the
	// position (query.ParseError).
	Search(ctx context.Context, s Scope, c Collection, r SearchRequest) (SearchResult, error)

	// Scan calls fn once for every document in the scope that matches the
	// query and the time range, however many there are: it is not bound
	// by MaxWindow. It reads PageSize documents per round trip and holds
	// no store resource while fn runs on a page, so fn may use the store.
	// The scope is enforced as in Search. Query errors wrap ErrInvalid as
	// in Search.
	//
	// Order: fixed by the backend, not by the caller, and stable within
	// one scan (Elasticsearch: shard and index order of a point in time;
	// SQLite: the order the documents were first stored, or by time field
	// then first-stored order when the read is narrowed by a tenant or a
	// time range). Callers must not depend on it.
	//
	// Consistency: when nothing is written to the collection meanwhile,
	// every matching document is passed exactly once. A document written,
	// replaced or deleted during the scan may or may not be seen, in its
	// old or its new version (Elasticsearch reads a snapshot of what a
	// search would see when the scan starts, so it sees none of them;
	// SQLite reads each page
	// anew and may see them, and a document whose time field changes
	// during a tenant or time-range scan may be missed or seen twice).
	//
	// An error from fn stops the scan and is returned as it is; so is the
	// context's error when ctx ends between pages. fn is called from the
	// goroutine that called Scan, one document at a time; the Doc (and its
	// Source) stays valid after fn returns.
	Scan(ctx context.Context, s Scope, c Collection, r ScanRequest, fn func(Doc) error) error

	// Aggregate counts matching documents by field value or by time.
	Aggregate(ctx context.Context, s Scope, c Collection, r AggRequest) (AggResult, error)

	// Refresh makes every acknowledged write searchable (tests, CLI).
	Refresh(ctx context.Context, c Collection) error

	// Close releases the backend. Writers from Bulk must be closed first.
	Close() error
}

// BulkOptions tune a BulkWriter.
type BulkOptions struct {
	FlushInterval time.Duration // at most this long between a Put and its write; default and maximum 1 s
	FlushBytes    int           // flush when this many bytes are buffered; default 5 MiB
}

// BulkWriter batches Puts (same idempotent semantics as Store.Put).
//
// Add queues a document and returns at once; it fails only for an invalid
// or out-of-scope document or a closed writer. Flush blocks until every
// document added before the call is durable in the backend, and returns the
// errors of those that failed (joined, each naming the document id); after
// Flush returns nil the caller may commit its input offsets. Close flushes
// and stops the writer. A writer is safe for concurrent use.
type BulkWriter interface {
	Add(ctx context.Context, d Doc) error
	Flush(ctx context.Context) error
	Close(ctx context.Context) error
}
