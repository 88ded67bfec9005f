package source

import (
	"context"
	"strings"
	"testing"
)

type nopSource struct{ cfg struct{ A int } }

func (nopSource) Run(ctx context.Context, _ chan<- Record) error { <-ctx.Done(); return nil }
func (nopSource) Ack(...Cursor) error                            { return nil }
func (nopSource) Status() []Status                               { return nil }

var _ Source = nopSource{}

func TestRegistry(t *testing.T) {
	var r Registry
	r.Register("nop", func(name string, decode func(any) error, deps Deps) (Source, error) {
		var s nopSource
		if err := decode(&s.cfg); err != nil {
			return nil, err
		}
		if deps.Logger == nil || deps.Now == nil {
			t.Error("deps defaults not filled in")
		}
		return s, nil
	})
	if _, err := r.New("nop", "x", StrictYAML([]byte("a: 1\n")), Deps{}); err != nil {
		t.Fatal(err)
	}
	_, err := r.New("nop", "x", StrictYAML([]byte("b: 1\n")), Deps{})
	if err == nil || !strings.Contains(err.Error(), `source "x" (nop)`) || !strings.Contains(err.Error(), "field b not found") {
		t.Fatalf("unknown key: %v", err)
	}
	if _, err := r.New("other", "x", StrictYAML(nil), Deps{}); err == nil || !strings.Contains(err.Error(), "[nop]") {
		t.Fatalf("unknown kind: %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("duplicate kind did not panic")
		}
	}()
	r.Register("nop", func(string, func(any) error, Deps) (Source, error) { return nopSource{}, nil })
}
