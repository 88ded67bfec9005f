package elastic

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/csirt-toscana/platform/internal/store"
)

// defaultScanKeepAlive is how long a scan's point in time lives between
// two pages when Options.ScanKeepAlive is zero.
const defaultScanKeepAlive = time.Minute

// pitCloseTimeout bounds the request that closes a scan's point in time,
// which runs even when the scan's context has ended.
const pitCloseTimeout = 10 * time.Second

// Scan reads every matching document through a point in time (PIT) and
// search_after on _shard_doc, the cheapest sort Elasticsearch offers for a
// full read: pages follow one another without the from+size window, and
// every page sees the snapshot of the collection taken when the PIT was
// opened, so that documents written during the scan are never seen and
// none is seen twice. On a data stream (events, findings) the PIT covers
// the backing indices that exist when it opens.
//
// Each page renews the PIT for Options.ScanKeepAlive (default 1 min): fn
// may spend that long on one page before the PIT expires and the next page
// fails. The PIT is closed when the scan ends, whether it completes, fails,
// is stopped by fn or by its context.
func (s *Store) Scan(ctx context.Context, sc store.Scope, c store.Collection, r store.ScanRequest, fn func(store.Doc) error) error {
	sch, err := s.begin(sc, c)
	if err != nil {
		return fmt.Errorf("elastic: scanning %s: %w", c, err)
	}
	if fn == nil {
		return fmt.Errorf("elastic: scanning %s: %w: no callback", c, store.ErrInvalid)
	}
	size, err := r.Page()
	if err != nil {
		return fmt.Errorf("elastic: scanning %s: %w", c, err)
	}
	q, err := filters(sc, sch, r.Query, r.From, r.To)
	if err != nil {
		return fmt.Errorf("elastic: scanning %s: %w", c, err)
	}
	keepAlive := keepAliveString(s.opts.ScanKeepAlive)
	pit, err := s.openPIT(ctx, c, keepAlive)
	if err != nil {
		return fmt.Errorf("elastic: scanning %s: %w", c, err)
	}
	defer func() { s.closePIT(ctx, c, pit) }()

	var after []json.RawMessage
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		body := M{
			"pit":                 M{"id": pit, "keep_alive": keepAlive},
			"query":               q,
			"sort":                []M{{"_shard_doc": "asc"}},
			"size":                size,
			"track_total_hits":    false,
			"seq_no_primary_term": true,
		}
		if after != nil {
			body["search_after"] = after
		}
		res, err := s.do(ctx, http.MethodPost, "/_search", url.Values{"allow_partial_search_results": {"false"}}, body)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if pitGone(err) {
				return fmt.Errorf("elastic: scanning %s: the point in time expired between two pages (the callback spent more than %s on one page; make it faster or raise Options.ScanKeepAlive): %w", c, keepAlive, err)
			}
			return fmt.Errorf("elastic: scanning %s: %w", c, err)
		}
		var sr struct {
			PIT      string `json:"pit_id"`
			TimedOut bool   `json:"timed_out"`
			Shards   struct {
				Total  int `json:"total"`
				Failed int `json:"failed"`
			} `json:"_shards"`
			Hits struct {
				Hits []scanHit `json:"hits"`
			} `json:"hits"`
		}
		if err := decode(res, &sr); err != nil {
			return fmt.Errorf("elastic: scanning %s: %w", c, err)
		}
		if sr.PIT != "" {
			pit = sr.PIT // the id may change from page to page: always use the newest
		}
		if sr.Shards.Failed > 0 || sr.TimedOut {
			return fmt.Errorf("elastic: scanning %s: %d of %d shards failed or timed out; the scan is incomplete, retry it", c, sr.Shards.Failed, sr.Shards.Total)
		}
		for _, h := range sr.Hits.Hits {
			d, err := h.doc()
			if err != nil {
				return fmt.Errorf("elastic: scanning %s: %w", c, err)
			}
			if !sc.Allows(d.Tenant) { // the filter makes this impossible; belt and braces
				return fmt.Errorf("elastic: scanning %s: document %s of tenant %q escaped the scope filter", c, d.ID, d.Tenant)
			}
			if err := fn(d); err != nil {
				return err
			}
		}
		if len(sr.Hits.Hits) < size {
			return nil
		}
		after = sr.Hits.Hits[len(sr.Hits.Hits)-1].Sort
		if len(after) == 0 {
			return fmt.Errorf("elastic: scanning %s: a hit came without its sort values; cannot ask for the next page", c)
		}
	}
}

// scanHit is a hit of a PIT search with its sort values, which the next
// page's search_after takes back verbatim (a _shard_doc value is a 64-bit
// integer that a float64 could round).
type scanHit struct {
	hit
	Sort []json.RawMessage `json:"sort"`
}

// openPIT opens a point in time on the collection's index or data streams.
// A missing index gives an empty PIT, as a search ignores it.
func (s *Store) openPIT(ctx context.Context, c store.Collection, keepAlive string) (string, error) {
	q := url.Values(searchParams())
	q.Set("keep_alive", keepAlive)
	res, err := s.do(ctx, http.MethodPost, "/"+s.index(c)+"/_pit", q, nil)
	if err != nil {
		return "", fmt.Errorf("opening a point in time: %w", err)
	}
	var r struct {
		ID string `json:"id"`
	}
	if err := decode(res, &r); err != nil {
		return "", fmt.Errorf("opening a point in time: %w", err)
	}
	if r.ID == "" {
		return "", fmt.Errorf("opening a point in time: the answer has no id")
	}
	return r.ID, nil
}

// closePIT releases a point in time. It runs after the scan, also when the
// scan's context has ended, with a context of its own; a failure is only
// logged, since the PIT expires by itself after its keep-alive.
func (s *Store) closePIT(ctx context.Context, c store.Collection, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pitCloseTimeout)
	defer cancel()
	res, err := s.do(ctx, http.MethodDelete, "/_pit", nil, M{"id": id})
	if err != nil {
		if statusOf(err) == http.StatusNotFound { // already expired
			return
		}
		s.log.WithError(err).WithField("collection", c).Warn("closing a scan's point in time failed; it expires after its keep-alive")
		return
	}
	var r struct {
		Succeeded bool `json:"succeeded"`
		Freed     int  `json:"num_freed"`
	}
	if err := decode(res, &r); err == nil && !r.Succeeded {
		s.log.WithField("collection", c).Debug("a scan's point in time was already gone when closed")
	}
}

// pitGone reports whether err says the point in time no longer exists.
func pitGone(err error) bool {
	return statusOf(err) == http.StatusNotFound || strings.Contains(err.Error(), "search_context_missing")
}

// keepAliveString is a keep-alive in Elasticsearch's time units.
func keepAliveString(d time.Duration) string {
	if d <= 0 {
		d = defaultScanKeepAlive
	}
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return strconv.FormatInt(max(d.Milliseconds(), 1), 10) + "ms"
}
