package intake

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/csirt-toscana/platform/collector/internal/verify"
	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/sqlite"
)

// The lists read every record, past the 10,000 documents one search
// returns: agents and entities of the whole region, enrolment tokens
// (used ones are kept).
func TestListsReadPastOneSearch(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(t.TempDir(), "store.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	const n = store.MaxPage + 37
	write := func(c store.Collection, doc func(i int) store.Doc) {
		bw, err := st.Bulk(store.RegionalScope(), c, store.BulkOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if err := bw.Add(ctx, doc(i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := bw.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	mustJSON := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ent := func(i int) string { return fmt.Sprintf("comune-%05d", i) }
	write(store.Agents, func(i int) store.Doc {
		a := AgentRecord{AgentDoc: verify.AgentDoc{AgentID: fmt.Sprintf("agent-%05d", i), EntityID: ent(i % 3), Algorithm: "ed25519", PublicKey: "x"}, Kind: "agent"}
		return store.Doc{ID: a.AgentID, Tenant: a.EntityID, Source: mustJSON(a)}
	})
	write(store.Entities, func(i int) store.Doc {
		return store.Doc{ID: ent(i), Tenant: ent(i), Source: mustJSON(map[string]any{"name": "Comune " + ent(i)})}
	})
	write(store.RulesState, func(i int) store.Doc {
		tok := TokenRecord{Kind: TokenKind, ID: fmt.Sprintf("tok%05d", i), Entity: ent(0)}
		return store.Doc{ID: tokenDocID(tok.ID), Tenant: store.RegionalTenant, Source: mustJSON(tok)}
	})

	agents, err := ListAgents(ctx, st, "")
	if err != nil || len(agents) != n {
		t.Fatalf("ListAgents: %d agents, %v; want %d", len(agents), err, n)
	}
	ents, err := ListEntities(ctx, st)
	if err != nil || len(ents) != n {
		t.Fatalf("ListEntities: %d entities, %v; want %d", len(ents), err, n)
	}
	toks, err := ListTokens(ctx, st, "")
	if err != nil || len(toks) != n {
		t.Fatalf("ListTokens: %d tokens, %v; want %d", len(toks), err, n)
	}
}
