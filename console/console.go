// Package console is the analysts' and entities' web console. For now it
// serves the landing page that shows the node is up (Italian by default,
// English with ?lang=en or an English Accept-Language); incidents, search
// and the API arrive with the console issue. Templates and static files are
// embedded; every response carries a strict Content-Security-Policy.
package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"

	"github.com/sirupsen/logrus"
)

//go:embed web/templates/*.html web/static/*
var webFS embed.FS

// Status is what the landing page tells about the node.
type Status struct {
	Version     string
	SingleNode  bool   // single-node mode (embedded broker) or cluster
	Brokers     string // bootstrap addresses
	StoreKind   string // "SQLite" or "Elasticsearch"
	StoreDetail string // file path or cluster addresses
}

// Options configure the console.
type Options struct {
	Logger logrus.FieldLogger
	Status func() Status
}

// Console serves the web UI.
type Console struct {
	opts   Options
	tmpl   *template.Template
	static map[string][]byte // checksummed name -> content
	names  map[string]string // plain name -> checksummed name
}

// New builds the console, parsing the embedded templates.
func New(opts Options) (*Console, error) {
	if opts.Logger == nil {
		l := logrus.New()
		l.SetOutput(&bytes.Buffer{})
		opts.Logger = l
	}
	if opts.Status == nil {
		opts.Status = func() Status { return Status{} }
	}
	c := &Console{opts: opts, static: map[string][]byte{}, names: map[string]string{}}
	entries, err := fs.ReadDir(webFS, "web/static")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		b, err := webFS.ReadFile("web/static/" + e.Name())
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(b)
		ext := path.Ext(e.Name())
		hashed := strings.TrimSuffix(e.Name(), ext) + "." + hex.EncodeToString(sum[:6]) + ext
		c.static[hashed] = b
		c.names[e.Name()] = hashed
	}
	c.tmpl, err = template.New("").Funcs(template.FuncMap{
		"static": func(name string) string { return "/static/" + c.names[name] },
	}).ParseFS(webFS, "web/templates/*.html")
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Mount adds the console's routes to mux.
func (c *Console) Mount(mux *http.ServeMux) {
	mux.Handle("GET /{$}", secure(http.HandlerFunc(c.home)))
	mux.Handle("GET /static/{name}", secure(http.HandlerFunc(c.asset)))
}

// secure sets the security headers every console response carries.
func secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}

func (c *Console) asset(w http.ResponseWriter, r *http.Request) {
	b, ok := c.static[r.PathValue("name")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	switch path.Ext(r.PathValue("name")) {
	case ".css":
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
	case ".svg":
		w.Header().Set("Content-Type", "image/svg+xml")
	}
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	_, _ = w.Write(b)
}

func (c *Console) home(w http.ResponseWriter, r *http.Request) {
	lang := language(r)
	var buf bytes.Buffer
	data := map[string]any{"Lang": lang, "T": messages[lang], "Status": c.opts.Status()}
	if err := c.tmpl.ExecuteTemplate(&buf, "home.html", data); err != nil {
		c.opts.Logger.WithError(err).Error("rendering the home page")
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Language", lang)
	_, _ = w.Write(buf.Bytes())
}

// language picks Italian unless English is asked for explicitly (?lang=en)
// or preferred by the browser over Italian.
func language(r *http.Request) string {
	switch r.URL.Query().Get("lang") {
	case "en":
		return "en"
	case "it":
		return "it"
	}
	for _, part := range strings.Split(r.Header.Get("Accept-Language"), ",") {
		tag := strings.ToLower(strings.TrimSpace(strings.SplitN(part, ";", 2)[0]))
		switch {
		case strings.HasPrefix(tag, "it"):
			return "it"
		case strings.HasPrefix(tag, "en"):
			return "en"
		}
	}
	return "it"
}

var messages = map[string]map[string]string{
	"it": {
		"title":    "CSIRT Toscana — Console",
		"heading":  "Console di risposta agli incidenti",
		"running":  "Il nodo è attivo.",
		"mode":     "Modalità",
		"bus":      "Bus dei messaggi",
		"store":    "Archivio",
		"version":  "Versione",
		"soon":     "Coda degli incidenti, ricerca ed enti arriveranno nelle prossime versioni.",
		"single":   "nodo singolo",
		"cluster":  "cluster",
		"embedded": "broker integrato",
		"other":    "English",
		"otherq":   "?lang=en",
	},
	"en": {
		"title":    "CSIRT Toscana — Console",
		"heading":  "Incident response console",
		"running":  "The node is running.",
		"mode":     "Mode",
		"bus":      "Message bus",
		"store":    "Store",
		"version":  "Version",
		"soon":     "The incident queue, search and entities arrive in the next versions.",
		"single":   "single node",
		"cluster":  "cluster",
		"embedded": "embedded broker",
		"other":    "Italiano",
		"otherq":   "?lang=it",
	},
}
