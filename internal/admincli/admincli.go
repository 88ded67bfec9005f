// Package admincli implements `csirt admin`: the operator commands that
// change what the centre knows (entities, enrolment tokens, agents,
// syslog devices). Each command opens the store named by the same
// configuration as `csirt serve` and writes through the store's tenancy
// scopes. Command groups live in their own files and register in init.
package admincli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/csirt-toscana/platform/internal/central"
	"github.com/csirt-toscana/platform/internal/config"
	"github.com/csirt-toscana/platform/internal/store"
)

// Env is what a command gets: the loaded configuration, an open store, and
// where to write. Out is for results (tables, JSON, tokens); Err for
// messages to the operator.
type Env struct {
	Config config.Config
	Store  store.Store
	Out    io.Writer
	Err    io.Writer
	Log    logrus.FieldLogger
}

// Command is one `csirt admin GROUP VERB`.
type Command struct {
	Group, Verb string
	Summary     string // one line for the usage text
	// Flags declares the command's flags on fs (which already has
	// --config and --data-dir) and returns the function that does the
	// work once the flags are parsed and the store is open; args are the
	// positional arguments. A returned UsageError exits 2, other errors 1.
	Flags func(fs *flag.FlagSet) func(ctx context.Context, env *Env, args []string) error
	// NoStore commands run without opening the store.
	NoStore bool
}

// UsageError is a mistake in the command line.
type UsageError struct{ Msg string }

func (e UsageError) Error() string { return e.Msg }

var commands = map[string]Command{}

// Register adds a command; groups' files call it in init.
func Register(c Command) {
	k := c.Group + " " + c.Verb
	if _, dup := commands[k]; dup {
		panic("admincli: " + k + " registered twice")
	}
	commands[k] = c
}

// Usage lists the commands.
func Usage() string {
	var b strings.Builder
	b.WriteString("Usage: csirt admin GROUP VERB [--config FILE] [flags]\n\n")
	keys := make([]string, 0, len(commands))
	for k := range commands {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "  csirt admin %-22s %s\n", k, commands[k].Summary)
	}
	b.WriteString("\nEvery command takes --config FILE (default: the built-in single-node\nconfiguration, store under ./csirt-data). 'csirt admin GROUP VERB --help' lists its flags.\n")
	return b.String()
}

// Main runs `csirt admin ARGS...` and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "--help" || args[0] == "-h" {
		fmt.Fprint(stdout, Usage())
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if len(args) < 2 {
		fmt.Fprintf(stderr, "csirt admin %s: which verb?\n\n%s", args[0], Usage())
		return 2
	}
	c, ok := commands[args[0]+" "+args[1]]
	if !ok {
		fmt.Fprintf(stderr, "csirt admin: unknown command %q\n\n%s", args[0]+" "+args[1], Usage())
		return 2
	}
	name := "csirt admin " + c.Group + " " + c.Verb
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration `file` (default: built-in single-node defaults)")
	dataDir := fs.String("data-dir", "", "override data_dir")
	run := c.Flags(fs)
	pos, err := parseInterspersed(fs, args[2:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	env := &Env{Out: stdout, Err: stderr}
	defer func() {
		if env.Store != nil {
			_ = env.Store.Close()
		}
	}()
	err = env.open(ctx, *cfgPath, *dataDir, !c.NoStore)
	if err == nil {
		err = run(ctx, env, pos)
	}
	if err != nil {
		var ue UsageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "%s: %s\n", name, ue.Msg)
			return 2
		}
		fmt.Fprintf(stderr, "%s: %s\n", name, err)
		return 1
	}
	return 0
}

func (env *Env) open(ctx context.Context, cfgPath, dataDir string, withStore bool) error {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	if dataDir != "" {
		cfg.DataDir = dataDir
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	env.Config = cfg
	l := logrus.New()
	l.SetOutput(env.Err)
	l.SetLevel(logrus.WarnLevel)
	env.Log = l
	if !withStore {
		return nil
	}
	s, _, _, err := central.OpenStore(ctx, cfg, l)
	if err != nil {
		return err
	}
	env.Store = s
	return nil
}

// parseInterspersed parses flags wherever they are among the positional
// arguments (`entity add ID --name N` as well as `entity add --name N ID`);
// the flag package alone stops at the first positional argument. "--" ends
// the flags.
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
			return append(pos, rest...), nil // everything after "--" is positional
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
