package incidents

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/csirt-toscana/platform/internal/finding"
	"github.com/csirt-toscana/platform/internal/incident"
	"github.com/csirt-toscana/platform/internal/store"
)

// CampaignObservables are the observables of a finding that can tie
// entities together: its attacker address (source.ip) and its indicator
// observables (addresses, domains, URLs, hashes, TLS fingerprints). Host
// names, users and agents are local to an entity and never do; neither do
// addresses that are not globally routable (private, loopback, link-local,
// multicast, CGNAT): every municipality has a 192.168.1.1. Integrity and
// coverage findings, and findings of no entity, take part in no campaign.
func CampaignObservables(f *finding.Finding) []finding.Observable {
	if f.Entity == "" || f.Kind == finding.KindIntegrity || f.Kind == finding.KindCoverage {
		return nil
	}
	var out []finding.Observable
	add := func(o finding.Observable) {
		for _, x := range out {
			if x == o {
				return
			}
		}
		out = append(out, o)
	}
	if f.SourceIP != "" && publicIP(f.SourceIP) {
		add(finding.Observable{Type: "ip", Value: f.SourceIP})
	}
	for _, o := range f.Observables {
		t := strings.ToLower(o.Type)
		switch {
		case strings.HasPrefix(t, "ip") || t == "source.ip" || t == "destination.ip":
			if publicIP(o.Value) {
				add(finding.Observable{Type: "ip", Value: o.Value})
			}
		case t == "domain" || t == "url" || t == "ja3" || t == "ja4" || strings.HasPrefix(t, "hash") ||
			t == "md5" || t == "sha1" || t == "sha256" || t == "indicator":
			add(finding.Observable{Type: t, Value: strings.ToLower(o.Value)})
		}
	}
	return out
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

func publicIP(s string) bool {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return false
	}
	a = a.Unmap()
	return a.IsGlobalUnicast() && !a.IsPrivate() && !cgnat.Contains(a)
}

// candidateDoc is the rules_state document (regional tenant) that
// collects the entity incidents sharing one observable in one campaign
// window. Once it lists two entities or more, the campaign document (same
// id, incidents collection) exists and every member carries campaign.id.
type candidateDoc struct {
	Updated    string            `json:"updated"`
	Kind       string            `json:"kind"`
	Expires    string            `json:"expires"`
	CampaignID string            `json:"campaign.id"`
	Type       string            `json:"observable.type"`
	Value      string            `json:"observable.value"`
	RuleGroup  string            `json:"rule.group"`
	First      string            `json:"first_seen"`
	Last       string            `json:"last_seen"`
	Members    []candidateMember `json:"members"`
}

type candidateMember struct {
	Entity   string `json:"entity"`
	Incident string `json:"incident"`
	Joined   string `json:"joined"`
}

// active reports whether a finding at t is within the campaign window of
// the candidate's findings.
func (c *candidateDoc) active(t time.Time, cw time.Duration) bool {
	first, err1 := time.Parse(time.RFC3339Nano, c.First)
	last, err2 := time.Parse(time.RFC3339Nano, c.Last)
	return err1 == nil && err2 == nil && !t.Before(first.Add(-cw)) && !t.After(last.Add(cw))
}

// hasOther reports whether the candidate lists an entity other than e.
func (c *candidateDoc) hasOther(e string) bool {
	for _, m := range c.Members {
		if m.Entity != e {
			return true
		}
	}
	return false
}

func candidateID(campaignID string) string { return "incidents.campaign." + campaignID }

func (c *candidateDoc) entities() int {
	seen := map[string]bool{}
	for _, m := range c.Members {
		seen[m.Entity] = true
	}
	return len(seen)
}

// campaigns records the incident under every campaign observable of the
// findings and links campaigns that reach two entities.
func (s *Stage) campaigns(ctx context.Context, in *incident.Incident, fs []*finding.Finding) error {
	type obsAt struct {
		o finding.Observable
		t time.Time
	}
	var list []obsAt
	idx := map[finding.Observable]int{}
	for _, f := range fs {
		for _, o := range CampaignObservables(f) {
			if i, ok := idx[o]; ok {
				if f.Time.After(list[i].t) {
					list[i].t = f.Time
				}
				continue
			}
			idx[o] = len(list)
			list = append(list, obsAt{o, f.Time})
		}
	}
	for _, x := range list {
		if err := s.campaign(ctx, in, x.o, x.t); err != nil {
			return fmt.Errorf("campaign around %s %s: %w", x.o.Type, x.o.Value, err)
		}
	}
	return nil
}

// campaign records incident in's membership for observable o seen at t.
func (s *Stage) campaign(ctx context.Context, in *incident.Incident, o finding.Observable, t time.Time) error {
	cw := s.o.CampaignWindow
	start := incident.WindowStart(t, cw)
	windows := []time.Time{start.Add(-cw), start, start.Add(cw)}
	// Join an active candidate of this window or a neighbouring one (the
	// earliest), so that an attack across a window boundary stays one
	// campaign whichever order the instances see the entities in.
	campID := incident.CampaignID(o, start)
	for _, w := range windows {
		id := incident.CampaignID(o, w)
		c, _, err := s.candidate(ctx, id)
		if err != nil {
			return err
		}
		if c != nil && c.active(t, cw) {
			campID = id
			break
		}
	}
	memo := campID + "|" + in.ID
	s.mu.Lock()
	recorded, ok := s.linked[memo]
	s.mu.Unlock()
	if ok && t.Sub(recorded) < cw/4 && t.Sub(recorded) > -cw/4 {
		return nil // recorded recently; later joiners do the linking
	}
	cand, err := s.recordMember(ctx, campID, in, o, t)
	if err != nil {
		return err
	}
	if cand.entities() < 2 {
		// Another instance may have opened a neighbouring candidate at the
		// same time: join it too when it holds another entity.
		for _, w := range windows {
			id := incident.CampaignID(o, w)
			if id == campID {
				continue
			}
			c, _, err := s.candidate(ctx, id)
			if err != nil {
				return err
			}
			if c == nil || !c.active(t, cw) || !c.hasOther(in.Tenant()) {
				continue
			}
			if cand, err = s.recordMember(ctx, id, in, o, t); err != nil {
				return err
			}
			break
		}
	}
	if cand.entities() >= 2 {
		if err := s.link(ctx, cand, o); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.linked[memo] = t
	s.mu.Unlock()
	return nil
}

func (s *Stage) candidate(ctx context.Context, campID string) (*candidateDoc, store.Version, error) {
	d, err := s.o.Store.Get(ctx, store.RegionalScope(), store.RulesState, candidateID(campID))
	if errors.Is(err, store.ErrNotFound) {
		return nil, store.Version{}, nil
	}
	if err != nil {
		return nil, store.Version{}, fmt.Errorf("reading campaign candidate %s: %w", campID, err)
	}
	var c candidateDoc
	if err := json.Unmarshal(d.Source, &c); err != nil {
		return nil, store.Version{}, fmt.Errorf("campaign candidate %s is unreadable (%w): delete the rules_state document %s", campID, err, candidateID(campID))
	}
	return &c, d.Version, nil
}

// recordMember adds (entity, incident) to the candidate under optimistic
// concurrency and returns the candidate as stored.
func (s *Stage) recordMember(ctx context.Context, campID string, in *incident.Incident, o finding.Observable, t time.Time) (*candidateDoc, error) {
	ts := t.UTC().Format(time.RFC3339Nano)
	for attempt := 0; attempt < maxConflictRetries; attempt++ {
		cand, ver, err := s.candidate(ctx, campID)
		if err != nil {
			return nil, err
		}
		exists := cand != nil
		if !exists {
			cand = &candidateDoc{Kind: "campaign-candidate", CampaignID: campID, Type: o.Type, Value: o.Value,
				RuleGroup: in.RuleGroup, First: ts, Last: ts}
		}
		changed := !exists
		found := false
		for _, m := range cand.Members {
			if m.Incident == in.ID {
				found = true
			}
		}
		if !found {
			cand.Members = append(cand.Members, candidateMember{Entity: in.Tenant(), Incident: in.ID, Joined: ts})
			sort.Slice(cand.Members, func(i, j int) bool { return cand.Members[i].Incident < cand.Members[j].Incident })
			changed = true
		}
		if last, err := time.Parse(time.RFC3339Nano, cand.Last); err != nil || t.After(last) {
			cand.Last, changed = ts, true
		}
		if first, err := time.Parse(time.RFC3339Nano, cand.First); err != nil || t.Before(first) {
			cand.First, changed = ts, true
		}
		if !changed {
			return cand, nil
		}
		now := s.o.Now().UTC()
		cand.Updated = now.Format(time.RFC3339Nano)
		last, _ := time.Parse(time.RFC3339Nano, cand.Last)
		cand.Expires = last.Add(2 * s.o.CampaignWindow).Format(time.RFC3339Nano)
		src, err := json.Marshal(cand)
		if err != nil {
			return nil, err
		}
		d := store.Doc{ID: candidateID(campID), Tenant: store.RegionalTenant, Version: ver, Source: src}
		if exists {
			_, err = s.o.Store.Update(ctx, store.RegionalScope(), store.RulesState, d, store.WriteOptions{})
		} else {
			_, err = s.o.Store.Create(ctx, store.RegionalScope(), store.RulesState, d, store.WriteOptions{})
		}
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrNotFound) {
			s.count(func(st *Stats) { st.Conflicts++ })
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("writing campaign candidate %s: %w", campID, err)
		}
		return cand, nil
	}
	return nil, fmt.Errorf("campaign candidate %s: gave up after %d version conflicts", campID, maxConflictRetries)
}

// link makes sure the campaign document lists every member of the
// candidate and every member incident carries the campaign id.
func (s *Stage) link(ctx context.Context, cand *candidateDoc, o finding.Observable) error {
	members := make([]*incident.Incident, 0, len(cand.Members))
	joined := map[string]time.Time{}
	for _, m := range cand.Members {
		in, err := s.get(ctx, m.Entity, m.Incident)
		if err != nil {
			return err
		}
		if in == nil {
			continue // not written yet by its instance: it links itself when it is
		}
		members = append(members, in)
		joined[in.ID], _ = time.Parse(time.RFC3339Nano, m.Joined)
	}
	if err := s.upsertCampaign(ctx, cand, o, members, joined); err != nil {
		return err
	}
	for _, m := range members {
		if err := s.setCampaign(ctx, m, cand.CampaignID); err != nil {
			return err
		}
	}
	return nil
}

func (s *Stage) upsertCampaign(ctx context.Context, cand *candidateDoc, o finding.Observable, members []*incident.Incident, joined map[string]time.Time) error {
	for attempt := 0; attempt < maxConflictRetries; attempt++ {
		c, err := s.get(ctx, store.RegionalTenant, cand.CampaignID)
		if err != nil {
			return err
		}
		now := s.o.Now()
		exists := c != nil
		if !exists {
			c = incident.NewCampaign(cand.CampaignID, o, cand.RuleGroup, now)
		}
		changed := !exists
		for _, m := range members {
			if c.AddMember(m, joined[m.ID], now) {
				changed = true
			}
		}
		if !changed {
			return nil
		}
		d, err := c.Doc()
		if err != nil {
			return err
		}
		if exists {
			_, err = s.o.Store.Update(ctx, store.RegionalScope(), store.Incidents, d, store.WriteOptions{})
		} else {
			_, err = s.o.Store.Create(ctx, store.RegionalScope(), store.Incidents, d, store.WriteOptions{})
		}
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrNotFound) {
			s.count(func(st *Stats) { st.Conflicts++ })
			continue
		}
		if err != nil {
			return fmt.Errorf("writing campaign %s: %w", cand.CampaignID, err)
		}
		if !exists {
			s.count(func(st *Stats) { st.Campaigns++ })
			s.log.WithFields(map[string]any{"campaign": c.ID, "observable": o.Value, "entities": c.Entities}).Info("regional campaign opened")
		}
		return nil
	}
	return fmt.Errorf("campaign %s: gave up after %d version conflicts", cand.CampaignID, maxConflictRetries)
}

// setCampaign gives an entity incident the campaign id (an incident
// belongs to the first campaign that links it; later campaigns list it
// as a member without changing its campaign.id).
func (s *Stage) setCampaign(ctx context.Context, in *incident.Incident, campID string) error {
	for attempt := 0; attempt < maxConflictRetries; attempt++ {
		if in.CampaignID != "" {
			return nil
		}
		now := s.o.Now().UTC()
		in.CampaignID = campID
		in.Updated = now
		in.Timeline = append(in.Timeline, incident.Entry{Time: now, Kind: incident.EntryCampaign, Actor: Actor,
			Message: "linked to regional campaign " + campID})
		d, err := in.Doc()
		if err != nil {
			return err
		}
		_, err = s.o.Store.Update(ctx, in.Scope(), store.Incidents, d, store.WriteOptions{})
		if errors.Is(err, store.ErrConflict) {
			s.count(func(st *Stats) { st.Conflicts++ })
			fresh, gerr := s.get(ctx, in.Tenant(), in.ID)
			if gerr != nil {
				return gerr
			}
			if fresh == nil {
				return nil
			}
			in = fresh
			continue
		}
		if err != nil {
			return fmt.Errorf("linking incident %s to campaign %s: %w", in.ID, campID, err)
		}
		s.count(func(st *Stats) { st.Linked++ })
		return nil
	}
	return fmt.Errorf("incident %s: gave up linking to campaign %s after %d version conflicts", in.ID, campID, maxConflictRetries)
}
