package correlator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/finding"
	"github.com/csirt-toscana/platform/rules/correlation"
	"github.com/csirt-toscana/platform/rules/engine"
	"github.com/csirt-toscana/platform/rules/heuristics"
	"github.com/csirt-toscana/platform/rules/intel"
)

// heuristicDatasets are the datasets the network heuristics observe.
var heuristicDatasets = map[string]bool{"flow": true, "dns": true, "tls": true, "http": true}

// IntelRule is the rule reference of intelligence matches in the overrides
// (disabled, allow).
const IntelRule = "intel"

// State is the detection state of one partition (or of one backtest): a
// correlation engine per entity (so windows never mix entities, and an
// entity's threshold overrides apply to its own engine), the network
// heuristics and the program they run. Process is pure: the caller does
// the I/O. Not safe for concurrent use.
type State struct {
	prog  *Program
	eval  *engine.Evaluator
	corr  map[string]*correlation.Engine
	heur  *heuristics.Set
	intel *intel.Holder
	// Suppressions, when set, are applied to every finding.
	Suppressions func() *Suppressions
	// Stats, cumulative.
	Events, Suppressed, Allowed uint64

	buf    []engine.Match
	ibuf   []intel.Match
	seen   map[string]struct{} // intel finding ids already raised (bounded)
	seenQ  []string
	errLog func(error)
}

// NewState returns an empty state running p; in may be nil (no intel).
func NewState(p *Program, in *intel.Holder) *State {
	s := &State{prog: p, eval: p.Set.Bundle.NewEvaluator(), corr: map[string]*correlation.Engine{}, intel: in,
		seen: map[string]struct{}{}, errLog: func(error) {}}
	if !p.heurOff {
		s.heur = heuristics.NewSet(p.heur, heuristics.Options{})
	}
	return s
}

// Program returns the program the state runs.
func (s *State) Program() *Program { return s.prog }

func (s *State) engine(entity string) *correlation.Engine {
	if e, ok := s.corr[entity]; ok {
		return e
	}
	e, err := s.prog.newEngine(entity)
	if err != nil { // BuildProgram compiled the same rules: cannot happen
		s.errLog(fmt.Errorf("correlation engine of %s: %w", entity, err))
	}
	s.corr[entity] = e
	return e
}

// Process evaluates one event and appends the findings it raises to out:
// detections (of rules that are not only correlation inputs),
// correlation alerts, intelligence matches and heuristic alerts, after the
// entity's layer (disabled rules, allow-lists) and the suppressions.
func (s *State) Process(ev event.Event, now time.Time, out []*finding.Finding) []*finding.Finding {
	s.Events++
	entity := ev.Org()
	l := s.prog.layerFor(entity)
	get := eventGetter(ev)
	s.buf = s.eval.Eval(ev, s.buf[:0])
	var corr *correlation.Engine
	if len(s.buf) > 0 {
		corr = s.engine(entity)
	}
	for i := range s.buf {
		m := &s.buf[i]
		if l.off(m.RuleID, m.Name) {
			continue
		}
		if l.allowed(m.RuleID, m.Name, get) {
			s.Allowed++
			continue
		}
		if corr != nil && corr.Referenced(m.RuleID, m.Name) {
			for _, a := range corr.Process(correlation.Match{RuleID: m.RuleID, RuleName: m.Name, Event: m.Event}) {
				out = s.alert(&a, entity, l, now, out)
			}
		}
		if corr == nil || corr.Emit(m.RuleID, m.Name) {
			out = s.emit(DetectionFinding(*m, now), now, out)
		}
	}
	if s.intel != nil && !l.off(IntelRule, "") {
		if mt := s.intel.Load(); mt != nil {
			s.ibuf = mt.AppendEvent(s.ibuf[:0], ev, eventTime(ev, now))
			for _, im := range s.ibuf {
				if l.allowed(IntelRule, im.Indicator.Source, get) {
					s.Allowed++
					continue
				}
				f := IntelFinding(ev, im, now)
				if s.seenIntel(f.ID) {
					continue
				}
				out = s.emit(f, now, out)
			}
		}
	}
	if s.heur != nil && heuristicDatasets[ev.Dataset()] {
		for _, a := range s.heur.Observe(ev) {
			if l.off(a.Detector, "heuristics."+a.Detector) {
				continue
			}
			if l.allowed(a.Detector, "heuristics."+a.Detector, get) {
				s.Allowed++
				continue
			}
			out = s.emit(HeuristicFinding(&a, now), now, out)
		}
	}
	return out
}

func (s *State) alert(a *correlation.Alert, entity string, l *layer, now time.Time, out []*finding.Finding) []*finding.Finding {
	if !a.Emit || l.off(a.Rule.ID, a.Rule.Name) {
		return out
	}
	if a.Trigger != nil && l.allowed(a.Rule.ID, a.Rule.Name, eventGetter(a.Trigger)) {
		s.Allowed++
		return out
	}
	return s.emit(CorrelationFinding(a, entity, now), now, out)
}

func (s *State) emit(f *finding.Finding, now time.Time, out []*finding.Finding) []*finding.Finding {
	if s.Suppressions != nil {
		if sup := s.Suppressions().Match(f, now); sup != nil {
			s.Suppressed++
			return out
		}
	}
	return append(out, f)
}

// seenIntel remembers the last 4096 intelligence finding ids, so that a
// chatty connection to a bad address gives one finding per hour without a
// store round trip each time.
func (s *State) seenIntel(id string) bool {
	if _, ok := s.seen[id]; ok {
		return true
	}
	s.seen[id] = struct{}{}
	s.seenQ = append(s.seenQ, id)
	if len(s.seenQ) > 4096 {
		delete(s.seen, s.seenQ[0])
		s.seenQ = s.seenQ[1:]
	}
	return false
}

// Expire closes idle correlation windows (by the wall clock now) and
// appends the findings of windows evaluated at close.
func (s *State) Expire(now time.Time, out []*finding.Finding) []*finding.Finding {
	for ent, e := range s.corr {
		if e == nil {
			continue
		}
		l := s.prog.layerFor(ent)
		for _, a := range e.Expire(now) {
			out = s.alert(&a, ent, l, now, out)
		}
	}
	return out
}

// Flush closes every window evaluated at close, as at the end of input
// (backtests).
func (s *State) Flush(now time.Time, out []*finding.Finding) []*finding.Finding {
	for _, ent := range s.entities() {
		e := s.corr[ent]
		if e == nil {
			continue
		}
		l := s.prog.layerFor(ent)
		for _, a := range e.Flush() {
			out = s.alert(&a, ent, l, now, out)
		}
	}
	return out
}

func (s *State) entities() []string {
	out := make([]string, 0, len(s.corr))
	for e := range s.corr {
		out = append(out, e)
	}
	sort.Strings(out)
	return out
}

// Snapshot is the serialised detection state.
type Snapshot struct {
	// Correlation holds each entity's correlation snapshot
	// (rules/correlation format).
	Correlation map[string][]byte `json:"correlation,omitempty"`
	// Heuristics is the heuristics.Set snapshot.
	Heuristics json.RawMessage `json:"heuristics,omitempty"`
	// Digest of the program that wrote it (informational).
	Digest string `json:"digest,omitempty"`
}

// Snapshot writes the state.
func (s *State) Snapshot() (*Snapshot, error) {
	snap := &Snapshot{Correlation: map[string][]byte{}, Digest: s.prog.Digest}
	var b bytes.Buffer
	for _, ent := range s.entities() {
		e := s.corr[ent]
		if e == nil {
			continue
		}
		b.Reset()
		if err := e.Snapshot(&b); err != nil {
			return nil, fmt.Errorf("snapshot of the correlation state of %s: %w", ent, err)
		}
		snap.Correlation[ent] = bytes.Clone(b.Bytes())
	}
	if s.heur != nil {
		h, err := s.heur.Snapshot()
		if err != nil {
			return nil, fmt.Errorf("snapshot of the heuristics state: %w", err)
		}
		snap.Heuristics = h
	}
	return snap, nil
}

// Restore replaces the state with a snapshot (possibly written by another
// program: state of correlations that changed is dropped by
// rules/correlation). It returns the correlations whose state was dropped.
func (s *State) Restore(snap *Snapshot) ([]string, error) {
	corr := map[string]*correlation.Engine{}
	var dropped []string
	for ent, data := range snap.Correlation {
		e, err := s.prog.newEngine(ent)
		if err != nil {
			return nil, err
		}
		if e == nil {
			continue
		}
		if err := e.Restore(bytes.NewReader(data)); err != nil {
			return nil, fmt.Errorf("restoring the correlation state of %s: %w", ent, err)
		}
		for _, d := range e.LastRestore().Dropped {
			dropped = append(dropped, ent+":"+d)
		}
		corr[ent] = e
	}
	if s.heur != nil && len(snap.Heuristics) > 0 {
		if err := s.heur.Restore(snap.Heuristics); err != nil {
			return nil, fmt.Errorf("restoring the heuristics state: %w", err)
		}
	}
	s.corr = corr
	sort.Strings(dropped)
	return dropped, nil
}

// SetProgram switches to a new program, carrying the state: correlation
// state of unchanged correlations is kept (a snapshot of each entity's
// engine restored into the new engine), heuristics state is kept when the
// heuristics parameters are the same object, else restored into the new
// detectors.
func (s *State) SetProgram(p *Program) ([]string, error) {
	snap, err := s.Snapshot()
	if err != nil {
		return nil, err
	}
	old := *s
	s.prog = p
	s.eval = p.Set.Bundle.NewEvaluator()
	if p.heurOff {
		s.heur = nil
	} else if s.heur == nil || old.prog.heur != p.heur {
		s.heur = heuristics.NewSet(p.heur, heuristics.Options{})
	}
	dropped, err := s.Restore(snap)
	if err != nil {
		*s = old
		return nil, err
	}
	return dropped, nil
}
