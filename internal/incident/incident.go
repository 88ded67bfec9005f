// Package incident is the platform's incident: what analysts triage and
// entities are told about. It defines the Incident type (and the regional
// campaign that links incidents of several entities), its deterministic
// ids, its lifecycle (statuses, resolutions and the transitions between
// them), its markings (TLP 2.0, PAP), its category in the ENISA Reference
// Security Incident Taxonomy, the NIS2 reporting timers, and its store
// document (Doc, FromDoc). The incident stage (correlator/incidents)
// writes incidents; the CLI and the console read and change them.
// docs/incidents.md describes the model.
package incident

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/finding"
	"github.com/csirt-toscana/platform/internal/store"
)

// Kind tells entity incidents from regional campaigns; both live in the
// store's incidents collection.
type Kind string

// The kinds.
const (
	KindIncident Kind = "incident" // one entity's incident (tenant: the entity)
	KindCampaign Kind = "campaign" // a regional campaign (tenant: store.RegionalTenant)
)

// Status is where an incident is in its lifecycle.
type Status string

// The statuses, in their usual order.
const (
	StatusNew           Status = "new"
	StatusAcknowledged  Status = "acknowledged"
	StatusInvestigating Status = "investigating"
	StatusContained     Status = "contained"
	StatusResolved      Status = "resolved"
	StatusClosed        Status = "closed"
)

// Statuses lists every status.
var Statuses = []Status{StatusNew, StatusAcknowledged, StatusInvestigating, StatusContained, StatusResolved, StatusClosed}

// Valid reports whether s is one of Statuses.
func (s Status) Valid() bool { return slices.Contains(Statuses, s) }

// Open reports whether new findings may still attach: every status but
// resolved and closed.
func (s Status) Open() bool { return s != StatusResolved && s != StatusClosed }

// transitions lists, for each status, the statuses it may move to.
// Resolved and closed incidents can be reopened (to investigating).
var transitions = map[Status][]Status{
	StatusNew:           {StatusAcknowledged, StatusInvestigating, StatusContained, StatusResolved, StatusClosed},
	StatusAcknowledged:  {StatusInvestigating, StatusContained, StatusResolved, StatusClosed},
	StatusInvestigating: {StatusContained, StatusResolved, StatusClosed},
	StatusContained:     {StatusInvestigating, StatusResolved, StatusClosed},
	StatusResolved:      {StatusClosed, StatusInvestigating},
	StatusClosed:        {StatusInvestigating},
}

// CanMove reports whether an incident in status from may move to status to.
func CanMove(from, to Status) bool { return slices.Contains(transitions[from], to) }

// Resolution says how a resolved or closed incident ended.
type Resolution string

// The resolutions.
const (
	ResolutionTruePositive  Resolution = "true_positive"
	ResolutionBenign        Resolution = "benign" // real activity, not malicious (a pentest, an admin)
	ResolutionFalsePositive Resolution = "false_positive"
	ResolutionDuplicate     Resolution = "duplicate"
)

// Resolutions lists every resolution.
var Resolutions = []Resolution{ResolutionTruePositive, ResolutionBenign, ResolutionFalsePositive, ResolutionDuplicate}

// Valid reports whether r is one of Resolutions.
func (r Resolution) Valid() bool { return slices.Contains(Resolutions, r) }

// TLP is a Traffic Light Protocol 2.0 marking (FIRST): who may receive the
// information.
type TLP string

// The TLP 2.0 labels.
const (
	TLPClear       TLP = "clear"
	TLPGreen       TLP = "green"
	TLPAmber       TLP = "amber"
	TLPAmberStrict TLP = "amber+strict"
	TLPRed         TLP = "red"
)

// TLPs lists every label, least restrictive first.
var TLPs = []TLP{TLPClear, TLPGreen, TLPAmber, TLPAmberStrict, TLPRed}

// Valid reports whether t is one of TLPs.
func (t TLP) Valid() bool { return slices.Contains(TLPs, t) }

// PAP is a Permissible Actions Protocol marking: what the recipient may do
// with the information (clear: anything; green: active actions allowed;
// amber: passive cross-checks only; red: nothing that could be detected).
type PAP string

// The PAP labels.
const (
	PAPClear PAP = "clear"
	PAPGreen PAP = "green"
	PAPAmber PAP = "amber"
	PAPRed   PAP = "red"
)

// PAPs lists every label, least restrictive first.
var PAPs = []PAP{PAPClear, PAPGreen, PAPAmber, PAPRed}

// Valid reports whether p is one of PAPs.
func (p PAP) Valid() bool { return slices.Contains(PAPs, p) }

// Defaults of a new incident: shared with the entity and the CSIRT only,
// passive actions only.
const (
	DefaultTLP = TLPAmber
	DefaultPAP = PAPAmber
)

// Entry is one line of an incident's timeline.
type Entry struct {
	Time    time.Time // when it happened (a finding's time, a change's time)
	Kind    string    // EntryFinding, EntryStatus, EntryCampaign, EntryCreated, ...
	Actor   string    // who: "csirt-incidents" for the stage, a user name for analysts
	Message string
	Finding string // the finding id, for EntryFinding
}

// Timeline entry kinds.
const (
	EntryCreated  = "created"
	EntryFinding  = "finding"
	EntryStatus   = "status"
	EntryCampaign = "campaign"
	EntryAssign   = "assign"
	EntryComment  = "comment"
)

// Comment is an analyst's note.
type Comment struct {
	Time   time.Time
	Author string
	Text   string
}

// Task is a step of the response ("block 203.0.113.7 on the firewall").
type Task struct {
	ID       string
	Title    string
	Done     bool
	Assignee string
	Created  time.Time
	DoneAt   time.Time
}

// Member is one entity incident of a campaign.
type Member struct {
	Entity   string
	Incident string
	Joined   time.Time // time of the first finding that brought it in
}

// Limits of an incident document.
const (
	// MaxFindingIDs is how many finding ids an incident records (for
	// redelivery detection and for `incidents show`). Findings beyond
	// it are counted (FindingCount) but not listed.
	MaxFindingIDs = 5000
	// MaxTimeline is how many timeline entries are kept; later finding
	// entries are dropped (the count still grows), status changes and
	// comments are always kept.
	MaxTimeline = 1000
	// MaxList bounds hosts, users, observables and techniques.
	MaxList = 1000
	// MaxSize is the largest accepted document.
	MaxSize = 4 << 20
)

// Incident is one incident or campaign.
type Incident struct {
	ID      string
	Kind    Kind
	Entity  string // the tenant: entity id, or store.RegionalTenant for campaigns and regional incidents
	Version store.Version

	Title       string
	Description string
	Created     time.Time // when the incident was opened
	Updated     time.Time // last change
	FirstSeen   time.Time // earliest finding time
	LastSeen    time.Time // latest finding time

	Status     Status
	Resolution Resolution // set when resolved or closed
	Severity   finding.Severity
	RiskScore  int
	Assignee   string
	TLP        TLP
	PAP        PAP
	Category   Category

	Techniques  []string // ATT&CK technique ids
	Tactics     []string // ATT&CK tactics (credential-access, ...)
	Observables []finding.Observable
	Hosts       []string // affected assets (host.name)
	Users       []string // affected or used accounts

	RuleGroup string   // the grouping rule group
	GroupKey  string   // the grouping key entities, human-readable ("source.ip=203.0.113.7")
	Rules     []string // rule ids of the attached findings

	CampaignID   string
	FindingCount int
	FindingIDs   []string

	Timeline []Entry
	Comments []Comment
	Tasks    []Task
	NIS2     *NIS2 // nil when the entity is not in NIS2 scope

	// Campaigns only.
	Members  []Member
	Entities []string
}

// Tenant is the store tenant of the incident.
func (in *Incident) Tenant() string {
	if in.Entity == "" {
		return store.RegionalTenant
	}
	return in.Entity
}

// Scope is the store scope that reads and writes the incident.
func (in *Incident) Scope() store.Scope {
	if in.Tenant() == store.RegionalTenant {
		return store.RegionalScope()
	}
	return store.TenantScope(in.Tenant())
}

// Key is what groups findings into one incident: the entity, the rule
// group and the key entities. Two findings with equal keys whose times
// are within the window belong to the same incident.
type Key struct {
	Entity    string // tenant (store.RegionalTenant for regional findings)
	RuleGroup string
	// Entities is the key entities as "field=value" pairs in a fixed
	// order: source.ip when the finding has an attacker address, else
	// host.name and user.name (and agent.id when there is no host).
	Entities string
}

// String is the key's readable form.
func (k Key) String() string { return k.Entity + "/" + k.RuleGroup + "/" + k.Entities }

// KeyOf returns the grouping key of a finding. An attacker address
// (source.ip) is the strongest key: every finding of the same rule group
// about that address in the entity joins one incident, whichever hosts
// and accounts it touched (they become the affected assets). Without one,
// the host and the account are the key.
func KeyOf(f *finding.Finding) Key {
	k := Key{Entity: f.Tenant(), RuleGroup: f.RuleGroup}
	if k.RuleGroup == "" {
		k.RuleGroup = f.RuleID
	}
	switch {
	case f.SourceIP != "":
		k.Entities = "source.ip=" + f.SourceIP
	default:
		k.Entities = "host.name=" + f.Host + " user.name=" + f.User
		if f.Host == "" && f.AgentID != "" {
			k.Entities += " agent.id=" + f.AgentID
		}
	}
	return k
}

// hash is the hex id material of parts (length-prefixed SHA-256).
func hash(parts ...string) string {
	b := make([][]byte, len(parts))
	for i, p := range parts {
		b[i] = []byte(p)
	}
	return event.IDFromRaw(b...)
}

// WindowStart is the start of the fixed window of length w that holds t
// (windows are aligned on the Unix epoch, UTC).
func WindowStart(t time.Time, w time.Duration) time.Time {
	if w <= 0 {
		return t.UTC()
	}
	return t.UTC().Truncate(w)
}

// ID is the deterministic id of the incident of key k opened in the
// window starting at start; gen counts the incidents of the same key and
// window that were closed before (0 for the first). Every instance of the
// incident stage computes the same id for the same findings, so two of
// them opening the same incident meet on one document.
func ID(k Key, start time.Time, gen int) string {
	return "inc-" + hash("incident", k.Entity, k.RuleGroup, k.Entities, start.UTC().Format(time.RFC3339Nano), fmt.Sprint(gen))
}

// CampaignID is the deterministic id of the campaign around a shared
// observable in the campaign window starting at start.
func CampaignID(o finding.Observable, start time.Time) string {
	return "camp-" + hash("campaign", o.Type, o.Value, start.UTC().Format(time.RFC3339Nano))
}

// Errors of lifecycle changes.
var (
	ErrTransition = errors.New("incident: status change not allowed")
	ErrResolution = errors.New("incident: resolution required")
)

// SetStatus moves the incident to status to, validating the transition,
// and records it on the timeline. Moving to resolved or closed needs a
// resolution (keeping the one already set when r is empty); reopening
// clears it.
func (in *Incident) SetStatus(to Status, r Resolution, actor string, at time.Time) error {
	if !to.Valid() {
		return fmt.Errorf("%w: %q is not a status (one of %v)", ErrTransition, to, Statuses)
	}
	if to == in.Status {
		return nil
	}
	if !CanMove(in.Status, to) {
		return fmt.Errorf("%w: %s -> %s (allowed from %s: %v)", ErrTransition, in.Status, to, in.Status, transitions[in.Status])
	}
	if r != "" && !r.Valid() {
		return fmt.Errorf("%w: %q is not a resolution (one of %v)", ErrResolution, r, Resolutions)
	}
	msg := fmt.Sprintf("status %s -> %s", in.Status, to)
	if to.Open() {
		in.Resolution = ""
	} else {
		if r == "" {
			r = in.Resolution
		}
		if r == "" {
			return fmt.Errorf("%w: moving incident %s to %s needs a resolution (one of %v)", ErrResolution, in.ID, to, Resolutions)
		}
		in.Resolution = r
		msg += " (" + string(r) + ")"
	}
	in.Status = to
	in.Updated = at.UTC()
	in.addEntry(Entry{Time: at.UTC(), Kind: EntryStatus, Actor: actor, Message: msg}, true)
	return nil
}

// addEntry appends a timeline entry; finding entries are dropped once the
// timeline is full, the others always kept.
func (in *Incident) addEntry(e Entry, always bool) {
	if !always && len(in.Timeline) >= MaxTimeline {
		return
	}
	in.Timeline = append(in.Timeline, e)
}

// HasFinding reports whether the finding id is among FindingIDs.
func (in *Incident) HasFinding(id string) bool { return slices.Contains(in.FindingIDs, id) }

// Attach adds a finding: counts it, raises severity and risk to the
// highest seen, widens the seen-time range, merges hosts, users,
// observables, techniques, tactics and rules, refines the category, and
// adds a timeline entry. It returns false, changing nothing, when the
// finding is already attached (a redelivery). actor names who attached it.
func (in *Incident) Attach(f *finding.Finding, actor string, now time.Time) bool {
	if in.HasFinding(f.ID) {
		return false
	}
	if len(in.FindingIDs) < MaxFindingIDs {
		in.FindingIDs = append(in.FindingIDs, f.ID)
	}
	in.FindingCount++
	if f.Severity.Rank() > in.Severity.Rank() {
		in.Severity = f.Severity
	}
	if r := f.Risk(); r > in.RiskScore {
		in.RiskScore = r
	}
	t := f.Time.UTC()
	if in.FirstSeen.IsZero() || t.Before(in.FirstSeen) {
		in.FirstSeen = t
	}
	if t.After(in.LastSeen) {
		in.LastSeen = t
	}
	in.Hosts = addString(in.Hosts, f.Host)
	in.Users = addString(in.Users, f.User)
	in.Rules = addString(in.Rules, f.RuleID)
	for _, tech := range f.Techniques {
		in.Techniques = addString(in.Techniques, tech)
	}
	for _, tac := range Tactics(f) {
		in.Tactics = addString(in.Tactics, tac)
	}
	for _, o := range FindingObservables(f) {
		in.Observables = addObservable(in.Observables, o)
	}
	if c := Categorize(f); in.Category == "" || (in.Category == CategoryUndetermined && c != CategoryUndetermined) {
		in.Category = c
	}
	name := f.RuleName
	if name == "" {
		name = f.RuleID
	}
	msg := name
	if f.Message != "" {
		msg += ": " + f.Message
	}
	in.addEntry(Entry{Time: t, Kind: EntryFinding, Actor: actor, Message: finding.Truncate(msg, 512), Finding: f.ID}, false)
	in.Updated = now.UTC()
	return true
}

// FindingObservables are the observables a finding brings to an
// incident: its own list plus its source address, host and user.
func FindingObservables(f *finding.Finding) []finding.Observable {
	out := make([]finding.Observable, 0, len(f.Observables)+3)
	if f.SourceIP != "" {
		out = append(out, finding.Observable{Type: "ip", Value: f.SourceIP})
	}
	out = append(out, f.Observables...)
	if f.Host != "" {
		out = append(out, finding.Observable{Type: "hostname", Value: f.Host})
	}
	if f.User != "" {
		out = append(out, finding.Observable{Type: "user", Value: f.User})
	}
	return out
}

func addString(list []string, s string) []string {
	if s == "" || len(list) >= MaxList || slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

func addObservable(list []finding.Observable, o finding.Observable) []finding.Observable {
	if o.Type == "" || o.Value == "" || len(list) >= MaxList || slices.Contains(list, o) {
		return list
	}
	return append(list, o)
}

// New opens an incident for the first finding of key k: status new,
// default markings, the title from the finding, and (when nis2 is set)
// the NIS2 timers from now. The finding is attached.
func New(id string, k Key, f *finding.Finding, nis2 bool, actor string, now time.Time) *Incident {
	in := &Incident{
		ID: id, Kind: KindIncident, Entity: k.Entity, Created: now.UTC(), Updated: now.UTC(),
		Status: StatusNew, Severity: f.Severity, TLP: DefaultTLP, PAP: DefaultPAP,
		RuleGroup: k.RuleGroup, GroupKey: k.Entities, Title: title(f),
	}
	if nis2 {
		in.NIS2 = NewNIS2(now)
	}
	in.addEntry(Entry{Time: now.UTC(), Kind: EntryCreated, Actor: actor, Message: "incident opened for " + k.RuleGroup + " (" + k.Entities + ")"}, true)
	in.Attach(f, actor, now)
	return in
}

func title(f *finding.Finding) string {
	name := f.RuleName
	if name == "" {
		name = f.RuleID
	}
	// "SSH brute force from one address" names the source already: the
	// address follows a colon instead of a second "from".
	from := " from "
	if strings.Contains(name, " from ") {
		from = ": "
	}
	switch {
	case f.SourceIP != "" && f.Host != "":
		return fmt.Sprintf("%s%s%s on %s", name, from, f.SourceIP, f.Host)
	case f.SourceIP != "":
		return name + from + f.SourceIP
	case f.Host != "":
		return fmt.Sprintf("%s on %s", name, f.Host)
	}
	return name
}

// NewCampaign opens a regional campaign around a shared observable.
func NewCampaign(id string, o finding.Observable, ruleGroup string, now time.Time) *Incident {
	c := &Incident{
		ID: id, Kind: KindCampaign, Entity: store.RegionalTenant, Created: now.UTC(), Updated: now.UTC(),
		Status: StatusNew, Severity: finding.Informational, TLP: DefaultTLP, PAP: DefaultPAP,
		RuleGroup: ruleGroup, GroupKey: o.Type + "=" + o.Value, CampaignID: id,
		Observables: []finding.Observable{o},
		Title:       fmt.Sprintf("Regional campaign: %s from %s", ruleGroup, o.Value),
	}
	c.addEntry(Entry{Time: now.UTC(), Kind: EntryCreated, Actor: "csirt-incidents", Message: "campaign opened around " + o.Type + " " + o.Value}, true)
	return c
}

// AddMember links an entity incident to the campaign, merging its
// severity, category, techniques and hosts; false when it was a member.
func (in *Incident) AddMember(m *Incident, joined time.Time, now time.Time) bool {
	for _, x := range in.Members {
		if x.Incident == m.ID {
			return false
		}
	}
	in.Members = append(in.Members, Member{Entity: m.Tenant(), Incident: m.ID, Joined: joined.UTC()})
	sort.Slice(in.Members, func(i, j int) bool { return in.Members[i].Incident < in.Members[j].Incident })
	in.Entities = addString(in.Entities, m.Tenant())
	sort.Strings(in.Entities)
	in.FindingCount = len(in.Members)
	if m.Severity.Rank() > in.Severity.Rank() {
		in.Severity = m.Severity
	}
	if m.RiskScore > in.RiskScore {
		in.RiskScore = m.RiskScore
	}
	if in.Category == "" || in.Category == CategoryUndetermined {
		in.Category = m.Category
	}
	for _, t := range m.Techniques {
		in.Techniques = addString(in.Techniques, t)
	}
	for _, t := range m.Tactics {
		in.Tactics = addString(in.Tactics, t)
	}
	for _, h := range m.Hosts {
		in.Hosts = addString(in.Hosts, h)
	}
	if in.FirstSeen.IsZero() || (!m.FirstSeen.IsZero() && m.FirstSeen.Before(in.FirstSeen)) {
		in.FirstSeen = m.FirstSeen
	}
	if m.LastSeen.After(in.LastSeen) {
		in.LastSeen = m.LastSeen
	}
	in.Title = fmt.Sprintf("Regional campaign: %s from %s on %d entities", in.RuleGroup, in.Observables[0].Value, len(in.Entities))
	in.addEntry(Entry{Time: now.UTC(), Kind: EntryCampaign, Actor: "csirt-incidents", Message: "incident " + m.ID + " of " + m.Tenant() + " joined"}, true)
	in.Updated = now.UTC()
	return true
}

// Validate checks what every incident must carry.
func (in *Incident) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("incident %q: %s: %s", in.ID, field, fmt.Sprintf(format, args...))
	}
	if err := store.ValidID(in.ID); err != nil {
		return bad("id", "%v", err)
	}
	if in.Kind != KindIncident && in.Kind != KindCampaign {
		return bad("kind", "%q is not incident or campaign", in.Kind)
	}
	if in.Created.IsZero() {
		return bad("created", "is missing")
	}
	if !in.Status.Valid() {
		return bad("status", "%q is not one of %v", in.Status, Statuses)
	}
	if in.Resolution != "" && !in.Resolution.Valid() {
		return bad("resolution", "%q is not one of %v", in.Resolution, Resolutions)
	}
	if !in.Status.Open() && in.Resolution == "" {
		return bad("resolution", "a %s incident needs one", in.Status)
	}
	if !in.Severity.Valid() {
		return bad("severity", "%q is not one of %v", in.Severity, finding.Severities)
	}
	if !in.TLP.Valid() {
		return bad("tlp", "%q is not one of %v", in.TLP, TLPs)
	}
	if !in.PAP.Valid() {
		return bad("pap", "%q is not one of %v", in.PAP, PAPs)
	}
	if in.Category != "" && !in.Category.Valid() {
		return bad("category", "%q is not an ENISA taxonomy class.type", in.Category)
	}
	if in.FindingCount < 0 {
		return bad("findings.count", "%d is negative", in.FindingCount)
	}
	if in.Entity != "" && in.Entity != store.RegionalTenant {
		if err := store.ValidID(in.Entity); err != nil {
			return bad("organization.id", "%v", err)
		}
	}
	if in.CampaignID != "" {
		if err := store.ValidID(in.CampaignID); err != nil {
			return bad("campaign.id", "%v", err)
		}
	}
	return nil
}
