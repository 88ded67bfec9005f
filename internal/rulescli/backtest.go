package rulescli

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/csirt-toscana/platform/correlator"
	"github.com/csirt-toscana/platform/internal/central"
	"github.com/csirt-toscana/platform/internal/config"
	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/finding"
	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/rules/intel"
)

const backtestUsage = `usage: csirt rules backtest [--config FILE] [--since 7d] [--until T] [--entity E] [--query Q]
       [--with-library] [--heuristics] [--overrides FILE] [--format jsonl|text] RULE...
  runs rule files (or directories) over the events stored in the last --since, as the
  correlator would have, and prints the findings they would have produced
`

// openStore opens the store of a configuration file ("" = the defaults);
// tests replace it.
var openStore = func(ctx context.Context, cfgPath string) (store.Store, error) {
	cfg := config.Default()
	if cfgPath != "" {
		var err error
		if cfg, err = config.Load(cfgPath); err != nil {
			return nil, err
		}
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	s, _, _, err := central.OpenStore(ctx, cfg, log)
	return s, err
}

// parseSince reads a duration with an optional day suffix ("7d", "36h").
func parseSince(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("--since %q: want a positive number of days (7d) or a Go duration (36h)", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("--since %q: want a positive number of days (7d) or a Go duration (36h)", s)
	}
	return d, nil
}

func backtest(ctx context.Context, args []string, stdout, stderr io.Writer) (code int) {
	fl := flag.NewFlagSet("backtest", flag.ContinueOnError)
	fl.SetOutput(stderr)
	cfgPath := fl.String("config", "", "configuration file naming the store (default: the single-node defaults)")
	sinceS := fl.String("since", "7d", "how far back to read events (7d, 36h)")
	untilS := fl.String("until", "", "end of the range, RFC 3339 (default now)")
	entity := fl.String("entity", "", "only this entity's events")
	extra := fl.String("query", "", "further restrict the events with a query (docs/query.md)")
	withLib := fl.Bool("with-library", false, "also load the built-in rule library (for rules that reference it)")
	heur := fl.Bool("heuristics", false, "also run the network heuristics")
	overrides := fl.String("overrides", "", "apply a correlator overrides file")
	format := fl.String("format", "text", "output: text or jsonl (one finding per line)")
	if err := reorder(fl, args); err != nil {
		return 2
	}
	if fl.NArg() == 0 || (*format != "text" && *format != "jsonl") {
		fmt.Fprint(stderr, backtestUsage)
		return 2
	}
	since, err := parseSince(*sinceS)
	if err != nil {
		fmt.Fprintf(stderr, "csirt rules backtest: %v\n", err)
		return 2
	}
	until := time.Now()
	if *untilS != "" {
		if until, err = time.Parse(time.RFC3339Nano, *untilS); err != nil {
			fmt.Fprintf(stderr, "csirt rules backtest: --until: %v\n", err)
			return 2
		}
	}
	ov, err := correlator.LoadOverrides(*overrides)
	if err != nil {
		fmt.Fprintf(stderr, "csirt rules backtest: %v\n", err)
		return 2
	}
	coll, digest, err := correlator.LoadCollection(fl.Args(), !*withLib)
	if err != nil {
		fmt.Fprintf(stderr, "csirt rules backtest: %v\n", err)
		return 1
	}
	prog, err := correlator.BuildProgram(coll, digest, correlator.ProgramOptions{Overrides: ov, NoHeuristics: !*heur})
	if err != nil {
		fmt.Fprintf(stderr, "csirt rules backtest: %v\n", err)
		return 1
	}
	b := prog.Bundle()
	fmt.Fprintf(stderr, "csirt rules backtest: %d rules (%d skipped), %d correlations, events from %s to %s\n",
		len(b.Rules()), len(b.Skipped()), len(prog.Set.Correlations), until.Add(-since).UTC().Format(time.RFC3339), until.UTC().Format(time.RFC3339))
	var clauses []string
	if !*heur {
		// Only the datasets the rules apply to.
		var ds []string
		for _, d := range b.Datasets() {
			ds = append(ds, "event.dataset:"+quote(d))
		}
		if len(ds) == 0 {
			fmt.Fprintln(stderr, "csirt rules backtest: no rule applies to any dataset; nothing to do")
			return 0
		}
		clauses = append(clauses, "("+strings.Join(ds, " OR ")+")")
	}
	if *extra != "" {
		clauses = append(clauses, "("+*extra+")")
	}
	st, err := openStore(ctx, *cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "csirt rules backtest: %v\n", err)
		return 1
	}
	defer func() { _ = st.Close() }()
	scope := store.RegionalScope()
	if *entity != "" {
		scope = store.TenantScope(*entity)
	}
	out := bufio.NewWriter(stdout)
	defer func() {
		if err := out.Flush(); err != nil {
			code = 1
		}
	}()
	state := correlator.NewState(prog, nil)
	var fs []*finding.Finding
	n, total := 0, 0
	print := func(list []*finding.Finding) {
		for _, f := range list {
			total++
			if *format == "jsonl" {
				data, err := finding.Encode(f)
				if err == nil {
					_, _ = out.Write(append(data, '\n'))
				}
				continue
			}
			fmt.Fprintf(out, "%s [%s] %s %s %s entity=%s host=%s source.ip=%s events=%d\n", f.Time.UTC().Format(time.RFC3339), f.Severity,
				f.Kind, f.RuleID, f.RuleName, f.Entity, f.Host, f.SourceIP, len(f.EventIDs))
		}
	}
	err = scanEvents(ctx, st, scope, strings.Join(clauses, " AND "), until.Add(-since), until, func(ev event.Event) {
		n++
		fs = state.Process(ev, ev.Time(), fs[:0])
		print(fs)
	})
	if err != nil {
		fmt.Fprintf(stderr, "csirt rules backtest: %v\n", err)
		return 1
	}
	print(state.Flush(until, nil))
	fmt.Fprintf(stderr, "csirt rules backtest: %d events, %d findings\n", n, total)
	return 0
}

// reorder parses flags wherever they are among the arguments (RULE may
// come first: `backtest RULE --since 7d`).
func reorder(fl *flag.FlagSet, args []string) error {
	var pos []string
	for {
		if err := fl.Parse(args); err != nil {
			return err
		}
		if fl.NArg() == 0 {
			break
		}
		pos = append(pos, fl.Arg(0))
		args = fl.Args()[1:]
	}
	return fl.Parse(append([]string{"--"}, pos...))
}

func quote(s string) string {
	return `"` + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), `"`, `\"`) + `"`
}

// scanEvents reads every stored event matching q in [from, to) in time
// order, paging past the store's search window by moving the lower bound
// to the last time seen (events at that instant already read are skipped).
func scanEvents(ctx context.Context, st store.Store, scope store.Scope, q string, from, to time.Time, fn func(event.Event)) error {
	cursor := from
	seenAt := map[string]bool{}
	offset := 0
	for {
		res, err := st.Search(ctx, scope, store.Events, store.SearchRequest{Query: q, From: cursor, To: to,
			Sort: []store.SortField{{Field: "@timestamp"}}, Size: store.MaxPage, Offset: offset})
		if err != nil {
			return fmt.Errorf("reading events: %w", err)
		}
		advanced := false
		for _, d := range res.Docs {
			if seenAt[d.ID] {
				continue
			}
			ev, err := event.Decode(d.Source)
			if err != nil {
				continue
			}
			t := ev.Time()
			if t.After(cursor) {
				cursor, seenAt, advanced = t, map[string]bool{}, true
			}
			seenAt[d.ID] = true
			fn(ev)
		}
		if len(res.Docs) < store.MaxPage {
			return nil
		}
		if advanced {
			offset = 0
		} else if offset += store.MaxPage; offset+store.MaxPage > store.MaxWindow {
			return fmt.Errorf("reading events: more than %d events at %s; narrow the range with --query", store.MaxWindow, cursor.Format(time.RFC3339Nano))
		}
	}
}

// huntIntel is an intelligence match in `csirt rules hunt --intel` output.
type huntIntel struct {
	Field     string   `json:"field"`
	Value     string   `json:"value"`
	Type      string   `json:"type"`
	Indicator string   `json:"indicator"`
	Source    string   `json:"source"`
	Refs      []string `json:"refs,omitempty"`
}

// loadHuntIntel reads --intel files into a matcher (nil without files).
func loadHuntIntel(files []string, format string, stderr io.Writer) (*intel.Matcher, error) {
	if len(files) == 0 {
		return nil, nil
	}
	var all []intel.Indicator
	for _, f := range files {
		inds, fmtUsed, err := correlator.ParseIntelFile(f, format)
		if err != nil {
			return nil, fmt.Errorf("--intel %s: %w", f, err)
		}
		fmt.Fprintf(stderr, "csirt rules hunt: %s: %d indicators (%s)\n", f, len(inds), fmtUsed)
		all = append(all, inds...)
	}
	return intel.Build(all, intel.MatcherOptions{})
}

// intelRecords returns the hunt records of the indicators found in ev.
func intelRecords(m *intel.Matcher, ev event.Event, file string, line int) []huntRecord {
	if m == nil {
		return nil
	}
	var out []huntRecord
	for _, im := range m.MatchEvent(ev, time.Now()) {
		ind := im.Indicator
		hi := &huntIntel{Field: im.Field, Value: im.Value, Type: string(ind.Type), Indicator: ind.Value, Source: ind.Source}
		for _, r := range ind.Refs {
			hi.Refs = append(hi.Refs, r.String())
		}
		level := "medium"
		if ind.Confidence >= 80 {
			level = "high"
		}
		out = append(out, huntRecord{Rule: huntRule{ID: correlator.IntelRulePrefix + ind.Source, Title: "indicator " + ind.Value + " (" + strings.Join(hi.Refs, "; ") + ")",
			Level: level, Type: "intel"}, File: file, Line: line, Event: ev, Intel: hi})
	}
	return out
}
