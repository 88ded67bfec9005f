package admincli

import (
	"bytes"
	"context"
	"flag"
	"strings"
	"testing"
)

func TestUnknownAndUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main(context.Background(), []string{"nosuch", "verb"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), `unknown command "nosuch verb"`) {
		t.Fatalf("code %d, stderr %q", code, errb.String())
	}
}

func TestCommandGetsStoreAndArgs(t *testing.T) {
	var got []string
	var hadStore bool
	Register(Command{Group: "test", Verb: "echo", Summary: "test only", Flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
		n := fs.Int("n", 0, "a number")
		return func(_ context.Context, env *Env, args []string) error {
			hadStore = env.Store != nil
			got = append(args, strings.Repeat("x", *n))
			return nil
		}
	}})
	defer delete(commands, "test echo")
	var out, errb bytes.Buffer
	code := Main(context.Background(), []string{"test", "echo", "--data-dir", t.TempDir(), "-n", "2", "a"}, &out, &errb)
	if code != 0 || !hadStore || strings.Join(got, ",") != "a,xx" {
		t.Fatalf("code %d store %v got %v stderr %s", code, hadStore, got, errb.String())
	}
	if !strings.Contains(Usage(), "csirt admin test echo") {
		t.Fatal("usage does not list the command")
	}
}
