// Package incidents is the incident stage of the correlator: it consumes
// findings from csirt.findings.v1 (consumer group "csirt-incidents"),
// groups them into incidents by entity, rule group and key entities within
// a window, and links incidents of several entities that share an
// attacker address or indicator into regional campaigns. Every write is
// idempotent (deterministic ids, finding ids recorded in the incident)
// and incident updates use optimistic concurrency, so redelivery, retries
// and several stage instances give the same incidents. Offsets are
// committed only after the writes are durable. docs/incidents.md
// describes the grouping rules.
package incidents

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/finding"
	"github.com/csirt-toscana/platform/internal/incident"
	"github.com/csirt-toscana/platform/internal/store"
)

// GroupID is the consumer group of the stage on csirt.findings.v1.
const GroupID = "csirt-incidents"

// Actor names the stage on incident timelines.
const Actor = "csirt-incidents"

// Defaults.
const (
	DefaultWindow         = 24 * time.Hour
	DefaultCampaignWindow = time.Hour
	DefaultEntityTTL      = 5 * time.Minute
	maxConflictRetries    = 50
	maxGenerations        = 64
)

// Options configure a Stage.
type Options struct {
	Store store.Store // required
	// Window: a finding joins an open incident of its key when its time
	// is within Window of the incident's findings (config incidents.window).
	Window time.Duration
	// CampaignWindow: entity incidents sharing an observable within this
	// window form a campaign (config incidents.campaign_window).
	CampaignWindow time.Duration
	// EntityTTL is how long an entity's NIS2 flag is cached. Default 5 min.
	EntityTTL time.Duration
	// Now stamps created/updated times. Default time.Now.
	Now    func() time.Time
	Logger logrus.FieldLogger
}

// Stats count what the stage did since it started.
type Stats struct {
	Findings   int64 // findings applied
	Created    int64 // incidents created
	Attached   int64 // findings attached to existing incidents
	Duplicates int64 // findings already attached (redelivery)
	Ignored    int64 // informational findings with no open incident
	Conflicts  int64 // OCC conflicts retried
	Campaigns  int64 // campaign documents created
	Linked     int64 // incidents given a campaign id
}

// Stage groups findings into incidents and campaigns. It is safe for
// concurrent use; several stages (instances) may share one store.
type Stage struct {
	o   Options
	log logrus.FieldLogger

	mu       sync.Mutex
	stats    Stats
	entities map[string]entityInfo
	pointers map[string]string    // pointer doc id -> incident id last written
	linked   map[string]time.Time // campaign id|incident id -> last finding time recorded
}

type entityInfo struct {
	nis2    bool
	fetched time.Time
}

// New checks the options and builds a Stage.
func New(o Options) (*Stage, error) {
	if o.Store == nil {
		return nil, errors.New("incident stage: a store is required")
	}
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	if o.CampaignWindow <= 0 {
		o.CampaignWindow = DefaultCampaignWindow
	}
	if o.EntityTTL <= 0 {
		o.EntityTTL = DefaultEntityTTL
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		l := logrus.New()
		l.SetLevel(logrus.PanicLevel)
		log = l
	}
	return &Stage{o: o, log: log.WithField("component", "incidents"), entities: map[string]entityInfo{},
		pointers: map[string]string{}, linked: map[string]time.Time{}}, nil
}

// Stats returns the counters.
func (s *Stage) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

func (s *Stage) count(f func(*Stats)) {
	s.mu.Lock()
	f(&s.stats)
	s.mu.Unlock()
}

// Apply groups findings into incidents and campaigns. It returns after
// every write is durable; on error some findings may be applied and a
// retry of the same findings applies the rest without duplicating
// anything.
func (s *Stage) Apply(ctx context.Context, fs ...*finding.Finding) error {
	byKey := map[incident.Key][]*finding.Finding{}
	var keys []incident.Key
	for _, f := range fs {
		k := incident.KeyOf(f)
		if _, ok := byKey[k]; !ok {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], f)
	}
	var errs []error
	for _, k := range keys {
		group := byKey[k]
		sort.SliceStable(group, func(i, j int) bool { return group[i].Time.Before(group[j].Time) })
		if err := s.applyKey(ctx, k, group); err != nil {
			errs = append(errs, fmt.Errorf("incident %s: %w", k, err))
		}
	}
	s.count(func(st *Stats) { st.Findings += int64(len(fs)) })
	return errors.Join(errs...)
}

// applyKey applies the time-ordered findings of one key.
func (s *Stage) applyKey(ctx context.Context, k incident.Key, fs []*finding.Finding) error {
	for len(fs) > 0 {
		n, err := s.applyChunk(ctx, k, fs)
		if err != nil {
			return err
		}
		fs = fs[n:]
	}
	return nil
}

// applyChunk writes the longest prefix of fs that goes to one incident
// and returns its length.
func (s *Stage) applyChunk(ctx context.Context, k incident.Key, fs []*finding.Finding) (int, error) {
	for attempt := 0; ; attempt++ {
		if attempt >= maxConflictRetries {
			return 0, fmt.Errorf("gave up after %d version conflicts: another writer keeps changing the incident", attempt)
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		target, exists, err := s.resolve(ctx, k, fs[0].Time)
		if err != nil {
			return 0, err
		}
		now := s.o.Now()
		var (
			n                       int
			attached, dups, created int64
			touched                 []*finding.Finding
		)
		if !exists {
			// Informational findings attach to open incidents but do
			// not open one.
			for n < len(fs) && fs[n].Severity == finding.Informational {
				n++
			}
			if n > 0 {
				s.count(func(st *Stats) { st.Ignored += int64(n) })
				return n, nil
			}
			target = incident.New(target.ID, k, fs[0], s.nis2(ctx, k.Entity), Actor, now)
			touched = append(touched, fs[0])
			created, n = 1, 1
		}
		for n < len(fs) && s.fits(target, fs[n].Time) {
			if target.Attach(fs[n], Actor, now) {
				attached++
				touched = append(touched, fs[n])
			} else {
				dups++
			}
			n++
		}
		if len(touched) > 0 {
			d, err := target.Doc()
			if err != nil {
				return 0, err
			}
			if exists {
				_, err = s.o.Store.Update(ctx, target.Scope(), store.Incidents, d, store.WriteOptions{})
			} else {
				_, err = s.o.Store.Create(ctx, target.Scope(), store.Incidents, d, store.WriteOptions{})
			}
			if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrNotFound) {
				// Another instance wrote first (or created the same
				// incident): read again and attach to what is there.
				s.count(func(st *Stats) { st.Conflicts++ })
				continue
			}
			if err != nil {
				return 0, fmt.Errorf("writing incident %s: %w", target.ID, err)
			}
		}
		s.count(func(st *Stats) {
			st.Created += created
			st.Attached += attached
			st.Duplicates += dups
		})
		if err := s.point(ctx, k, target); err != nil {
			return 0, err
		}
		// Campaign links for every finding of the chunk, new or not: a
		// redelivery completes links a crash left half done.
		if err := s.campaigns(ctx, target, fs[:n]); err != nil {
			return 0, err
		}
		return n, nil
	}
}

// fits reports whether a finding at t may join the open incident.
func (s *Stage) fits(in *incident.Incident, t time.Time) bool {
	if !in.Status.Open() {
		return false
	}
	return !t.Before(in.FirstSeen.Add(-s.o.Window)) && !t.After(in.LastSeen.Add(s.o.Window))
}

// resolve finds the open incident a finding of key k at time t joins:
// the one the key's pointer names, else one of the deterministic ids of
// the windows holding t and the one before. When none fits it returns a
// new incident (exists false) with the first free id of t's window.
func (s *Stage) resolve(ctx context.Context, k incident.Key, t time.Time) (*incident.Incident, bool, error) {
	if id, err := s.pointer(ctx, k); err != nil {
		return nil, false, err
	} else if id != "" {
		in, err := s.get(ctx, k.Entity, id)
		if err != nil {
			return nil, false, err
		}
		if in != nil && s.fits(in, t) {
			return in, true, nil
		}
	}
	start := incident.WindowStart(t, s.o.Window)
	free := ""
	for _, w := range []time.Time{start, start.Add(-s.o.Window)} {
		for gen := 0; gen < maxGenerations; gen++ {
			id := incident.ID(k, w, gen)
			in, err := s.get(ctx, k.Entity, id)
			if err != nil {
				return nil, false, err
			}
			if in == nil {
				if w.Equal(start) && free == "" {
					free = id
				}
				break
			}
			if s.fits(in, t) {
				return in, true, nil
			}
		}
	}
	if free == "" {
		return nil, false, fmt.Errorf("more than %d closed incidents of key %s in the window of %s", maxGenerations, k, t.UTC().Format(time.RFC3339))
	}
	return &incident.Incident{ID: free}, false, nil
}

// get reads an incident; nil when absent.
func (s *Stage) get(ctx context.Context, tenant, id string) (*incident.Incident, error) {
	d, err := s.o.Store.Get(ctx, scopeOf(tenant), store.Incidents, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading incident %s: %w", id, err)
	}
	in, err := incident.FromDoc(d)
	if err != nil {
		return nil, err
	}
	return in, nil
}

func scopeOf(tenant string) store.Scope {
	if tenant == store.RegionalTenant || tenant == "" {
		return store.RegionalScope()
	}
	return store.TenantScope(tenant)
}

// pointerDoc is the rules_state document that names the incident a key
// last went to, so that an incident older than two windows is still found
// after a restart. It is a hint: the incident document decides.
type pointerDoc struct {
	Updated  string `json:"updated"`
	Kind     string `json:"kind"`
	Incident string `json:"incident.id"`
	Key      string `json:"group.key"`
}

func pointerID(k incident.Key) string {
	return "incidents.open." + event.IDFromRaw([]byte(k.Entity), []byte(k.RuleGroup), []byte(k.Entities))
}

func (s *Stage) pointer(ctx context.Context, k incident.Key) (string, error) {
	id := pointerID(k)
	s.mu.Lock()
	cached, ok := s.pointers[id]
	s.mu.Unlock()
	if ok {
		return cached, nil
	}
	d, err := s.o.Store.Get(ctx, scopeOf(k.Entity), store.RulesState, id)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading incident pointer %s: %w", id, err)
	}
	var p pointerDoc
	if jerr := json.Unmarshal(d.Source, &p); jerr != nil || store.ValidID(p.Incident) != nil {
		// A hint only: the windows' deterministic ids still find the incident.
		s.log.WithField("doc", id).Warn("ignoring an unreadable incident pointer")
		p.Incident = ""
	}
	if p.Incident != "" {
		s.mu.Lock()
		s.pointers[id] = p.Incident
		s.mu.Unlock()
	}
	return p.Incident, nil
}

func (s *Stage) point(ctx context.Context, k incident.Key, in *incident.Incident) error {
	id := pointerID(k)
	s.mu.Lock()
	same := s.pointers[id] == in.ID
	s.mu.Unlock()
	if same {
		return nil
	}
	src, err := json.Marshal(pointerDoc{Updated: s.o.Now().UTC().Format(time.RFC3339Nano), Kind: "incident-open", Incident: in.ID, Key: k.String()})
	if err != nil {
		return err
	}
	tenant := k.Entity
	if _, err := s.o.Store.Put(ctx, scopeOf(tenant), store.RulesState, store.Doc{ID: id, Tenant: tenant, Source: src}, store.WriteOptions{}); err != nil {
		return fmt.Errorf("writing incident pointer %s: %w", id, err)
	}
	s.mu.Lock()
	s.pointers[id] = in.ID
	s.mu.Unlock()
	return nil
}

// nis2 reports whether the entity is in NIS2 scope (its entities
// document's nis2 flag), cached for EntityTTL. A failed read counts as
// not in scope and is retried at the next incident.
func (s *Stage) nis2(ctx context.Context, entity string) bool {
	if entity == store.RegionalTenant || entity == "" {
		return false
	}
	now := time.Now()
	s.mu.Lock()
	e, ok := s.entities[entity]
	s.mu.Unlock()
	if ok && now.Sub(e.fetched) < s.o.EntityTTL {
		return e.nis2
	}
	d, err := s.o.Store.Get(ctx, store.TenantScope(entity), store.Entities, entity)
	var doc struct {
		NIS2 bool `json:"nis2"`
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		s.log.WithError(err).WithField("entity", entity).Warn("reading the entity's NIS2 flag failed; treating it as out of scope for this incident")
		return false
	default:
		if err := json.Unmarshal(d.Source, &doc); err != nil {
			s.log.WithError(err).WithField("entity", entity).Warn("entity document unreadable; treating it as out of NIS2 scope")
		}
	}
	s.mu.Lock()
	s.entities[entity] = entityInfo{nis2: doc.NIS2, fetched: now}
	s.mu.Unlock()
	return doc.NIS2
}
