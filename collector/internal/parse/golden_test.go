package parse

import (
	"bytes"
	"flag"
	"github.com/csirt-toscana/platform/internal/event"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// goldenNow is the reference time of golden tests (year inference).
var goldenNow = time.Date(2024, 6, 15, 12, 0, 0, 0, time.UTC)

// TestGolden parses each testdata/golden/<name> input (the name is the
// source hint, as a file path would be; a first line "#source: X" gives
// another hint) through a Stream and compares the JSONL events with
// <name>.golden.jsonl. Run with -update to rewrite them.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "golden", "*"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, in := range inputs {
		if strings.HasSuffix(in, ".golden.jsonl") {
			continue
		}
		n++
		t.Run(filepath.Base(in), func(t *testing.T) {
			got := goldenRun(t, in)
			want := in + ".golden.jsonl"
			if *update {
				if err := os.WriteFile(want, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			exp, err := os.ReadFile(want)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update)", err)
			}
			if !bytes.Equal(got, exp) {
				gl, el := strings.Split(string(got), "\n"), strings.Split(string(exp), "\n")
				for i := 0; i < len(gl) || i < len(el); i++ {
					var g, e string
					if i < len(gl) {
						g = gl[i]
					}
					if i < len(el) {
						e = el[i]
					}
					if g != e {
						t.Errorf("event %d differs:\n got %s\nwant %s", i+1, g, e)
					}
				}
			}
		})
	}
	if n == 0 {
		t.Fatal("no golden inputs")
	}
}

func goldenRun(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d := New(Options{Now: func() time.Time { return goldenNow }})
	source := path
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) > 0 && strings.HasPrefix(lines[0], "#source: ") {
		source = strings.TrimPrefix(lines[0], "#source: ")
		lines = lines[1:]
	}
	st := d.NewStream("")
	var out bytes.Buffer
	emit := func(evs []event.Event) {
		for _, ev := range evs {
			if err := withPipelineFields(ev).Validate(); err != nil {
				t.Errorf("%s: invalid event: %v: %s", path, err, ev.String("event.original"))
			}
			b, err := ev.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			out.Write(b)
			out.WriteByte('\n')
		}
	}
	for _, l := range lines {
		evs, err := st.Add(Record{Raw: []byte(l), Source: source})
		if err != nil {
			t.Errorf("%s: %v", path, err)
		}
		emit(evs)
	}
	emit(st.Flush())
	return out.Bytes()
}
