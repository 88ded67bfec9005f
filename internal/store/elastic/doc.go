// Package elastic is the Elasticsearch (8.x) implementation of store.Store,
// used by the cluster mode. It talks to Elasticsearch over its REST API with
// the official go-elasticsearch v8 client (bulk writes through
// esutil.BulkIndexer). It passes the conformance suite in
// internal/store/storetest against a real node.
//
// # Layout
//
// Every name starts with Options.IndexPrefix (default "csirt").
//
//   - Component template <prefix>-settings: one primary shard, replicas and
//     refresh interval from Options.
//   - Component template <prefix>-<collection>-mappings: the explicit mapping
//     generated from store.Schema (keyword, text, ip, long, double,
//     date_nanos for every date so that nanoseconds survive, boolean) with
//     dynamic: false at the root: a field the schema does not declare is kept
//     in _source but never indexed. A value that does not fit its field's
//     type is refused (ErrInvalid), as on SQLite.
//   - The time-series collections (events, findings) are data streams:
//     <prefix>-<collection>-default, plus <prefix>-events-<event.dataset> for
//     each dataset that has a retention of its own (a retention applies to a
//     whole stream). Retention is the data stream lifecycle
//     (template.lifecycle.data_retention, ES >= 8.11): the index template
//     <prefix>-<collection> (priority 100) carries the collection's default
//     (Options.Retention["events"]) and a template of priority 200 whose
//     pattern is exactly the stream's name carries a dataset's
//     (Options.Retention["events/sshd"]). ILM is not used: it is x-pack.
//   - Every other collection is one plain index, <prefix>-<collection>,
//     created on Open from the index template of the same name.
//
// Open puts all templates (idempotent: PUT replaces them), creates the plain
// indices that do not exist yet, and pushes the current mappings, settings
// and retentions onto existing indices and data streams.
//
// # What the integ-test distribution lacks
//
// The integ-test-zip node used in development and CI has only the server
// core (no modules but transport and x-pack-core/security). Checked on
// 8.19: data streams are created from templates and work for writes,
// searches and deletes by backing index; the lifecycle is accepted in
// templates but nothing enforces it, and the _data_stream APIs (get, delete,
// lifecycle) answer 405. So this package only uses core APIs at run time:
// backing indices are listed with _resolve/index. Open logs a warning when
// it cannot update the lifecycle of existing streams. Drop empties a data
// stream it cannot delete (the stream and its templates stay; tests reuse a
// stable prefix per test so that they do not pile up). The pattern tokenizer
// (analysis-common module) is missing too, hence the token fields below.
//
// # Text fields
//
// A text field is matched by the tokens of query.Tokenize (maximal runs of
// letters and digits, lower-cased). Rather than mirror that in a Java regex
// analyzer, the store writes the tokens itself: for each text field of the
// schema the document carries store_tokens.<field>, its tokens joined by
// spaces, indexed with the built-in whitespace analyzer and excluded from
// _source. Words, wildcards and phrases search that field, so both stores
// tokenize with the same Go code. The text field itself keeps the standard
// analyzer for other tools (Kibana). A token longer than 255 characters is
// split by the whitespace analyzer.
//
// # Documents
//
// The document id is the Elasticsearch _id. The tenant is written into
// organization.id (store.TenantField) of the source (nested, as SQLite does),
// and a copy of the id into the keyword field store_doc_id, excluded from
// _source: Elasticsearch 8 refuses to sort on _id, and searches break ties by
// this field. The version is (_seq_no, _primary_term).
//
// On data streams a document can only be created (op_type=create); a 409
// means the id is already there, and Put returns the stored document's
// version (read from the backing index named in the 409). The real-time GET
// API needs a concrete index, so Get on a time-series collection uses _mget
// over the backing indices. Deduplication on a data stream covers its
// current write index only: a retry that arrives after a rollover can store
// a second copy.
//
// Tenancy: a tenant scope adds a term filter on organization.id to every
// search and aggregation and checks the stored tenant of every document it
// reads (a document of another tenant is absent) or overwrites
// (ErrOutOfScope). Put, Update and Delete on a plain index therefore read
// the stored document first and write with if_seq_no/if_primary_term, so the
// check holds against concurrent writers; a bulk writer in a tenant scope
// sends create and falls back to that checked Put when the id is taken.
//
// Scan reads a whole collection past the from+size window
// (index.max_result_window, store.MaxWindow) with a point in time and
// search_after on _shard_doc: a consistent snapshot taken when the scan
// starts, pages of store.ScanRequest.PageSize, the point in time renewed by
// each page for Options.ScanKeepAlive and closed when the scan ends (also
// on error or cancellation). The tenant filter is the one of Search.
//
// RefreshWait is refresh=wait_for: the call returns after the next
// scheduled refresh (Options.RefreshInterval, default 1 s).
//
// Bulk throughput (BenchmarkBulk, storetest.BenchBulk: 1 KB events, four
// feeding goroutines, refresh 1 s): about 10,000 events/s against the
// single-node integ-test Elasticsearch on the same 2-core machine, which is
// the bottleneck (the client side uses a quarter of a core).
//
// A date range with an open bound is written with the date_nanos limit as
// the other bound: Elasticsearch 8 fails a date_histogram on a date_nanos
// field under a one-sided range ("nanoseconds are [-9223372036854775808]
// are before the epoch").
package elastic
