package admincli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/csirt-toscana/platform/collector/intake"
)

func init() {
	Register(Command{Group: "entity", Verb: "add", Summary: "add an entity (a body the CSIRT serves): ID --name NAME [--kind K] [--province XX] [--nis2]",
		Flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			name := fs.String("name", "", "the entity's name, e.g. \"Comune di Prato\" (required)")
			kind := fs.String("kind", "comune", "kind: "+strings.Join(intake.EntityKinds, ", "))
			prov := fs.String("province", "", "two-letter province code, e.g. PO")
			nis2 := fs.Bool("nis2", false, "the entity is in NIS2 scope (regulatory timers apply)")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 1 {
					return UsageError{"give exactly one entity id, e.g. csirt admin entity add comune-prato --name \"Comune di Prato\""}
				}
				if *name == "" {
					return UsageError{"--name is required"}
				}
				e := intake.Entity{ID: args[0], Name: *name, Kind: *kind, Province: strings.ToUpper(*prov), NIS2: *nis2}
				if err := intake.AddEntity(ctx, env.Store, e); err != nil {
					return err
				}
				fmt.Fprintf(env.Out, "entity %s added (%s)\nnext: csirt admin token create --entity %s\n", e.ID, e.Name, e.ID)
				return nil
			}
		}})
	Register(Command{Group: "entity", Verb: "list", Summary: "list entities [--format table|json]",
		Flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			format := fs.String("format", "table", "table or json")
			return func(ctx context.Context, env *Env, args []string) error {
				if err := enrolNoArgs(args); err != nil {
					return err
				}
				list, err := intake.ListEntities(ctx, env.Store)
				if err != nil {
					return err
				}
				switch *format {
				case "json":
					type row struct {
						ID string `json:"id"`
						intake.Entity
					}
					rows := make([]row, len(list))
					for i, e := range list {
						rows[i] = row{e.ID, e}
					}
					return enrolJSON(env, rows)
				case "table":
					tw := tabwriter.NewWriter(env.Out, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "ID\tNAME\tKIND\tPROVINCE\tNIS2")
					for _, e := range list {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.ID, e.Name, enrolDash(e.Kind), enrolDash(e.Province), enrolYesNo(e.NIS2))
					}
					return tw.Flush()
				}
				return UsageError{fmt.Sprintf("--format %q: use table or json", *format)}
			}
		}})
}

func enrolNoArgs(args []string) error {
	if len(args) > 0 {
		return UsageError{fmt.Sprintf("unexpected argument %q", args[0])}
	}
	return nil
}

func enrolJSON(env *Env, v any) error {
	enc := json.NewEncoder(env.Out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func enrolDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func enrolYesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
