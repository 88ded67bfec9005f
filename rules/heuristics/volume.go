package heuristics

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
)

// VolumeParams are the outbound-volume detector's parameters.
type VolumeParams struct {
	// Window is the length of the tumbling windows (aligned on the Unix
	// epoch) whose sent bytes are compared with the baseline.
	Window Duration `yaml:"window"`
	// Alpha is the weight of the newest window in the exponentially
	// weighted mean and variance.
	Alpha float64 `yaml:"alpha"`
	// Warmup is the number of closed windows before a key can alert.
	Warmup int `yaml:"warmup"`
	// MinBytes is the least volume in one window that can alert.
	MinBytes int64 `yaml:"min_bytes"`
	// ZScore is the number of deviations above the mean that alerts.
	ZScore float64 `yaml:"z_score"`
	// MinDeviation (bytes) and MinRelativeDeviation (share of the mean)
	// floor the deviation, so a very steady host does not alert on small
	// changes.
	MinDeviation         int64   `yaml:"min_deviation"`
	MinRelativeDeviation float64 `yaml:"min_relative_deviation"`
	// KeyBy is "source.ip" (every internal address a sensor sees) or
	// "host.name" (the agent's host).
	KeyBy string `yaml:"key_by"`
	// InternalNetworks are CIDRs treated as internal besides the private,
	// loopback, link-local, ULA and CGNAT ranges (an entity's own public
	// ranges).
	InternalNetworks []string `yaml:"internal_networks"`
	// AllowDestinations are external addresses or CIDRs whose traffic is not
	// counted (off-site backup, the entity's cloud storage).
	AllowDestinations []string `yaml:"allow_destinations"`
	// ForgetAfter drops a key's baseline after this long without traffic.
	ForgetAfter Duration `yaml:"forget_after"`

	internal []netip.Prefix
	allow    []netip.Prefix
}

// DefaultVolumeParams returns the defaults (see docs/heuristics.md).
func DefaultVolumeParams() VolumeParams {
	p := VolumeParams{
		Window:               Duration(15 * time.Minute),
		Alpha:                0.1,
		Warmup:               12,
		MinBytes:             100_000_000,
		ZScore:               6,
		MinDeviation:         1_000_000,
		MinRelativeDeviation: 0.2,
		KeyBy:                "source.ip",
		ForgetAfter:          Duration(7 * 24 * time.Hour),
	}
	if err := p.Validate(); err != nil {
		panic(err)
	}
	return p
}

// Validate checks the parameters and prepares their compiled forms.
func (p *VolumeParams) Validate() error {
	if p.Window <= 0 {
		return fmt.Errorf("window must be a positive duration (got %s)", p.Window)
	}
	if !(p.Alpha > 0 && p.Alpha <= 1) {
		return fmt.Errorf("alpha must be above 0 and at most 1 (got %v)", p.Alpha)
	}
	if p.Warmup < 1 || p.Warmup > 100000 {
		return fmt.Errorf("warmup must be between 1 and 100000 windows (got %d)", p.Warmup)
	}
	if p.MinBytes < 1 {
		return fmt.Errorf("min_bytes must be at least 1 (got %d)", p.MinBytes)
	}
	if err := positive("z_score", p.ZScore); err != nil {
		return err
	}
	if p.MinDeviation < 1 {
		return fmt.Errorf("min_deviation must be at least 1 byte (got %d)", p.MinDeviation)
	}
	if !(p.MinRelativeDeviation >= 0 && p.MinRelativeDeviation <= 100) {
		return fmt.Errorf("min_relative_deviation must be between 0 and 100 (got %v)", p.MinRelativeDeviation)
	}
	if p.KeyBy != "source.ip" && p.KeyBy != "host.name" {
		return fmt.Errorf("key_by must be source.ip or host.name (got %q)", p.KeyBy)
	}
	if p.ForgetAfter < p.Window {
		return fmt.Errorf("forget_after (%s) must be at least one window (%s)", p.ForgetAfter, p.Window)
	}
	in, err := parsePrefixes("internal_networks", p.InternalNetworks)
	if err != nil {
		return err
	}
	allow, err := parsePrefixes("allow_destinations", p.AllowDestinations)
	if err != nil {
		return err
	}
	p.internal, p.allow = in, allow
	return nil
}

// maxPartial bounds the long flows per key whose interim reports are
// remembered (interim flow records carry running totals).
const maxPartial = 64

// maxFill bounds the empty windows folded into a baseline after a gap.
const maxFill = 10000

type volState struct {
	win     int64 // current window start
	sum     int64 // bytes sent in the current window
	mean    float64
	vr      float64 // exponentially weighted variance
	n       int32   // closed windows in the baseline
	fired   int64   // window start of the last alert (0: none)
	topDst  string  // destination of the largest flow in the window
	topB    int64
	ids     []string
	partial map[string]int64 // community id -> bytes already counted
}

func (s *volState) fold(x float64, alpha float64) {
	if s.n == 0 {
		s.mean, s.vr = x, 0
	} else {
		diff := x - s.mean
		inc := alpha * diff
		s.mean += inc
		s.vr = (1 - alpha) * (s.vr + diff*inc)
	}
	if s.n < math.MaxInt32 {
		s.n++
	}
}

// Volume detects unusual bytes sent to external addresses per (entity,
// source.ip or host.name) per window against an exponentially weighted
// baseline.
type Volume struct {
	mu        sync.Mutex
	params    *Layered[VolumeParams]
	opts      Options
	keys      *lru[volState]
	watermark int64
	horizon   int64
	stats     Stats
	buf       []byte
}

// NewVolume returns an outbound-volume detector.
func NewVolume(params Layered[VolumeParams], opts Options) *Volume {
	d := &Volume{params: &params, opts: opts.withDefaults()}
	d.keys = newLRU[volState](d.opts.MaxKeys)
	d.horizon = int64(params.Regional.ForgetAfter)
	for _, e := range params.Entities() {
		d.horizon = max(d.horizon, int64(params.For(e).ForgetAfter))
	}
	return d
}

// ID returns VolumeID.
func (d *Volume) ID() string { return VolumeID }

// Stats returns the counters.
func (d *Volume) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.stats
	s.Keys = d.keys.len()
	return s
}

func hasType(ev event.Event, t string) bool {
	return slices.Contains(ev.Strings("event.type"), t)
}

// Observe implements Detector.
func (d *Volume) Observe(ev event.Event) []Alert {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stats.Events++
	if ev.Dataset() != "flow" {
		d.stats.Ignored++
		return nil
	}
	entity := ev.Org()
	p := d.params.For(entity)
	dst, ok := addrField(ev, "destination.ip")
	bytes, okb := intField(ev, "source.bytes")
	t := evTime(ev)
	if !ok || !okb || bytes < 0 || t == 0 || isGroup(dst) || isInternal(dst, p.internal) || inPrefixes(dst, p.allow) {
		d.stats.Ignored++
		return nil
	}
	who, _ := ev[p.KeyBy].(string)
	if who == "" {
		d.stats.Ignored++
		return nil
	}
	if t > d.watermark {
		d.watermark = t
		d.stats.KeysExpired += d.keys.expire(d.watermark - d.horizon)
	}
	w := int64(p.Window)
	ws := t - ((t%w)+w)%w
	d.buf = appendKey(d.buf[:0], entity, who)
	e := d.keys.get(d.buf)
	if e == nil {
		var evicted bool
		e, evicted = d.keys.add(string(d.buf))
		if evicted {
			d.stats.KeysEvicted++
		}
		e.s.win = ws
	}
	e.last = max(e.last, t)
	st := &e.s
	switch {
	case ws > st.win:
		st.fold(float64(st.sum), p.Alpha)
		for k := min((ws-st.win)/w-1, maxFill); k > 0; k-- {
			st.fold(0, p.Alpha)
		}
		st.win, st.sum, st.topDst, st.topB = ws, 0, "", 0
		st.ids = st.ids[:0]
	case ws < st.win-w:
		d.stats.Late++
		return nil
	}
	// Interim records of a long flow carry running totals: count the
	// difference.
	delta := bytes
	if cid, _ := ev["network.community_id"].(string); cid != "" {
		interim := hasType(ev, "info")
		if prev, seen := st.partial[cid]; seen {
			delta = max(bytes-prev, 0)
			if interim {
				st.partial[cid] = max(bytes, prev)
			} else {
				delete(st.partial, cid)
			}
		} else if interim && len(st.partial) < maxPartial {
			if st.partial == nil {
				st.partial = map[string]int64{}
			}
			st.partial[cid] = bytes
		}
	}
	st.sum += delta
	dstS, _ := ev["destination.ip"].(string)
	if delta > st.topB {
		st.topB, st.topDst = delta, dstS
	}
	if delta > 0 {
		st.ids = addID(st.ids, ev.ID(), d.opts.MaxEventIDs)
	}
	if int(st.n) < p.Warmup || st.sum < p.MinBytes || st.fired == st.win {
		return nil
	}
	std := math.Sqrt(st.vr)
	dev := max(std, float64(p.MinDeviation), p.MinRelativeDeviation*st.mean)
	z := (float64(st.sum) - st.mean) / dev
	if z < p.ZScore {
		return nil
	}
	key := string(d.buf)
	sev := SeverityMedium
	if z >= 2*p.ZScore {
		sev = SeverityHigh
	}
	srcS, _ := ev["source.ip"].(string)
	obs := []Observable{{Type: "ip", Value: srcS}}
	if p.KeyBy == "host.name" {
		obs = []Observable{{Type: "host", Value: who}}
	}
	if st.topDst != "" {
		obs = append(obs, Observable{Type: "ip", Value: st.topDst})
	}
	a := Alert{
		ID: AlertID(VolumeID, key, st.win), Detector: VolumeID, Name: "Unusual outbound volume",
		Key: key, Entity: entity, Host: ev.String("host.name"), SourceIP: srcS, Severity: sev,
		WindowStart: fromNanos(st.win), WindowEnd: fromNanos(st.win + w), Observables: obs,
		Metrics: map[string]float64{
			"bytes": float64(st.sum), "baseline_mean": st.mean, "baseline_deviation": std,
			"z_score": z, "baseline_windows": float64(st.n), "largest_flow_bytes": float64(st.topB),
		},
		EventIDs: append([]string(nil), st.ids...),
		Message: fmt.Sprintf("%s sent %s to external addresses in the %s window from %s (baseline %s ± %s, z %.1f; largest flow to %s)",
			who, humanBytes(float64(st.sum)), p.Window, fromNanos(st.win).Format(time.RFC3339),
			humanBytes(st.mean), humanBytes(std), z, st.topDst),
	}
	st.fired = st.win
	d.stats.Alerts++
	return []Alert{a}
}

func humanBytes(b float64) string {
	units := []string{"B", "kB", "MB", "GB", "TB"}
	i := 0
	for b >= 1000 && i < len(units)-1 {
		b /= 1000
		i++
	}
	return strings.TrimSuffix(strings.TrimSuffix(fmt.Sprintf("%.1f", b), "0"), ".") + " " + units[i]
}

type volKeySnap struct {
	K       string           `json:"k"`
	Last    int64            `json:"last"`
	Win     int64            `json:"win"`
	Sum     int64            `json:"sum,omitempty"`
	Mean    float64          `json:"mean,omitempty"`
	Var     float64          `json:"var,omitempty"`
	N       int32            `json:"n,omitempty"`
	Fired   int64            `json:"fired,omitempty"`
	TopDst  string           `json:"top_dst,omitempty"`
	TopB    int64            `json:"top_bytes,omitempty"`
	IDs     []string         `json:"ids,omitempty"`
	Partial map[string]int64 `json:"partial,omitempty"`
}

// Snapshot implements Detector.
func (d *Volume) Snapshot() ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	keys := make([]volKeySnap, 0, d.keys.len())
	d.keys.each(func(e *entry[volState]) {
		s := &e.s
		keys = append(keys, volKeySnap{K: e.key, Last: e.last, Win: s.win, Sum: s.sum, Mean: s.mean, Var: s.vr, N: s.n,
			Fired: s.fired, TopDst: s.topDst, TopB: s.topB, IDs: s.ids, Partial: s.partial})
	})
	st := d.stats
	st.Keys = d.keys.len()
	return encodeSnapshot(VolumeID, d.watermark, st, keys)
}

// Restore implements Detector. On error the state is left as it was.
func (d *Volume) Restore(data []byte) error {
	s, err := decodeSnapshot[volKeySnap](VolumeID, data)
	if err != nil {
		return err
	}
	keys := newLRU[volState](d.opts.MaxKeys)
	stats := s.Stats
	for i, k := range s.Keys {
		if _, dup := keys.m[k.K]; dup || k.K == "" {
			return fmt.Errorf("reading %s snapshot: key %d (%q) is empty or repeated", VolumeID, i, k.K)
		}
		if k.N < 0 || k.Var < 0 || math.IsNaN(k.Mean) || math.IsNaN(k.Var) || len(k.Partial) > maxPartial {
			return fmt.Errorf("reading %s snapshot: key %q has an invalid baseline", VolumeID, k.K)
		}
		e := &entry[volState]{key: k.K, last: k.Last, s: volState{win: k.Win, sum: k.Sum, mean: k.Mean, vr: k.Var, n: k.N,
			fired: k.Fired, topDst: k.TopDst, topB: k.TopB, ids: k.IDs, partial: k.Partial}}
		if !keys.pushBack(e) {
			stats.KeysEvicted++
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.keys, d.watermark, d.stats = keys, s.Watermark, stats
	return nil
}
