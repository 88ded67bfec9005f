package telemetry

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestEndpoints(t *testing.T) {
	h := NewHealth()
	ready := false
	h.Add("store", func(context.Context) error {
		if !ready {
			return errors.New("store not open")
		}
		return nil
	})
	mux := http.NewServeMux()
	Mount(mux, h, NewRegistry())
	srv := httptest.NewServer(mux)
	defer srv.Close()

	get := func(path string) (int, string) {
		res, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		return res.StatusCode, string(b)
	}
	code, body := get("/healthz")
	require.Equal(t, 200, code)
	require.Equal(t, "ok\n", body)
	code, body = get("/readyz")
	require.Equal(t, 503, code)
	require.Contains(t, body, "store not open")
	ready = true
	code, _ = get("/readyz")
	require.Equal(t, 200, code)
	code, body = get("/metrics")
	require.Equal(t, 200, code)
	require.Contains(t, body, "go_goroutines")
}
