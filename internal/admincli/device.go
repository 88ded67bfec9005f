package admincli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/csirt-toscana/platform/collector/syslogin"
)

// The device commands manage the syslog device registry
// (collector/syslogin): which source networks belong to which entity.

// deviceFlags collects a repeatable flag.
type deviceFlags []string

func (m *deviceFlags) String() string     { return strings.Join(*m, ",") }
func (m *deviceFlags) Set(v string) error { *m = append(*m, v); return nil }

func init() {
	Register(Command{Group: "device", Verb: "add", Summary: "register a syslog device: NAME --entity E --cidr NET [--cidr NET ...] [--hostname H]",
		Flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			entity := fs.String("entity", "", "`id` of the entity the device belongs to (required)")
			hostname := fs.String("hostname", "", "host.name of the device's events (default: the HOSTNAME of each syslog message)")
			var cidrs deviceFlags
			fs.Var(&cidrs, "cidr", "source `network` of the device, e.g. 10.1.2.0/24 or 10.1.2.3 (repeatable, at least one)")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 1 {
					return UsageError{"give exactly one device NAME"}
				}
				name := args[0]
				if *entity == "" {
					return UsageError{"--entity is required"}
				}
				if len(cidrs) == 0 {
					return UsageError{"at least one --cidr is required"}
				}
				d := syslogin.Device{Name: name, Entity: *entity, Hostname: *hostname}
				for _, c := range cidrs {
					p, err := syslogin.ParseNetwork(c)
					if err != nil {
						return UsageError{"--cidr: " + err.Error()}
					}
					d.Networks = append(d.Networks, p)
				}
				if err := syslogin.AddDevice(ctx, env.Store, d); err != nil {
					return err
				}
				fmt.Fprintf(env.Out, "device %s registered for entity %s: %s\n", name, *entity, devicePrefixes(d.Networks))
				fmt.Fprintln(env.Err, "the collector picks it up within 30 s (at once for a new source address)")
				return nil
			}
		}})
	Register(Command{Group: "device", Verb: "list", Summary: "list syslog devices [--entity E] [--format table|json]",
		Flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			entity := fs.String("entity", "", "only the devices of this entity `id`")
			format := fs.String("format", "table", "output `format`: table or json")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 0 {
					return UsageError{"device list takes no arguments"}
				}
				if *format != "table" && *format != "json" {
					return UsageError{"--format must be table or json"}
				}
				devs, err := syslogin.ListDevices(ctx, env.Store, *entity)
				if err != nil {
					return err
				}
				if *format == "json" {
					return writeDevicesOut(env, devs)
				}
				tw := tabwriter.NewWriter(env.Out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tENTITY\tNETWORKS\tHOSTNAME\tSTATUS\tLAST SEEN")
				for _, d := range devs {
					seen := "never"
					if !d.LastSeen.IsZero() {
						seen = d.LastSeen.UTC().Format(time.RFC3339)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.Name, d.Entity, devicePrefixes(d.Networks), deviceDash(d.Hostname), deviceDash(d.Status), seen)
				}
				return tw.Flush()
			}
		}})
	Register(Command{Group: "device", Verb: "remove", Summary: "remove a syslog device: NAME",
		Flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 1 {
					return UsageError{"give exactly one device NAME"}
				}
				d, err := syslogin.RemoveDevice(ctx, env.Store, args[0])
				if err != nil {
					return err
				}
				fmt.Fprintf(env.Out, "device %s of entity %s removed (%s)\n", d.Name, d.Entity, devicePrefixes(d.Networks))
				return nil
			}
		}})
}

type deviceOut struct {
	Name     string    `json:"name"`
	Entity   string    `json:"entity"`
	Networks []string  `json:"networks"`
	Hostname string    `json:"hostname,omitempty"`
	Status   string    `json:"status,omitempty"`
	LastSeen time.Time `json:"last_seen,omitzero"`
}

func writeDevicesOut(env *Env, devs []syslogin.Device) error {
	out := make([]deviceOut, 0, len(devs))
	for _, d := range devs {
		nets := make([]string, len(d.Networks))
		for i, p := range d.Networks {
			nets[i] = p.String()
		}
		out = append(out, deviceOut{Name: d.Name, Entity: d.Entity, Networks: nets, Hostname: d.Hostname, Status: d.Status, LastSeen: d.LastSeen})
	}
	enc := json.NewEncoder(env.Out)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func devicePrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func deviceDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
