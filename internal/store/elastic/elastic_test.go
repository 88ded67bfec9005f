package elastic

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/storetest"
	"github.com/csirt-toscana/platform/internal/testenv"
)

// openTest opens a store on the real Elasticsearch with a prefix unique to
// this run and drops everything it made when the test ends.
func openTest(t testing.TB, o Options) *Store {
	t.Helper()
	o.Addresses = []string{testenv.Elasticsearch(t)}
	if o.IndexPrefix == "" {
		// Stable per test: on a node without the data-streams module a
		// data stream cannot be deleted, only emptied, so the next run
		// reuses it instead of adding one more.
		h := fnv.New32a()
		h.Write([]byte(t.Name()))
		o.IndexPrefix = lockPrefix(t, o.Addresses[0], fmt.Sprintf("test-%08x", h.Sum32()))
	}
	zero := 0
	o.Replicas = &zero
	if o.RefreshInterval == 0 {
		o.RefreshInterval = 100 * time.Millisecond // RefreshWait writes wait for it
	}
	if o.Logger == nil {
		l := logrus.New()
		l.SetLevel(logrus.WarnLevel)
		o.Logger = l
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := Open(ctx, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := s.Drop(ctx); err != nil { // what a crashed run left
		t.Fatalf("Drop: %v", err)
	}
	if s, err = Open(ctx, o); err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := s.Drop(ctx); err != nil {
			t.Errorf("Drop: %v", err)
		}
	})
	return s
}

// lockPrefix returns base-N for the first slot N that no other test
// process holds, so that runs sharing a node (developers side by side) do
// not empty each other's data streams. A lock is a document of the index
// csirt-test-locks; one older than 30 minutes is stale.
func lockPrefix(t testing.TB, es, base string) string {
	t.Helper()
	call := func(method, path string, body string) (int, []byte) {
		req, err := http.NewRequest(method, es+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("locking a test prefix: %v", err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, b
	}
	for slot := 0; slot < 50; slot++ {
		p := fmt.Sprintf("%s-%d", base, slot)
		status, _ := call(http.MethodPut, "/csirt-test-locks/_doc/"+p+"?op_type=create&refresh=true",
			fmt.Sprintf(`{"at":%d}`, time.Now().Unix()))
		if status == http.StatusConflict {
			_, b := call(http.MethodGet, "/csirt-test-locks/_doc/"+p, "")
			var d struct {
				Seq    int64 `json:"_seq_no"`
				Term   int64 `json:"_primary_term"`
				Source struct {
					At int64 `json:"at"`
				} `json:"_source"`
			}
			if json.Unmarshal(b, &d) != nil || time.Since(time.Unix(d.Source.At, 0)) < 30*time.Minute {
				continue
			}
			status, _ = call(http.MethodPut, fmt.Sprintf("/csirt-test-locks/_doc/%s?if_seq_no=%d&if_primary_term=%d&refresh=true", p, d.Seq, d.Term),
				fmt.Sprintf(`{"at":%d}`, time.Now().Unix()))
		}
		if status == http.StatusOK || status == http.StatusCreated {
			t.Cleanup(func() { call(http.MethodDelete, "/csirt-test-locks/_doc/"+p+"?refresh=true", "") })
			return p
		}
	}
	t.Fatalf("no free test prefix for %s", base)
	return ""
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTest(t, Options{}) })
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func getJSON(t *testing.T, s *Store, path string, v any) {
	t.Helper()
	body, err := s.do(ctxT(t), http.MethodGet, path, nil, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

func testEvent(id, tenant, dataset string) store.Doc {
	return store.Doc{ID: id, Tenant: tenant, Source: json.RawMessage(fmt.Sprintf(
		`{"@timestamp":"2026-03-01T08:00:00.123456789Z","event":{"dataset":%q,"id":%q},"message":"hello","unknown_field":{"x":1}}`, dataset, id))}
}

type lifecycleAnswer struct {
	DataStreams []struct {
		Name      string `json:"name"`
		Lifecycle struct {
			Enabled       bool   `json:"enabled"`
			DataRetention string `json:"data_retention"`
		} `json:"lifecycle"`
	} `json:"data_streams"`
}

// retentionOf returns the data retention of a stream: its lifecycle when
// the node has the data stream lifecycle API, else what the templates give
// it (simulated; the integ-test distribution lacks the data-streams module).
func retentionOf(t *testing.T, s *Store, stream string) string {
	t.Helper()
	body, err := s.do(ctxT(t), http.MethodGet, "/_data_stream/"+stream+"/_lifecycle", nil, nil)
	if err == nil {
		var r lifecycleAnswer
		if err := json.Unmarshal(body, &r); err != nil || len(r.DataStreams) != 1 {
			t.Fatalf("lifecycle of %s: %s %v", stream, body, err)
		}
		return r.DataStreams[0].Lifecycle.DataRetention
	}
	if !noHandler(err) && statusOf(err) != http.StatusMethodNotAllowed {
		t.Fatalf("lifecycle of %s: %v", stream, err)
	}
	body, err = s.do(ctxT(t), http.MethodPost, "/_index_template/_simulate_index/"+stream, nil, nil)
	if err != nil {
		t.Fatalf("simulating %s: %v", stream, err)
	}
	var r struct {
		Template struct {
			Lifecycle struct {
				DataRetention string `json:"data_retention"`
			} `json:"lifecycle"`
		} `json:"template"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("simulating %s: %v", stream, err)
	}
	return r.Template.Lifecycle.DataRetention
}

// TestDataStreamsAndRetention checks the layout: data streams per dataset
// with a retention, the data stream lifecycle, explicit mappings, and that
// a second Open with another retention updates existing streams.
func TestDataStreamsAndRetention(t *testing.T) {
	o := Options{Retention: map[string]time.Duration{"events": 30 * 24 * time.Hour, "events/sshd": 365 * 24 * time.Hour}}
	s := openTest(t, o)
	ctx := ctxT(t)
	rw := store.WriteOptions{Refresh: store.RefreshWait}
	for _, d := range []store.Doc{testEvent("e1", "t1", "sshd"), testEvent("e2", "t1", "nginx.access")} {
		if _, err := s.Put(ctx, store.RegionalScope(), store.Events, d, rw); err != nil {
			t.Fatalf("Put %s: %v", d.ID, err)
		}
	}
	if _, err := s.Put(ctx, store.RegionalScope(), store.Findings, store.Doc{ID: "f1", Tenant: "t1",
		Source: json.RawMessage(`{"@timestamp":"2026-03-01T08:00:00Z","rule":{"id":"r1"}}`)}, rw); err != nil {
		t.Fatalf("Put finding: %v", err)
	}
	if got := retentionOf(t, s, s.prefix+"-events-sshd"); got != "365d" {
		t.Errorf("retention of the sshd stream: %q, want 365d", got)
	}
	if got := retentionOf(t, s, s.prefix+"-events-default"); got != "30d" {
		t.Errorf("retention of the default events stream: %q, want 30d", got)
	}
	if got := retentionOf(t, s, s.prefix+"-findings-default"); got != "" {
		t.Errorf("retention of findings: %q, want none", got)
	}

	// Mappings are the declared ones: unknown fields stay unmapped,
	// @timestamp keeps nanoseconds.
	var mp map[string]struct {
		Mappings struct {
			Dynamic    any            `json:"dynamic"`
			Properties map[string]any `json:"properties"`
		} `json:"mappings"`
	}
	getJSON(t, s, "/"+s.prefix+"-events-default/_mapping", &mp)
	if len(mp) == 0 {
		t.Fatal("no mapping for the default events stream")
	}
	for ix, m := range mp {
		if _, ok := m.Mappings.Properties["unknown_field"]; ok {
			t.Errorf("%s: unknown_field was mapped dynamically", ix)
		}
		if ts, _ := m.Mappings.Properties["@timestamp"].(map[string]any); ts["type"] != "date_nanos" {
			t.Errorf("%s: @timestamp is %v", ix, ts)
		}
		if fmt.Sprint(m.Mappings.Dynamic) != "false" {
			t.Errorf("%s: dynamic is %v", ix, m.Mappings.Dynamic)
		}
	}
	d, err := s.Get(ctx, store.RegionalScope(), store.Events, "e1")
	if err != nil {
		t.Fatalf("Get e1: %v", err)
	}
	var src map[string]any
	if err := json.Unmarshal(d.Source, &src); err != nil {
		t.Fatal(err)
	}
	if src["@timestamp"] != "2026-03-01T08:00:00.123456789Z" || src[idField] != nil {
		t.Errorf("stored source: %s", d.Source)
	}
	res, err := s.Search(ctx, store.RegionalScope(), store.Events, store.SearchRequest{Query: "@timestamp:2026-03-01T08:00:00.123456789Z"})
	if err != nil || res.Total != 2 {
		t.Errorf("nanosecond equality: %d hits, %v", res.Total, err)
	}
	res, err = s.Search(ctx, store.RegionalScope(), store.Events, store.SearchRequest{Query: "@timestamp:2026-03-01T08:00:00.123456788Z"})
	if err != nil || res.Total != 0 {
		t.Errorf("nanosecond inequality: %d hits, %v", res.Total, err)
	}

	// Reopen with other retentions: existing streams follow.
	o2 := s.opts
	o2.Retention = map[string]time.Duration{"events": 7 * 24 * time.Hour, "events/sshd": 48 * time.Hour, "findings": 14 * 24 * time.Hour}
	s2, err := Open(ctx, o2)
	if err != nil {
		t.Fatalf("second Open: %v", err)
	}
	if got := retentionOf(t, s2, s.prefix+"-events-sshd"); got != "2d" {
		t.Errorf("retention of the sshd stream after reopening: %q, want 2d", got)
	}
	if got := retentionOf(t, s2, s.prefix+"-events-default"); got != "7d" {
		t.Errorf("retention of the default stream after reopening: %q, want 7d", got)
	}
	if got := retentionOf(t, s2, s.prefix+"-findings-default"); got != "14d" {
		t.Errorf("retention of findings after reopening: %q, want 14d", got)
	}
	if _, err := s2.Get(ctx, store.RegionalScope(), store.Events, "e2"); err != nil {
		t.Errorf("Get after reopening: %v", err)
	}
}

// TestOCC checks if_seq_no/if_primary_term: of concurrent updates from one
// version exactly one wins.
func TestOCC(t *testing.T) {
	s := openTest(t, Options{})
	ctx := ctxT(t)
	sc := store.TenantScope("t1")
	inc := func(title string) json.RawMessage {
		return json.RawMessage(fmt.Sprintf(`{"created":"2026-03-01T08:00:00Z","title":%q,"status":"new"}`, title))
	}
	v0, err := s.Create(ctx, sc, store.Incidents, store.Doc{ID: "inc-1", Source: inc("a")}, store.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, sc, store.Incidents, store.Doc{ID: "inc-1", Source: inc("a")}, store.WriteOptions{}); !errors.Is(err, store.ErrExists) {
		t.Errorf("second Create: %v, want ErrExists", err)
	}
	var wins, conflicts atomic.Int64
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Update(ctx, sc, store.Incidents, store.Doc{ID: "inc-1", Version: v0, Source: inc(fmt.Sprint("w", i))}, store.WriteOptions{})
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, store.ErrConflict):
				conflicts.Add(1)
			default:
				t.Errorf("Update: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 || conflicts.Load() != 7 {
		t.Errorf("%d updates won and %d conflicted, want 1 and 7", wins.Load(), conflicts.Load())
	}
	if err := s.Delete(ctx, sc, store.Incidents, "inc-1", v0, store.WriteOptions{}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("Delete with a stale version: %v", err)
	}
	d, err := s.Get(ctx, sc, store.Incidents, "inc-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, store.TenantScope("t2"), store.Incidents, "inc-1", d.Version, store.WriteOptions{}); !errors.Is(err, store.ErrOutOfScope) {
		t.Errorf("Delete from another tenant: %v", err)
	}
	if err := s.Delete(ctx, sc, store.Incidents, "inc-1", d.Version, store.WriteOptions{}); err != nil {
		t.Errorf("Delete: %v", err)
	}
	if _, err := s.Update(ctx, sc, store.Incidents, store.Doc{ID: "inc-1", Version: d.Version, Source: inc("z")}, store.WriteOptions{}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Update after Delete: %v", err)
	}
}

// TestNoCrossTenantOverwrite: a tenant's Put or bulk write on an id that
// another tenant owns is refused, and retried time-series writes never
// duplicate.
func TestNoCrossTenantOverwrite(t *testing.T) {
	s := openTest(t, Options{})
	ctx := ctxT(t)
	rw := store.WriteOptions{Refresh: store.RefreshWait}
	c := store.Contacts
	if _, err := s.Put(ctx, store.TenantScope("t1"), c, store.Doc{ID: "c1", Source: json.RawMessage(`{"name":"A"}`)}, rw); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, store.TenantScope("t2"), c, store.Doc{ID: "c1", Source: json.RawMessage(`{"name":"B"}`)}, rw); !errors.Is(err, store.ErrOutOfScope) {
		t.Errorf("Put over another tenant's document: %v", err)
	}
	w, err := s.Bulk(store.TenantScope("t2"), c, store.BulkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(ctx, store.Doc{ID: "c1", Source: json.RawMessage(`{"name":"B"}`)}); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(ctx, store.Doc{ID: "c2", Source: json.RawMessage(`{"name":"B"}`)}); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(ctx); !errors.Is(err, store.ErrOutOfScope) {
		t.Errorf("bulk Put over another tenant's document: %v", err)
	}
	if err := w.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	d, err := s.Get(ctx, store.RegionalScope(), c, "c1")
	if err != nil || d.Tenant != "t1" {
		t.Errorf("c1 is %+v, %v", d, err)
	}
	if _, err := s.Get(ctx, store.TenantScope("t2"), c, "c2"); err != nil {
		t.Errorf("c2: %v", err)
	}

	// Events: the same id twice is one document with one version.
	ev := testEvent("ev1", "t1", "sshd")
	v1, err := s.Put(ctx, store.TenantScope("t1"), store.Events, ev, rw)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := s.Put(ctx, store.TenantScope("t1"), store.Events, ev, rw)
	if err != nil || v2 != v1 {
		t.Errorf("second Put: %v %v, want %v", v2, err, v1)
	}
	if _, err := s.Put(ctx, store.TenantScope("t2"), store.Events, testEvent("ev1", "t2", "sshd"), rw); !errors.Is(err, store.ErrOutOfScope) {
		t.Errorf("Put of another tenant's event id: %v", err)
	}
	res, err := s.Search(ctx, store.RegionalScope(), store.Events, store.SearchRequest{})
	if err != nil || res.Total != 1 {
		t.Errorf("events after duplicate Puts: %d, %v", res.Total, err)
	}
}

// BenchmarkBulk measures bulk writes of 1 KB events (events/s).
func BenchmarkBulk(b *testing.B) {
	// The production refresh interval, not the tests' short one.
	storetest.BenchBulk(b, func(b *testing.B) store.Store { return openTest(b, Options{RefreshInterval: time.Second}) })
}

// BenchmarkScan reads 100,000 intel documents with Scan: a point in time
// and search_after in pages of 1,000 (docs/s, pages).
func BenchmarkScan(b *testing.B) {
	storetest.BenchScan(b, func(b *testing.B) store.Store { return openTest(b, Options{RefreshInterval: time.Second}) }, 100_000)
}
