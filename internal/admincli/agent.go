package admincli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/csirt-toscana/platform/collector/intake"
	"github.com/csirt-toscana/platform/internal/policy"
)

func init() {
	Register(Command{Group: "agent", Verb: "list", Summary: "list enrolled agents [--entity E] [--format table|json]",
		Flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			entity := fs.String("entity", "", "only this entity's agents")
			format := fs.String("format", "table", "table or json")
			return func(ctx context.Context, env *Env, args []string) error {
				if err := enrolNoArgs(args); err != nil {
					return err
				}
				list, err := intake.ListAgents(ctx, env.Store, *entity)
				if err != nil {
					return err
				}
				switch *format {
				case "json":
					type row struct {
						ID         string     `json:"id"`
						Entity     string     `json:"entity"`
						Hostname   string     `json:"hostname"`
						Status     string     `json:"status"`
						Enrolled   time.Time  `json:"enrolled"`
						LastSeen   *time.Time `json:"last_seen,omitempty"`
						CertExpiry *time.Time `json:"cert_expiry,omitempty"`
						Version    string     `json:"version,omitempty"`
						Address    string     `json:"address,omitempty"`
					}
					rows := make([]row, len(list))
					for i, a := range list {
						rows[i] = row{ID: a.AgentID, Entity: a.EntityID, Hostname: a.Hostname, Status: enrolAgentStatus(a),
							Enrolled: a.Enrolled, LastSeen: enrolOptTime(a.LastSeen), CertExpiry: enrolOptTime(a.CertNotAfter), Version: a.Version, Address: a.Address}
					}
					return enrolJSON(env, rows)
				case "table":
					tw := tabwriter.NewWriter(env.Out, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "ID\tENTITY\tHOSTNAME\tSTATUS\tENROLLED\tLAST SEEN\tCERT EXPIRES")
					for _, a := range list {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.AgentID, a.EntityID, enrolDash(a.Hostname), enrolAgentStatus(a),
							enrolFmtTime(a.Enrolled), enrolFmtTime(a.LastSeen), enrolFmtTime(a.CertNotAfter))
					}
					return tw.Flush()
				}
				return UsageError{fmt.Sprintf("--format %q: use table or json", *format)}
			}
		}})
	Register(Command{Group: "agent", Verb: "revoke", Summary: "revoke an agent: ID (its batches are rejected from now on)",
		Flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 1 {
					return UsageError{"give exactly one agent id (see csirt admin agent list)"}
				}
				a, err := intake.RevokeAgent(ctx, env.Store, args[0])
				if err != nil {
					return err
				}
				fmt.Fprintf(env.Out, "agent %s (%s, entity %s) revoked: the collector rejects its batches and the intake refuses it\n", a.AgentID, enrolDash(a.Hostname), a.EntityID)
				return nil
			}
		}})
	Register(Command{Group: "policy", Verb: "set", Summary: "set an entity's agent policy: --entity E FILE.json",
		Flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			entity := fs.String("entity", "", "the entity (required)")
			return func(ctx context.Context, env *Env, args []string) error {
				if *entity == "" || len(args) != 1 {
					return UsageError{"usage: csirt admin policy set --entity E FILE.json"}
				}
				b, err := os.ReadFile(args[0])
				if err != nil {
					return err
				}
				var p policy.Policy
				if err := json.Unmarshal(b, &p); err != nil {
					return fmt.Errorf("%s: %w", args[0], err)
				}
				p, err = intake.SetPolicy(ctx, env.Store, *entity, p)
				if err != nil {
					return err
				}
				fmt.Fprintf(env.Out, "policy revision %s set for entity %s: agents pick it up at their next refresh\n", p.Revision, *entity)
				return nil
			}
		}})
	Register(Command{Group: "policy", Verb: "show", Summary: "print an entity's agent policy (the default when none was set): --entity E",
		Flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			entity := fs.String("entity", "", "the entity (required)")
			return func(ctx context.Context, env *Env, args []string) error {
				if *entity == "" {
					return UsageError{"--entity is required"}
				}
				if err := enrolNoArgs(args); err != nil {
					return err
				}
				p, err := intake.EntityPolicy(ctx, env.Store, *entity)
				if err != nil {
					return err
				}
				return enrolJSON(env, p)
			}
		}})
}

func enrolAgentStatus(a intake.AgentRecord) string {
	if a.IsRevoked() {
		return "revoked"
	}
	if !a.CertNotAfter.IsZero() && time.Now().After(a.CertNotAfter) {
		return "cert-expired"
	}
	if a.Status == "" {
		return "active"
	}
	return a.Status
}

func enrolOptTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func enrolFmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04")
}
