package correlation

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
)

// SnapshotFormat and SnapshotVersion identify the snapshot encoding: JSON
// Lines, one header, then per correlation one "rule" record followed by its
// "key" records. Restore refuses another format or version.
const (
	SnapshotFormat  = "csirt-correlation-state"
	SnapshotVersion = 1
)

type snapHeader struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
}

type snapRecord struct {
	Kind string `json:"kind"` // "rule" or "key"
	Rule string `json:"rule"`
	// rule records
	Fingerprint string     `json:"fp,omitempty"`
	Watermark   int64      `json:"watermark,omitempty"`
	Stats       *RuleStats `json:"stats,omitempty"`
	// key records
	Key     []string   `json:"key,omitempty"`
	Last    int64      `json:"last,omitempty"`
	Touched int64      `json:"touched,omitempty"`
	Fired   int64      `json:"fired,omitempty"`
	Start   int64      `json:"start,omitempty"`
	Items   []snapItem `json:"items,omitempty"`
	Steps   []snapStep `json:"steps,omitempty"`
}

type snapItem struct {
	T  int64   `json:"t"`
	ID string  `json:"id,omitempty"`
	V  string  `json:"v,omitempty"`
	F  float64 `json:"f,omitempty"`
}

type snapStep struct {
	Start int64  `json:"s,omitempty"`
	End   int64  `json:"e,omitempty"`
	ID    string `json:"id,omitempty"`
}

// Snapshot writes the whole correlation state (every window, what already
// fired per key, the counters) so that Restore after a restart loses no
// window and fires no alert twice. Keys are written in sorted order: the
// same state gives the same bytes.
func (e *Engine) Snapshot(w io.Writer) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	if err := enc.Encode(snapHeader{Format: SnapshotFormat, Version: SnapshotVersion}); err != nil {
		return fmt.Errorf("writing correlation snapshot: %w", err)
	}
	for _, cr := range e.rules {
		st := cr.stats
		st.Keys = cr.keys.len()
		if err := enc.Encode(snapRecord{Kind: "rule", Rule: cr.stats.Rule, Fingerprint: cr.fp, Watermark: cr.watermark, Stats: &st}); err != nil {
			return fmt.Errorf("writing correlation snapshot: %w", err)
		}
		n := len(cr.r.GroupBy)
		var line []byte
		for _, k := range cr.sortedKeys() {
			s := cr.keys.get(&k)
			var err error
			if line, err = appendKeyRecord(line[:0], cr.stats.Rule, k[:n], s); err != nil {
				return fmt.Errorf("writing correlation snapshot: %w", err)
			}
			if _, err := bw.Write(line); err != nil {
				return fmt.Errorf("writing correlation snapshot: %w", err)
			}
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing correlation snapshot: %w", err)
	}
	return nil
}

// appendKeyRecord appends the JSON line of a "key" record: the snapRecord
// encoding/json would write (Restore reads it with encoding/json), written
// without reflection because a busy entity's state has tens of thousands
// of keys and is saved every few seconds.
func appendKeyRecord(dst []byte, rule string, key []string, s *state) ([]byte, error) {
	dst = append(dst, `{"kind":"key","rule":`...)
	dst = appendJSONString(dst, rule)
	if len(key) > 0 {
		dst = append(dst, `,"key":[`...)
		for i, v := range key {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, v)
		}
		dst = append(dst, ']')
	}
	dst = appendIntField(dst, "last", s.last)
	dst = appendIntField(dst, "touched", s.touched)
	dst = appendIntField(dst, "fired", s.fired)
	dst = appendIntField(dst, "start", s.start)
	if items := s.items(); len(items) > 0 {
		dst = append(dst, `,"items":[`...)
		for i, it := range items {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"t":`...)
			dst = strconv.AppendInt(dst, it.t, 10)
			if it.id != "" {
				dst = append(dst, `,"id":`...)
				dst = appendJSONString(dst, it.id)
			}
			if it.v != "" {
				dst = append(dst, `,"v":`...)
				dst = appendJSONString(dst, it.v)
			}
			if it.f != 0 {
				if math.IsNaN(it.f) || math.IsInf(it.f, 0) {
					return nil, fmt.Errorf("value %v of a window cannot be saved", it.f)
				}
				dst = append(dst, `,"f":`...)
				dst = strconv.AppendFloat(dst, it.f, 'g', -1, 64)
			}
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	}
	if steps := s.steps(); len(steps) > 0 {
		dst = append(dst, `,"steps":[`...)
		for i, p := range steps {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, '{')
			first := true
			sep := func() {
				if !first {
					dst = append(dst, ',')
				}
				first = false
			}
			if p.start != 0 {
				sep()
				dst = append(dst, `"s":`...)
				dst = strconv.AppendInt(dst, p.start, 10)
			}
			if p.end != 0 {
				sep()
				dst = append(dst, `"e":`...)
				dst = strconv.AppendInt(dst, p.end, 10)
			}
			if p.id != "" {
				sep()
				dst = append(dst, `"id":`...)
				dst = appendJSONString(dst, p.id)
			}
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	}
	return append(dst, '}', '\n'), nil
}

func appendIntField(dst []byte, name string, v int64) []byte {
	if v == 0 {
		return dst
	}
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ':')
	return strconv.AppendInt(dst, v, 10)
}

// appendJSONString appends s as a JSON string: plain printable ASCII as
// is, anything else through encoding/json (escapes, invalid UTF-8).
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s) // a string always encodes
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// RestoreInfo says what the last Restore did.
type RestoreInfo struct {
	Keys int // keys restored
	// Dropped lists correlations whose saved state was not restored: the
	// rule is gone, or its semantics (type, rules, group-by, timespan,
	// condition, aliases) changed since the snapshot.
	Dropped []string
}

// Restore replaces the engine's state with a snapshot written by Snapshot
// (possibly by an engine with a different rule set: state of rules that are
// gone or changed is dropped and listed in LastRestore). On error the state
// is left as it was.
func (e *Engine) Restore(r io.Reader) error {
	dec := json.NewDecoder(bufio.NewReader(r))
	var h snapHeader
	if err := dec.Decode(&h); err != nil {
		return fmt.Errorf("reading correlation snapshot header: %w", err)
	}
	if h.Format != SnapshotFormat {
		return fmt.Errorf("reading correlation snapshot: format %q is not %q", h.Format, SnapshotFormat)
	}
	if h.Version != SnapshotVersion {
		return fmt.Errorf("reading correlation snapshot: version %d is not supported (this build reads %d)", h.Version, SnapshotVersion)
	}
	type restored struct {
		watermark int64
		stats     RuleStats
		keys      keyStore
	}
	e.mu.Lock()
	byRef := e.byRef
	maxKeys := e.opts.MaxKeysPerRule
	e.mu.Unlock()
	out := map[*crule]*restored{}
	var info RestoreInfo
	dropped := map[string]bool{}
	var cur *crule
	for n := 1; ; n++ {
		var rec snapRecord
		err := dec.Decode(&rec)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading correlation snapshot record %d: %w", n, err)
		}
		switch rec.Kind {
		case "rule":
			cur = byRef[rec.Rule]
			if cur == nil || cur.fp != rec.Fingerprint {
				cur = nil
				if !dropped[rec.Rule] {
					dropped[rec.Rule] = true
					info.Dropped = append(info.Dropped, rec.Rule)
				}
				continue
			}
			rs := &restored{watermark: rec.Watermark, keys: newStore(len(cur.r.GroupBy))}
			if rec.Stats != nil {
				rs.stats = *rec.Stats
			}
			rs.stats.Rule = cur.stats.Rule
			out[cur] = rs
		case "key":
			if cur == nil || rec.Rule != cur.stats.Rule {
				if cur == nil && dropped[rec.Rule] {
					continue
				}
				return fmt.Errorf("reading correlation snapshot record %d: key of %q outside its rule", n, rec.Rule)
			}
			if len(rec.Key) != len(cur.r.GroupBy) {
				return fmt.Errorf("reading correlation snapshot record %d: key of %q has %d values, want %d", n, rec.Rule, len(rec.Key), len(cur.r.GroupBy))
			}
			rs := out[cur]
			if rs.keys.len() >= maxKeys {
				rs.stats.KeysEvicted++
				continue
			}
			var k Key
			copy(k[:], rec.Key)
			s := &state{last: rec.Last, touched: rec.Touched, fired: rec.Fired, start: rec.Start}
			if cur.r.Type.temporal() {
				if len(rec.Steps) != len(cur.r.Rules) {
					return fmt.Errorf("reading correlation snapshot record %d: %q key has %d steps, want %d", n, rec.Rule, len(rec.Steps), len(cur.r.Rules))
				}
				s.ext = newSteps(len(rec.Steps))
				steps := s.steps()
				for i, p := range rec.Steps {
					steps[i] = step{start: p.Start, end: p.End, id: p.ID}
				}
			} else if len(rec.Items) > 0 {
				items := make([]item, len(rec.Items))
				for i, it := range rec.Items {
					items[i] = item{t: it.T, id: it.ID, v: it.V, f: it.F}
				}
				*s.itemList() = items
			}
			rs.keys.put(&k, s)
			info.Keys++
		default:
			return fmt.Errorf("reading correlation snapshot record %d: unknown kind %q", n, rec.Kind)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, cr := range e.rules {
		rs := out[cr]
		if rs == nil {
			cr.keys = newStore(len(cr.r.GroupBy))
			cr.watermark = 0
			continue
		}
		cr.keys, cr.watermark, cr.stats = rs.keys, rs.watermark, rs.stats
	}
	e.restore = info
	return nil
}

// LastRestore reports what the last successful Restore did.
func (e *Engine) LastRestore() RestoreInfo {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.restore
}
