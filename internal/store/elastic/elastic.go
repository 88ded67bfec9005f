package elastic

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/sirupsen/logrus"

	"github.com/csirt-toscana/platform/internal/store"
)

// Options configure a Store. Credentials are never logged nor put in errors.
type Options struct {
	Addresses []string // node URLs, e.g. http://127.0.0.1:9200; default http://127.0.0.1:9200
	Username  string   // basic authentication
	Password  string
	APIKey    string      // base64 API key; takes precedence over Username/Password
	TLS       *tls.Config // client TLS (CA, client certificate); nil for the system defaults

	// IndexPrefix starts the name of every template, index and data stream;
	// default "csirt". Lower-case letters, digits, '-' and '_'.
	IndexPrefix string

	// Retention is the age after which the data stream lifecycle deletes
	// time-series documents: key "events" or "findings" for the default of
	// a collection, "events/<dataset>" for one dataset (event.dataset).
	// Zero or absent keeps data forever.
	Retention map[string]time.Duration

	// RefreshInterval is index.refresh_interval of every index: how soon
	// a write becomes searchable, and so how long a RefreshWait write
	// (refresh=wait_for) may wait. Zero leaves the Elasticsearch default
	// (1 s).
	RefreshInterval time.Duration

	// ScanKeepAlive is how long the point in time of a Scan is kept
	// between two pages, and so how long a Scan callback may spend on one
	// page; zero means 1 minute. Each page renews it.
	ScanKeepAlive time.Duration

	// Replicas is the number of replicas of every index; nil leaves the
	// Elasticsearch default (1). A single-node test cluster wants 0.
	Replicas *int

	Logger logrus.FieldLogger // default: logrus standard logger

	// Transport replaces the HTTP transport (then TLS is ignored).
	Transport http.RoundTripper
}

// Store is the Elasticsearch store. Its methods are safe for concurrent use.
type Store struct {
	es      *elasticsearch.Client
	prefix  string
	log     logrus.FieldLogger
	opts    Options
	http    http.RoundTripper
	schemas map[store.Collection]store.Schema

	noLifecycleAPI bool // set by Open when the data-streams module is missing
}

var _ store.Store = (*Store)(nil)

// Open connects to Elasticsearch, checks it answers, and creates or updates
// the templates, indices and mappings. It is idempotent.
func Open(ctx context.Context, o Options) (*Store, error) {
	if o.IndexPrefix == "" {
		o.IndexPrefix = "csirt"
	}
	if err := validPrefix(o.IndexPrefix); err != nil {
		return nil, err
	}
	if len(o.Addresses) == 0 {
		o.Addresses = []string{"http://127.0.0.1:9200"}
	}
	if o.Logger == nil {
		o.Logger = logrus.StandardLogger()
	}
	addrs := make([]string, 0, len(o.Addresses))
	for _, a := range o.Addresses {
		u, err := url.Parse(a)
		if err != nil || u.Scheme == "" || u.Host == "" {
			// Do not echo the address: it may hold credentials.
			return nil, fmt.Errorf("elastic: opening store: address #%d is not a URL", len(addrs)+1)
		}
		if u.User != nil { // credentials in the URL: move them out of it
			if o.Username == "" && o.APIKey == "" {
				o.Username = u.User.Username()
				o.Password, _ = u.User.Password()
			}
			u.User = nil
		}
		addrs = append(addrs, u.String())
	}
	for k := range o.Retention {
		c, _, _ := strings.Cut(k, "/")
		sch, err := store.SchemaOf(store.Collection(c))
		if err != nil || !sch.TimeSeries {
			return nil, fmt.Errorf("elastic: opening store: retention key %q: %w: not a time-series collection", k, store.ErrInvalid)
		}
		if o.Retention[k] < 0 {
			return nil, fmt.Errorf("elastic: opening store: retention key %q: %w: negative", k, store.ErrInvalid)
		}
	}
	cfg := elasticsearch.Config{
		Addresses: addrs,
		Username:  o.Username,
		Password:  o.Password,
		APIKey:    o.APIKey,
		Transport: o.Transport,
		// 502/503/504 are retried (the client's default statuses), with a
		// backoff: a data stream's first backing index answers 503 for the
		// moment between its creation and its shard's start. Every write
		// is idempotent (deterministic ids, op_type create, if_seq_no).
		MaxRetries:   5,
		RetryBackoff: func(attempt int) time.Duration { return time.Duration(attempt) * 100 * time.Millisecond },
	}
	if cfg.Transport == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 32
		if o.TLS != nil {
			tr.TLSClientConfig = o.TLS.Clone()
		}
		cfg.Transport = tr
	}
	es, err := elasticsearch.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("elastic: creating client: %w", err)
	}
	s := &Store{es: es, prefix: o.IndexPrefix, log: o.Logger, opts: o, http: cfg.Transport, schemas: map[store.Collection]store.Schema{}}
	for _, c := range store.Collections {
		sch, err := store.SchemaOf(c)
		if err != nil {
			return nil, err
		}
		s.schemas[c] = sch
	}
	if err := s.bootstrap(ctx); err != nil {
		return nil, fmt.Errorf("elastic: opening store: %w", err)
	}
	return s, nil
}

func validPrefix(p string) error {
	if len(p) > 100 || strings.IndexFunc(p, func(r rune) bool {
		return !lowerAlnum(r) && r != '-' && r != '_'
	}) >= 0 || p[0] == '-' || p[0] == '_' {
		return fmt.Errorf("elastic: %w: index prefix %q must be lower-case letters, digits, - and _", store.ErrInvalid, p)
	}
	return nil
}

// Close releases idle connections. Bulk writers must be closed first.
func (s *Store) Close() error {
	if tr, ok := s.http.(interface{ CloseIdleConnections() }); ok {
		tr.CloseIdleConnections()
	}
	return nil
}

// schema returns a collection's schema or ErrInvalid.
func (s *Store) schema(c store.Collection) (store.Schema, error) {
	sch, ok := s.schemas[c]
	if !ok {
		return store.Schema{}, fmt.Errorf("%w: unknown collection %q", store.ErrInvalid, c)
	}
	return sch, nil
}

// index returns the index (or data stream pattern) searched for a collection.
func (s *Store) index(c store.Collection) string {
	if s.schemas[c].TimeSeries {
		return s.prefix + "-" + string(c) + "-*"
	}
	return s.prefix + "-" + string(c)
}

// esError is an error answer of Elasticsearch.
type esError struct {
	Status int
	Type   string
	Reason string
	Index  string // the concrete index named by the error, if any
}

func (e *esError) Error() string {
	if e.Type == "" {
		return fmt.Sprintf("elasticsearch: status %d", e.Status)
	}
	return fmt.Sprintf("elasticsearch: status %d: %s: %s", e.Status, e.Type, e.Reason)
}

// Unwrap maps the status to the store's errors.
func (e *esError) Unwrap() error {
	switch e.Status {
	case http.StatusBadRequest:
		return store.ErrInvalid
	case http.StatusNotFound:
		if e.Type == "" || e.Type == "index_not_found_exception" {
			return store.ErrNotFound
		}
	case http.StatusConflict:
		return store.ErrConflict
	}
	return nil
}

func statusOf(err error) int {
	var e *esError
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

func parseError(status int, body []byte) *esError {
	e := &esError{Status: status}
	var r struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &r) == nil && len(r.Error) > 0 {
		var d struct {
			Type      string `json:"type"`
			Reason    string `json:"reason"`
			Index     string `json:"index"`
			RootCause []struct {
				Type   string `json:"type"`
				Reason string `json:"reason"`
			} `json:"root_cause"`
			CausedBy *struct {
				Type   string `json:"type"`
				Reason string `json:"reason"`
			} `json:"caused_by"`
		}
		if json.Unmarshal(r.Error, &d) == nil {
			e.Type, e.Reason, e.Index = d.Type, d.Reason, d.Index
			if d.CausedBy != nil && d.CausedBy.Reason != "" {
				e.Reason += " (" + d.CausedBy.Type + ": " + d.CausedBy.Reason + ")"
			} else if len(d.RootCause) > 0 && d.RootCause[0].Reason != d.Reason {
				e.Reason += " (" + d.RootCause[0].Type + ": " + d.RootCause[0].Reason + ")"
			}
		} else {
			var str string
			if json.Unmarshal(r.Error, &str) == nil {
				e.Reason = str
			}
		}
	}
	if len(e.Reason) > 2000 {
		e.Reason = e.Reason[:2000] + "..."
	}
	return e
}

// do sends one request. body is nil, []byte or a value to encode as JSON.
// A status >= 300 is returned as *esError, with the body already read.
func (s *Store) do(ctx context.Context, method, path string, q url.Values, body any) ([]byte, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			return nil, fmt.Errorf("encoding request: %w", err)
		}
		rd = bytes.NewReader(buf)
	}
	u := path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("building request: %w", err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	res, err := s.es.Perform(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, redact(err))
	}
	defer res.Body.Close()
	out, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading answer: %w", method, path, err)
	}
	if res.StatusCode >= 300 {
		return out, parseError(res.StatusCode, out)
	}
	return out, nil
}

// redact drops a URL error's URL (which could carry credentials given in
// an address) and keeps its cause.
func redact(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// Refresh makes every acknowledged write to the collection searchable.
func (s *Store) Refresh(ctx context.Context, c store.Collection) error {
	if _, err := s.schema(c); err != nil {
		return err
	}
	q := url.Values{"ignore_unavailable": {"true"}, "allow_no_indices": {"true"}}
	if _, err := s.do(ctx, http.MethodPost, "/"+s.index(c)+"/_refresh", q, nil); err != nil {
		return fmt.Errorf("elastic: refreshing %s: %w", c, err)
	}
	return nil
}

func refreshParam(q url.Values, o store.WriteOptions) url.Values {
	if o.Refresh == store.RefreshWait {
		q.Set("refresh", "wait_for")
	}
	return q
}

func lowerAlnum(r rune) bool { return r >= 'a' && r <= 'z' || r >= '0' && r <= '9' }

// String describes the options without their credentials, so that printing
// them (%v, %+v) cannot leak a password or an API key.
func (o Options) String() string {
	auth := "none"
	switch {
	case o.APIKey != "":
		auth = "api key [redacted]"
	case o.Username != "":
		auth = "basic " + o.Username + ":[redacted]"
	}
	return fmt.Sprintf("elastic.Options{Addresses: %d node(s), Auth: %s, TLS: %t, IndexPrefix: %q, Retention: %v}",
		len(o.Addresses), auth, o.TLS != nil, o.IndexPrefix, o.Retention)
}

// GoString is String for %#v.
func (o Options) GoString() string { return o.String() }
