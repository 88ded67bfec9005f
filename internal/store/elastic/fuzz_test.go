package elastic

import (
	"encoding/json"
	"testing"

	"github.com/csirt-toscana/platform/internal/store"
)

// FuzzPrepare: whatever the source, prepare either refuses it or gives a
// JSON object whose tenant is the document's and which carries the id copy.
func FuzzPrepare(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, `{"organization":{"name":"x"}}`, `{"organization.id":"t1"}`,
		`{"organization":null}`, `{"organization":{"id":null}}`, ` {"a":[1,{"b":2}]} `, `[]`, `{"a":1}{}`, `{"organization":"x"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		sch, _ := store.SchemaOf(store.Events)
		p, err := prepare(store.RegionalScope(), sch, store.Doc{ID: "id-1", Tenant: "t1", Source: src})
		if err != nil {
			return
		}
		var m map[string]any
		if err := json.Unmarshal(p.body, &m); err != nil {
			t.Fatalf("body %s of source %q is not JSON: %v", p.body, src, err)
		}
		in, err := inspect(p.body)
		if err != nil || in.org != "t1" || m[idField] != "id-1" {
			t.Fatalf("body %s of source %q: tenant %q, %v", p.body, src, in.org, err)
		}
	})
}
