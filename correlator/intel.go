package correlator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/csirt-toscana/platform/internal/config"
	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/finding"
	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/rules/intel"
)

// Feed limits.
const (
	feedTimeout      = 2 * time.Minute
	feedMaxBytes     = 256 << 20
	taxiiMaxPages    = 1000
	mispFeedMaxEvent = 64 << 20
)

// IntelOptions configure the intelligence manager.
type IntelOptions struct {
	Store store.Store
	Feeds []config.Feed
	// RetroHunt is how far back new indicators are searched in the stored
	// events; 0 disables retro-hunting.
	RetroHunt time.Duration
	// Publish makes retro-hunt findings durable (store and findings topic).
	Publish func(ctx context.Context, fs []*finding.Finding) error
	// Client fetches HTTP feeds; default a client with a 2-minute timeout.
	Client *http.Client
	Now    func() time.Time
	Logger logrus.FieldLogger
}

// Intel keeps the indicator matcher current: it fetches the configured
// feeds on their schedule into the store's intel collection (regional
// tenant, deterministic ids), rebuilds the matcher when the collection
// changes and swaps it into the Holder, and retro-hunts new indicators in
// the stored events.
type Intel struct {
	o      IntelOptions
	holder *intel.Holder
	log    logrus.FieldLogger

	mu        sync.Mutex
	known     map[string]bool // indicator ids in the current matcher
	print     string          // fingerprint of the collection at the last load
	loaded    bool
	lastFetch map[string]time.Time
}

// NewIntel returns a manager with an empty matcher.
func NewIntel(o IntelOptions) *Intel {
	if o.Client == nil {
		o.Client = &http.Client{Timeout: feedTimeout}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = logrus.New()
	}
	return &Intel{o: o, holder: intel.NewHolder(nil), log: o.Logger.WithField("component", "correlator.intel"),
		known: map[string]bool{}, lastFetch: map[string]time.Time{}}
}

// Holder returns the matcher holder the detection reads.
func (m *Intel) Holder() *intel.Holder { return m.holder }

// Run fetches due feeds and refreshes the matcher every tick until ctx ends.
func (m *Intel) Run(ctx context.Context, tick time.Duration) error {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		if _, err := m.Refresh(ctx); err != nil && ctx.Err() == nil {
			m.log.WithError(err).Warn("refreshing the indicator matcher failed; keeping the previous one")
		}
		for _, f := range m.o.Feeds {
			m.mu.Lock()
			due := m.o.Now().Sub(m.lastFetch[f.Name]) >= f.Interval.D()
			m.mu.Unlock()
			if !due {
				continue
			}
			n, err := m.FetchFeed(ctx, f)
			m.mu.Lock()
			m.lastFetch[f.Name] = m.o.Now()
			m.mu.Unlock()
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				m.log.WithError(err).WithField("feed", f.Name).Warn("fetching a threat-intelligence feed failed; retrying at its next interval")
				continue
			}
			m.log.WithFields(logrus.Fields{"feed": f.Name, "indicators": n}).Info("threat-intelligence feed stored")
		}
		if _, err := m.Refresh(ctx); err != nil && ctx.Err() == nil {
			m.log.WithError(err).Warn("refreshing the indicator matcher failed; keeping the previous one")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// FetchFeed reads one feed (HTTP(S) URL or file path), parses it and
// stores its indicators in the intel collection. It returns how many were
// stored.
func (m *Intel) FetchFeed(ctx context.Context, f config.Feed) (int, error) {
	inds, err := m.readFeed(ctx, f)
	if err != nil {
		return 0, err
	}
	return len(inds), m.StoreIndicators(ctx, inds)
}

// StoreIndicators writes indicators to the intel collection.
func (m *Intel) StoreIndicators(ctx context.Context, inds []intel.Indicator) error {
	bw, err := m.o.Store.Bulk(store.RegionalScope(), store.Intel, store.BulkOptions{})
	if err != nil {
		return fmt.Errorf("storing indicators: %w", err)
	}
	for i := range inds {
		d, err := inds[i].Doc()
		if err != nil {
			continue
		}
		if err := bw.Add(ctx, d); err != nil {
			_ = bw.Close(ctx)
			return fmt.Errorf("storing indicator %s: %w", d.ID, err)
		}
	}
	if err := bw.Close(ctx); err != nil {
		return fmt.Errorf("storing indicators: %w", err)
	}
	return nil
}

func feedFormat(name string) (intel.Format, error) {
	switch name {
	case "misp":
		return intel.FormatMISP, nil
	case "misp-feed":
		return intel.FormatMISPFeed, nil
	case "feodo":
		return intel.FormatFeodo, nil
	case "urlhaus":
		return intel.FormatURLhaus, nil
	case "threatfox":
		return intel.FormatThreatFox, nil
	case "stix":
		return intel.FormatSTIX, nil
	case "taxii":
		return intel.FormatTAXII, nil
	case "csv":
		return intel.FormatCSV, nil
	}
	return "", fmt.Errorf("unknown feed format %q", name)
}

func isURL(s string) bool { return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") }

func (m *Intel) readFeed(ctx context.Context, f config.Feed) ([]intel.Indicator, error) {
	format, err := feedFormat(f.Format)
	if err != nil {
		return nil, err
	}
	opts := intel.Options{Source: f.Name, Now: m.o.Now(), Confidence: f.Confidence, TLP: intel.TLP(f.TLP), MaxBytes: feedMaxBytes}
	switch format {
	case intel.FormatMISPFeed:
		manifest, err := m.open(ctx, f, f.URL)
		if err != nil {
			return nil, err
		}
		defer func() { _ = manifest.Close() }()
		load := func(uuid string) (io.ReadCloser, error) { return m.open(ctx, f, sibling(f.URL, uuid+".json")) }
		inds, warns, err := intel.ParseMISPFeed(manifest, load, opts)
		m.warn(f, len(warns))
		return inds, err
	case intel.FormatTAXII:
		var all []intel.Indicator
		next := ""
		for page := 0; page < taxiiMaxPages; page++ {
			u := f.URL
			if next != "" {
				u = withQuery(u, "next", next)
			}
			rc, err := m.open(ctx, f, u)
			if err != nil {
				return nil, err
			}
			pg, err := intel.ParseTAXIIEnvelope(rc, opts)
			_ = rc.Close()
			if err != nil {
				return nil, err
			}
			m.warn(f, len(pg.Warnings))
			all = append(all, pg.Indicators...)
			if !pg.More || pg.Next == "" {
				break
			}
			next = pg.Next
		}
		return all, nil
	}
	rc, err := m.open(ctx, f, f.URL)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rc.Close() }()
	if f.Format == "misp" && isURL(f.URL) && f.APIKey.Value() != "" {
		// MISP REST: the restSearch response is read like an event list.
		format = intel.FormatMISP
	}
	inds, warns, err := intel.Parse(format, rc, opts)
	m.warn(f, len(warns))
	return inds, err
}

func (m *Intel) warn(f config.Feed, n int) {
	if n > 0 {
		m.log.WithFields(logrus.Fields{"feed": f.Name, "warnings": n}).Info("feed entries skipped (see docs/intel.md)")
	}
}

// sibling returns the URL or path of a file next to base.
func sibling(base, name string) string {
	if isURL(base) {
		u, err := url.Parse(base)
		if err != nil {
			return base
		}
		u.Path = path.Join(path.Dir(u.Path), name)
		return u.String()
	}
	return path.Join(path.Dir(base), name)
}

func withQuery(raw, k, v string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	q := u.Query()
	q.Set(k, v)
	u.RawQuery = q.Encode()
	return u.String()
}

type limitedBody struct {
	io.Reader
	io.Closer
}

// open reads a feed location: HTTP(S) with a timeout, a size limit and the
// feed's API key, or a file.
func (m *Intel) open(ctx context.Context, f config.Feed, loc string) (io.ReadCloser, error) {
	if !isURL(loc) {
		fh, err := os.Open(loc) //nolint:gosec // feed paths come from the operator's configuration
		if err != nil {
			return nil, fmt.Errorf("feed %s: %w (fix correlator.feeds url)", f.Name, err)
		}
		return limitedBody{io.LimitReader(fh, feedMaxBytes+1), fh}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, feedTimeout)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, loc, nil)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("feed %s: bad url: %w", f.Name, err)
	}
	switch f.Format {
	case "taxii":
		req.Header.Set("Accept", "application/taxii+json;version=2.1")
	default:
		req.Header.Set("Accept", "application/json, text/csv, text/plain, */*")
	}
	if key := f.APIKey.Value(); key != "" {
		if f.Format == "misp" || f.Format == "misp-feed" {
			req.Header.Set("Authorization", key)
		} else {
			req.Header.Set("Authorization", "Bearer "+key)
		}
	}
	resp, err := m.o.Client.Do(req) //nolint:bodyclose // closed by the returned reader's Close
	if err != nil {
		cancel()
		return nil, fmt.Errorf("feed %s: %w", f.Name, stripURL(err))
	}
	if resp.StatusCode != http.StatusOK {
		_ = resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("feed %s: HTTP status %s (check the url and the api key file)", f.Name, resp.Status)
	}
	return limitedBody{io.LimitReader(resp.Body, feedMaxBytes+1), closerFunc(func() error { cancel(); return resp.Body.Close() })}, nil
}

type closerFunc func() error

func (c closerFunc) Close() error { return c() }

// stripURL drops the URL from a client error: it may carry credentials in
// its query.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// fingerprint summarises the intel collection: count and newest update.
func (m *Intel) fingerprint(ctx context.Context) (string, error) {
	res, err := m.o.Store.Search(ctx, store.RegionalScope(), store.Intel, store.SearchRequest{Size: 1,
		Sort: []store.SortField{{Field: "last_seen", Desc: true}}})
	if err != nil {
		return "", err
	}
	fp := fmt.Sprint(res.Total)
	if len(res.Docs) > 0 {
		fp += "|" + res.Docs[0].ID + "|" + string(res.Docs[0].Source)
	}
	return fp, nil
}

// loadAll reads every unexpired indicator of the intel collection with a
// store scan, so that feeds of any size (abuse.ch and MISP feeds exceed
// 100,000 indicators) are matched in full. A document that is not a
// readable indicator is skipped.
func (m *Intel) loadAll(ctx context.Context) ([]intel.Indicator, error) {
	var out []intel.Indicator
	now := m.o.Now()
	skipped := 0
	err := m.o.Store.Scan(ctx, store.RegionalScope(), store.Intel, store.ScanRequest{}, func(d store.Doc) error {
		ind, err := intel.FromDoc(d)
		switch {
		case err != nil:
			skipped++
		case !ind.Expired(now):
			out = append(out, ind)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("loading indicators: %w", err)
	}
	if skipped > 0 {
		m.log.WithField("skipped", skipped).Warn("intel documents that are not readable indicators were skipped")
	}
	return out, nil
}

// Refresh reloads the matcher when the intel collection changed and
// returns the indicators that were not matched before (retro-hunted when
// RetroHunt is set; none on the first load).
func (m *Intel) Refresh(ctx context.Context) ([]intel.Indicator, error) {
	fp, err := m.fingerprint(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the intel collection: %w", err)
	}
	m.mu.Lock()
	same := m.loaded && fp == m.print
	m.mu.Unlock()
	if same {
		return nil, nil
	}
	inds, err := m.loadAll(ctx)
	if err != nil {
		return nil, err
	}
	mt, err := intel.Build(inds, intel.MatcherOptions{})
	if err != nil {
		return nil, fmt.Errorf("building the indicator matcher: %w", err)
	}
	m.mu.Lock()
	first := !m.loaded
	var fresh []intel.Indicator
	known := make(map[string]bool, len(inds))
	for i := range inds {
		id := inds[i].ID()
		if !first && !m.known[id] && !known[id] {
			fresh = append(fresh, inds[i])
		}
		known[id] = true
	}
	m.known, m.print, m.loaded = known, fp, true
	m.mu.Unlock()
	m.holder.Store(mt)
	m.log.WithFields(logrus.Fields{"indicators": mt.Len(), "new": len(fresh)}).Info("indicator matcher loaded")
	if len(fresh) > 0 && m.o.RetroHunt > 0 && m.o.Publish != nil {
		if n, err := m.RetroHunt(ctx, fresh); err != nil {
			m.log.WithError(err).Warn("retro-hunt failed")
		} else if n > 0 {
			m.log.WithField("findings", n).Info("retro-hunt findings raised")
		}
	}
	return fresh, nil
}

// RetroHunt searches the stored events of the last RetroHunt for the
// indicators and publishes a finding per hit (same ids as the stream's, so
// an event seen both ways gives one finding). It returns the findings
// raised.
func (m *Intel) RetroHunt(ctx context.Context, inds []intel.Indicator) (int, error) {
	mt, err := intel.Build(inds, intel.MatcherOptions{})
	if err != nil {
		return 0, err
	}
	now := m.o.Now()
	total := 0
	var errs []error
	for i := range inds {
		q, ok := inds[i].HuntQuery()
		if !ok {
			continue
		}
		var fs []*finding.Finding
		seen := map[string]bool{}
		err := m.huntEvents(ctx, q, now.Add(-m.o.RetroHunt), now.Add(time.Minute), func(d store.Doc) error {
			ev, err := event.Decode(d.Source)
			if err != nil { // an unreadable stored event is skipped
				return nil //nolint:nilerr // one bad document must not stop the hunt
			}
			for _, im := range mt.MatchEvent(ev, now) {
				f := IntelFinding(ev, im, now)
				f.Labels["retro_hunt"] = "true"
				if !seen[f.ID] {
					seen[f.ID] = true
					fs = append(fs, f)
				}
			}
			return nil
		})
		if err != nil {
			if ctx.Err() != nil {
				return total, err
			}
			errs = append(errs, fmt.Errorf("retro-hunt of %s %s: %w", inds[i].Type, inds[i].Value, err))
		}
		if len(fs) > 0 {
			if err := m.o.Publish(ctx, fs); err != nil {
				return total, err
			}
			total += len(fs)
		}
	}
	return total, errors.Join(errs...)
}

// huntEvents calls fn for every stored event that matches q in [from, to):
// with one search when the matches fit in a page (most hunts find nothing),
// with a store scan, not bound by the search window, when they do not.
func (m *Intel) huntEvents(ctx context.Context, q string, from, to time.Time, fn func(store.Doc) error) error {
	res, err := m.o.Store.Search(ctx, store.RegionalScope(), store.Events, store.SearchRequest{Query: q, From: from, To: to, Size: store.MaxPage})
	if err != nil {
		return err
	}
	if res.Total > int64(len(res.Docs)) {
		return m.o.Store.Scan(ctx, store.RegionalScope(), store.Events, store.ScanRequest{Query: q, From: from, To: to}, fn)
	}
	for _, d := range res.Docs {
		if err := fn(d); err != nil {
			return err
		}
	}
	return nil
}

// ParseIntelFile reads a local indicator file of any supported format
// (detected, or forced with format): what `csirt rules hunt --intel` uses.
func ParseIntelFile(path, format string) ([]intel.Indicator, intel.Format, error) {
	data, err := os.ReadFile(path) //nolint:gosec // a file the operator names
	if err != nil {
		return nil, "", err
	}
	opts := intel.Options{Source: "file:" + strings.TrimSuffix(path[strings.LastIndexAny(path, "/\\")+1:], ""), Now: time.Now()}
	if format == "" {
		f, inds, _, err := intel.ParseAny(bytes.NewReader(data), opts)
		return inds, f, err
	}
	f := intel.Format(format)
	if format == "feodo" {
		f = intel.FormatFeodo
	}
	inds, _, err := intel.Parse(f, bytes.NewReader(data), opts)
	return inds, f, err
}
