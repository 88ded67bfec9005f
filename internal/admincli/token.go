package admincli

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/csirt-toscana/platform/collector/intake"
	"github.com/csirt-toscana/platform/internal/central"
	"github.com/csirt-toscana/platform/internal/config"
)

func init() {
	Register(Command{Group: "token", Verb: "create", Summary: "create an enrolment token: --entity E [--ttl 24h] [--uses 1] [--server URL]",
		Flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			entity := fs.String("entity", "", "the entity the enrolled agents belong to (required)")
			ttl := fs.Duration("ttl", 24*time.Hour, "how long the token stays valid")
			uses := fs.Int("uses", 1, "how many agents may enrol with it")
			server := fs.String("server", "", "intake URL printed in the enrol command (default: intake.advertise_url, else https://<intake.listen>)")
			return func(ctx context.Context, env *Env, args []string) error {
				if err := enrolNoArgs(args); err != nil {
					return err
				}
				if *entity == "" {
					return UsageError{"--entity is required (see csirt admin entity list)"}
				}
				iss, err := central.OpenIssuer(env.Config)
				if err != nil {
					return err
				}
				tok, rec, err := intake.CreateToken(ctx, env.Store, iss.CAPEM(), intake.TokenSpec{Entity: *entity, TTL: *ttl, Uses: *uses})
				if err != nil {
					return err
				}
				url := *server
				if url == "" {
					url = enrolIntakeURL(env.Config)
				}
				// The token on stdout alone, for scripts; the guidance on stderr.
				fmt.Fprintln(env.Out, tok)
				fmt.Fprintf(env.Err, "\nEnrolment token %s for entity %s: valid until %s, %d use(s).\n"+
					"It is shown only now. Run on the server to enrol (as root):\n\n"+
					"  csirt-agent enroll --server %s --token %s\n\n",
					rec.ID, rec.Entity, rec.Expires.Local().Format("2006-01-02 15:04 MST"), rec.MaxUses, url, tok)
				return nil
			}
		}})
	Register(Command{Group: "token", Verb: "list", Summary: "list enrolment tokens [--entity E] [--format table|json]",
		Flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			entity := fs.String("entity", "", "only this entity's tokens")
			format := fs.String("format", "table", "table or json")
			return func(ctx context.Context, env *Env, args []string) error {
				if err := enrolNoArgs(args); err != nil {
					return err
				}
				list, err := intake.ListTokens(ctx, env.Store, *entity)
				if err != nil {
					return err
				}
				now := time.Now()
				switch *format {
				case "json":
					type row struct {
						ID      string    `json:"id"`
						Entity  string    `json:"entity"`
						State   string    `json:"state"`
						Uses    int       `json:"uses"`
						MaxUses int       `json:"max_uses"`
						Created time.Time `json:"created"`
						Expires time.Time `json:"expires"`
					}
					rows := make([]row, len(list))
					for i, t := range list {
						rows[i] = row{t.ID, t.Entity, t.State(now), t.Uses, t.MaxUses, t.Created, t.Expires}
					}
					return enrolJSON(env, rows)
				case "table":
					tw := tabwriter.NewWriter(env.Out, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "ID\tENTITY\tSTATE\tUSES\tCREATED\tEXPIRES")
					for _, t := range list {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%s\n", t.ID, t.Entity, t.State(now), t.Uses, t.MaxUses,
							t.Created.Local().Format("2006-01-02 15:04"), t.Expires.Local().Format("2006-01-02 15:04"))
					}
					return tw.Flush()
				}
				return UsageError{fmt.Sprintf("--format %q: use table or json", *format)}
			}
		}})
	Register(Command{Group: "token", Verb: "revoke", Summary: "revoke an enrolment token: ID (as in token list)",
		Flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 1 {
					return UsageError{"give exactly one token id (see csirt admin token list)"}
				}
				rec, err := intake.RevokeToken(ctx, env.Store, args[0])
				if err != nil {
					return err
				}
				fmt.Fprintf(env.Out, "token %s of entity %s revoked (%d of %d uses had been made)\n", rec.ID, rec.Entity, rec.Uses, rec.MaxUses)
				return nil
			}
		}})
}

// intakeURL is the URL agents reach the intake at.
func enrolIntakeURL(cfg config.Config) string {
	if cfg.Intake.AdvertiseURL != "" {
		return strings.TrimRight(cfg.Intake.AdvertiseURL, "/")
	}
	if cfg.Intake.Listen == "" {
		return "https://INTAKE-HOST:8443"
	}
	return "https://" + cfg.Intake.Listen
}
