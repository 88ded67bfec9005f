package correlation

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
)

// MaxGroupBy is the most group-by fields a correlation may have: group keys
// are fixed-size arrays so that state lookups never build strings.
const MaxGroupBy = 4

// Key is a typed composite group-by key: the values of the group-by fields
// in the order of Rule.GroupBy; unused slots are empty.
type Key [MaxGroupBy]string

// Defaults of Options.
const (
	DefaultMaxKeysPerRule  = 100_000
	DefaultMaxEventsPerKey = 1_000
	DefaultMaxEventIDs     = 32
)

// RuleRef names a detection (base) rule that correlations may reference, by
// id or by name.
type RuleRef struct {
	ID, Name string
}

// Options configure an Engine. Zero values take the defaults.
type Options struct {
	// Clock gives the wall time stored as "last touched" on each group key;
	// Expire compares it with its argument to drop idle keys. Windows and
	// conditions never use it: they run on event time. Default time.Now.
	Clock func() time.Time
	// MaxKeysPerRule bounds the live group keys of one correlation; when
	// full, the least recently seen of a small random sample of keys is
	// evicted (counted in Stats.KeysEvicted). Default 100,000.
	MaxKeysPerRule int
	// MaxEventsPerKey bounds what one key remembers (event times, distinct
	// values); the oldest is dropped first (Stats.EventsEvicted). A
	// correlation whose threshold could never be reached under this bound
	// is refused by New. Default 1,000.
	MaxEventsPerKey int
	// MaxEventIDs bounds the contributing event ids carried by an alert
	// (the most recent are kept). Default 32; negative keeps none, which
	// also saves memory per key.
	MaxEventIDs int
	// IdleTimeout: Expire drops a key whose last update (by Clock) is older
	// than its rule's timespan plus IdleTimeout. Default 5 minutes.
	IdleTimeout time.Duration
	// BaseRules are the detection rules correlations may reference.
	// Correlations may also reference each other.
	BaseRules []RuleRef
	// Field maps a field name written in a correlation (group-by, alias
	// targets, condition.field) to the event field, e.g. the Sigma-to-ECS
	// mapping (User -> user.name). Default: names used as written.
	Field func(string) string
}

func (o *Options) fill() {
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.MaxKeysPerRule <= 0 {
		o.MaxKeysPerRule = DefaultMaxKeysPerRule
	}
	if o.MaxEventsPerKey <= 0 {
		o.MaxEventsPerKey = DefaultMaxEventsPerKey
	}
	if o.MaxEventIDs == 0 {
		o.MaxEventIDs = DefaultMaxEventIDs
	}
	if o.MaxEventIDs < 0 {
		o.MaxEventIDs = 0
	}
	if o.Field == nil {
		o.Field = func(s string) string { return s }
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 5 * time.Minute
	}
}

// Match is one match of a referenced rule: a detection rule matching an
// event, or a correlation alert fed back (see Alert.Match).
type Match struct {
	RuleID, RuleName string
	Event            event.Event
}

// Alert is one firing of a correlation rule for one group key.
type Alert struct {
	// ID is deterministic: the same rule, key, window and contributing
	// events give the same id, so a replay after a restart overwrites
	// instead of duplicating.
	ID   string
	Rule *Rule
	// GroupBy holds the group-by values, aligned with Rule.GroupBy.
	GroupBy []string
	// Start and End are the event times of the first and last
	// contributing events (the window that satisfied the condition).
	Start, End time.Time
	// Count is the number of contributing events (event_count, value_*),
	// or of distinct referenced rules matched (temporal) or ordered steps
	// completed (temporal_ordered).
	Count int
	// Value is the aggregate compared with the condition: the count, the
	// distinct value count, the sum, the average, or the percentage share
	// of the rarest value (value_percentile).
	Value float64
	// Values are the distinct values (value_count) or the rare values
	// (value_percentile), at most Options.MaxEventsPerKey.
	Values []string
	// EventIDs are the most recent contributing event ids (bounded by
	// Options.MaxEventIDs).
	EventIDs []string
	// Emit reports whether this alert should become a finding: false when
	// the correlation is only an intermediate step of another correlation
	// that does not set generate.
	Emit bool
	// Trigger is the event that completed the correlation (nil for a window
	// closed by Expire or Flush).
	Trigger event.Event

	gbFields []string // group-by names after Options.Field
}

// Match returns the alert as a match of its rule, to feed correlations that
// reference it. Its event is the triggering event's fields with the
// group-by values under the group-by names, @timestamp the window end and
// event.id the alert id.
func (a *Alert) Match() Match {
	ev := make(event.Event, len(a.Trigger)+len(a.GroupBy)+4)
	for k, v := range a.Trigger {
		ev[k] = v
	}
	for i, g := range a.Rule.GroupBy {
		ev[g] = a.GroupBy[i]
		if i < len(a.gbFields) {
			ev[a.gbFields[i]] = a.GroupBy[i]
		}
	}
	ev["@timestamp"] = a.End
	ev["event.id"] = a.ID
	ev["event.kind"] = "alert"
	ev["rule.id"] = a.Rule.ID
	ev["rule.name"] = a.Rule.Name
	ev["event.count"] = int64(a.Count)
	return Match{RuleID: a.Rule.ID, RuleName: a.Rule.Name, Event: ev}
}

// RuleStats are the counters of one correlation.
type RuleStats struct {
	Rule           string // Rule.Ref()
	Keys           int    // live group keys
	Alerts         uint64
	KeysEvicted    uint64 // keys dropped because MaxKeysPerRule was reached
	EventsEvicted  uint64 // events or values dropped because MaxEventsPerKey was reached
	KeysExpired    uint64 // keys dropped by Expire
	Late           uint64 // matches older than the key's window or already consumed by an alert
	MissingGroupBy uint64 // matches without a group-by field
	MissingField   uint64 // matches without (a usable) condition.field value
}

// Engine evaluates correlation rules over matches. It is safe for
// concurrent use, but the order of matches defines the result: feed one
// partition's matches from one goroutine.
type Engine struct {
	opts    Options
	mu      sync.Mutex
	rules   []*crule
	canon   map[string]string // id or name -> canonical identity
	subs    map[string][]*sub // canonical identity -> correlations using it
	emit    map[string]bool   // canonical identity -> emit its findings
	byRef   map[string]*crule // Rule.Ref() -> compiled rule
	idsKept int
	restore RestoreInfo
}

// crule is a compiled correlation rule with its state.
type crule struct {
	r         *Rule
	canon     string
	fp        string // fingerprint of the semantics, to validate snapshots
	eager     bool   // fire as soon as the condition holds (sliding window)
	ts        int64  // timespan in nanoseconds
	need      Condition
	valFields []string // condition.field, mapped
	gbFields  []string // group-by names, mapped
	keys      keyStore
	watermark int64 // newest event time seen
	stats     RuleStats
	hasParent bool
	emit      bool
}

// sub is one correlation's subscription to one referenced rule.
type sub struct {
	cr        *crule
	positions []int    // indexes in Rule.Rules (temporal types)
	fields    []string // event field per group-by slot for this source
}

// state is what one group key remembers. It is 48 bytes (a Go size class):
// the events or values of count and value types and the steps of temporal
// types share one field, ext, so no key pays for both slice headers.
type state struct {
	last    int64 // newest contributing event time (unix ns)
	touched int64 // Clock time of the last update (unix ns)
	fired   int64 // event time that triggered the last alert: older matches are ignored
	start   int64 // window start (windows evaluated at close)
	// ext is nil or *[]item (event_count, value_*: allocated on the first
	// event and kept when the items are consumed, so refilling a window
	// does not allocate it again), or the steps of a temporal type: a
	// fixed array *[1]step to *[4]step (one allocation of the exact size)
	// or *[]step for more referenced rules.
	ext any
}

// items returns the key's remembered events or values (nil if none).
func (s *state) items() []item {
	if p, ok := s.ext.(*[]item); ok {
		return *p
	}
	return nil
}

// itemList returns the key's item slice for update, allocating it on first
// use.
func (s *state) itemList() *[]item {
	if p, ok := s.ext.(*[]item); ok {
		return p
	}
	p := new([]item)
	s.ext = p
	return p
}

// dropItems forgets the key's events or values (the slice header is kept).
func (s *state) dropItems() {
	if p, ok := s.ext.(*[]item); ok {
		*p = nil
	}
}

// steps returns the progress of a temporal key on each referenced rule
// (nil for other types).
//
// Sequential assertions, not a type switch: each is one comparison of the
// type word, where a switch of this size compares type hashes first.
func (s *state) steps() []step {
	if p, ok := s.ext.(*[2]step); ok {
		return p[:]
	}
	if p, ok := s.ext.(*[3]step); ok {
		return p[:]
	}
	if p, ok := s.ext.(*[4]step); ok {
		return p[:]
	}
	if p, ok := s.ext.(*[1]step); ok {
		return p[:]
	}
	if p, ok := s.ext.(*[]step); ok {
		return *p
	}
	return nil
}

// newSteps returns zeroed steps for n referenced rules, for state.ext.
func newSteps(n int) any {
	switch n {
	case 1:
		return new([1]step)
	case 2:
		return new([2]step)
	case 3:
		return new([3]step)
	case 4:
		return new([4]step)
	}
	p := make([]step, n)
	return &p
}

// item is one remembered event (event_count) or value (value_*).
type item struct {
	t  int64
	id string
	v  string
	f  float64
}

// step is the progress on one referenced rule of a temporal correlation.
type step struct {
	start, end int64 // 0 = not reached
	id         string
}

// New validates the correlations and builds an engine. Every referenced
// rule must be one of the correlations or of opts.BaseRules (the error names
// the unknown reference and where it is); references may not form a cycle.
func New(rules []*Rule, opts Options) (*Engine, error) {
	opts.fill()
	e := &Engine{
		opts:  opts,
		canon: map[string]string{},
		subs:  map[string][]*sub{},
		emit:  map[string]bool{},
		byRef: map[string]*crule{},
	}
	e.idsKept = opts.MaxEventIDs
	define := func(id, name, what string) (string, error) {
		c := id
		if c == "" {
			c = name
		}
		for _, s := range []string{id, name} {
			if s == "" {
				continue
			}
			if prev, dup := e.canon[s]; dup && prev != c {
				return "", fmt.Errorf("%s: id or name %q is already used by another rule", what, s)
			} else if dup {
				return "", fmt.Errorf("%s: rule %q defined twice", what, s)
			}
			e.canon[s] = c
		}
		return c, nil
	}
	for _, b := range opts.BaseRules {
		if b.ID == "" && b.Name == "" {
			continue
		}
		if _, err := define(b.ID, b.Name, "base rule"); err != nil {
			return nil, err
		}
	}
	for _, r := range rules {
		where := fmt.Sprintf("correlation %s (%s:%s)", r.Ref(), r.File, r.Pos)
		if err := validate(r, opts); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		c := r.Ref()
		if r.ID != "" || r.Name != "" {
			var err error
			if c, err = define(r.ID, r.Name, where); err != nil {
				return nil, err
			}
		}
		cr := &crule{r: r, canon: c, ts: int64(r.Timespan), keys: newStore(len(r.GroupBy)), fp: fingerprint(r)}
		cr.stats.Rule = r.Ref()
		cr.need = r.Condition
		for _, g := range r.GroupBy {
			cr.gbFields = append(cr.gbFields, opts.Field(g))
		}
		for _, f := range r.Condition.Field {
			cr.valFields = append(cr.valFields, opts.Field(f))
		}
		if r.Type.temporal() && len(cr.need.Comparisons) == 0 {
			cr.need.Comparisons = []Comparison{{Op: GTE, Value: float64(len(r.Rules))}}
		}
		switch r.Type {
		case Temporal, TemporalOrdered:
			cr.eager = true
		case EventCount, ValueCount, ValueSum:
			cr.eager = cr.need.Monotone()
		}
		if _, dup := e.byRef[cr.stats.Rule]; dup {
			return nil, fmt.Errorf("%s: two correlations are named %q", where, cr.stats.Rule)
		}
		e.byRef[cr.stats.Rule] = cr
		e.rules = append(e.rules, cr)
	}
	// Resolve references.
	referencedBy := map[string][]*crule{}
	for _, cr := range e.rules {
		r := cr.r
		where := fmt.Sprintf("correlation %s", r.Ref())
		bySource := map[string]*sub{}
		var order []string
		for i, ref := range r.Rules {
			c, ok := e.canon[ref]
			if !ok {
				p := r.Pos
				if i < len(r.RulesPos) {
					p = r.RulesPos[i]
				}
				return nil, fmt.Errorf("%s (%s:%s): unknown referenced rule %q", where, r.File, p, ref)
			}
			s := bySource[c]
			if s == nil {
				s = &sub{cr: cr}
				bySource[c] = s
				order = append(order, c)
			}
			s.positions = append(s.positions, i)
		}
		for alias, m := range r.Aliases {
			for ref := range m {
				c, ok := e.canon[ref]
				if !ok || bySource[c] == nil {
					return nil, fmt.Errorf("%s (%s:%s): alias %q names rule %q, which the correlation does not reference", where, r.File, r.AliasesPos, alias, ref)
				}
			}
		}
		for _, c := range order {
			s := bySource[c]
			s.fields = make([]string, len(r.GroupBy))
			for gi, g := range r.GroupBy {
				s.fields[gi] = opts.Field(g)
				for ref, f := range r.Aliases[g] {
					if e.canon[ref] == c {
						s.fields[gi] = opts.Field(f)
					}
				}
			}
			e.subs[c] = append(e.subs[c], s)
			referencedBy[c] = append(referencedBy[c], cr)
		}
	}
	if err := e.checkCycles(); err != nil {
		return nil, err
	}
	// generate: a referenced rule emits its own findings only when some
	// correlation referencing it sets generate.
	for c, users := range referencedBy {
		gen := false
		for _, u := range users {
			gen = gen || u.r.Generate
		}
		e.emit[c] = gen
	}
	for _, cr := range e.rules {
		cr.hasParent = len(e.subs[cr.canon]) > 0
		cr.emit = true
		if v, ok := e.emit[cr.canon]; ok {
			cr.emit = v
		}
	}
	return e, nil
}

func validate(r *Rule, o Options) error {
	if !r.Type.valid() {
		return fmt.Errorf("unknown type %q", r.Type)
	}
	if r.Timespan <= 0 {
		return fmt.Errorf("timespan must be positive")
	}
	if len(r.Rules) == 0 {
		return fmt.Errorf("no referenced rules")
	}
	if len(r.GroupBy) > MaxGroupBy {
		return fmt.Errorf("%d group-by fields, at most %d are supported", len(r.GroupBy), MaxGroupBy)
	}
	if r.Type.needsField() && len(r.Condition.Field) == 0 {
		return fmt.Errorf("%s needs condition.field", r.Type)
	}
	if !r.Type.temporal() && len(r.Condition.Comparisons) == 0 {
		return fmt.Errorf("%s needs a condition", r.Type)
	}
	if (r.Type == EventCount || r.Type == ValueCount) && r.Condition.Monotone() {
		if th := r.Condition.Threshold(); th > o.MaxEventsPerKey {
			return fmt.Errorf("condition needs %d events per key but MaxEventsPerKey is %d", th, o.MaxEventsPerKey)
		}
	}
	if r.Type.temporal() && len(r.Condition.Comparisons) > 0 && r.Condition.Threshold() > len(r.Rules) {
		return fmt.Errorf("condition asks for %d rules but only %d are referenced", r.Condition.Threshold(), len(r.Rules))
	}
	return nil
}

func (e *Engine) checkCycles() error {
	const (
		white = iota
		grey
		black
	)
	color := map[*crule]int{}
	byCanon := map[string]*crule{}
	for _, cr := range e.rules {
		byCanon[cr.canon] = cr
	}
	var path []string
	var visit func(cr *crule) error
	visit = func(cr *crule) error {
		switch color[cr] {
		case grey:
			return fmt.Errorf("correlation %s references itself through %s", cr.r.Ref(), strings.Join(append(path, cr.r.Ref()), " -> "))
		case black:
			return nil
		}
		color[cr] = grey
		path = append(path, cr.r.Ref())
		for _, ref := range cr.r.Rules {
			if child := byCanon[e.canon[ref]]; child != nil {
				if err := visit(child); err != nil {
					return err
				}
			}
		}
		path = path[:len(path)-1]
		color[cr] = black
		return nil
	}
	for _, cr := range e.rules {
		if err := visit(cr); err != nil {
			return err
		}
	}
	return nil
}

// Emit reports whether matches of a rule (detection rule or correlation)
// should become findings of their own: false when the rule is referenced by
// correlations and none of them sets generate: true (Sigma's default: only
// the correlation is generated). Rules no correlation references emit.
func (e *Engine) Emit(ruleID, ruleName string) bool {
	if c, ok := e.canonOf(ruleID, ruleName); ok {
		if v, ok := e.emit[c]; ok {
			return v
		}
	}
	return true
}

// Referenced reports whether some correlation references the rule, i.e.
// whether its matches must be given to Process.
func (e *Engine) Referenced(ruleID, ruleName string) bool {
	c, ok := e.canonOf(ruleID, ruleName)
	return ok && len(e.subs[c]) > 0
}

func (e *Engine) canonOf(id, name string) (string, bool) {
	if id != "" {
		if c, ok := e.canon[id]; ok {
			return c, true
		}
	}
	if name != "" {
		if c, ok := e.canon[name]; ok {
			return c, true
		}
	}
	return "", false
}

// Process feeds one match and returns the alerts it completes, including
// alerts of correlations that reference correlations (each alert is fed
// back as a match). Windows use the event time (m.Event.Time()).
func (e *Engine) Process(m Match) []Alert {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.process(m, nil)
}

func (e *Engine) process(m Match, out []Alert) []Alert {
	c, ok := e.canonOf(m.RuleID, m.RuleName)
	if !ok {
		return out
	}
	now := e.opts.Clock().UnixNano()
	for _, s := range e.subs[c] {
		if a, fired := e.apply(s, m, now); fired {
			out = append(out, a)
			if s.cr.hasParent {
				out = e.process(a.Match(), out)
			}
		}
	}
	return out
}

func (e *Engine) apply(s *sub, m Match, now int64) (Alert, bool) {
	cr := s.cr
	r := cr.r
	var key Key
	for i, f := range s.fields {
		v, ok := m.Event[f]
		if !ok || v == nil {
			cr.stats.MissingGroupBy++
			return Alert{}, false
		}
		key[i] = m.Event.String(f)
	}
	tt := m.Event.Time()
	if tt.IsZero() {
		cr.stats.Late++
		return Alert{}, false
	}
	t := tt.UnixNano()
	var val string
	var num float64
	if r.Type.needsField() {
		var ok bool
		if r.Type == ValueCount || r.Type == ValuePercentile {
			val, ok = fieldValue(m.Event, cr.valFields)
		} else {
			num, ok = numericValue(m.Event, cr.valFields[0])
		}
		if !ok {
			cr.stats.MissingField++
			return Alert{}, false
		}
	}
	st := cr.keys.get(&key)
	var closed Alert
	var closedOK bool
	if st == nil {
		if cr.keys.len() >= e.opts.MaxKeysPerRule {
			cr.evictOne()
		}
		st = &state{start: t}
		if r.Type.temporal() {
			st.ext = newSteps(len(r.Rules))
		}
		cr.keys.put(&key, st)
	} else if !cr.eager && len(st.items()) > 0 && t > st.start+cr.ts {
		// The key's window closed: evaluate it before starting a new one.
		closed, closedOK = e.close(cr, key, st, nil)
		st.start = t
	}
	if t < st.fired || t < st.last-cr.ts {
		cr.stats.Late++
		return closed, closedOK
	}
	st.touched = now
	if t > st.last {
		st.last = t
	}
	if t > cr.watermark {
		cr.watermark = t
	}
	if !r.Type.temporal() && len(st.items()) == 0 {
		st.start = t
	}
	id := m.Event.ID()
	if e.idsKept == 0 {
		id = ""
	}
	switch r.Type {
	case EventCount, ValueSum, ValueAvg, ValuePercentile:
		cr.insert(st, item{t: t, id: id, v: val, f: num}, e.opts.MaxEventsPerKey)
	case ValueCount:
		cr.upsertValue(st, item{t: t, id: id, v: val}, e.opts.MaxEventsPerKey)
	case Temporal:
		steps := st.steps()
		for _, p := range s.positions {
			if t >= steps[p].end {
				steps[p] = step{start: t, end: t, id: id}
			}
		}
	case TemporalOrdered:
		steps := st.steps()
		for i := len(s.positions) - 1; i >= 0; i-- {
			p := s.positions[i]
			cand := step{start: t, end: t, id: id}
			if p > 0 {
				prev := steps[p-1]
				if prev.end == 0 || prev.end > t || prev.start < t-cr.ts {
					continue
				}
				cand.start = prev.start
			}
			if cur := steps[p]; cur.end == 0 || cand.start >= cur.start {
				steps[p] = cand
			}
		}
	}
	if !cr.eager {
		return closed, closedOK
	}
	cr.prune(st)
	agg, count := cr.aggregate(st)
	if !cr.need.Holds(agg) {
		return closed, closedOK
	}
	a := e.fire(cr, key, st, agg, count, m.Event)
	st.fired = t
	return a, true
}

// evictOne drops the least recently updated key of a small random sample
// (map iteration order is random): approximate LRU without per-key links.
func (cr *crule) evictOne() {
	const sample = 8
	var victim Key
	oldest := int64(math.MaxInt64)
	n := 0
	cr.keys.each(func(k Key, st *state) bool {
		if st.last < oldest {
			oldest, victim = st.last, k
		}
		n++
		return n < sample
	})
	cr.keys.del(&victim)
	cr.stats.KeysEvicted++
}

// insert adds an event in time order, dropping the oldest beyond max.
func (cr *crule) insert(st *state, it item, max int) {
	p := st.itemList()
	items := *p
	i := len(items)
	for i > 0 && items[i-1].t > it.t {
		i--
	}
	items = append(items, item{})
	copy(items[i+1:], items[i:])
	items[i] = it
	if len(items) > max {
		n := len(items) - max
		items = append(items[:0], items[n:]...)
		cr.stats.EventsEvicted += uint64(n)
	}
	*p = items
}

// upsertValue records a distinct value with its latest time.
func (cr *crule) upsertValue(st *state, it item, max int) {
	p := st.itemList()
	items := *p
	for i := range items {
		if items[i].v == it.v {
			if it.t >= items[i].t {
				items[i].t, items[i].id = it.t, it.id
			}
			return
		}
	}
	if len(items) >= max {
		old := 0
		for i := range items {
			if items[i].t < items[old].t {
				old = i
			}
		}
		items = append(items[:old], items[old+1:]...)
		cr.stats.EventsEvicted++
	}
	*p = append(items, it)
}

// prune forgets what slid out of the window ending at the key's newest event.
func (cr *crule) prune(st *state) {
	h := st.last - cr.ts
	switch cr.r.Type {
	case Temporal, TemporalOrdered:
		steps := st.steps()
		for i := range steps {
			if steps[i].end != 0 && (steps[i].end < h || steps[i].start < h) {
				steps[i] = step{}
			}
		}
	default:
		p, ok := st.ext.(*[]item)
		if !ok {
			return
		}
		items := *p
		j := 0
		for _, it := range items {
			if it.t >= h {
				items[j] = it
				j++
			}
		}
		clear(items[j:])
		*p = items[:j]
	}
}

// aggregate returns the value the condition is compared with and the count
// of contributing events.
func (cr *crule) aggregate(st *state) (float64, int) {
	items := st.items()
	switch cr.r.Type {
	case EventCount:
		return float64(len(items)), len(items)
	case ValueCount:
		return float64(len(items)), len(items)
	case ValueSum, ValueAvg:
		sum := 0.0
		for _, it := range items {
			sum += it.f
		}
		if cr.r.Type == ValueAvg && len(items) > 0 {
			return sum / float64(len(items)), len(items)
		}
		return sum, len(items)
	case ValuePercentile:
		_, share := cr.rare(st)
		return share, len(items)
	case Temporal:
		n := 0
		for _, s := range st.steps() {
			if s.end != 0 {
				n++
			}
		}
		return float64(n), n
	case TemporalOrdered:
		n := 0
		for i, s := range st.steps() {
			if s.end != 0 {
				n = i + 1
			}
		}
		return float64(n), n
	}
	return 0, 0
}

// rare returns the values whose share (in percent of the window's events)
// satisfies the condition, and the smallest share.
func (cr *crule) rare(st *state) ([]string, float64) {
	items := st.items()
	counts := map[string]int{}
	for _, it := range items {
		counts[it.v]++
	}
	min := math.Inf(1)
	var out []string
	for v, n := range counts {
		share := 100 * float64(n) / float64(len(items))
		if share < min {
			min = share
		}
		if cr.need.Holds(share) {
			out = append(out, v)
		}
	}
	sort.Strings(out)
	if len(out) > 0 {
		// Report the share of a value that satisfies the condition.
		return out, 100 * float64(counts[out[0]]) / float64(len(items))
	}
	return nil, min
}

// close evaluates a window at its end (non-eager correlations) and resets
// the key. trigger is nil when Expire or Flush closes it.
func (e *Engine) close(cr *crule, key Key, st *state, trigger event.Event) (Alert, bool) {
	defer st.dropItems()
	if len(st.items()) == 0 {
		return Alert{}, false
	}
	agg, count := cr.aggregate(st)
	if cr.r.Type == ValuePercentile {
		vals, share := cr.rare(st)
		if len(vals) == 0 {
			return Alert{}, false
		}
		a := e.fire(cr, key, st, share, count, trigger)
		a.Values = vals
		return a, true
	}
	if !cr.need.Holds(agg) {
		return Alert{}, false
	}
	a := e.fire(cr, key, st, agg, count, trigger)
	st.fired = st.last
	return a, true
}

func (e *Engine) fire(cr *crule, key Key, st *state, agg float64, count int, trigger event.Event) Alert {
	r := cr.r
	a := Alert{Rule: r, Value: agg, Count: count, Emit: cr.emit, Trigger: trigger, gbFields: cr.gbFields}
	a.GroupBy = make([]string, len(r.GroupBy))
	copy(a.GroupBy, key[:len(r.GroupBy)])
	var start, end int64
	var ids []string
	switch r.Type {
	case Temporal, TemporalOrdered:
		steps := st.steps()
		n := len(steps)
		if r.Type == TemporalOrdered {
			n = count
		}
		for _, s := range steps[:n] {
			if s.end == 0 {
				continue
			}
			if start == 0 || s.start < start {
				start = s.start
			}
			if s.end > end {
				end = s.end
			}
			if s.id != "" {
				ids = append(ids, s.id)
			}
		}
		clear(steps)
	default:
		items := st.items()
		for _, it := range items {
			if start == 0 || it.t < start {
				start = it.t
			}
			if it.t > end {
				end = it.t
			}
			if it.id != "" {
				ids = append(ids, it.id)
			}
		}
		if r.Type == ValueCount {
			a.Values = make([]string, len(items))
			for i, it := range items {
				a.Values[i] = it.v
			}
			sort.Strings(a.Values)
		}
		st.dropItems()
	}
	if len(ids) > e.idsKept {
		ids = ids[len(ids)-e.idsKept:]
	}
	a.EventIDs = ids
	a.Start, a.End = time.Unix(0, start).UTC(), time.Unix(0, end).UTC()
	a.ID = alertID(cr.canon, a.GroupBy, start, end, ids)
	cr.stats.Alerts++
	return a
}

func alertID(rule string, key []string, start, end int64, ids []string) string {
	h := sha256.New()
	w := func(s string) {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	w(rule)
	for _, k := range key {
		w(k)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(start))
	binary.BigEndian.PutUint64(b[8:], uint64(end))
	h.Write(b[:])
	for _, id := range ids {
		w(id)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func fieldValue(ev event.Event, fields []string) (string, bool) {
	if len(fields) == 1 {
		v, ok := ev[fields[0]]
		if !ok || v == nil {
			return "", false
		}
		return ev.String(fields[0]), true
	}
	var b strings.Builder
	for i, f := range fields {
		v, ok := ev[f]
		if !ok || v == nil {
			return "", false
		}
		if i > 0 {
			b.WriteByte(0)
		}
		b.WriteString(ev.String(f))
	}
	return b.String(), true
}

func numericValue(ev event.Event, field string) (float64, bool) {
	switch v := ev[field].(type) {
	case int64:
		return float64(v), true
	case float64:
		return v, true
	case int:
		return float64(v), true
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		return f, err == nil
	}
	return 0, false
}

// Expire drops the state of keys idle since before now (by the injected
// clock) minus their rule's timespan and Options.IdleTimeout, and of keys
// whose newest event fell out of the window behind the rule's newest event
// time. Windows evaluated at close (conditions with an upper bound,
// value_avg, value_percentile) are evaluated first: the alerts they give are
// returned (and fed to correlations referencing them).
func (e *Engine) Expire(now time.Time) []Alert {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := now.UnixNano()
	var out []Alert
	for _, cr := range e.rules {
		idle := n - cr.ts - int64(e.opts.IdleTimeout)
		dead := cr.watermark - cr.ts
		var gone []Key
		cr.keys.each(func(k Key, st *state) bool {
			if st.touched < idle || st.last < dead {
				gone = append(gone, k)
			}
			return true
		})
		sort.Slice(gone, func(i, j int) bool { return keyLess(gone[i], gone[j]) })
		for _, k := range gone {
			if !cr.eager {
				if a, ok := e.close(cr, k, cr.keys.get(&k), nil); ok {
					out = append(out, a)
					if cr.hasParent {
						out = e.process(a.Match(), out)
					}
				}
			}
			cr.keys.del(&k)
			cr.stats.KeysExpired++
		}
	}
	return out
}

// Flush evaluates every open window of correlations evaluated at window
// close, as at the end of the input (offline hunting), and returns the
// alerts. State of sliding-window correlations is kept.
func (e *Engine) Flush() []Alert {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Alert
	for _, cr := range e.rules {
		if cr.eager {
			continue
		}
		for _, k := range cr.sortedKeys() {
			if a, ok := e.close(cr, k, cr.keys.get(&k), nil); ok {
				out = append(out, a)
				if cr.hasParent {
					out = e.process(a.Match(), out)
				}
			}
			cr.keys.del(&k)
		}
	}
	return out
}

func (cr *crule) sortedKeys() []Key {
	keys := make([]Key, 0, cr.keys.len())
	cr.keys.each(func(k Key, _ *state) bool {
		keys = append(keys, k)
		return true
	})
	sort.Slice(keys, func(i, j int) bool { return keyLess(keys[i], keys[j]) })
	return keys
}

func keyLess(a, b Key) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

// Stats returns the counters of every correlation, in rule order.
func (e *Engine) Stats() []RuleStats {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]RuleStats, len(e.rules))
	for i, cr := range e.rules {
		out[i] = cr.stats
		out[i].Keys = cr.keys.len()
	}
	return out
}

// Rules returns the correlations of the engine, in the order given to New.
func (e *Engine) Rules() []*Rule {
	out := make([]*Rule, len(e.rules))
	for i, cr := range e.rules {
		out[i] = cr.r
	}
	return out
}

func fingerprint(r *Rule) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s|%q|%q|%d|%s", r.Type, r.Rules, r.GroupBy, r.Timespan, r.Condition)
	aliases := make([]string, 0, len(r.Aliases))
	for a, m := range r.Aliases {
		for ref, f := range m {
			aliases = append(aliases, a+"\x00"+ref+"\x00"+f)
		}
	}
	sort.Strings(aliases)
	fmt.Fprintf(h, "|%q", aliases)
	return hex.EncodeToString(h.Sum(nil)[:8])
}
