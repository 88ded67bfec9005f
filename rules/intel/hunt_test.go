package intel

import (
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/query"
	"github.com/csirt-toscana/platform/internal/store/sqlite"
)

func TestHuntQueryCompiles(t *testing.T) {
	schema, err := store.SchemaOf(store.Events)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		typ   Type
		value string
	}{
		{IPv4, "192.0.2.1"}, {IPv6, "2001:db8::1"}, {CIDR, "10.0.0.0/8"}, {CIDR, "2001:db8::/32"},
		{Domain, "evil.com"}, {Domain, "-odd_name.example"}, {URL, `http://x.example/a"b\c?d=(1)`},
	} {
		ind := mustNew(t, c.typ, c.value)
		q, ok := ind.HuntQuery()
		if !ok {
			t.Errorf("%s %s: no hunt query", c.typ, c.value)
			continue
		}
		if _, err := query.Compile(q, schema); err != nil {
			t.Errorf("%s %s: query %q does not compile: %v", c.typ, c.value, q, err)
		}
	}
	for _, typ := range []Type{MD5, Email} {
		v := map[Type]string{MD5: strings.Repeat("a", 32), Email: "a@example.com"}[typ]
		ind := mustNew(t, typ, v)
		if q, ok := ind.HuntQuery(); ok {
			t.Errorf("%s: hunt query %q, but the events schema has no field for it", typ, q)
		}
	}
	long := mustNew(t, URL, "http://x.example/"+strings.Repeat("a", 5000))
	if _, ok := long.HuntQuery(); ok {
		t.Error("a query over the query length limit was returned")
	}
}

// A retro-hunt on the embedded store: a new indicator finds the event
// stored an hour earlier (and not the others), and indicator documents are
// searchable in the intel collection by the schema's fields.
func TestHuntOnSQLiteStore(t *testing.T) {
	ctx := context.Background()
	log := logrus.New()
	log.SetOutput(io.Discard)
	st, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(t.TempDir(), "store.db"), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now().UTC().Truncate(time.Second)
	tenant := "comune-di-lucca"
	put := func(id string, at time.Time, fields map[string]any) {
		ev := event.Event{"@timestamp": at, "event.id": id, "event.ingested": at, "event.kind": "event", "event.category": []string{"network"},
			"event.type": []string{"connection"}, "event.dataset": "flow", "organization.id": tenant, "agent.id": "a1", "host.name": "h1"}
		for k, v := range fields {
			ev[k] = v
		}
		src, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Put(ctx, store.TenantScope(tenant), store.Events, store.Doc{ID: id, Tenant: tenant, Source: src}, store.WriteOptions{Refresh: store.RefreshWait}); err != nil {
			t.Fatal(err)
		}
	}
	put("ev-hit-ip", now.Add(-time.Hour), map[string]any{"source.ip": "10.1.1.1", "destination.ip": "198.51.100.7", "related.ip": []string{"10.1.1.1", "198.51.100.7"}})
	put("ev-hit-dns", now.Add(-time.Hour), map[string]any{"event.dataset": "dns", "source.ip": "10.1.1.2", "dns.question.name": "mail.evil.com"})
	put("ev-miss", now.Add(-time.Hour), map[string]any{"source.ip": "10.1.1.3", "destination.ip": "198.51.101.7", "dns.question.name": "notevil.com"})
	put("ev-old", now.Add(-40*24*time.Hour), map[string]any{"source.ip": "10.1.1.4", "destination.ip": "198.51.100.8"})

	hunt := func(ind Indicator) []string {
		q, ok := ind.HuntQuery()
		if !ok {
			t.Fatalf("no hunt query for %s", ind.Value)
		}
		res, err := st.Search(ctx, store.RegionalScope(), store.Events, store.SearchRequest{Query: q, From: now.Add(-7 * 24 * time.Hour)})
		if err != nil {
			t.Fatalf("search %q: %v", q, err)
		}
		var ids []string
		for _, d := range res.Docs {
			ids = append(ids, d.ID)
		}
		slices.Sort(ids)
		return ids
	}
	if got := hunt(mustNew(t, IPv4, "198.51.100.7")); !slices.Equal(got, []string{"ev-hit-ip"}) {
		t.Errorf("IP hunt = %v", got)
	}
	if got := hunt(mustNew(t, CIDR, "198.51.100.0/24")); !slices.Equal(got, []string{"ev-hit-ip"}) {
		t.Errorf("CIDR hunt (the 40-day-old event is outside the 7-day window) = %v", got)
	}
	if got := hunt(mustNew(t, Domain, "evil.com")); !slices.Equal(got, []string{"ev-hit-dns"}) {
		t.Errorf("domain hunt = %v", got)
	}

	// Indicator documents in the intel collection.
	inds, _, err := ParseCSV(strings.NewReader("type,value,tags,tlp\nip,198.51.100.7,c2,amber\ncidr,203.0.113.0/24,hosting,green\ndomain,evil.com,phishing,clear\n"),
		Options{Source: "local", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	for i := range inds {
		d, err := inds[i].Doc()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Put(ctx, store.RegionalScope(), store.Intel, d, store.WriteOptions{Refresh: store.RefreshWait}); err != nil {
			t.Fatalf("put %s: %v", inds[i].Value, err)
		}
		// A refresh writes the same ids again: no duplicates.
		if _, err := st.Put(ctx, store.RegionalScope(), store.Intel, d, store.WriteOptions{Refresh: store.RefreshWait}); err != nil {
			t.Fatal(err)
		}
	}
	for q, want := range map[string]int{"ip:198.51.100.0/24": 1, "type:cidr": 1, "tags:phishing AND tlp:clear": 1, "source:local": 3, "value:evil.com": 1} {
		res, err := st.Search(ctx, store.RegionalScope(), store.Intel, store.SearchRequest{Query: q})
		if err != nil || res.Total != int64(want) {
			t.Errorf("intel search %q: %d, %v; want %d", q, res.Total, err, want)
		}
	}
	d, err := st.Get(ctx, store.RegionalScope(), store.Intel, inds[2].ID())
	if err != nil {
		t.Fatal(err)
	}
	back, err := FromDoc(d)
	if err != nil || back.Value != "evil.com" || back.TLP != TLPClear {
		t.Errorf("FromDoc after the store: %+v %v", back, err)
	}
}
