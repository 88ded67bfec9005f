// Package silence detects agents and entities that stopped sending: every
// check it compares each agent's last_seen (written by the collector's
// pipeline for any batch or heartbeat) with the agent's silence_after, and
// each entity's newest activity (any agent or syslog device) with the
// entity threshold, and raises one coverage finding per silent period and
// one informational finding when the agent or entity resumes.
//
// Finding ids are derived from the agent (or entity) and the start of the
// silence (its last_seen), so that several collector instances, restarts
// and repeated checks give the same finding: the store keeps one, and
// consumers of csirt.findings.v1 drop repeated ids. A lease in the store
// (rules_state) lets one instance do the checks; the ids make a second
// one harmless anyway.
package silence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/csirt-toscana/platform/internal/finding"
	"github.com/csirt-toscana/platform/internal/policy"
	"github.com/csirt-toscana/platform/internal/store"
)

// Rule ids of the findings the detector raises.
const (
	RuleAgentSilence   = "csirt.agent.silence"
	RuleAgentResumed   = "csirt.agent.silence.resumed"
	RuleEntitySilence  = "csirt.entity.silence"
	RuleEntityResumed  = "csirt.entity.silence.resumed"
	GroupHealth        = "agent-health"
	LeaseID            = "collector.silence.lease"
	leaseRule          = "csirt.collector.silence"
	defaultEntityAfter = 6 * time.Hour
)

// Options configure a Detector. Store and Publisher are required.
type Options struct {
	Store     store.Store
	Publisher *finding.Publisher
	// Check is how often to compare (collector.silence_check); default 1 min.
	Check time.Duration
	// EntityAfter is how long an entity may stay silent
	// (collector.entity_silence_after); default 6 h.
	EntityAfter time.Duration
	// AgentAfter is an agent's silence_after when its document sets none;
	// default policy.DefaultSilenceAfter.
	AgentAfter time.Duration
	// Grace: after the detector starts, it raises nothing for this long,
	// so that a collector that was down (or is catching up with its
	// Kafka backlog) does not take every agent for silent. Default
	// AgentAfter.
	Grace time.Duration
	// Lookback is how far back the open silences are read from the store
	// when the detector starts; default 30 days.
	Lookback time.Duration
	// Instance names this detector in the lease; default "collector".
	Instance string
	Now      func() time.Time
	Logger   logrus.FieldLogger
}

func (o *Options) fill() error {
	if o.Store == nil || o.Publisher == nil {
		return errors.New("silence detector: store and publisher are required")
	}
	if o.Check <= 0 {
		o.Check = time.Minute
	}
	if o.EntityAfter <= 0 {
		o.EntityAfter = defaultEntityAfter
	}
	if o.AgentAfter <= 0 {
		o.AgentAfter = policy.DefaultSilenceAfter
	}
	if o.Grace <= 0 {
		o.Grace = o.AgentAfter
	}
	if o.Lookback <= 0 {
		o.Lookback = 30 * 24 * time.Hour
	}
	if o.Instance == "" {
		o.Instance = "collector"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		l := logrus.New()
		l.SetLevel(logrus.PanicLevel)
		o.Logger = l
	}
	return nil
}

// Detector runs the checks. Check is not safe for concurrent use.
type Detector struct {
	o       Options
	log     logrus.FieldLogger
	started time.Time
	loaded  bool
	open    map[string]time.Time // "agent:<id>" / "entity:<id>" -> silent since
}

// New builds a Detector.
func New(o Options) (*Detector, error) {
	if err := o.fill(); err != nil {
		return nil, err
	}
	return &Detector{o: o, log: o.Logger.WithField("component", "collector.silence"), open: map[string]time.Time{}}, nil
}

// Run checks every Check interval while it holds the lease, until ctx is
// cancelled (then it returns nil). Failed checks are logged and retried.
func (d *Detector) Run(ctx context.Context) error {
	d.started = d.o.Now()
	t := time.NewTicker(d.o.Check)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		held, err := d.lease(ctx)
		if err != nil {
			d.log.WithError(err).Warn("silence check: lease unavailable; retrying at the next check")
			continue
		}
		if !held {
			continue
		}
		if _, err := d.Check(ctx); err != nil && ctx.Err() == nil {
			d.log.WithError(err).Warn("silence check failed; retrying at the next check")
		}
	}
}

// Report says what one check found.
type Report struct {
	Agents, Entities int // considered
	Raised           []*finding.Finding
}

// member is what the detector reads of an agents-collection document.
type member struct {
	id, entity, kind, host string
	revoked                bool
	lastSeen, enrolled     time.Time
	after                  time.Duration
}

// Check runs one comparison and publishes what it raises. Nothing is
// raised during the grace period after Run started (a Detector used
// without Run has no grace period).
func (d *Detector) Check(ctx context.Context) (Report, error) {
	now := d.o.Now()
	if !d.loaded {
		if err := d.loadOpen(ctx, now); err != nil {
			return Report{}, err
		}
		d.loaded = true
	}
	members, err := d.members(ctx)
	if err != nil {
		return Report{}, err
	}
	quiet := !d.started.IsZero() && now.Sub(d.started) < d.o.Grace
	var rep Report
	newest := map[string]time.Time{}
	for _, m := range members {
		ref := m.lastSeen
		if ref.IsZero() {
			ref = m.enrolled
		}
		if !m.lastSeen.IsZero() && m.lastSeen.After(newest[m.entity]) {
			newest[m.entity] = m.lastSeen
		}
		if m.kind != "" && m.kind != "agent" || ref.IsZero() {
			continue
		}
		rep.Agents++
		after := m.after
		if after <= 0 {
			after = d.o.AgentAfter
		}
		rep.Raised = append(rep.Raised, d.compare("agent:"+m.id, ref, now, after, quiet,
			func(since time.Time) *finding.Finding { return agentSilence(m, since, after, now) },
			func(since time.Time) *finding.Finding { return agentResumed(m, since, ref, now) })...)
	}
	for entity, last := range newest {
		rep.Entities++
		rep.Raised = append(rep.Raised, d.compare("entity:"+entity, last, now, d.o.EntityAfter, quiet,
			func(since time.Time) *finding.Finding { return entitySilence(entity, since, d.o.EntityAfter, now) },
			func(since time.Time) *finding.Finding { return entityResumed(entity, since, last, now) })...)
	}
	if len(rep.Raised) > 0 {
		if err := d.o.Publisher.Publish(ctx, rep.Raised...); err != nil {
			// Forget what was not published: the next check raises it again.
			for _, f := range rep.Raised {
				d.undo(f)
			}
			return rep, fmt.Errorf("silence check: %w", err)
		}
	}
	return rep, nil
}

// compare raises the silence of one agent or entity whose newest activity
// is last, or its end.
func (d *Detector) compare(key string, last, now time.Time, after time.Duration, quiet bool,
	silent, resumed func(since time.Time) *finding.Finding) []*finding.Finding {
	since, open := d.open[key]
	switch {
	case now.Sub(last) > after:
		if open && since.Equal(last) || quiet {
			return nil
		}
		var out []*finding.Finding
		if open && last.After(since) {
			// It spoke and went silent again between two checks.
			out = append(out, resumed(since))
		}
		d.open[key] = last
		return append(out, silent(last))
	case open && last.After(since):
		delete(d.open, key)
		return []*finding.Finding{resumed(since)}
	}
	return nil
}

// undo forgets the state change of a finding that could not be published.
func (d *Detector) undo(f *finding.Finding) {
	key := f.Labels["subject"]
	since, err := time.Parse(time.RFC3339Nano, f.Labels["silent_since"])
	if key == "" || err != nil {
		return
	}
	switch f.RuleID {
	case RuleAgentSilence, RuleEntitySilence:
		if d.open[key].Equal(since) {
			delete(d.open, key)
		}
	case RuleAgentResumed, RuleEntityResumed:
		if _, ok := d.open[key]; !ok {
			d.open[key] = since
		}
	}
}

// loadOpen reads the silences raised and not resumed within Lookback, so
// that a restarted detector notes their end.
func (d *Detector) loadOpen(ctx context.Context, now time.Time) error {
	q := "rule.id:" + RuleAgentSilence + "* OR rule.id:" + RuleEntitySilence + "*"
	seen := map[string]map[time.Time]bool{} // key -> since -> resumed
	err := d.o.Store.Scan(ctx, store.RegionalScope(), store.Findings, store.ScanRequest{Query: q, From: now.Add(-d.o.Lookback)}, func(doc store.Doc) error {
		key, since, resumed, ok := silencePeriod(doc)
		if !ok {
			return nil
		}
		if seen[key] == nil {
			seen[key] = map[time.Time]bool{}
		}
		seen[key][since] = seen[key][since] || resumed
		return nil
	})
	if err != nil {
		return fmt.Errorf("silence check: reading open silences: %w", err)
	}
	for key, periods := range seen {
		for since, resumed := range periods {
			if !resumed && since.After(d.open[key]) {
				d.open[key] = since
			}
		}
	}
	return nil
}

// silencePeriod reads a silence or resumption finding: the subject, the
// start of the silence and whether it is a resumption; ok is false for a
// document that is not one of them.
func silencePeriod(doc store.Doc) (key string, since time.Time, resumed, ok bool) {
	f, err := finding.Decode(doc.Source)
	if err != nil {
		return "", time.Time{}, false, false
	}
	key = f.Labels["subject"]
	since, err = time.Parse(time.RFC3339Nano, f.Labels["silent_since"])
	if key == "" || err != nil {
		return "", time.Time{}, false, false
	}
	return key, since, f.RuleID == RuleAgentResumed || f.RuleID == RuleEntityResumed, true
}

// agentDoc is the part of an agents-collection document the detector
// reads. silence_after (or policy.silence_after) is a Go duration string.
type agentDoc struct {
	AgentID  string          `json:"agent.id"`
	Kind     string          `json:"kind"`
	Status   string          `json:"status"`
	Revoked  bool            `json:"revoked"`
	Hostname string          `json:"hostname"`
	LastSeen string          `json:"last_seen"`
	Enrolled string          `json:"enrolled"`
	After    string          `json:"silence_after"`
	Policy   json.RawMessage `json:"policy"`
}

func (d *Detector) members(ctx context.Context) ([]member, error) {
	var out []member
	err := d.o.Store.Scan(ctx, store.RegionalScope(), store.Agents, store.ScanRequest{}, func(doc store.Doc) error {
		if m, ok := d.member(doc); ok {
			out = append(out, m)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("silence check: listing agents and devices: %w", err)
	}
	// The scan's order is the store's: check the most recently seen first,
	// then by id, so that the findings of one check come in a stable order.
	slices.SortFunc(out, func(a, b member) int {
		if c := b.lastSeen.Compare(a.lastSeen); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	return out, nil
}

// member reads an agents-collection document; ok is false for an
// unreadable document (logged) and for a revoked, retired or disabled
// agent, which are not checked.
func (d *Detector) member(doc store.Doc) (member, bool) {
	var a agentDoc
	if err := json.Unmarshal(doc.Source, &a); err != nil {
		d.log.WithField("agent", doc.ID).Warn("silence check: agent document is not readable; skipped")
		return member{}, false
	}
	m := member{id: doc.ID, entity: doc.Tenant, kind: a.Kind, host: a.Hostname,
		revoked: a.Revoked || strings.EqualFold(a.Status, "revoked")}
	if m.revoked || strings.EqualFold(a.Status, "retired") || strings.EqualFold(a.Status, "disabled") {
		return member{}, false
	}
	m.lastSeen, _ = time.Parse(time.RFC3339Nano, a.LastSeen)
	m.enrolled, _ = time.Parse(time.RFC3339Nano, a.Enrolled)
	after := a.After
	if after == "" && len(a.Policy) > 0 {
		var p struct {
			After string `json:"silence_after"`
		}
		_ = json.Unmarshal(a.Policy, &p)
		after = p.After
	}
	if after != "" {
		if dur, err := time.ParseDuration(after); err == nil && dur > 0 {
			m.after = dur
		}
	}
	return m, true
}

// lease takes or renews the check lease (a rules_state document updated
// with optimistic concurrency); it reports whether this instance holds it.
func (d *Detector) lease(ctx context.Context) (bool, error) {
	now := d.o.Now()
	ttl := 3 * d.o.Check
	type leaseDoc struct {
		Updated   string `json:"updated"`
		RuleID    string `json:"rule.id"`
		Partition string `json:"partition"`
		Kind      string `json:"kind"`
		Holder    string `json:"holder"`
		Expires   string `json:"expires"`
	}
	mine := leaseDoc{Updated: now.UTC().Format(time.RFC3339Nano), RuleID: leaseRule, Partition: "silence", Kind: "lease",
		Holder: d.o.Instance, Expires: now.Add(ttl).UTC().Format(time.RFC3339Nano)}
	src, err := json.Marshal(mine)
	if err != nil {
		return false, err
	}
	scope := store.RegionalScope()
	doc, err := d.o.Store.Get(ctx, scope, store.RulesState, LeaseID)
	if errors.Is(err, store.ErrNotFound) {
		_, err = d.o.Store.Create(ctx, scope, store.RulesState, store.Doc{ID: LeaseID, Tenant: store.RegionalTenant, Source: src}, store.WriteOptions{})
		if errors.Is(err, store.ErrExists) {
			return false, nil
		}
		return err == nil, err
	}
	if err != nil {
		return false, fmt.Errorf("reading the silence-check lease: %w", err)
	}
	var cur leaseDoc
	_ = json.Unmarshal(doc.Source, &cur)
	exp, perr := time.Parse(time.RFC3339Nano, cur.Expires)
	if cur.Holder != d.o.Instance && perr == nil && now.Before(exp) {
		return false, nil
	}
	doc.Source = src
	_, err = d.o.Store.Update(ctx, scope, store.RulesState, doc, store.WriteOptions{})
	if errors.Is(err, store.ErrConflict) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("renewing the silence-check lease: %w", err)
	}
	return true, nil
}

func period(from, to time.Time) string {
	return fmt.Sprintf("%s to %s (%s)", from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339), to.Sub(from).Round(time.Second))
}

func agentSilence(m member, since time.Time, after time.Duration, now time.Time) *finding.Finding {
	host := m.host
	if host == "" {
		host = m.id
	}
	return &finding.Finding{
		ID: finding.NewID(RuleAgentSilence, m.id, finding.TimeKey(since)), Time: now.UTC(), Kind: finding.KindCoverage,
		RuleID: RuleAgentSilence, RuleName: "Agent silent", RuleGroup: GroupHealth, Severity: finding.Medium,
		Entity: m.entity, Host: host, AgentID: m.id,
		Observables: []finding.Observable{{Type: "agent", Value: m.id}},
		Tags:        []string{"coverage:agent-silent"},
		Message: fmt.Sprintf("Agent %q (host %q) has sent nothing since %s: silent %s so far, its policy allows %s. Check that the host is up and the agent running (systemctl status csirt-agent).",
			m.id, host, since.UTC().Format(time.RFC3339), now.Sub(since).Round(time.Second), after),
		Labels: map[string]string{"subject": "agent:" + m.id, "silent_since": finding.TimeKey(since), "silence_after": after.String()},
	}
}

func agentResumed(m member, since, at, now time.Time) *finding.Finding {
	host := m.host
	if host == "" {
		host = m.id
	}
	return &finding.Finding{
		ID: finding.NewID(RuleAgentResumed, m.id, finding.TimeKey(since)), Time: now.UTC(), Kind: finding.KindCoverage,
		RuleID: RuleAgentResumed, RuleName: "Agent resumed after silence", RuleGroup: GroupHealth, Severity: finding.Informational,
		Entity: m.entity, Host: host, AgentID: m.id,
		Observables: []finding.Observable{{Type: "agent", Value: m.id}},
		Tags:        []string{"coverage:agent-resumed"},
		Message: fmt.Sprintf("Agent %q (host %q) is sending again: silent from %s. Records it spooled meanwhile arrive late; records it could not spool are reported as sequence gaps.",
			m.id, host, period(since, at)),
		Labels: map[string]string{"subject": "agent:" + m.id, "silent_since": finding.TimeKey(since), "resumed_at": finding.TimeKey(at)},
	}
}

func entitySilence(entity string, since time.Time, after time.Duration, now time.Time) *finding.Finding {
	return &finding.Finding{
		ID: finding.NewID(RuleEntitySilence, entity, finding.TimeKey(since)), Time: now.UTC(), Kind: finding.KindCoverage,
		RuleID: RuleEntitySilence, RuleName: "Entity silent", RuleGroup: GroupHealth, Severity: finding.High,
		Entity: entity, Tags: []string{"coverage:entity-silent"},
		Message: fmt.Sprintf("No agent or device of entity %q has sent anything since %s: silent %s so far (threshold %s). The entity may be offline or its uplink down.",
			entity, since.UTC().Format(time.RFC3339), now.Sub(since).Round(time.Second), after),
		Labels: map[string]string{"subject": "entity:" + entity, "silent_since": finding.TimeKey(since), "silence_after": after.String()},
	}
}

func entityResumed(entity string, since, at, now time.Time) *finding.Finding {
	return &finding.Finding{
		ID: finding.NewID(RuleEntityResumed, entity, finding.TimeKey(since)), Time: now.UTC(), Kind: finding.KindCoverage,
		RuleID: RuleEntityResumed, RuleName: "Entity resumed after silence", RuleGroup: GroupHealth, Severity: finding.Informational,
		Entity: entity, Tags: []string{"coverage:entity-resumed"},
		Message: fmt.Sprintf("Entity %q is sending again: silent from %s.", entity, period(since, at)),
		Labels:  map[string]string{"subject": "entity:" + entity, "silent_since": finding.TimeKey(since), "resumed_at": finding.TimeKey(at)},
	}
}
