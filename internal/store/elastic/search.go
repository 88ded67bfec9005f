package elastic

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/query"
)

// filters returns the query DSL of a request: the tenant filter, the time
// range and the compiled query, all in filter context (no scoring).
func filters(sc store.Scope, sch store.Schema, src string, from, to time.Time) (M, error) {
	n, err := query.Compile(src, sch)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", store.ErrInvalid, err)
	}
	q, err := CompileQuery(n)
	if err != nil {
		return nil, err
	}
	var list []M
	if !sc.Regional() {
		list = append(list, M{"term": M{store.TenantField: M{"value": sc.Tenant()}}})
	}
	if !from.IsZero() || !to.IsZero() {
		if sch.TimeField == "" {
			return nil, fmt.Errorf("%w: the collection has no time field for a time range", store.ErrInvalid)
		}
		list = append(list, timeRange(sch.TimeField, from, to))
	}
	if _, all := q["match_all"]; !all || len(list) == 0 {
		list = append(list, q)
	}
	if len(list) == 1 {
		return list[0], nil
	}
	return M{"bool": M{"filter": list}}, nil
}

// sortClause checks the sort fields and adds the id tiebreak. With no sort
// fields, documents come newest first on the time field, then by id.
func sortClause(sch store.Schema, sorts []store.SortField) ([]M, error) {
	if len(sorts) == 0 && sch.TimeField != "" {
		sorts = []store.SortField{{Field: sch.TimeField, Desc: true}}
	}
	out := make([]M, 0, len(sorts)+1)
	for _, sf := range sorts {
		f, ok := sch.Field(sf.Field)
		if !ok {
			return nil, fmt.Errorf("%w: cannot sort on unknown field %q", store.ErrInvalid, sf.Field)
		}
		if f.Type == event.Text {
			return nil, fmt.Errorf("%w: cannot sort on text field %q", store.ErrInvalid, sf.Field)
		}
		// Documents without the field come last in both directions.
		order := "asc"
		if sf.Desc {
			order = "desc"
		}
		sm := M{"order": order, "missing": "_last"}
		if f.Array {
			sm["mode"] = map[bool]string{false: "min", true: "max"}[sf.Desc]
		}
		out = append(out, M{sf.Field: sm})
	}
	return append(out, M{idField: M{"order": "asc"}}), nil
}

// Search runs a query in the scope.
func (s *Store) Search(ctx context.Context, sc store.Scope, c store.Collection, r store.SearchRequest) (store.SearchResult, error) {
	sch, err := s.begin(sc, c)
	if err != nil {
		return store.SearchResult{}, fmt.Errorf("elastic: searching %s: %w", c, err)
	}
	body, err := searchBody(sc, sch, r)
	if err != nil {
		return store.SearchResult{}, fmt.Errorf("elastic: searching %s: %w", c, err)
	}
	res, err := s.do(ctx, http.MethodPost, "/"+s.index(c)+"/_search", searchParams(), body)
	if err != nil {
		return store.SearchResult{}, fmt.Errorf("elastic: searching %s: %w", c, err)
	}
	var sr struct {
		Hits struct {
			Total struct {
				Value int64 `json:"value"`
			} `json:"total"`
			Hits []hit `json:"hits"`
		} `json:"hits"`
	}
	if err := decode(res, &sr); err != nil {
		return store.SearchResult{}, fmt.Errorf("elastic: searching %s: %w", c, err)
	}
	out := store.SearchResult{Total: sr.Hits.Total.Value, Docs: make([]store.Doc, 0, len(sr.Hits.Hits))}
	for _, h := range sr.Hits.Hits {
		d, err := h.doc()
		if err != nil {
			return store.SearchResult{}, fmt.Errorf("elastic: searching %s: %w", c, err)
		}
		if !sc.Allows(d.Tenant) { // the filter makes this impossible; belt and braces
			return store.SearchResult{}, fmt.Errorf("elastic: searching %s: document %s of tenant %q escaped the scope filter", c, d.ID, d.Tenant)
		}
		out.Docs = append(out.Docs, d)
	}
	return out, nil
}

func searchParams() map[string][]string {
	return map[string][]string{"ignore_unavailable": {"true"}, "allow_no_indices": {"true"}}
}

// searchBody builds the body of a search request.
func searchBody(sc store.Scope, sch store.Schema, r store.SearchRequest) (M, error) {
	size := r.Size
	if size == 0 {
		size = store.DefaultPage
	}
	if size < 0 || size > store.MaxPage || r.Offset < 0 || r.Offset+size > store.MaxWindow {
		return nil, fmt.Errorf("%w: page size %d at offset %d is outside 1..%d and a window of %d", store.ErrInvalid, r.Size, r.Offset, store.MaxPage, store.MaxWindow)
	}
	q, err := filters(sc, sch, r.Query, r.From, r.To)
	if err != nil {
		return nil, err
	}
	sorts, err := sortClause(sch, r.Sort)
	if err != nil {
		return nil, err
	}
	return M{
		"query":               q,
		"sort":                sorts,
		"size":                size,
		"from":                r.Offset,
		"track_total_hits":    true,
		"seq_no_primary_term": true,
	}, nil
}

// Aggregate counts matching documents by field value or by time.
func (s *Store) Aggregate(ctx context.Context, sc store.Scope, c store.Collection, r store.AggRequest) (store.AggResult, error) {
	sch, err := s.begin(sc, c)
	if err != nil {
		return store.AggResult{}, fmt.Errorf("elastic: aggregating %s: %w", c, err)
	}
	body, ftype, err := aggBody(sc, sch, r)
	if err != nil {
		return store.AggResult{}, fmt.Errorf("elastic: aggregating %s: %w", c, err)
	}
	res, err := s.do(ctx, http.MethodPost, "/"+s.index(c)+"/_search", searchParams(), body)
	if err != nil {
		return store.AggResult{}, fmt.Errorf("elastic: aggregating %s: %w", c, err)
	}
	var ar struct {
		Hits struct {
			Total struct {
				Value int64 `json:"value"`
			} `json:"total"`
		} `json:"hits"`
		Aggregations struct {
			A struct {
				Buckets []struct {
					Key         json.RawMessage `json:"key"`
					KeyAsString *string         `json:"key_as_string"`
					DocCount    int64           `json:"doc_count"`
				} `json:"buckets"`
			} `json:"a"`
		} `json:"aggregations"`
	}
	if err := decode(res, &ar); err != nil {
		return store.AggResult{}, fmt.Errorf("elastic: aggregating %s: %w", c, err)
	}
	out := store.AggResult{Total: ar.Hits.Total.Value, Buckets: make([]store.Bucket, 0, len(ar.Aggregations.A.Buckets))}
	for _, b := range ar.Aggregations.A.Buckets {
		var bk store.Bucket
		bk.Count = b.DocCount
		key := string(b.Key)
		if len(b.Key) > 0 && b.Key[0] == '"' {
			if err := json.Unmarshal(b.Key, &key); err != nil {
				return store.AggResult{}, fmt.Errorf("elastic: aggregating %s: bucket key: %w", c, err)
			}
		}
		if r.Histogram != nil {
			ms, err := strconv.ParseInt(key, 10, 64)
			if err != nil {
				return store.AggResult{}, fmt.Errorf("elastic: aggregating %s: bucket key %q: %w", c, b.Key, err)
			}
			bk.Time = time.UnixMilli(ms).UTC()
			bk.Key = bk.Time.Format(time.RFC3339)
		} else {
			bk.Key = termKey(ftype, key, b.KeyAsString)
		}
		out.Buckets = append(out.Buckets, bk)
	}
	return out, nil
}

// termKey formats a terms bucket key as store.Bucket documents.
func termKey(t event.Type, key string, asString *string) string {
	switch t {
	case event.Bool:
		if asString != nil {
			return *asString
		}
		if key == "1" {
			return "true"
		}
		return "false"
	case event.IP:
		if asString != nil {
			return *asString
		}
	case event.Long:
		if i, err := strconv.ParseInt(key, 10, 64); err == nil {
			return strconv.FormatInt(i, 10)
		}
		if f, err := strconv.ParseFloat(key, 64); err == nil {
			return strconv.FormatFloat(f, 'f', -1, 64)
		}
	case event.Double:
		if f, err := strconv.ParseFloat(key, 64); err == nil {
			return strconv.FormatFloat(f, 'f', -1, 64)
		}
	}
	return key
}

// aggBody builds the body of an aggregation and returns the field type.
func aggBody(sc store.Scope, sch store.Schema, r store.AggRequest) (M, event.Type, error) {
	if (r.Terms == nil) == (r.Histogram == nil) {
		return nil, "", fmt.Errorf("%w: exactly one of Terms and Histogram must be set", store.ErrInvalid)
	}
	q, err := filters(sc, sch, r.Query, r.From, r.To)
	if err != nil {
		return nil, "", err
	}
	var agg M
	var ftype event.Type
	if t := r.Terms; t != nil {
		f, ok := sch.Field(t.Field)
		if !ok {
			return nil, "", fmt.Errorf("%w: cannot aggregate on unknown field %q", store.ErrInvalid, t.Field)
		}
		switch f.Type {
		case event.Keyword, event.IP, event.Long, event.Double, event.Bool:
		default:
			return nil, "", fmt.Errorf("%w: cannot count terms of %s field %q", store.ErrInvalid, f.Type, t.Field)
		}
		size := t.Size
		if size == 0 {
			size = 10
		}
		if size < 0 || size > 1000 {
			return nil, "", fmt.Errorf("%w: terms size %d is outside 1..1000", store.ErrInvalid, t.Size)
		}
		ftype = f.Type
		agg = M{"terms": M{
			"field":      t.Field,
			"size":       size,
			"shard_size": max(size*10, 1000), // exact counts on the few shards of a collection
			"order":      []M{{"_count": "desc"}, {"_key": "asc"}},
		}}
	} else {
		h := r.Histogram
		f, ok := sch.Field(h.Field)
		if !ok {
			return nil, "", fmt.Errorf("%w: cannot aggregate on unknown field %q", store.ErrInvalid, h.Field)
		}
		if f.Type != event.Date {
			return nil, "", fmt.Errorf("%w: histogram on %s field %q: want a date field", store.ErrInvalid, f.Type, h.Field)
		}
		if h.Interval < time.Second || h.Interval%time.Second != 0 || h.Interval/time.Second > math.MaxInt32 {
			return nil, "", fmt.Errorf("%w: histogram interval %s is not a whole number of seconds", store.ErrInvalid, h.Interval)
		}
		ftype = f.Type
		agg = M{"date_histogram": M{
			"field":          h.Field,
			"fixed_interval": strconv.FormatInt(int64(h.Interval/time.Second), 10) + "s",
			"min_doc_count":  1,
			"time_zone":      "UTC",
			"offset":         "+0s",
		}}
	}
	return M{
		"query":            q,
		"size":             0,
		"track_total_hits": true,
		"aggs":             M{"a": agg},
	}, ftype, nil
}
