package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// TestReferenceDoc keeps docs/configuration.md true: its YAML reference
// loads, equals the built-in defaults, and names every key.
func TestReferenceDoc(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "configuration.md"))
	require.NoError(t, err)
	m := regexp.MustCompile("(?s)## Reference.*?```yaml\n(.*?)```").FindSubmatch(doc)
	require.NotNil(t, m, "no yaml reference block")
	path := filepath.Join(t.TempDir(), "ref.yml")
	require.NoError(t, os.WriteFile(path, m[1], 0o600))
	cfg, err := Load(path)
	require.NoError(t, err)
	want, err := Default().Dump()
	require.NoError(t, err)
	got, err := cfg.Dump()
	require.NoError(t, err)
	require.Equal(t, string(want), string(got), "the reference in docs/configuration.md differs from Default()")

	var tree yaml.Node
	require.NoError(t, yaml.Unmarshal(want, &tree))
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		for _, c := range n.Content {
			if n.Kind == yaml.MappingNode {
				break
			}
			walk(c, prefix)
		}
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			require.True(t, strings.Contains(string(m[1]), key+":"), "docs/configuration.md does not name %s%s", prefix, key)
			walk(n.Content[i+1], prefix+key+".")
		}
	}
	walk(&tree, "")
}
