// Package rulescli implements `csirt rules lint|test|hunt`.
package rulescli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/csirt-toscana/platform/collector/parsecli"
	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/rules/correlation"
	"github.com/csirt-toscana/platform/rules/engine"
	"github.com/csirt-toscana/platform/rules/mapping"
	"github.com/csirt-toscana/platform/rules/ruleset"
	"github.com/csirt-toscana/platform/rules/ruletest"
	"github.com/csirt-toscana/platform/rules/sigma"
)

const usage = `usage: csirt rules <command> [arguments]

commands:
  lint [-q] [--mapping M] DIR|FILE... check rules: supported, unsupported (with the reason) or errors
  test [DIR|FILE...]               run rule test files (*.test.yml); default rules/
  hunt --rules DIR [--mapping default|none] [--format jsonl|text] [--all-matches]
       [--input auto|jsonl|raw] [--dataset D] FILE...
                                   evaluate rules and correlations, on event time, over
                                   JSONL event files or raw log files (parsed as the
                                   collector does); "-" is stdin; --intel FILE (repeatable,
                                   any feed format, or --intel-format F) adds IOC matching
  backtest [--since 7d] [--config FILE] RULE...
                                   run rule files over stored events and print the findings
                                   they would have produced (see csirt rules backtest -h)
`

// Main runs `csirt rules` with args (the words after "rules") and returns
// the exit code: 0 success, 1 findings (lint errors, failing tests), 2 usage.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "lint":
		return lint(args[1:], stdout, stderr)
	case "test":
		return runTests(args[1:], stdout, stderr)
	case "hunt":
		return hunt(ctx, args[1:], stdout, stderr)
	case "backtest":
		return backtest(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "csirt rules: unknown command %q\n%s", args[0], usage)
	return 2
}

// ruleFiles lists the rule files of each argument (a file or a directory).
func ruleFiles(args []string, match func(string) bool) ([]string, error) {
	var out []string
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			out = append(out, a)
			continue
		}
		err = filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && match(d.Name()) {
				out = append(out, p)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Strings(out)
	return out, nil
}

func lint(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("lint", flag.ContinueOnError)
	fl.SetOutput(stderr)
	quiet := fl.Bool("q", false, "print only unsupported rules and errors")
	mapName := fl.String("mapping", "", "also report rules whose logsource this mapping (default or none) does not route")
	if err := fl.Parse(args); err != nil {
		return 2
	}
	if fl.NArg() == 0 {
		fmt.Fprint(stderr, "usage: csirt rules lint [-q] DIR|FILE...\n")
		return 2
	}
	var m *mapping.Mapping
	if *mapName != "" {
		var err error
		if m, err = mapping.ByName(*mapName); err != nil {
			fmt.Fprintf(stderr, "csirt rules lint: %v\n", err)
			return 2
		}
	}
	unmapped, unevaluated := 0, 0
	files, err := ruleFiles(fl.Args(), func(n string) bool { return sigma.IsRuleFile(n) && !ruletest.IsTestFile(n) })
	if err != nil {
		fmt.Fprintf(stderr, "csirt rules lint: %v\n", err)
		return 2
	}
	var n, sup, unsup, errs int
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintf(stderr, "csirt rules lint: %v\n", err)
			return 2
		}
		pf, err := sigma.ParseFile(f, data, nil)
		if err != nil {
			n++
			errs++
			fmt.Fprintf(stdout, "error %v\n", err)
		}
		if pf == nil {
			continue
		}
		for _, sk := range pf.Skipped {
			fmt.Fprintf(stdout, "skipped %s:%d:%d: %s\n", f, sk.Pos.Line, sk.Pos.Col, sk.Reason)
		}
		for _, r := range pf.Rules {
			n++
			where := fmt.Sprintf("%s:%d:%d", f, r.Pos.Line, r.Pos.Col)
			if !r.Supported() {
				unsup++
				var reasons []string
				for _, u := range r.Unsupported {
					reasons = append(reasons, fmt.Sprintf("%d:%d: %s", u.Pos.Line, u.Pos.Col, u.Reason))
				}
				fmt.Fprintf(stdout, "unsupported %s %s %q: %s\n", where, r.Ref(), r.Title, strings.Join(reasons, "; "))
				continue
			}
			if _, err := engine.CompileRules([]*sigma.Rule{r}, nil, engine.Options{Mapping: mapping.None(), Strict: true}); err != nil {
				errs++
				fmt.Fprintf(stdout, "error %v\n", err)
				continue
			}
			sup++
			if !*quiet {
				fmt.Fprintf(stdout, "supported %s %s %q\n", where, r.Ref(), r.Title)
			}
			if m != nil && !m.Passthrough && len(m.Targets(r.LogSource)) == 0 {
				unmapped++
				fmt.Fprintf(stdout, "note %s %s: logsource product=%q category=%q service=%q is not routed by mapping %s\n",
					where, r.Ref(), r.LogSource.Product, r.LogSource.Category, r.LogSource.Service, m.Name)
			} else if m != nil && !m.Passthrough {
				b, err := engine.CompileRules([]*sigma.Rule{r}, nil, engine.Options{Mapping: m})
				if err != nil {
					errs++
					fmt.Fprintf(stdout, "error %v\n", err)
					continue
				}
				for _, cn := range b.ClosedNotes() {
					fmt.Fprintf(stdout, "note %s %s: %s\n", where, r.Ref(), cn.Reason)
				}
				if len(b.Rules()) == 0 {
					unevaluated++
				}
			}
		}
		for _, fi := range pf.Filters {
			n++
			where := fmt.Sprintf("%s:%d:%d", f, fi.Pos.Line, fi.Pos.Col)
			if !fi.Supported() {
				unsup++
				fmt.Fprintf(stdout, "unsupported %s filter %s %q: %s\n", where, fi.ID, fi.Title, fi.Unsupported[0])
				continue
			}
			sup++
			if !*quiet {
				fmt.Fprintf(stdout, "supported %s filter %s %q\n", where, fi.ID, fi.Title)
			}
		}
		for _, c := range pf.Correlations {
			n++
			r, err := correlation.Parse(c.Node, f)
			if err != nil {
				errs++
				fmt.Fprintf(stdout, "error %v\n", err)
				continue
			}
			sup++
			if !*quiet {
				fmt.Fprintf(stdout, "supported %s:%d:%d correlation %s %q\n", f, c.Pos.Line, c.Pos.Col, r.Ref(), r.Title)
			}
		}
	}
	if m != nil {
		fmt.Fprintf(stdout, "note: %d supported rules are not routed by mapping %s\n", unmapped, m.Name)
		fmt.Fprintf(stdout, "note: %d supported rules are routed but never evaluated by mapping %s: they test fields its datasets never carry\n", unevaluated, m.Name)
	}
	fmt.Fprintf(stdout, "rules: %d supported: %d unsupported: %d errors: %d\n", n, sup, unsup, errs)
	if errs > 0 {
		return 1
	}
	return 0
}

func runTests(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("test", flag.ContinueOnError)
	fl.SetOutput(stderr)
	verbose := fl.Bool("v", false, "print passing cases too")
	if err := fl.Parse(args); err != nil {
		return 2
	}
	paths := fl.Args()
	if len(paths) == 0 {
		paths = []string{"rules"}
	}
	files, err := ruleFiles(paths, ruletest.IsTestFile)
	if err != nil {
		fmt.Fprintf(stderr, "csirt rules test: %v\n", err)
		return 2
	}
	pass, failed := 0, 0
	for _, f := range files {
		abs, err := filepath.Abs(f)
		if err != nil {
			fmt.Fprintf(stderr, "csirt rules test: %v\n", err)
			return 2
		}
		res, err := ruletest.RunFile(os.DirFS("/"), strings.TrimPrefix(filepath.ToSlash(abs), "/"))
		if err != nil {
			failed++
			fmt.Fprintf(stdout, "FAIL %s: %v\n", f, err)
			continue
		}
		for _, r := range res {
			if len(r.Failures) == 0 {
				pass++
				if *verbose {
					fmt.Fprintf(stdout, "ok   %s: %s\n", f, r.Case)
				}
				continue
			}
			failed++
			fmt.Fprintf(stdout, "FAIL %s: %s\n", f, r.Case)
			for _, m := range r.Failures {
				fmt.Fprintf(stdout, "     %s\n", m)
			}
		}
	}
	fmt.Fprintf(stdout, "test files: %d cases passed: %d failed: %d\n", len(files), pass, failed)
	if failed > 0 {
		return 1
	}
	return 0
}

type huntRule struct {
	ID    string   `json:"id,omitempty"`
	Name  string   `json:"name,omitempty"`
	Title string   `json:"title,omitempty"`
	Level string   `json:"level,omitempty"`
	Tags  []string `json:"tags,omitempty"`
	Type  string   `json:"type"` // detection or the correlation type
}

type huntCorrelation struct {
	GroupBy  map[string]string `json:"group_by,omitempty"`
	Start    time.Time         `json:"start"`
	End      time.Time         `json:"end"`
	Count    int               `json:"count"`
	Value    float64           `json:"value"`
	EventIDs []string          `json:"event_ids,omitempty"`
}

type huntRecord struct {
	Rule        huntRule         `json:"rule"`
	File        string           `json:"file,omitempty"`
	Line        int              `json:"line,omitempty"`
	Correlation *huntCorrelation `json:"correlation,omitempty"`
	Event       event.Event      `json:"event,omitempty"`
	Intel       *huntIntel       `json:"intel,omitempty"`
}

func hunt(ctx context.Context, args []string, stdout, stderr io.Writer) (code int) {
	fl := flag.NewFlagSet("hunt", flag.ContinueOnError)
	fl.SetOutput(stderr)
	var rulesDirs multiFlag
	fl.Var(&rulesDirs, "rules", "rule file or directory (repeatable)")
	mapName := fl.String("mapping", "default", "field and logsource mapping: default or none")
	format := fl.String("format", "jsonl", "output format: jsonl or text")
	allMatches := fl.Bool("all-matches", false, "also print matches of rules that only feed correlations (no generate: true)")
	input := fl.String("input", "auto", "input format: jsonl (events), raw (log lines, parsed as the collector does) or auto (per file)")
	dataset := fl.String("dataset", "", "with raw input: force this parser (see csirt parse --help); default: detect per line")
	var intelFiles multiFlag
	fl.Var(&intelFiles, "intel", "indicator file in any supported feed format (repeatable)")
	intelFormat := fl.String("intel-format", "", "format of the --intel files (default: detected)")
	if err := fl.Parse(args); err != nil {
		return 2
	}
	if (len(rulesDirs) == 0 && len(intelFiles) == 0) || fl.NArg() == 0 || (*format != "jsonl" && *format != "text") ||
		(*input != "auto" && *input != "jsonl" && *input != "raw") {
		fmt.Fprint(stderr, "usage: csirt rules hunt --rules DIR [--mapping default|none] [--format jsonl|text] [--input auto|jsonl|raw] [--dataset D] FILE...\n")
		return 2
	}
	m, err := mapping.ByName(*mapName)
	if err != nil {
		fmt.Fprintf(stderr, "csirt rules hunt: %v\n", err)
		return 2
	}
	var roots []string
	for _, d := range rulesDirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			fmt.Fprintf(stderr, "csirt rules hunt: %v\n", err)
			return 2
		}
		roots = append(roots, strings.TrimPrefix(filepath.ToSlash(abs), "/"))
	}
	set, err := ruleset.Load(os.DirFS("/"), roots, ruleset.Options{Mapping: m, SkipBadFiles: true})
	if err != nil {
		fmt.Fprintf(stderr, "csirt rules hunt: %v\n", err)
		return 1
	}
	for _, e := range set.Errors {
		fmt.Fprintf(stderr, "csirt rules hunt: skipped: %v\n", err2str(e))
	}
	fmt.Fprintf(stderr, "csirt rules hunt: %d rules (%d skipped), %d correlations, mapping %s\n",
		len(set.Bundle.Rules()), len(set.Bundle.Skipped()), len(set.Correlations), m.Name)
	run, err := set.NewRunner()
	if err != nil {
		fmt.Fprintf(stderr, "csirt rules hunt: %v\n", err)
		return 1
	}
	intelMatcher, err := loadHuntIntel(intelFiles, *intelFormat, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "csirt rules hunt: %v\n", err)
		return 1
	}
	out := bufio.NewWriter(stdout)
	defer func() {
		if err := out.Flush(); err != nil {
			fmt.Fprintf(stderr, "csirt rules hunt: writing output: %v\n", err)
			code = 1
		}
	}()
	enc := json.NewEncoder(out)
	emit := func(rec huntRecord) {
		if *format == "jsonl" {
			_ = enc.Encode(rec)
			return
		}
		where := ""
		if rec.File != "" {
			where = fmt.Sprintf("%s:%d ", rec.File, rec.Line)
		}
		title := rec.Rule.Title
		if title == "" {
			title = rec.Rule.Name
		}
		if rec.Correlation != nil {
			fmt.Fprintf(out, "%s[%s] %s %s (%s) group=%v count=%d %s..%s\n", where, rec.Rule.Level, rec.Rule.Type, rec.Rule.ID, title,
				rec.Correlation.GroupBy, rec.Correlation.Count, rec.Correlation.Start.Format(time.RFC3339), rec.Correlation.End.Format(time.RFC3339))
			return
		}
		fmt.Fprintf(out, "%s[%s] %s (%s)\n", where, rec.Rule.Level, rec.Rule.ID, title)
	}
	alertRec := func(a correlation.Alert, file string, line int) huntRecord {
		r := a.Rule
		c := &huntCorrelation{Start: a.Start, End: a.End, Count: a.Count, Value: a.Value, EventIDs: a.EventIDs}
		if len(a.GroupBy) > 0 {
			c.GroupBy = map[string]string{}
			for i, g := range r.GroupBy {
				if i < len(a.GroupBy) {
					c.GroupBy[g] = a.GroupBy[i]
				}
			}
		}
		return huntRecord{Rule: huntRule{ID: r.ID, Name: r.Name, Title: r.Title, Level: r.Level, Tags: r.Tags, Type: string(r.Type)},
			File: file, Line: line, Correlation: c}
	}
	status := 0
	var events, matches, alerts, noDataset int
	process := func(e event.Event, path string, line int) {
		events++
		if _, ok := e["event.dataset"]; !ok {
			noDataset++
		}
		ms, as := run.Process(e)
		for _, mt := range ms {
			if !*allMatches && !run.Emit(mt) {
				continue
			}
			matches++
			emit(huntRecord{Rule: huntRule{ID: mt.RuleID, Name: mt.Name, Title: mt.Title, Level: mt.Level, Tags: mt.Tags, Type: "detection"},
				File: path, Line: line, Event: mt.Event})
		}
		for _, a := range as {
			if a.Emit {
				alerts++
				emit(alertRec(a, path, line))
			}
		}
		for _, r := range intelRecords(intelMatcher, e, path, line) {
			matches++
			emit(r)
		}
	}
	for _, path := range fl.Args() {
		var in io.Reader = os.Stdin
		closeIn := func() {}
		if path != "-" {
			f, err := os.Open(path)
			if err != nil {
				fmt.Fprintf(stderr, "csirt rules hunt: %v\n", err)
				status = 1
				continue
			}
			in, closeIn = f, func() { _ = f.Close() }
		}
		br := bufio.NewReaderSize(in, 64<<10)
		kind := *input
		if kind == "auto" {
			kind = sniffInput(br)
		}
		if kind == "raw" {
			err := parsecli.ReadEvents(br, parsecli.Options{Dataset: *dataset, Source: path}, func(line int, e event.Event) error {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				process(e, path, line)
				return nil
			})
			closeIn()
			if err != nil {
				fmt.Fprintf(stderr, "csirt rules hunt: reading %s: %v\n", path, err)
				return 1
			}
			continue
		}
		sc := bufio.NewScanner(br)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		line := 0
		for sc.Scan() {
			line++
			if line%4096 == 0 && ctx.Err() != nil {
				closeIn()
				fmt.Fprintf(stderr, "csirt rules hunt: %v\n", ctx.Err())
				return 1
			}
			b := sc.Bytes()
			if len(strings.TrimSpace(string(b))) == 0 {
				continue
			}
			var e event.Event
			if m.Passthrough {
				e, err = engine.DecodeLoose(b)
				if err == nil {
					if s, ok := e["@timestamp"].(string); ok {
						if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
							e["@timestamp"] = t.UTC()
						}
					}
				}
			} else {
				e, err = ruleset.DecodeEvent(b)
			}
			if err != nil {
				fmt.Fprintf(stderr, "%s:%d: %v\n", path, line, err)
				status = 1
				continue
			}
			process(e, path, line)
		}
		closeIn()
		if err := sc.Err(); err != nil {
			fmt.Fprintf(stderr, "csirt rules hunt: reading %s: %v\n", path, err)
			status = 1
		}
	}
	for _, a := range run.Flush() {
		if a.Emit {
			alerts++
			emit(alertRec(a, "", 0))
		}
	}
	fmt.Fprintf(stderr, "csirt rules hunt: %d events, %d detection matches, %d correlation alerts\n", events, matches, alerts)
	if noDataset > 0 && !m.Passthrough {
		fmt.Fprintf(stderr, "csirt rules hunt: %d events have no event.dataset and were evaluated by no rule; use --mapping none for events outside the platform schema\n", noDataset)
	}
	return status
}

// sniffInput tells JSONL events from raw log lines by the first
// non-blank byte of the input.
func sniffInput(br *bufio.Reader) string {
	b, _ := br.Peek(4096)
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '{':
			return "jsonl"
		}
		return "raw"
	}
	return "jsonl"
}

func err2str(err error) string {
	var pe *sigma.ParseError
	if errors.As(err, &pe) {
		return pe.Error()
	}
	return err.Error()
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
