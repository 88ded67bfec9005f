// Package telemetry serves the operational endpoints of every long-running
// role: /healthz (the process is alive), /readyz (every registered
// dependency check passes) and /metrics (Prometheus).
package telemetry

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check reports whether one dependency is ready; it must return quickly and
// honour ctx.
type Check func(ctx context.Context) error

// Health collects readiness checks. The zero value is not usable: use
// NewHealth.
type Health struct {
	mu     sync.RWMutex
	checks map[string]Check
	// CheckTimeout bounds each check run by /readyz.
	CheckTimeout time.Duration
}

// NewHealth returns an empty set of checks.
func NewHealth() *Health {
	return &Health{checks: map[string]Check{}, CheckTimeout: 2 * time.Second}
}

// Add registers (or replaces) a named check.
func (h *Health) Add(name string, c Check) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks[name] = c
}

// Run runs every check and returns each one's error text ("" when ready).
func (h *Health) Run(ctx context.Context) (map[string]string, bool) {
	h.mu.RLock()
	names := make([]string, 0, len(h.checks))
	for n := range h.checks {
		names = append(names, n)
	}
	checks := make(map[string]Check, len(h.checks))
	for n, c := range h.checks {
		checks[n] = c
	}
	h.mu.RUnlock()
	sort.Strings(names)
	out := make(map[string]string, len(names))
	ok := true
	for _, n := range names {
		cctx, cancel := context.WithTimeout(ctx, h.CheckTimeout)
		err := checks[n](cctx)
		cancel()
		if err != nil {
			out[n] = err.Error()
			ok = false
		} else {
			out[n] = ""
		}
	}
	return out, ok
}

// NewRegistry returns a Prometheus registry with the Go and process
// collectors registered.
func NewRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// Mount adds /healthz, /readyz and /metrics to mux.
func Mount(mux *http.ServeMux, h *Health, g prometheus.Gatherer) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		res, ok := h.Run(r.Context())
		w.Header().Set("Content-Type", "application/json")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"ready": ok, "checks": res})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
}
