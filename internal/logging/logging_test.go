package logging

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestJSON(t *testing.T) {
	var buf bytes.Buffer
	log, err := New(&buf, "json", "warn")
	require.NoError(t, err)
	log.Info("hidden")
	log.WithField("component", "bus").Warn("shown")
	var rec map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &rec))
	require.Equal(t, "shown", rec["msg"])
	require.Equal(t, "bus", rec["component"])
}

func TestBadSettings(t *testing.T) {
	_, err := New(&bytes.Buffer{}, "xml", "info")
	require.ErrorContains(t, err, "xml")
	_, err = New(&bytes.Buffer{}, "text", "loud")
	require.ErrorContains(t, err, "loud")
}
