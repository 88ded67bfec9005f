package correlator

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/csirt-toscana/platform/rules/correlation"
	"github.com/csirt-toscana/platform/rules/engine"
	"github.com/csirt-toscana/platform/rules/heuristics"
	"github.com/csirt-toscana/platform/rules/library"
	"github.com/csirt-toscana/platform/rules/mapping"
	"github.com/csirt-toscana/platform/rules/ruleset"
	"github.com/csirt-toscana/platform/rules/sigma"
)

// Program is one compiled, immutable detection configuration: the Sigma
// bundle and correlations, the per-entity layers of the overrides and the
// heuristics parameters. The stream swaps programs on reload; State carries
// correlation state from one program to the next.
type Program struct {
	Set *ruleset.Set
	// Digest identifies the rule files and overrides the program was built
	// from: a reload that finds the same digest keeps the program.
	Digest string

	mapping    *mapping.Mapping
	overrides  *Overrides
	regional   *layer
	entities   map[string]*layer
	corrBase   []*correlation.Rule
	corrEntity map[string][]*correlation.Rule
	corrOpts   correlation.Options
	heur       *heuristics.Config
	heurOff    bool
}

// ProgramOptions tune BuildProgram.
type ProgramOptions struct {
	// NoLibrary leaves the built-in rule library out (backtests of a single
	// rule file).
	NoLibrary bool
	// Overrides are the per-entity layers; nil for none.
	Overrides *Overrides
	// NoHeuristics disables the network heuristics (backtest of a Sigma
	// rule alone).
	NoHeuristics bool
	// Mapping; nil for mapping.Default().
	Mapping *mapping.Mapping
	// SkipBadFiles records unreadable rule files in Set.Errors instead of
	// failing (the stream keeps running with the rest).
	SkipBadFiles bool
}

// LoadCollection reads the built-in library (unless noLibrary) and every
// rule file under each of paths (files or directories).
func LoadCollection(paths []string, noLibrary bool) (*sigma.Collection, string, error) {
	c := &sigma.Collection{}
	h := sha256.New()
	add := func(part *sigma.Collection) {
		c.Rules = append(c.Rules, part.Rules...)
		c.Filters = append(c.Filters, part.Filters...)
		c.Correlations = append(c.Correlations, part.Correlations...)
		c.Errors = append(c.Errors, part.Errors...)
	}
	if !noLibrary {
		for _, d := range library.RuleDirs {
			part, err := sigma.LoadFS(library.FS, d, nil)
			if err != nil {
				return nil, "", fmt.Errorf("loading the rule library: %w", err)
			}
			add(part)
		}
		h.Write([]byte("library\x00"))
	}
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, "", fmt.Errorf("rules path %s: %w", p, err)
		}
		st, err := os.Stat(abs)
		if err != nil {
			return nil, "", fmt.Errorf("rules path %s: %w (fix correlator.rules_dirs)", p, err)
		}
		dir, root := abs, "."
		if !st.IsDir() {
			dir, root = filepath.Dir(abs), filepath.Base(abs)
		}
		fsys := os.DirFS(dir)
		part, err := sigma.LoadFS(fsys, root, nil)
		if err != nil {
			return nil, "", fmt.Errorf("loading rules from %s: %w", p, err)
		}
		add(part)
		if err := digestTree(h, fsys, root); err != nil {
			return nil, "", fmt.Errorf("reading rules from %s: %w", p, err)
		}
	}
	return c, hex.EncodeToString(h.Sum(nil)), nil
}

func digestTree(h interface{ Write([]byte) (int, error) }, fsys fs.FS, root string) error {
	return fs.WalkDir(fsys, root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ext := filepath.Ext(path)
		if ext != ".yml" && ext != ".yaml" {
			return nil
		}
		data, err := fs.ReadFile(fsys, path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		_, _ = h.Write([]byte(path + "\x00"))
		_, _ = h.Write(sum[:])
		return nil
	})
}

// BuildProgram compiles a collection with the overrides.
func BuildProgram(c *sigma.Collection, digest string, opts ProgramOptions) (*Program, error) {
	m := opts.Mapping
	if m == nil {
		m = mapping.Default()
	}
	set, err := ruleset.FromCollection(c, ruleset.Options{Mapping: m, SkipBadFiles: opts.SkipBadFiles})
	if err != nil {
		return nil, err
	}
	ov := opts.Overrides
	if ov == nil {
		ov = &Overrides{}
	}
	p := &Program{Set: set, Digest: digest, mapping: m, overrides: ov, heur: ov.Heuristics, heurOff: opts.NoHeuristics,
		entities: map[string]*layer{}, corrEntity: map[string][]*correlation.Rule{}}
	if p.heur == nil {
		p.heur = heuristics.DefaultConfig()
	}
	p.regional = compileLayer(ov.Regional)
	for ent, l := range ov.Entities {
		p.entities[ent] = compileLayer(ov.Regional, l)
	}
	// The correlation engine options, as ruleset builds them.
	seen := map[correlation.RuleRef]bool{}
	for _, r := range c.Rules {
		ref := correlation.RuleRef{ID: r.ID, Name: r.Name}
		if !seen[ref] {
			seen[ref] = true
			p.corrOpts.BaseRules = append(p.corrOpts.BaseRules, ref)
		}
	}
	if !m.Passthrough {
		p.corrOpts.Field = func(f string) string { return m.Field(nil, f) }
	}
	p.corrBase = layeredRules(set.Correlations, p.regional)
	if len(p.corrBase) > 0 {
		if _, err := correlation.New(p.corrBase, p.corrOpts); err != nil {
			return nil, fmt.Errorf("compiling regional correlation thresholds: %w", err)
		}
	}
	for _, ent := range ov.entitiesWithThresholds() {
		rs := layeredRules(set.Correlations, p.entities[ent])
		if _, err := correlation.New(rs, p.corrOpts); err != nil {
			return nil, fmt.Errorf("compiling correlation thresholds of entity %s: %w", ent, err)
		}
		p.corrEntity[ent] = rs
	}
	return p, nil
}

// LoadProgram loads the library and paths and compiles them with the
// overrides file: what the stream does at start and on reload.
func LoadProgram(paths []string, overridesFile string) (*Program, error) {
	ov, err := LoadOverrides(overridesFile)
	if err != nil {
		return nil, err
	}
	c, digest, err := LoadCollection(paths, false)
	if err != nil {
		return nil, err
	}
	if overridesFile != "" {
		data, err := os.ReadFile(overridesFile) //nolint:gosec // operator's configuration
		if err != nil {
			return nil, fmt.Errorf("reading correlator overrides: %w", err)
		}
		sum := sha256.Sum256(append([]byte(digest), data...))
		digest = hex.EncodeToString(sum[:])
	}
	return BuildProgram(c, digest, ProgramOptions{Overrides: ov, SkipBadFiles: true})
}

func layeredRules(rules []*correlation.Rule, l *layer) []*correlation.Rule {
	out := make([]*correlation.Rule, len(rules))
	for i, r := range rules {
		if t, ok := l.threshold(r); ok {
			out[i] = applyThreshold(r, t)
		} else {
			out[i] = r
		}
	}
	return out
}

// layerFor returns the effective layer of an entity.
func (p *Program) layerFor(entity string) *layer {
	if l, ok := p.entities[entity]; ok {
		return l
	}
	return p.regional
}

// newEngine builds the correlation engine of one entity (nil without
// correlations).
func (p *Program) newEngine(entity string) (*correlation.Engine, error) {
	rs, ok := p.corrEntity[entity]
	if !ok {
		rs = p.corrBase
	}
	if len(rs) == 0 {
		return nil, nil
	}
	return correlation.New(rs, p.corrOpts)
}

// Bundle returns the compiled Sigma bundle.
func (p *Program) Bundle() *engine.Bundle { return p.Set.Bundle }

// Summary describes the program for logs.
func (p *Program) Summary() map[string]any {
	ents := make([]string, 0, len(p.entities))
	for e := range p.entities {
		ents = append(ents, e)
	}
	sort.Strings(ents)
	return map[string]any{"rules": len(p.Set.Bundle.Rules()), "skipped": len(p.Set.Bundle.Skipped()),
		"correlations": len(p.Set.Correlations), "entity_layers": ents, "errors": len(p.Set.Errors)}
}
