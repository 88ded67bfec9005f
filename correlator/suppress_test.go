package correlator

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/csirt-toscana/platform/internal/finding"
	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/sqlite"
)

// LoadSuppressions reads every stored suppression, past the store's search
// window, and keeps only the unexpired ones whose document tenant is the
// entity they name.
func TestLoadSuppressionsPastSearchWindow(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(t.TempDir(), "store.db"), Logger: quiet()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

	const n = store.MaxWindow + 500
	w, err := st.Bulk(store.RegionalScope(), store.RulesState, store.BulkOptions{})
	require.NoError(t, err)
	want := 0
	for i := range n {
		s := Suppression{ID: fmt.Sprintf("sup-%05d", i), Scope: ScopeRegional, Match: map[string]string{"source.ip": fmt.Sprintf("10.9.%d.%d", i>>8&255, i&255)},
			Expires: now.Add(time.Hour), Reason: "scanner of the CSIRT", Author: "analyst", Created: now.Add(-time.Hour)}
		switch i % 1000 {
		case 1:
			s.Expires = now.Add(-time.Minute) // expired
		case 2:
			s.Scope, s.Entity = ScopeEntity, "comune-a"
			want++
		default:
			want++
		}
		d, err := s.Doc()
		require.NoError(t, err)
		if i%1000 == 3 { // an entity suppression filed under another tenant does not bind it
			s.Scope, s.Entity = ScopeEntity, "comune-a"
			d, err = s.Doc()
			require.NoError(t, err)
			d.Tenant = "comune-b"
			want--
		}
		require.NoError(t, w.Add(ctx, d))
	}
	require.NoError(t, w.Close(ctx))

	ss, err := LoadSuppressions(ctx, st, now)
	require.NoError(t, err)
	require.Equal(t, want, ss.Len())
	hit := func(i int, entity string) *Suppression {
		return ss.Match(&finding.Finding{Entity: entity, RuleID: "r", SourceIP: fmt.Sprintf("10.9.%d.%d", i>>8&255, i&255)}, now)
	}
	require.NotNil(t, hit(0, "comune-x"), "the first suppression stored")
	require.NotNil(t, hit(n-1, "comune-x"), "the last suppression stored")
	require.Nil(t, hit(10001, "comune-x"), "an expired suppression")
	require.NotNil(t, hit(10002, "comune-a"), "an entity suppression for its entity")
	require.Nil(t, hit(10002, "comune-x"), "an entity suppression for another entity")
	require.Nil(t, hit(10003, "comune-a"), "an entity suppression stored in another tenant")
}
