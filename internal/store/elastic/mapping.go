package elastic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/store"
)

// M is a JSON object of the query DSL or of a template.
type M = map[string]any

// Names of things this package adds to every index.
const (
	// idField holds a copy of the document id (excluded from _source) so
	// that searches can break ties by id: ES 8 refuses to sort on _id.
	idField = "store_doc_id"
	// tokensField holds, for every text field, its tokens (see
	// tokenFields), excluded from _source. Searches on text fields use it.
	tokensField = "store_tokens"
	// Priorities of the index templates.
	collectionPriority = 100
	datasetPriority    = 200
	// keywordIgnoreAbove keeps very long keyword values out of the index
	// instead of rejecting the document (Lucene's term limit is 32766 bytes).
	keywordIgnoreAbove = 8191
)

// settings returns the index settings shared by every index.
func settings(replicas *int, refresh time.Duration) M {
	idx := M{
		"number_of_shards":           1,
		"mapping.total_fields.limit": 2000,
		"max_result_window":          store.MaxWindow,
	}
	if replicas != nil {
		idx["number_of_replicas"] = *replicas
	}
	if refresh > 0 {
		idx["refresh_interval"] = strconv.FormatInt(refresh.Milliseconds(), 10) + "ms"
	}
	return M{
		"index": idx,
	}
}

// fieldMapping returns the mapping of one schema field.
func fieldMapping(f event.FieldDef) (M, error) {
	switch f.Type {
	case event.Keyword:
		return M{"type": "keyword", "ignore_above": keywordIgnoreAbove}, nil
	case event.Text:
		// The field itself keeps the standard analyzer for other tools
		// (Kibana); the store searches tokensField.<name>.
		return M{"type": "text"}, nil
	case event.IP:
		return M{"type": "ip"}, nil
	case event.Long:
		return M{"type": "long"}, nil
	case event.Double:
		return M{"type": "double"}, nil
	case event.Date:
		// date_nanos keeps the nanoseconds of RFC 3339 times, so equality
		// and ranges mean the same as on SQLite.
		return M{"type": "date_nanos"}, nil
	case event.Bool:
		return M{"type": "boolean"}, nil
	}
	return nil, fmt.Errorf("%w: field %s has unknown type %q", store.ErrInvalid, f.Name, f.Type)
}

// Mapping returns the explicit mapping generated from a collection schema:
// dotted names become object properties, the root is dynamic: false.
func Mapping(sch store.Schema) (M, error) {
	root := M{}
	names := make([]string, 0, len(sch.Fields))
	for n := range sch.Fields {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		fm, err := fieldMapping(sch.Fields[name])
		if err != nil {
			return nil, err
		}
		parts := strings.Split(name, ".")
		props := root
		for i, p := range parts[:len(parts)-1] {
			child, ok := props[p].(M)
			if !ok {
				if props[p] != nil {
					return nil, fmt.Errorf("%w: field %s is both a value and an object", store.ErrInvalid, strings.Join(parts[:i+1], "."))
				}
				child = M{"type": "object", "properties": M{}}
				props[p] = child
			}
			next, isObj := child["properties"].(M)
			if !isObj {
				return nil, fmt.Errorf("%w: field %s is both a value and an object", store.ErrInvalid, strings.Join(parts[:i+1], "."))
			}
			props = next
		}
		leaf := parts[len(parts)-1]
		if props[leaf] != nil {
			return nil, fmt.Errorf("%w: field %s is both a value and an object", store.ErrInvalid, name)
		}
		props[leaf] = fm
	}
	for _, f := range []string{idField, tokensField} {
		if _, ok := root[f]; ok {
			return nil, fmt.Errorf("%w: field %s is reserved", store.ErrInvalid, f)
		}
	}
	root[idField] = M{"type": "keyword"}
	tok := M{}
	for _, name := range sch.DefaultFields() { // the text fields
		tok[name] = M{"type": "text", "analyzer": "whitespace"}
	}
	if len(tok) > 0 {
		// Flat dotted names under one object: Elasticsearch maps
		// "event.original" inside it as the path event -> original.
		root[tokensField] = M{"type": "object", "properties": nest(tok)}
	}
	return M{
		"dynamic":    false,
		"_source":    M{"excludes": []string{idField, tokensField, tokensField + ".*"}},
		"properties": root,
	}, nil
}

// retentionString formats a retention in Elasticsearch time units.
func retentionString(d time.Duration) string {
	switch {
	case d%(24*time.Hour) == 0:
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
}

// lifecycle returns the data stream lifecycle for a retention (0: keep).
func lifecycle(d time.Duration) M {
	if d <= 0 {
		return M{"enabled": true}
	}
	return M{"enabled": true, "data_retention": retentionString(d)}
}

// streamSuffix turns a dataset name into the last part of a data stream name.
func streamSuffix(dataset string) string {
	if dataset == "" {
		return "default"
	}
	b := []byte(strings.ToLower(dataset))
	for i, c := range b {
		if !lowerAlnum(rune(c)) && c != '.' && c != '_' && c != '-' {
			b[i] = '_'
		}
	}
	if len(b) > 100 {
		b = b[:100]
	}
	if b[0] == '.' || b[0] == '_' || b[0] == '-' {
		b = append([]byte("x"), b...)
	}
	return string(b)
}

// stream returns the data stream of a time-series document: its dataset's
// own stream when the dataset has a retention of its own, else the
// collection's default stream.
func (s *Store) stream(c store.Collection, dataset string) string {
	if dataset != "" {
		if _, ok := s.opts.Retention[string(c)+"/"+dataset]; ok {
			return s.prefix + "-" + string(c) + "-" + streamSuffix(dataset)
		}
	}
	return s.prefix + "-" + string(c) + "-default"
}

// template is one template to PUT.
type template struct {
	path string
	body M
}

// templates returns every component and index template, in the order to
// PUT them.
func (s *Store) templates() ([]template, error) {
	out := []template{{ // one primary shard, the text analyzer
		path: "/_component_template/" + s.prefix + "-settings",
		body: M{"template": M{"settings": settings(s.opts.Replicas, s.opts.RefreshInterval)},
			"_meta": M{"managed_by": "csirt store"}},
	}}
	for _, c := range store.Collections {
		sch := s.schemas[c]
		mp, err := Mapping(sch)
		if err != nil {
			return nil, fmt.Errorf("mapping of %s: %w", c, err)
		}
		comp := s.prefix + "-" + string(c) + "-mappings"
		out = append(out, template{
			path: "/_component_template/" + comp,
			body: M{"template": M{"mappings": mp}, "_meta": M{"managed_by": "csirt store"}},
		})
		it := M{
			"composed_of": []string{s.prefix + "-settings", comp},
			"priority":    collectionPriority,
			"_meta":       M{"managed_by": "csirt store", "collection": string(c)},
		}
		if sch.TimeSeries {
			it["index_patterns"] = []string{s.prefix + "-" + string(c) + "-*"}
			it["data_stream"] = M{}
			it["template"] = M{"lifecycle": lifecycle(s.opts.Retention[string(c)])}
		} else {
			it["index_patterns"] = []string{s.prefix + "-" + string(c)}
		}
		out = append(out, template{path: "/_index_template/" + s.prefix + "-" + string(c), body: it})
	}
	keys := make([]string, 0, len(s.opts.Retention))
	for k := range s.opts.Retention {
		if strings.Contains(k, "/") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		c, ds, _ := strings.Cut(k, "/")
		name := s.stream(store.Collection(c), ds)
		out = append(out, template{path: "/_index_template/" + name, body: M{
			"index_patterns": []string{name},
			"composed_of":    []string{s.prefix + "-settings", s.prefix + "-" + c + "-mappings"},
			"priority":       datasetPriority,
			"data_stream":    M{},
			"template":       M{"lifecycle": lifecycle(s.opts.Retention[k])},
			"_meta":          M{"managed_by": "csirt store", "collection": c, "dataset": ds},
		}})
	}
	return out, nil
}

// bootstrap puts the templates, creates missing plain indices, and updates
// the mappings and lifecycles of what already exists.
func (s *Store) bootstrap(ctx context.Context) error {
	if _, err := s.do(ctx, http.MethodGet, "/", nil, nil); err != nil {
		return fmt.Errorf("contacting Elasticsearch: %w", err)
	}
	tpls, err := s.templates()
	if err != nil {
		return err
	}
	for _, t := range tpls {
		if _, err := s.do(ctx, http.MethodPut, t.path, nil, t.body); err != nil {
			return fmt.Errorf("putting template %s: %w", t.path, err)
		}
	}
	for _, c := range store.Collections {
		if err := s.updateSettings(ctx, c); err != nil {
			return err
		}
		sch := s.schemas[c]
		mp, _ := Mapping(sch) // checked by templates()
		if sch.TimeSeries {
			// Existing streams: new fields now, new retention now.
			q := url.Values{"expand_wildcards": {"all"}, "allow_no_indices": {"true"}}
			if _, err := s.do(ctx, http.MethodPut, "/"+s.index(c)+"/_mapping", q, M{"properties": mp["properties"]}); err != nil {
				return fmt.Errorf("updating mapping of %s: %w", c, err)
			}
			if err := s.updateLifecycles(ctx, c); err != nil {
				return err
			}
			continue
		}
		idx := s.index(c)
		_, err := s.do(ctx, http.MethodPut, "/"+idx, nil, nil) // settings and mappings from the template
		var e *esError
		switch {
		case err == nil:
			s.log.WithField("index", idx).Info("created index")
		case errors.As(err, &e) && e.Type == "resource_already_exists_exception":
			if _, err := s.do(ctx, http.MethodPut, "/"+idx+"/_mapping", nil, M{"properties": mp["properties"]}); err != nil {
				return fmt.Errorf("updating mapping of %s: %w", idx, err)
			}
		default:
			return fmt.Errorf("creating index %s: %w", idx, err)
		}
	}
	return nil
}

// updateSettings applies the dynamic settings of Options to the existing
// indices of a collection (templates only reach indices created later).
func (s *Store) updateSettings(ctx context.Context, c store.Collection) error {
	idx := M{}
	if s.opts.Replicas != nil {
		idx["number_of_replicas"] = *s.opts.Replicas
	}
	if s.opts.RefreshInterval > 0 {
		idx["refresh_interval"] = strconv.FormatInt(s.opts.RefreshInterval.Milliseconds(), 10) + "ms"
	}
	if len(idx) == 0 {
		return nil
	}
	q := url.Values{"expand_wildcards": {"all"}, "allow_no_indices": {"true"}, "ignore_unavailable": {"true"}}
	_, err := s.do(ctx, http.MethodPut, "/"+s.index(c)+"/_settings", q, M{"index": idx})
	if err != nil && statusOf(err) != http.StatusNotFound {
		return fmt.Errorf("updating settings of %s: %w", c, err)
	}
	return nil
}

// updateLifecycles applies the configured retention to the existing data
// streams of a collection (templates only reach streams created later).
func (s *Store) updateLifecycles(ctx context.Context, c store.Collection) error {
	if s.noLifecycleAPI {
		return nil
	}
	streams, err := s.streams(ctx, c)
	if err != nil {
		return err
	}
	for _, ds := range streams {
		ret := s.opts.Retention[string(c)]
		for k, d := range s.opts.Retention {
			if kc, kd, found := strings.Cut(k, "/"); found && kc == string(c) && s.stream(c, kd) == ds.Name {
				ret = d
			}
		}
		_, err := s.do(ctx, http.MethodPut, "/_data_stream/"+ds.Name+"/_lifecycle", nil, lifecycle(ret))
		if statusOf(err) == http.StatusMethodNotAllowed || statusOf(err) == http.StatusBadRequest && noHandler(err) {
			s.log.Warn("this Elasticsearch has no data stream lifecycle API (no data-streams module): retention is only set in the index templates and is not enforced")
			s.noLifecycleAPI = true
			return nil
		}
		if err != nil {
			return fmt.Errorf("setting retention of %s: %w", ds.Name, err)
		}
	}
	return nil
}

type dataStream struct {
	Name    string   `json:"name"`
	Indices []string `json:"backing_indices"`
}

// streams lists the data streams of a time-series collection with their
// backing indices. It uses the resolve-index API of the server core, which
// every distribution has (the _data_stream APIs live in the data-streams
// module, missing from the integ-test distribution).
func (s *Store) streams(ctx context.Context, c store.Collection) ([]dataStream, error) {
	return s.resolveStreams(ctx, s.index(c))
}

func (s *Store) resolveStreams(ctx context.Context, pattern string) ([]dataStream, error) {
	body, err := s.do(ctx, http.MethodGet, "/_resolve/index/"+pattern, url.Values{"expand_wildcards": {"all"}}, nil)
	if err != nil {
		if statusOf(err) == http.StatusNotFound {
			return nil, nil
		}
		return nil, fmt.Errorf("listing data streams %s: %w", pattern, err)
	}
	var r struct {
		DataStreams []dataStream `json:"data_streams"`
	}
	if err := decode(body, &r); err != nil {
		return nil, fmt.Errorf("listing data streams %s: %w", pattern, err)
	}
	return r.DataStreams, nil
}

// Drop deletes every data stream, index and template of the store's prefix:
// all its data. Tests call it to clean up; it is also the way to remove a
// deployment.
func (s *Store) Drop(ctx context.Context) error {
	var errs []error
	// Data streams first (their backing indices go with them).
	streams, err := s.resolveStreams(ctx, s.prefix+"-*")
	if err != nil {
		errs = append(errs, err)
	}
	for _, ds := range streams {
		if !s.owns(ds.Name) {
			continue
		}
		_, err := s.do(ctx, http.MethodDelete, "/_data_stream/"+ds.Name, nil, nil)
		if statusOf(err) == http.StatusMethodNotAllowed || statusOf(err) == http.StatusBadRequest && noHandler(err) {
			// No data-streams module: the stream cannot be deleted, empty it.
			err = s.emptyStream(ctx, ds)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("deleting data stream %s: %w", ds.Name, err))
		}
	}
	// Plain indices, by name (wildcard deletes are refused by default).
	body, err := s.do(ctx, http.MethodGet, "/_cat/indices/"+s.prefix+"-*",
		url.Values{"h": {"index"}, "format": {"json"}, "expand_wildcards": {"all"}}, nil)
	if err == nil {
		var list []struct {
			Index string `json:"index"`
		}
		if err := decode(body, &list); err != nil {
			errs = append(errs, err)
		}
		for _, ix := range list {
			if !s.owns(ix.Index) {
				continue
			}
			if _, err := s.do(ctx, http.MethodDelete, "/"+ix.Index, nil, nil); err != nil && statusOf(err) != http.StatusNotFound {
				errs = append(errs, fmt.Errorf("deleting index %s: %w", ix.Index, err))
			}
		}
	} else if statusOf(err) != http.StatusNotFound {
		errs = append(errs, fmt.Errorf("listing indices: %w", err))
	}
	// Index templates, then the component templates they use.
	for _, kind := range []string{"_index_template", "_component_template"} {
		body, err := s.do(ctx, http.MethodGet, "/"+kind+"/"+s.prefix+"-*", nil, nil)
		if statusOf(err) == http.StatusNotFound {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("listing %s: %w", kind, err))
			continue
		}
		var r struct {
			IndexTemplates []struct {
				Name string `json:"name"`
			} `json:"index_templates"`
			ComponentTemplates []struct {
				Name string `json:"name"`
			} `json:"component_templates"`
		}
		if err := decode(body, &r); err != nil {
			errs = append(errs, err)
			continue
		}
		for _, t := range append(r.IndexTemplates, r.ComponentTemplates...) {
			if !s.owns(t.Name) {
				continue
			}
			_, err := s.do(ctx, http.MethodDelete, "/"+kind+"/"+t.Name, nil, nil)
			var e *esError
			if errors.As(err, &e) && strings.Contains(e.Reason, "in use by") {
				continue // by a data stream that could only be emptied
			}
			if err != nil && statusOf(err) != http.StatusNotFound {
				errs = append(errs, fmt.Errorf("deleting %s %s: %w", kind, t.Name, err))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("elastic: dropping %s: %w", s.prefix, errors.Join(errs...))
	}
	return nil
}

// owns reports whether a template, index or data stream name is one this
// store makes (and not, say, one of a longer prefix).
func (s *Store) owns(name string) bool {
	rest, ok := strings.CutPrefix(name, s.prefix+"-")
	if !ok {
		return false
	}
	if rest == "settings" {
		return true
	}
	for _, c := range store.Collections {
		if r, ok := strings.CutPrefix(rest, string(c)); ok && (r == "" || r[0] == '-') {
			return true
		}
	}
	return false
}

// nest turns {"a.b": x} into {"a": {"type": "object", "properties": {"b": x}}}.
func nest(flat M) M {
	out := M{}
	for name, v := range flat {
		parts := strings.Split(name, ".")
		props := out
		for _, p := range parts[:len(parts)-1] {
			child, ok := props[p].(M)
			if !ok {
				child = M{"type": "object", "properties": M{}}
				props[p] = child
			}
			props = child["properties"].(M)
		}
		props[parts[len(parts)-1]] = v
	}
	return out
}

// noHandler reports whether Elasticsearch answered that it has no such API.
func noHandler(err error) bool {
	var e *esError
	return errors.As(err, &e) && (strings.Contains(e.Reason, "no handler found") || strings.Contains(e.Reason, "Incorrect HTTP method"))
}

// emptyStream deletes every document of a data stream, for Drop on a
// cluster that cannot delete data streams. A later Open with the same
// prefix finds the stream empty.
func (s *Store) emptyStream(ctx context.Context, ds dataStream) error {
	for range 100 {
		body, err := s.do(ctx, http.MethodPost, "/"+ds.Name+"/_search", nil,
			M{"size": 5000, "_source": false, "query": matchAll(), "track_total_hits": false})
		if err != nil {
			return err
		}
		var r struct {
			Hits struct {
				Hits []hit `json:"hits"`
			} `json:"hits"`
		}
		if err := decode(body, &r); err != nil {
			return err
		}
		if len(r.Hits.Hits) == 0 {
			return nil
		}
		var bulk bytes.Buffer
		for _, h := range r.Hits.Hits {
			line, _ := json.Marshal(M{"delete": M{"_index": h.Index, "_id": h.ID}})
			bulk.Write(line)
			bulk.WriteByte('\n')
		}
		if _, err := s.do(ctx, http.MethodPost, "/_bulk", url.Values{"refresh": {"true"}}, bulk.Bytes()); err != nil {
			return err
		}
	}
	return fmt.Errorf("still not empty")
}
