package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/csirt-toscana/platform/internal/store"
)

// AgentActivity records when each agent was last heard from (any batch,
// heartbeat or not) and its latest heartbeat, and writes them to the
// agent's document in the store's agents collection: last_seen, status
// "active" (never over "revoked"), and from heartbeats version, hostname,
// heartbeat (the counters as sent) and heartbeat_at. Writes are throttled:
// an agent's document is written when it is first seen by this process
// and then at most once per Interval, so thousands of agents cost a few
// writes per second. The silence detector (collector/internal/silence)
// reads last_seen.
//
// It is safe for concurrent use.
type AgentActivity struct {
	Store    store.Store
	Interval time.Duration // default 60 s

	mu     sync.Mutex
	agents map[string]*activity
}

type activity struct {
	entity   string
	seen     time.Time      // newest activity
	hb       map[string]any // newest heartbeat not yet written
	hbAt     time.Time
	written  time.Time // when the document was last written (zero: never)
	writtenS time.Time // the last_seen that write carried
}

func (a *AgentActivity) interval() time.Duration {
	if a.Interval <= 0 {
		return time.Minute
	}
	return a.Interval
}

// MaxHeartbeatDoc bounds the heartbeat kept in an agent document (encoded
// bytes); a larger one is kept without its "sources" list.
const MaxHeartbeatDoc = 16 << 10

// Seen records activity of an agent at t (the time the collector received
// it), with its heartbeat when the activity was one (nil otherwise).
func (a *AgentActivity) Seen(agent, entity string, t time.Time, hb map[string]any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.agents == nil {
		a.agents = map[string]*activity{}
	}
	st := a.agents[agent]
	if st == nil {
		st = &activity{}
		a.agents[agent] = st
	}
	st.entity = entity
	if t.After(st.seen) {
		st.seen = t
	}
	if hb != nil {
		st.hb, st.hbAt = hb, t
	}
}

// Flush writes the documents that are due at now (every changed one when
// force is set). It returns the errors joined; the activity stays pending
// and a later Flush retries it.
func (a *AgentActivity) Flush(ctx context.Context, now time.Time, force bool) error {
	interval := a.interval()
	type job struct {
		id, entity string
		seen, hbAt time.Time
		hb         map[string]any
	}
	var jobs []job
	a.mu.Lock()
	for id, st := range a.agents {
		changed := st.seen.After(st.writtenS) || st.hb != nil
		due := st.written.IsZero() || now.Sub(st.written) >= interval || force
		if changed && due {
			jobs = append(jobs, job{id: id, entity: st.entity, seen: st.seen, hb: st.hb, hbAt: st.hbAt})
		}
	}
	a.mu.Unlock()
	var errs []error
	for _, j := range jobs {
		err := a.write(ctx, j.id, j.seen, j.hb, j.hbAt)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		a.mu.Lock()
		st := a.agents[j.id]
		st.written, st.writtenS = now, j.seen
		if st.hbAt.Equal(j.hbAt) {
			st.hb = nil
		}
		a.mu.Unlock()
	}
	return errors.Join(errs...)
}

// write merges the activity into the agent's document (optimistic
// concurrency: a conflicting write by enrolment or revocation is re-read
// and merged again). An agent without a document is skipped.
func (a *AgentActivity) write(ctx context.Context, id string, seen time.Time, hb map[string]any, hbAt time.Time) error {
	for attempt := 0; ; attempt++ {
		doc, err := a.Store.Get(ctx, store.RegionalScope(), store.Agents, id)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading agent %q to record its activity: %w", id, err)
		}
		dec := json.NewDecoder(bytes.NewReader(doc.Source))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil || m == nil {
			return fmt.Errorf("agent %q: its document is not a JSON object; fix or re-enrol the agent", id)
		}
		mergeActivity(m, seen, hb, hbAt)
		src, err := json.Marshal(m)
		if err != nil {
			return fmt.Errorf("encoding agent %q: %w", id, err)
		}
		doc.Source = src
		_, err = a.Store.Update(ctx, store.TenantScope(doc.Tenant), store.Agents, doc, store.WriteOptions{})
		switch {
		case err == nil, errors.Is(err, store.ErrNotFound):
			return nil
		case errors.Is(err, store.ErrConflict) && attempt < 3:
			continue
		}
		return fmt.Errorf("recording activity of agent %q: %w", id, err)
	}
}

func mergeActivity(m map[string]any, seen time.Time, hb map[string]any, hbAt time.Time) {
	if old, ok := m["last_seen"].(string); ok {
		if t, err := time.Parse(time.RFC3339Nano, old); err == nil && t.After(seen) {
			seen = t
		}
	}
	m["last_seen"] = seen.UTC().Format(time.RFC3339Nano)
	revoked, _ := m["revoked"].(bool)
	status, _ := m["status"].(string)
	if !revoked && !strings.EqualFold(status, "revoked") {
		m["status"] = "active"
	}
	if hb == nil {
		return
	}
	if v := heartbeatVersion(hb); v != "" {
		m["version"] = v
	}
	if h, ok := hb["hostname"].(string); ok && h != "" {
		m["hostname"] = h
	}
	keep := hb
	if b, err := json.Marshal(hb); err != nil || len(b) > MaxHeartbeatDoc {
		keep = make(map[string]any, len(hb))
		for k, v := range hb {
			if k != "sources" {
				keep[k] = v
			}
		}
		if b, err := json.Marshal(keep); err != nil || len(b) > MaxHeartbeatDoc {
			keep = map[string]any{"truncated": true}
		}
	}
	m["heartbeat"] = keep
	m["heartbeat_at"] = hbAt.UTC().Format(time.RFC3339Nano)
}
