package sigma

import (
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// Collection is everything read from a set of rule files.
type Collection struct {
	Rules        []*Rule
	Filters      []*Filter
	Correlations []*RawDocument // for the correlation package to parse
	Errors       []error        // one *ParseError per unreadable file
}

// Add appends what a file holds.
func (c *Collection) Add(f *File) {
	c.Rules = append(c.Rules, f.Rules...)
	c.Filters = append(c.Filters, f.Filters...)
	c.Correlations = append(c.Correlations, f.Correlations...)
}

// IsRuleFile reports whether a file name looks like a Sigma rule file.
func IsRuleFile(name string) bool {
	return strings.HasSuffix(name, ".yml") || strings.HasSuffix(name, ".yaml")
}

// LoadFS reads every .yml/.yaml file under root in fsys (sorted by path).
// A malformed file is recorded in Errors and does not stop the walk; the
// error returned is only for a walk that failed.
func LoadFS(fsys fs.FS, root string, opts *Options) (*Collection, error) {
	var files []string
	err := fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && IsRuleFile(d.Name()) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walking %s: %w", root, err)
	}
	sort.Strings(files)
	c := &Collection{}
	for _, p := range files {
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", p, err)
		}
		f, err := ParseFile(path.Clean(p), data, opts)
		if err != nil {
			c.Errors = append(c.Errors, err)
		}
		if f != nil {
			c.Add(f)
		}
	}
	return c, nil
}
