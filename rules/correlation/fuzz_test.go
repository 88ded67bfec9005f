package correlation

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzParse: any YAML gives rules or a *ParseError, never a panic; rules
// that parse are accepted or refused by New without a panic, and an engine
// built from them survives matches and a flush. Seed corpus:
// testdata/seeds/*.yml (committed) and testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "seeds", "*.yml"))
	for _, s := range seeds {
		if data, err := os.ReadFile(s); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(bruteForce))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := ParseBytes(data, "fuzz.yml")
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error is %T, want *ParseError: %v", err, err)
			}
			return
		}
		var base []RuleRef
		for _, r := range rs {
			for _, ref := range r.Rules {
				base = append(base, RuleRef{Name: "base:" + ref})
			}
		}
		e, err := New(rs, Options{BaseRules: base, MaxKeysPerRule: 8, MaxEventsPerKey: 64})
		if err != nil {
			return
		}
		for i := 0; i < 20; i++ {
			for _, r := range rs {
				for _, ref := range r.Rules {
					ev := ev(time.Duration(i)*time.Second, "", "source.ip", "10.0.0.1", "user.name", "u")
					for _, g := range r.GroupBy {
						ev[g] = "g"
					}
					for _, fld := range r.Condition.Field {
						ev[fld] = int64(i)
					}
					e.Process(Match{RuleName: ref, RuleID: ref, Event: ev})
				}
			}
		}
		e.Flush()
	})
}
