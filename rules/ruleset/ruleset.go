// Package ruleset loads Sigma detection rules, meta-filters and correlation
// rules from files into one evaluable set, and runs events through it:
// detection (rules/engine), then correlation (rules/correlation) on the
// detection matches, on event time. It is what `csirt rules hunt`, the rule
// test runner and the correlator share.
package ruleset

import (
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/rules/correlation"
	"github.com/csirt-toscana/platform/rules/engine"
	"github.com/csirt-toscana/platform/rules/mapping"
	"github.com/csirt-toscana/platform/rules/sigma"
)

// Options tune loading.
type Options struct {
	Mapping      *mapping.Mapping // nil: mapping.Default()
	Sigma        sigma.Options
	Engine       engine.Options // Mapping is taken from Mapping above
	Correlation  correlation.Options
	SkipBadFiles bool // record unreadable files in Set.Errors instead of failing
}

// Set is a loaded rule set.
type Set struct {
	Collection   *sigma.Collection
	Bundle       *engine.Bundle
	Correlations []*correlation.Rule
	Errors       []error // with SkipBadFiles: files or correlations that did not load
	opts         Options
}

// Load reads every rule file under each root of fsys.
func Load(fsys fs.FS, roots []string, opts Options) (*Set, error) {
	c := &sigma.Collection{}
	for _, root := range roots {
		part, err := sigma.LoadFS(fsys, root, &opts.Sigma)
		if err != nil {
			return nil, err
		}
		c.Rules = append(c.Rules, part.Rules...)
		c.Filters = append(c.Filters, part.Filters...)
		c.Correlations = append(c.Correlations, part.Correlations...)
		c.Errors = append(c.Errors, part.Errors...)
	}
	return FromCollection(c, opts)
}

// FromCollection compiles a parsed collection.
func FromCollection(c *sigma.Collection, opts Options) (*Set, error) {
	if opts.Mapping == nil {
		opts.Mapping = mapping.Default()
	}
	opts.Engine.Mapping = opts.Mapping
	s := &Set{Collection: c, opts: opts}
	if len(c.Errors) > 0 {
		if !opts.SkipBadFiles {
			return nil, fmt.Errorf("loading rules: %w", errors.Join(c.Errors...))
		}
		s.Errors = append(s.Errors, c.Errors...)
	}
	b, err := engine.CompileRules(c.Rules, c.Filters, opts.Engine)
	if err != nil {
		return nil, err
	}
	s.Bundle = b
	for _, d := range c.Correlations {
		r, err := correlation.Parse(d.Node, d.File)
		if err != nil {
			if !opts.SkipBadFiles {
				return nil, err
			}
			s.Errors = append(s.Errors, err)
			continue
		}
		s.Correlations = append(s.Correlations, r)
	}
	if _, err := s.newCorrelation(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Set) newCorrelation() (*correlation.Engine, error) {
	if len(s.Correlations) == 0 {
		return nil, nil
	}
	o := s.opts.Correlation
	seen := map[correlation.RuleRef]bool{}
	for _, r := range s.Collection.Rules {
		ref := correlation.RuleRef{ID: r.ID, Name: r.Name}
		if !seen[ref] { // the same rule loaded twice is not a conflict
			seen[ref] = true
			o.BaseRules = append(o.BaseRules, ref)
		}
	}
	if o.Field == nil && !s.opts.Mapping.Passthrough {
		m := s.opts.Mapping
		o.Field = func(f string) string { return m.Field(nil, f) }
	}
	e, err := correlation.New(s.Correlations, o)
	if err != nil {
		return nil, fmt.Errorf("compiling correlation rules: %w", err)
	}
	return e, nil
}

// Runner runs events through a set. Not safe for concurrent use.
type Runner struct {
	ev   *engine.Evaluator
	corr *correlation.Engine
	buf  []engine.Match
}

// NewRunner returns a runner with fresh correlation state.
func (s *Set) NewRunner() (*Runner, error) {
	c, err := s.newCorrelation()
	if err != nil {
		return nil, err
	}
	return &Runner{ev: s.Bundle.NewEvaluator(), corr: c}, nil
}

// Correlation returns the correlation engine (nil without correlations).
func (r *Runner) Correlation() *correlation.Engine { return r.corr }

// Evaluator returns the detection evaluator.
func (r *Runner) Evaluator() *engine.Evaluator { return r.ev }

// Process evaluates one event: its detection matches, and the correlation
// alerts they complete. The returned slices are valid until the next call.
func (r *Runner) Process(e event.Event) ([]engine.Match, []correlation.Alert) {
	r.buf = r.ev.Eval(e, r.buf[:0])
	if r.corr == nil {
		return r.buf, nil
	}
	var alerts []correlation.Alert
	for _, m := range r.buf {
		alerts = append(alerts, r.corr.Process(correlation.Match{RuleID: m.RuleID, RuleName: m.Name, Event: m.Event})...)
	}
	return r.buf, alerts
}

// Emit reports whether a detection match is reported on its own. A rule
// that correlations reference is reported only when one of them sets
// `generate: true` (Sigma correlation specification); otherwise it only
// feeds the correlations.
func (r *Runner) Emit(m engine.Match) bool {
	return r.corr == nil || r.corr.Emit(m.RuleID, m.Name)
}

// Flush closes every open correlation window (end of input).
func (r *Runner) Flush() []correlation.Alert {
	if r.corr == nil {
		return nil
	}
	return r.corr.Flush()
}

// DecodeEvent reads one JSON event: as the platform schema when it
// conforms, else loosely (any JSON, dotted names), with an RFC 3339
// @timestamp turned into a time so correlations run on event time.
func DecodeEvent(data []byte) (event.Event, error) {
	if e, err := event.Decode(data); err == nil {
		return e, nil
	}
	e, err := engine.DecodeLoose(data)
	if err != nil {
		return nil, err
	}
	if s, ok := e["@timestamp"].(string); ok {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			e["@timestamp"] = t.UTC()
		}
	}
	return e, nil
}
