package elastic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/query"
)

// srcInfo is what the store reads from a document source: its tenant and,
// for events, its dataset. Both dotted ("organization.id") and nested
// ({"organization":{"id"}}) keys count.
type srcInfo struct {
	top     map[string]json.RawMessage
	org     string
	hasOrg  bool
	dataset string
}

// stringAt returns the string at obj.key, written dotted or nested; both
// forms with different values are an error.
func stringAt(top map[string]json.RawMessage, obj, key string) (string, bool, error) {
	var got []string
	for _, raw := range []json.RawMessage{top[obj+"."+key], nestedRaw(top[obj], key)} {
		if len(raw) == 0 || string(raw) == "null" {
			continue
		}
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			return "", false, fmt.Errorf("%s.%s is not a string", obj, key)
		}
		got = append(got, v)
	}
	switch {
	case len(got) == 0:
		return "", false, nil
	case len(got) == 2 && got[0] != got[1]:
		return "", false, fmt.Errorf("%s.%s given twice with different values", obj, key)
	}
	return got[0], true, nil
}

func nestedRaw(o json.RawMessage, key string) json.RawMessage {
	if len(o) == 0 || o[0] != '{' {
		return nil
	}
	var inner map[string]json.RawMessage
	if json.Unmarshal(o, &inner) != nil {
		return nil
	}
	return inner[key]
}

// inspect reads the source's tenant and dataset; an invalid source or a
// tenant that is not a string is ErrInvalid.
func inspect(src []byte) (srcInfo, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(src, &top); err != nil || top == nil {
		return srcInfo{}, fmt.Errorf("%w: source is not a JSON object", store.ErrInvalid)
	}
	in := srcInfo{top: top}
	var err error
	if o := bytes.TrimSpace(top["organization"]); len(o) > 0 && o[0] != '{' && string(o) != "null" {
		return srcInfo{}, fmt.Errorf("%w: organization is not an object", store.ErrInvalid)
	}
	if in.org, in.hasOrg, err = stringAt(top, "organization", "id"); err != nil {
		return srcInfo{}, fmt.Errorf("%w: %w", store.ErrInvalid, err)
	}
	if in.dataset, _, err = stringAt(top, "event", "dataset"); err != nil {
		return srcInfo{}, fmt.Errorf("%w: %w", store.ErrInvalid, err)
	}
	return in, nil
}

// prepared is a document ready to be sent.
type prepared struct {
	body    []byte
	tenant  string
	dataset string
}

// prepare checks a document against the scope and returns the body to
// index: the source with organization.id set to the tenant (nested, as the
// SQLite store writes it) and the id copy for sorting. The tenant is
// Doc.Tenant, else the source's organization.id, else the scope's tenant.
func prepare(sc store.Scope, sch store.Schema, d store.Doc) (prepared, error) {
	if !sc.Valid() {
		return prepared{}, store.ErrUnscoped
	}
	if err := store.ValidID(d.ID); err != nil {
		return prepared{}, err
	}
	src := bytes.TrimSpace(d.Source)
	in, err := inspect(src)
	if err != nil {
		return prepared{}, fmt.Errorf("document %s: %w", d.ID, err)
	}
	if _, ok := in.top[idField]; ok {
		return prepared{}, fmt.Errorf("document %s: %w: field %s is reserved", d.ID, store.ErrInvalid, idField)
	}
	tenant := d.Tenant
	if tenant == "" {
		tenant = in.org
	}
	if tenant == "" {
		tenant = sc.Tenant()
	}
	if tenant == "" {
		return prepared{}, fmt.Errorf("document %s: %w: no tenant", d.ID, store.ErrInvalid)
	}
	if store.ValidID(tenant) != nil {
		return prepared{}, fmt.Errorf("document %s: %w: bad tenant %q", d.ID, store.ErrInvalid, tenant)
	}
	if in.hasOrg && in.org != tenant {
		return prepared{}, fmt.Errorf("document %s: %w: %s %q differs from the document tenant %q", d.ID, store.ErrInvalid, store.TenantField, in.org, tenant)
	}
	if err := sc.Check(tenant); err != nil {
		return prepared{}, fmt.Errorf("document %s: %w", d.ID, err)
	}
	if !in.hasOrg {
		if org := bytes.TrimSpace(in.top["organization"]); len(org) > 0 && org[0] == '{' {
			// Put the id into the existing object: re-encode the top level.
			var inner map[string]json.RawMessage
			if err := json.Unmarshal(org, &inner); err != nil {
				return prepared{}, fmt.Errorf("document %s: %w: organization: %w", d.ID, store.ErrInvalid, err)
			}
			inner["id"], _ = json.Marshal(tenant)
			in.top["organization"], _ = json.Marshal(inner)
			if src, err = json.Marshal(in.top); err != nil {
				return prepared{}, fmt.Errorf("document %s: %w: %w", d.ID, store.ErrInvalid, err)
			}
		} else if _, null := in.top["organization"]; null {
			delete(in.top, "organization")
			if src, err = json.Marshal(in.top); err != nil {
				return prepared{}, fmt.Errorf("document %s: %w: %w", d.ID, store.ErrInvalid, err)
			}
		}
	}
	// A fresh buffer: appendField must not write into the caller's Source.
	body := make([]byte, 0, len(src)+len(tenant)+len(d.ID)+64)
	body = append(body, src...)
	if !in.hasOrg && !bytes.HasPrefix(bytes.TrimSpace(in.top["organization"]), []byte("{")) {
		body = appendField(body, "organization", `{"id":`+quote(tenant)+`}`)
	}
	if tok, err := tokenFields(in.top, sch); err != nil {
		return prepared{}, fmt.Errorf("document %s: %w", d.ID, err)
	} else if tok != nil {
		body = appendField(body, tokensField, string(tok))
	}
	body = appendField(body, idField, `"`+d.ID+`"`) // ValidID: nothing to escape
	return prepared{body: body, tenant: tenant, dataset: in.dataset}, nil
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// appendField adds "key":value at the end of a JSON object.
func appendField(obj []byte, key, value string) []byte {
	obj = bytes.TrimRight(obj, " \t\r\n")
	obj = obj[:len(obj)-1] // the closing brace
	if len(bytes.TrimSpace(obj)) > 1 {
		obj = append(obj, ',')
	}
	obj = append(obj, '"')
	obj = append(obj, key...)
	obj = append(obj, `":`...)
	obj = append(obj, value...)
	return append(obj, '}')
}

// hit is one stored document as Elasticsearch returns it.
type hit struct {
	Index  string          `json:"_index"`
	ID     string          `json:"_id"`
	Seq    *int64          `json:"_seq_no"`
	Term   *int64          `json:"_primary_term"`
	Found  *bool           `json:"found"`
	Source json.RawMessage `json:"_source"`
}

func (h hit) version() store.Version {
	var v store.Version
	if h.Seq != nil {
		v.Seq = *h.Seq
	}
	if h.Term != nil {
		v.Term = *h.Term
	}
	return v
}

// doc turns a hit into a store document.
func (h hit) doc() (store.Doc, error) {
	in, err := inspect(h.Source)
	if err != nil {
		return store.Doc{}, fmt.Errorf("stored document %s: %w", h.ID, err)
	}
	return store.Doc{ID: h.ID, Tenant: in.org, Version: h.version(), Source: h.Source}, nil
}

func decode(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decoding the answer of Elasticsearch: %w", err)
	}
	return nil
}

// getHit reads a document in real time, whatever its tenant.
func (s *Store) getHit(ctx context.Context, c store.Collection, id string) (hit, error) {
	if !s.schemas[c].TimeSeries {
		return s.getFrom(ctx, s.index(c), id)
	}
	streams, err := s.streams(ctx, c)
	if err != nil {
		return hit{}, err
	}
	var docs []M
	for _, ds := range streams {
		for _, ix := range ds.Indices {
			docs = append(docs, M{"_index": ix, "_id": id})
		}
	}
	if len(docs) == 0 {
		return hit{}, store.ErrNotFound
	}
	body, err := s.do(ctx, http.MethodPost, "/_mget", nil, M{"docs": docs})
	if err != nil {
		return hit{}, fmt.Errorf("reading %s: %w", id, err)
	}
	var r struct {
		Docs []hit `json:"docs"`
	}
	if err := decode(body, &r); err != nil {
		return hit{}, err
	}
	for _, h := range r.Docs {
		if h.Found != nil && *h.Found {
			return h, nil
		}
	}
	return hit{}, store.ErrNotFound
}

// getFrom reads a document from one concrete index.
func (s *Store) getFrom(ctx context.Context, index, id string) (hit, error) {
	return s.getFromQ(ctx, index, id, nil)
}

// getTenantHit reads the version and tenant of a document of a plain
// (not time-series) collection without its source: what Update and
// Delete check before a conditional write. Partition snapshots are
// megabytes; reading them back whole on every save cost more CPU than
// writing them.
func (s *Store) getTenantHit(ctx context.Context, c store.Collection, id string) (hit, error) {
	if s.schemas[c].TimeSeries {
		return s.getHit(ctx, c, id)
	}
	return s.getFromQ(ctx, s.index(c), id, url.Values{"_source_includes": {store.TenantField}})
}

func (s *Store) getFromQ(ctx context.Context, index, id string, q url.Values) (hit, error) {
	body, err := s.do(ctx, http.MethodGet, "/"+index+"/_doc/"+id, q, nil)
	if err != nil {
		if statusOf(err) == http.StatusNotFound {
			return hit{}, store.ErrNotFound
		}
		return hit{}, fmt.Errorf("reading %s: %w", id, err)
	}
	var h hit
	if err := decode(body, &h); err != nil {
		return hit{}, err
	}
	if h.Found == nil || !*h.Found {
		return hit{}, store.ErrNotFound
	}
	return h, nil
}

// write indexes one document. opType is "create" or "index"; if is the
// version the stored document must have (nil: none).
func (s *Store) write(ctx context.Context, index, id string, body []byte, opType string, ifv *store.Version, o store.WriteOptions) (store.Version, error) {
	q := refreshParam(url.Values{"op_type": {opType}}, o)
	if ifv != nil {
		q.Set("if_seq_no", strconv.FormatInt(ifv.Seq, 10))
		q.Set("if_primary_term", strconv.FormatInt(ifv.Term, 10))
	}
	res, err := s.do(ctx, http.MethodPut, "/"+index+"/_doc/"+id, q, body)
	if err != nil {
		return store.Version{}, err
	}
	var h hit
	if err := decode(res, &h); err != nil {
		return store.Version{}, err
	}
	return h.version(), nil
}

func (s *Store) begin(sc store.Scope, c store.Collection) (store.Schema, error) {
	if !sc.Valid() {
		return store.Schema{}, store.ErrUnscoped
	}
	return s.schema(c)
}

// Put creates or replaces a document; on events and findings it never
// replaces and returns the stored version when the id is taken.
func (s *Store) Put(ctx context.Context, sc store.Scope, c store.Collection, d store.Doc, o store.WriteOptions) (store.Version, error) {
	sch, err := s.begin(sc, c)
	if err != nil {
		return store.Version{}, fmt.Errorf("elastic: putting into %s: %w", c, err)
	}
	p, err := prepare(sc, sch, d)
	if err != nil {
		return store.Version{}, fmt.Errorf("elastic: putting into %s: %w", c, err)
	}
	v, err := s.put(ctx, sc, c, sch, d.ID, p, o)
	if err != nil {
		return store.Version{}, fmt.Errorf("elastic: putting %s into %s: %w", d.ID, c, err)
	}
	return v, nil
}

func (s *Store) put(ctx context.Context, sc store.Scope, c store.Collection, sch store.Schema, id string, p prepared, o store.WriteOptions) (store.Version, error) {
	if sch.TimeSeries {
		v, err := s.write(ctx, s.stream(c, p.dataset), id, p.body, "create", nil, o)
		if statusOf(err) != http.StatusConflict {
			return v, err
		}
		return s.existing(ctx, sc, c, id, err)
	}
	if sc.Regional() {
		return s.write(ctx, s.index(c), id, p.body, "index", nil, o)
	}
	// A tenant may not overwrite another tenant's document: read, check,
	// and write only over the version that was checked.
	for range 10 {
		h, err := s.getHit(ctx, c, id)
		var v store.Version
		switch {
		case errors.Is(err, store.ErrNotFound):
			v, err = s.write(ctx, s.index(c), id, p.body, "create", nil, o)
		case err != nil:
			return store.Version{}, err
		default:
			d, derr := h.doc()
			if derr != nil {
				return store.Version{}, derr
			}
			if err := sc.Check(d.Tenant); err != nil {
				return store.Version{}, err
			}
			hv := h.version()
			v, err = s.write(ctx, s.index(c), id, p.body, "index", &hv, o)
		}
		if statusOf(err) == http.StatusConflict {
			continue // someone wrote in between: check again
		}
		return v, err
	}
	return store.Version{}, fmt.Errorf("%w: the document kept changing", store.ErrConflict)
}

// existing returns the version of a time-series document whose create
// gave 409, after checking its tenant.
func (s *Store) existing(ctx context.Context, sc store.Scope, c store.Collection, id string, conflict error) (store.Version, error) {
	var h hit
	var err error
	var e *esError
	if errors.As(conflict, &e) && e.Index != "" {
		h, err = s.getFrom(ctx, e.Index, id)
	} else {
		h, err = s.getHit(ctx, c, id)
	}
	if err != nil {
		return store.Version{}, fmt.Errorf("reading the stored copy: %w", err)
	}
	d, err := h.doc()
	if err != nil {
		return store.Version{}, err
	}
	if err := sc.Check(d.Tenant); err != nil {
		return store.Version{}, err
	}
	return d.Version, nil
}

// Create stores a new document; ErrExists if the id is taken.
func (s *Store) Create(ctx context.Context, sc store.Scope, c store.Collection, d store.Doc, o store.WriteOptions) (store.Version, error) {
	sch, err := s.begin(sc, c)
	if err != nil {
		return store.Version{}, fmt.Errorf("elastic: creating in %s: %w", c, err)
	}
	p, err := prepare(sc, sch, d)
	if err != nil {
		return store.Version{}, fmt.Errorf("elastic: creating in %s: %w", c, err)
	}
	index := s.index(c)
	if sch.TimeSeries {
		index = s.stream(c, p.dataset)
		// A data stream detects a taken id in its write index only: look
		// in the older backing indices too.
		if _, err := s.getHit(ctx, c, d.ID); err == nil {
			return store.Version{}, fmt.Errorf("elastic: creating %s in %s: %w", d.ID, c, store.ErrExists)
		} else if !errors.Is(err, store.ErrNotFound) {
			return store.Version{}, fmt.Errorf("elastic: creating %s in %s: %w", d.ID, c, err)
		}
	}
	v, err := s.write(ctx, index, d.ID, p.body, "create", nil, o)
	if statusOf(err) == http.StatusConflict {
		return store.Version{}, fmt.Errorf("elastic: creating %s in %s: %w", d.ID, c, store.ErrExists)
	}
	if err != nil {
		return store.Version{}, fmt.Errorf("elastic: creating %s in %s: %w", d.ID, c, err)
	}
	return v, nil
}

// Get returns one document; ErrNotFound if absent or outside the scope.
func (s *Store) Get(ctx context.Context, sc store.Scope, c store.Collection, id string) (store.Doc, error) {
	if _, err := s.begin(sc, c); err != nil {
		return store.Doc{}, fmt.Errorf("elastic: getting from %s: %w", c, err)
	}
	if err := store.ValidID(id); err != nil {
		return store.Doc{}, fmt.Errorf("elastic: getting from %s: %w", c, err)
	}
	h, err := s.getHit(ctx, c, id)
	if err != nil {
		return store.Doc{}, fmt.Errorf("elastic: getting %s from %s: %w", id, c, err)
	}
	d, err := h.doc()
	if err != nil {
		return store.Doc{}, fmt.Errorf("elastic: getting %s from %s: %w", id, c, err)
	}
	if !sc.Allows(d.Tenant) {
		return store.Doc{}, fmt.Errorf("elastic: getting %s from %s: %w", id, c, store.ErrNotFound)
	}
	return d, nil
}

// Update replaces a document if its stored version is still d.Version.
func (s *Store) Update(ctx context.Context, sc store.Scope, c store.Collection, d store.Doc, o store.WriteOptions) (store.Version, error) {
	sch, err := s.begin(sc, c)
	if err != nil {
		return store.Version{}, fmt.Errorf("elastic: updating in %s: %w", c, err)
	}
	if sch.TimeSeries {
		return store.Version{}, fmt.Errorf("elastic: updating in %s: %w: documents of a time-series collection are never updated", c, store.ErrInvalid)
	}
	p, err := prepare(sc, sch, d)
	if err != nil {
		return store.Version{}, fmt.Errorf("elastic: updating in %s: %w", c, err)
	}
	fail := func(err error) (store.Version, error) {
		return store.Version{}, fmt.Errorf("elastic: updating %s in %s: %w", d.ID, c, err)
	}
	h, err := s.getTenantHit(ctx, c, d.ID)
	if err != nil {
		return fail(err)
	}
	cur, err := h.doc()
	if err != nil {
		return fail(err)
	}
	if err := sc.Check(cur.Tenant); err != nil {
		return fail(err)
	}
	if cur.Version != d.Version {
		return fail(fmt.Errorf("%w: stored version %d/%d, given %d/%d", store.ErrConflict,
			cur.Version.Seq, cur.Version.Term, d.Version.Seq, d.Version.Term))
	}
	v, err := s.write(ctx, h.Index, d.ID, p.body, "index", &d.Version, o)
	if statusOf(err) == http.StatusConflict {
		return fail(store.ErrConflict)
	}
	if err != nil {
		return fail(err)
	}
	return v, nil
}

// Delete removes a document, conditionally with a non-zero version.
func (s *Store) Delete(ctx context.Context, sc store.Scope, c store.Collection, id string, v store.Version, o store.WriteOptions) error {
	if _, err := s.begin(sc, c); err != nil {
		return fmt.Errorf("elastic: deleting from %s: %w", c, err)
	}
	if err := store.ValidID(id); err != nil {
		return fmt.Errorf("elastic: deleting from %s: %w", c, err)
	}
	fail := func(err error) error { return fmt.Errorf("elastic: deleting %s from %s: %w", id, c, err) }
	for range 10 {
		h, err := s.getTenantHit(ctx, c, id)
		if err != nil {
			return fail(err)
		}
		cur, err := h.doc()
		if err != nil {
			return fail(err)
		}
		if err := sc.Check(cur.Tenant); err != nil {
			return fail(err)
		}
		if !v.IsZero() && cur.Version != v {
			return fail(store.ErrConflict)
		}
		q := refreshParam(url.Values{}, o)
		// Conditional on what was checked, so the tenant check holds.
		q.Set("if_seq_no", strconv.FormatInt(cur.Version.Seq, 10))
		q.Set("if_primary_term", strconv.FormatInt(cur.Version.Term, 10))
		_, err = s.do(ctx, http.MethodDelete, "/"+h.Index+"/_doc/"+id, q, nil)
		switch statusOf(err) {
		case 0:
			if err != nil {
				return fail(err)
			}
			return nil
		case http.StatusNotFound:
			if !v.IsZero() {
				return fail(store.ErrConflict)
			}
			return fail(store.ErrNotFound)
		case http.StatusConflict:
			if !v.IsZero() {
				return fail(store.ErrConflict)
			}
			continue // unconditional: check the new version again
		default:
			return fail(err)
		}
	}
	return fail(fmt.Errorf("%w: the document kept changing", store.ErrConflict))
}

// tokenFields returns the tokens object of a document: for each text field
// of the schema that the source holds, its tokens (query.Tokenize) joined
// by spaces (a list field: one such string per element); nil when there is
// none. Elasticsearch indexes them with the whitespace analyzer, so a text
// field is matched by exactly the tokens that the query language and the
// SQLite store use.
func tokenFields(top map[string]json.RawMessage, sch store.Schema) (json.RawMessage, error) {
	var out map[string]any
	for _, name := range sch.DefaultFields() { // the text fields
		raw, err := lookup(top, name, 0)
		if err != nil {
			return nil, fmt.Errorf("%w: field %q: %w", store.ErrInvalid, name, err)
		}
		if len(raw) == 0 {
			continue
		}
		v, err := tokenValue(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: field %q: %w", store.ErrInvalid, name, err)
		}
		if v == nil {
			continue
		}
		if out == nil {
			out = map[string]any{}
		}
		out[name] = v // a dotted key: Elasticsearch maps it as the path
	}
	if out == nil {
		return nil, nil
	}
	return json.Marshal(out)
}

// lookup finds a dotted field in a source written with nested objects,
// dotted keys or a mix of both. Absent (or null) is nil.
func lookup(obj map[string]json.RawMessage, name string, depth int) (json.RawMessage, error) {
	if depth > 32 {
		return nil, fmt.Errorf("nested too deeply")
	}
	var found json.RawMessage
	for i := len(name); i > 0; i = strings.LastIndexByte(name[:i], '.') {
		raw, ok := obj[name[:i]]
		if !ok || string(bytes.TrimSpace(raw)) == "null" {
			continue
		}
		var v json.RawMessage
		if i == len(name) {
			v = raw
		} else {
			t := bytes.TrimSpace(raw)
			if len(t) == 0 || t[0] != '{' {
				continue
			}
			var inner map[string]json.RawMessage
			if err := json.Unmarshal(t, &inner); err != nil {
				return nil, err
			}
			var err error
			if v, err = lookup(inner, name[i+1:], depth+1); err != nil {
				return nil, err
			}
		}
		if len(v) > 0 {
			if found != nil {
				return nil, fmt.Errorf("given twice (nested and dotted)")
			}
			found = v
		}
	}
	return found, nil
}

// tokenValue turns a text field's JSON value into its token string (a
// string, number or boolean) or list of token strings; nil for null or an
// empty list.
func tokenValue(raw json.RawMessage) (any, error) {
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	one := func(x any) (string, error) {
		switch x := x.(type) {
		case string:
			return strings.Join(query.Tokenize(x), " "), nil
		case json.Number:
			return strings.Join(query.Tokenize(x.String()), " "), nil
		case bool:
			return strconv.FormatBool(x), nil
		}
		return "", fmt.Errorf("holds an object or a nested list, want text")
	}
	switch x := v.(type) {
	case nil:
		return nil, nil
	case []any:
		list := make([]string, 0, len(x))
		for _, e := range x {
			if e == nil {
				continue
			}
			s, err := one(e)
			if err != nil {
				return nil, err
			}
			list = append(list, s)
		}
		if len(list) == 0 {
			return nil, nil
		}
		return list, nil
	}
	return one(v)
}
