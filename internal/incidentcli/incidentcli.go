// Package incidentcli implements `csirt incidents list|show`: it reads
// incidents, regional campaigns and their findings from the store named by
// the same configuration as `csirt serve`, for operators (regional scope)
// and for one entity (--entity: that entity's tenant scope only), as a
// table or as JSON for scripts.
package incidentcli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/csirt-toscana/platform/internal/central"
	"github.com/csirt-toscana/platform/internal/config"
	"github.com/csirt-toscana/platform/internal/finding"
	"github.com/csirt-toscana/platform/internal/incident"
	"github.com/csirt-toscana/platform/internal/store"
)

const usage = `Usage:
  csirt incidents list [--entity E] [--status S] [--since 7d] [--kind incident|campaign] [--limit N] [--format table|json]
  csirt incidents show ID [--entity E] [--findings N] [--format text|json]

Both take --config FILE (default: the built-in single-node configuration,
store under ./csirt-data) and --data-dir DIR. Without --entity they read
every entity's incidents and the regional campaigns (CSIRT operators);
with --entity only that entity's incidents.
--status is a status (new, acknowledged, investigating, contained,
resolved, closed) or "open" (every status but resolved and closed).
`

// Main runs `csirt incidents ARGS...` and returns the exit code (0 ok,
// 1 failure, 2 bad usage).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	verb := args[0]
	if verb != "list" && verb != "show" {
		fmt.Fprintf(stderr, "csirt incidents: unknown command %q\n\n%s", verb, usage)
		return 2
	}
	fs := flag.NewFlagSet("csirt incidents "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration `file` (default: built-in single-node defaults)")
	dataDir := fs.String("data-dir", "", "override data_dir")
	o := Options{}
	fs.StringVar(&o.Entity, "entity", "", "only this entity's incidents (its tenant scope)")
	fs.StringVar(&o.Format, "format", "", "table (list), text (show) or json")
	if verb == "list" {
		fs.StringVar(&o.Status, "status", "", "status, or open")
		fs.StringVar(&o.Since, "since", "", "only incidents created within this long, e.g. 24h, 7d, 2w")
		fs.StringVar(&o.Kind, "kind", "", "incident or campaign (default both)")
		fs.IntVar(&o.Limit, "limit", 100, "at most this many, newest first (max 10000)")
	} else {
		fs.IntVar(&o.Findings, "findings", 50, "show at most this many of the attached findings (newest first; 0: none)")
	}
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if verb == "show" {
		if len(pos) != 1 {
			fmt.Fprintln(stderr, "csirt incidents show: give exactly one incident id (see csirt incidents list)")
			return 2
		}
		o.ID = pos[0]
	} else if len(pos) > 0 {
		fmt.Fprintf(stderr, "csirt incidents list: unexpected argument %q\n", pos[0])
		return 2
	}
	if err := o.check(verb); err != nil {
		fmt.Fprintf(stderr, "csirt incidents %s: %v\n", verb, err)
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err == nil && *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		fmt.Fprintf(stderr, "csirt incidents %s: %v\n", verb, err)
		return 1
	}
	l := logrus.New()
	l.SetOutput(stderr)
	l.SetLevel(logrus.WarnLevel)
	st, _, _, err := central.OpenStore(ctx, cfg, l)
	if err != nil {
		fmt.Fprintf(stderr, "csirt incidents %s: %v\n", verb, err)
		return 1
	}
	defer func() { _ = st.Close() }()
	if verb == "list" {
		err = List(ctx, st, o, stdout, time.Now())
	} else {
		err = Show(ctx, st, o, stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "csirt incidents %s: %v\n", verb, err)
		return 1
	}
	return 0
}

// Options are the flags of both commands.
type Options struct {
	Entity   string
	Status   string
	Since    string
	Kind     string
	Limit    int
	Format   string
	ID       string
	Findings int
}

func (o *Options) check(verb string) error {
	if o.Entity != "" {
		if err := store.ValidID(o.Entity); err != nil || strings.HasPrefix(o.Entity, "_") {
			return fmt.Errorf("--entity %q is not an entity id (e.g. comune-prato)", o.Entity)
		}
	}
	if o.Status != "" && o.Status != "open" && !incident.Status(o.Status).Valid() {
		return fmt.Errorf("--status %q: use open or one of %v", o.Status, incident.Statuses)
	}
	if o.Since != "" {
		d, err := config.ParseDuration(o.Since)
		if err != nil || d <= 0 {
			return fmt.Errorf("--since %q: want a positive duration such as 24h, 7d or 2w", o.Since)
		}
	}
	if o.Kind != "" && o.Kind != string(incident.KindIncident) && o.Kind != string(incident.KindCampaign) {
		return fmt.Errorf("--kind %q: use incident or campaign", o.Kind)
	}
	if o.Limit < 0 || o.Limit > store.MaxPage {
		return fmt.Errorf("--limit %d: use 1 to %d", o.Limit, store.MaxPage)
	}
	if o.Findings < 0 || o.Findings > incident.MaxFindingIDs {
		return fmt.Errorf("--findings %d: use 0 to %d", o.Findings, incident.MaxFindingIDs)
	}
	switch {
	case o.Format == "":
	case o.Format == "json":
	case verb == "list" && o.Format == "table":
	case verb == "show" && o.Format == "text":
	default:
		return fmt.Errorf("--format %q: use %s or json", o.Format, map[string]string{"list": "table", "show": "text"}[verb])
	}
	if o.ID != "" {
		if err := store.ValidID(o.ID); err != nil {
			return fmt.Errorf("%q is not an incident id (see csirt incidents list)", o.ID)
		}
	}
	return nil
}

func (o *Options) scope() store.Scope {
	if o.Entity != "" {
		return store.TenantScope(o.Entity)
	}
	return store.RegionalScope()
}

// query builds the store query of the list filters.
func (o *Options) query() string {
	switch o.Status {
	case "":
		return ""
	case "open":
		return `NOT status:resolved AND NOT status:closed`
	}
	return `status:"` + o.Status + `"`
}

// List prints the incidents matching the options, newest first.
func List(ctx context.Context, st store.Store, o Options, out io.Writer, now time.Time) error {
	if err := o.check("list"); err != nil {
		return err
	}
	req := store.SearchRequest{Query: o.query(), Sort: []store.SortField{{Field: "created", Desc: true}}, Size: o.Limit}
	if req.Size == 0 {
		req.Size = 100
	}
	if o.Since != "" {
		d, _ := config.ParseDuration(o.Since)
		req.From = now.Add(-d)
	}
	res, err := st.Search(ctx, o.scope(), store.Incidents, req)
	if err != nil {
		return fmt.Errorf("searching incidents: %w", err)
	}
	var list []*incident.Incident
	var raws []json.RawMessage
	for _, d := range res.Docs {
		in, err := incident.FromDoc(d)
		if err != nil {
			return err
		}
		if o.Kind != "" && string(in.Kind) != o.Kind {
			continue
		}
		list = append(list, in)
		raws = append(raws, d.Source)
	}
	if o.Format == "json" {
		return writeJSON(out, struct {
			Total     int64             `json:"total"`
			Incidents []json.RawMessage `json:"incidents"`
		}{res.Total, nonNil(raws)})
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCREATED\tENTITY\tKIND\tSEVERITY\tSTATUS\tCATEGORY\tFINDINGS\tCAMPAIGN\tTITLE")
	for _, in := range list {
		camp := in.CampaignID
		if in.Kind == incident.KindCampaign {
			camp = fmt.Sprintf("%d entities", len(in.Entities))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", in.ID, in.Created.Format("2006-01-02 15:04"), in.Tenant(), in.Kind,
			in.Severity, in.Status, dash(string(in.Category)), in.FindingCount, dash(camp), in.Title)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if res.Total > int64(len(res.Docs)) {
		fmt.Fprintf(out, "(%d of %d shown: narrow with --since/--status or raise --limit)\n", len(res.Docs), res.Total)
	}
	return nil
}

// shown is what `show --format json` prints.
type shown struct {
	Incident json.RawMessage   `json:"incident"`
	Findings []json.RawMessage `json:"findings"`
	// Missing lists attached finding ids not found in the store (expired
	// by retention, or written by a component that failed).
	Missing  []string          `json:"missing_findings,omitempty"`
	Campaign json.RawMessage   `json:"campaign,omitempty"`
	Members  []json.RawMessage `json:"members,omitempty"`
}

// Show prints one incident or campaign with its findings (the newest
// o.Findings), its campaign (regional scope only) or, for a campaign, its
// member incidents.
func Show(ctx context.Context, st store.Store, o Options, out io.Writer) error {
	if err := o.check("show"); err != nil {
		return err
	}
	sc := o.scope()
	d, err := st.Get(ctx, sc, store.Incidents, o.ID)
	if errors.Is(err, store.ErrNotFound) {
		if o.Entity != "" {
			return fmt.Errorf("no incident %s in entity %s (campaigns are regional: drop --entity)", o.ID, o.Entity)
		}
		return fmt.Errorf("no incident %s (see csirt incidents list)", o.ID)
	}
	if err != nil {
		return fmt.Errorf("reading incident %s: %w", o.ID, err)
	}
	in, err := incident.FromDoc(d)
	if err != nil {
		return err
	}
	res := shown{Incident: d.Source}
	var fs []*finding.Finding
	ids := in.FindingIDs
	if len(ids) > o.Findings {
		ids = ids[len(ids)-o.Findings:]
	}
	for i := len(ids) - 1; i >= 0; i-- {
		fd, err := st.Get(ctx, sc, store.Findings, ids[i])
		if errors.Is(err, store.ErrNotFound) {
			res.Missing = append(res.Missing, ids[i])
			continue
		}
		if err != nil {
			return fmt.Errorf("reading finding %s: %w", ids[i], err)
		}
		f, err := finding.Decode(fd.Source)
		if err != nil {
			return fmt.Errorf("finding %s: %w", ids[i], err)
		}
		fs = append(fs, f)
		res.Findings = append(res.Findings, fd.Source)
	}
	var camp *incident.Incident
	if in.CampaignID != "" && in.Kind == incident.KindIncident && sc.Regional() {
		cd, err := st.Get(ctx, sc, store.Incidents, in.CampaignID)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return fmt.Errorf("reading campaign %s: %w", in.CampaignID, err)
		default:
			res.Campaign = cd.Source
			if camp, err = incident.FromDoc(cd); err != nil {
				return err
			}
		}
	}
	var members []*incident.Incident
	if in.Kind == incident.KindCampaign {
		for _, m := range in.Members {
			md, err := st.Get(ctx, sc, store.Incidents, m.Incident)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return fmt.Errorf("reading member incident %s: %w", m.Incident, err)
			}
			mi, err := incident.FromDoc(md)
			if err != nil {
				return err
			}
			members = append(members, mi)
			res.Members = append(res.Members, md.Source)
		}
	}
	if o.Format == "json" {
		res.Findings = nonNil(res.Findings)
		return writeJSON(out, res)
	}
	return writeText(out, in, fs, res.Missing, camp, members)
}

func writeText(out io.Writer, in *incident.Incident, fs []*finding.Finding, missing []string, camp *incident.Incident, members []*incident.Incident) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	tm := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	}
	row(strings.ToUpper(string(in.Kind[:1]))+string(in.Kind[1:]), in.ID)
	row("Title", in.Title)
	row("Entity", in.Tenant())
	row("Status", strings.TrimSpace(string(in.Status)+" "+string(in.Resolution)))
	row("Severity", fmt.Sprintf("%s (risk %d)", in.Severity, in.RiskScore))
	row("Category (ENISA)", string(in.Category))
	row("TLP / PAP", "TLP:"+strings.ToUpper(string(in.TLP))+" / PAP:"+strings.ToUpper(string(in.PAP)))
	row("Assignee", in.Assignee)
	row("Created", tm(in.Created))
	row("Updated", tm(in.Updated))
	row("Seen", tm(in.FirstSeen)+" to "+tm(in.LastSeen))
	row("Grouped by", strings.TrimSpace(in.RuleGroup+" "+in.GroupKey))
	row("ATT&CK", strings.Join(append(append([]string{}, in.Techniques...), in.Tactics...), ", "))
	row("Hosts", strings.Join(in.Hosts, ", "))
	row("Users", strings.Join(in.Users, ", "))
	var obs []string
	for _, o := range in.Observables {
		obs = append(obs, o.Type+"="+o.Value)
	}
	row("Observables", strings.Join(obs, ", "))
	row("Findings", fmt.Sprint(in.FindingCount))
	row("Campaign", in.CampaignID)
	if camp != nil {
		row("Campaign entities", strings.Join(camp.Entities, ", "))
	}
	if in.Kind == incident.KindCampaign {
		row("Entities", strings.Join(in.Entities, ", "))
	}
	if n := in.NIS2; n != nil {
		for _, dl := range n.Pending(time.Now()) {
			state := "due"
			if dl.Overdue {
				state = "OVERDUE"
			}
			row("NIS2 "+string(dl.Report), state+" "+tm(dl.Due))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if in.Description != "" {
		fmt.Fprintf(out, "\n%s\n", in.Description)
	}
	if len(members) > 0 {
		fmt.Fprintln(out, "\nMember incidents:")
		tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		for _, m := range members {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d findings\t%s\n", m.ID, m.Tenant(), m.Severity, m.Status, m.FindingCount, m.Title)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(fs) > 0 {
		fmt.Fprintf(out, "\nFindings (%d shown of %d):\n", len(fs), in.FindingCount)
		tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		for _, f := range fs {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", f.Time.UTC().Format(time.RFC3339), f.ID, f.Severity, dash(f.RuleName), f.Message)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(missing) > 0 {
		fmt.Fprintf(out, "(%d attached findings are no longer in the store)\n", len(missing))
	}
	if len(in.Timeline) > 0 {
		fmt.Fprintln(out, "\nTimeline:")
		tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		for _, e := range in.Timeline {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", e.Time.UTC().Format(time.RFC3339), e.Kind, dash(e.Actor), e.Message)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, c := range in.Comments {
		fmt.Fprintf(out, "\nComment by %s at %s:\n  %s\n", c.Author, tm(c.Time), c.Text)
	}
	if len(in.Tasks) > 0 {
		fmt.Fprintln(out, "\nTasks:")
		for _, t := range in.Tasks {
			mark := "[ ]"
			if t.Done {
				mark = "[x]"
			}
			fmt.Fprintf(out, "  %s %s %s\n", mark, t.Title, t.Assignee)
		}
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func nonNil(l []json.RawMessage) []json.RawMessage {
	if l == nil {
		return []json.RawMessage{}
	}
	return l
}

func writeJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// parseInterspersed parses flags wherever they are among the positional
// arguments (`show ID --format json` as well as `show --format json ID`);
// "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if k := len(args) - len(rest) - 1; k >= 0 && args[k] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
