package elastic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/store"
)

// pitCounter passes requests to Elasticsearch and adds up, from its
// answers, the shard contexts that point-in-time opens created and that
// point-in-time closes freed.
type pitCounter struct {
	rt             http.RoundTripper
	mu             sync.Mutex
	opened, freed  int
	searches, pits int
}

func (p *pitCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := p.rt.RoundTrip(req)
	if err != nil || res.StatusCode != http.StatusOK {
		return res, err
	}
	path := req.URL.Path
	if !strings.HasSuffix(path, "/_pit") && path != "/_search" {
		return res, nil
	}
	body, err := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if err != nil {
		return nil, err
	}
	res.Body = io.NopCloser(bytes.NewReader(body))
	var r struct {
		PIT    string `json:"pit_id"`
		Shards struct {
			Total int `json:"total"`
		} `json:"_shards"`
		Freed int `json:"num_freed"`
	}
	_ = json.Unmarshal(body, &r)
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case req.Method == http.MethodPost && path != "/_search":
		p.opened += r.Shards.Total
		p.pits++
	case req.Method == http.MethodDelete:
		p.freed += r.Freed
	case r.PIT != "":
		p.searches++
	}
	return res, nil
}

func (p *pitCounter) counts() (opened, freed, pits, searches int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.opened, p.freed, p.pits, p.searches
}

// TestScanPointInTime checks, from Elasticsearch's own answers, that every
// scan opens one point in time and frees it however it ends (complete,
// stopped by the callback, cancelled), and that a scan of events spans the
// data streams of several datasets.
func TestScanPointInTime(t *testing.T) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	pc := &pitCounter{rt: tr}
	t.Cleanup(tr.CloseIdleConnections)
	s := openTest(t, Options{Transport: pc, Retention: map[string]time.Duration{"events/sshd": 24 * time.Hour}})
	ctx := ctxT(t)

	const n = 25
	for _, c := range []store.Collection{store.Intel, store.Events} {
		w, err := s.Bulk(store.RegionalScope(), c, store.BulkOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			d := store.Doc{ID: fmt.Sprintf("d%02d", i), Tenant: "t1", Source: json.RawMessage(fmt.Sprintf(`{"type":"domain","value":"x%d.example"}`, i))}
			if c == store.Events {
				d = testEvent(d.ID, "t1", []string{"sshd", "nginx.access"}[i%2])
			}
			if err := w.Add(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.Refresh(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	streams, err := s.streams(ctx, store.Events)
	if err != nil || len(streams) != 2 {
		t.Fatalf("event data streams: %+v %v, want sshd's and the default", streams, err)
	}

	stop := errors.New("stop")
	for _, tc := range []struct {
		name     string
		c        store.Collection
		shards   int // shard contexts of the point in time
		searches int
		fn       func(cancel context.CancelFunc, seen int) error
		want     error
		seen     int
	}{
		{"complete", store.Intel, 1, 3, func(context.CancelFunc, int) error { return nil }, nil, n},
		{"data streams", store.Events, 2, 3, func(context.CancelFunc, int) error { return nil }, nil, n},
		{"stopped by the callback", store.Intel, 1, 2, func(_ context.CancelFunc, seen int) error {
			if seen == 12 {
				return stop
			}
			return nil
		}, stop, 12},
		{"cancelled", store.Events, 2, 1, func(cancel context.CancelFunc, seen int) error {
			if seen == 3 {
				cancel()
			}
			return nil
		}, context.Canceled, 10},
	} {
		opened0, freed0, pits0, searches0 := pc.counts()
		cctx, cancel := context.WithCancel(ctx)
		seen := 0
		err := s.Scan(cctx, store.RegionalScope(), tc.c, store.ScanRequest{PageSize: 10}, func(store.Doc) error {
			seen++
			return tc.fn(cancel, seen)
		})
		cancel()
		if !errors.Is(err, tc.want) || seen != tc.seen {
			t.Errorf("%s: Scan returned %v after %d documents, want %v after %d", tc.name, err, seen, tc.want, tc.seen)
		}
		opened, freed, pits, searches := pc.counts()
		if pits-pits0 != 1 || opened-opened0 != tc.shards || freed-freed0 != tc.shards || searches-searches0 != tc.searches {
			t.Errorf("%s: %d points in time opened on %d shards, %d shard contexts freed, %d searches; want 1 on %d, %d freed, %d searches",
				tc.name, pits-pits0, opened-opened0, freed-freed0, searches-searches0, tc.shards, tc.shards, tc.searches)
		}
	}
}
