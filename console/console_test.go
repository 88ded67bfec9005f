package console

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

func server(t *testing.T) *httptest.Server {
	c, err := New(Options{Status: func() Status {
		return Status{Version: "test", SingleNode: true, Brokers: "<script>x</script>", StoreKind: "SQLite"}
	}})
	require.NoError(t, err)
	mux := http.NewServeMux()
	c.Mount(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string, hdr map[string]string) (*http.Response, string) {
	req, err := http.NewRequest("GET", url, nil)
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res, string(b)
}

func TestHomeItalianByDefault(t *testing.T) {
	srv := server(t)
	res, body := get(t, srv.URL+"/", nil)
	require.Equal(t, 200, res.StatusCode)
	require.Equal(t, "it", res.Header.Get("Content-Language"))
	require.Contains(t, body, "Il nodo è attivo.")
	require.Contains(t, body, "broker integrato")
	require.Contains(t, res.Header.Get("Content-Security-Policy"), "default-src 'none'")
	require.Equal(t, "nosniff", res.Header.Get("X-Content-Type-Options"))
	// html/template escapes what it shows.
	require.NotContains(t, body, "<script>x</script>")
	require.Contains(t, body, "&lt;script&gt;")
}

func TestHomeEnglish(t *testing.T) {
	srv := server(t)
	_, body := get(t, srv.URL+"/?lang=en", nil)
	require.Contains(t, body, "The node is running.")
	require.Contains(t, body, "embedded broker")
	_, body = get(t, srv.URL+"/", map[string]string{"Accept-Language": "en-GB,en;q=0.9"})
	require.Contains(t, body, "The node is running.")
	_, body = get(t, srv.URL+"/", map[string]string{"Accept-Language": "it-IT,en;q=0.5"})
	require.Contains(t, body, "Il nodo è attivo.")
}

func TestChecksummedAssets(t *testing.T) {
	srv := server(t)
	_, body := get(t, srv.URL+"/", nil)
	m := regexp.MustCompile(`/static/console\.[0-9a-f]{12}\.css`).FindString(body)
	require.NotEmpty(t, m)
	res, css := get(t, srv.URL+m, nil)
	require.Equal(t, 200, res.StatusCode)
	require.Contains(t, res.Header.Get("Cache-Control"), "immutable")
	require.Contains(t, css, "font-family")
	res, _ = get(t, srv.URL+"/static/console.css", nil)
	require.Equal(t, 404, res.StatusCode)
	res, _ = get(t, srv.URL+"/nothing-here", nil)
	require.Equal(t, 404, res.StatusCode)
}
