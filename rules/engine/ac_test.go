package engine

import (
	"math/rand"
	"strings"
	"testing"
)

func TestAhoCorasick(t *testing.T) {
	pats := []string{"he", "she", "his", "hers", "a", "aa", "xyz"}
	m := buildAC(pats)
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 2000; i++ {
		var b strings.Builder
		for j := 0; j < rng.Intn(20); j++ {
			b.WriteByte("ahersixyz"[rng.Intn(9)])
		}
		text := b.String()
		got := map[int32]bool{}
		for _, id := range m.scan(text, nil) {
			got[id] = true
		}
		for id, p := range pats {
			if strings.Contains(text, p) != got[int32(id)] {
				t.Fatalf("%q in %q: got %v", p, text, got[int32(id)])
			}
		}
	}
}
