package heuristics

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
)

// BeaconParams are the beaconing detector's parameters.
type BeaconParams struct {
	// Datasets whose events are connection starts: "flow" (keyed by
	// destination.ip), "tls" (by tls.client.server_name) and "http" (by
	// url.domain); the domain-keyed ones follow a beacon whose server
	// changes address.
	Datasets []string `yaml:"datasets"`
	// MinIntervals is the number of intervals (beats - 1) needed to judge.
	MinIntervals int `yaml:"min_intervals"`
	// MaxBeats is the number of most recent beat times a key keeps.
	MaxBeats int `yaml:"max_beats"`
	// MinPeriod and MaxPeriod bound the median interval.
	MinPeriod Duration `yaml:"min_period"`
	MaxPeriod Duration `yaml:"max_period"`
	// MaxDispersion is the largest median absolute deviation of the
	// intervals divided by their median.
	MaxDispersion float64 `yaml:"max_dispersion"`
	// Tolerance is how far (relative to the period) an interval may be from
	// a whole number of periods to count as regular.
	Tolerance float64 `yaml:"tolerance"`
	// MinRegular is the share of intervals that must be regular.
	MinRegular float64 `yaml:"min_regular"`
	// MaxMissed is the number of consecutive missed beats an interval may
	// span (a 15 s interval in a 5 s beacon spans 2 missed beats).
	MaxMissed int `yaml:"max_missed"`
	// BurstMerge: connections starting this close to the previous beat are
	// part of the same beat (parallel connections, retries).
	BurstMerge Duration `yaml:"burst_merge"`
	// Realert is the least time between two alerts of one key.
	Realert Duration `yaml:"realert"`
	// IgnorePorts are destination ports never considered (protocols that
	// are periodic by design: DNS, NTP, DHCP, discovery).
	IgnorePorts []int `yaml:"ignore_ports"`
	// AllowDestinations are addresses, CIDRs or domains (and their
	// subdomains) never reported: monitoring, update and time servers.
	AllowDestinations []string `yaml:"allow_destinations"`

	allowNets    []netip.Prefix
	allowDomains []string
	ignore       map[uint16]bool
	datasets     map[string]bool
}

// DefaultBeaconParams returns the defaults (see docs/heuristics.md).
func DefaultBeaconParams() BeaconParams {
	p := BeaconParams{
		Datasets:      []string{"flow"},
		MinIntervals:  10,
		MaxBeats:      24,
		MinPeriod:     Duration(2 * time.Second),
		MaxPeriod:     Duration(time.Hour),
		MaxDispersion: 0.05,
		Tolerance:     0.1,
		MinRegular:    0.8,
		MaxMissed:     2,
		BurstMerge:    Duration(time.Second),
		Realert:       Duration(time.Hour),
		IgnorePorts:   []int{53, 67, 68, 123, 137, 138, 1900, 3702, 5353, 5355},
	}
	if err := p.Validate(); err != nil {
		panic(err)
	}
	return p
}

// Validate checks the parameters and prepares their compiled forms.
func (p *BeaconParams) Validate() error {
	ds := map[string]bool{}
	for _, d := range p.Datasets {
		switch d {
		case "flow", "tls", "http":
			ds[d] = true
		default:
			return fmt.Errorf("datasets: %q is not one of flow, tls, http", d)
		}
	}
	if p.MinIntervals < 2 {
		return fmt.Errorf("min_intervals must be at least 2 (got %d)", p.MinIntervals)
	}
	if p.MaxBeats < p.MinIntervals+1 || p.MaxBeats > 4096 {
		return fmt.Errorf("max_beats must be between min_intervals+1 (%d) and 4096 (got %d)", p.MinIntervals+1, p.MaxBeats)
	}
	if p.MinPeriod <= 0 || p.MaxPeriod < p.MinPeriod {
		return fmt.Errorf("min_period (%s) must be positive and not above max_period (%s)", p.MinPeriod, p.MaxPeriod)
	}
	if p.BurstMerge < 0 || p.BurstMerge >= p.MinPeriod {
		return fmt.Errorf("burst_merge (%s) must be at least 0 and below min_period (%s)", p.BurstMerge, p.MinPeriod)
	}
	if p.Realert < 0 {
		return fmt.Errorf("realert must not be negative (got %s)", p.Realert)
	}
	if err := positive("max_dispersion", p.MaxDispersion); err != nil {
		return err
	}
	if err := positive("tolerance", p.Tolerance); err != nil {
		return err
	}
	if p.Tolerance >= 0.5 {
		return fmt.Errorf("tolerance must be below 0.5 (got %v)", p.Tolerance)
	}
	if err := fraction("min_regular", p.MinRegular); err != nil {
		return err
	}
	if p.MaxMissed < 0 || p.MaxMissed > 100 {
		return fmt.Errorf("max_missed must be between 0 and 100 (got %d)", p.MaxMissed)
	}
	ignore := map[uint16]bool{}
	for _, port := range p.IgnorePorts {
		if port < 0 || port > 65535 {
			return fmt.Errorf("ignore_ports: %d is not a port number (0-65535)", port)
		}
		ignore[uint16(port)] = true
	}
	var nets []netip.Prefix
	var doms []string
	for _, s := range p.AllowDestinations {
		s = strings.TrimSpace(s)
		if ps, err := parsePrefixes("allow_destinations", []string{s}); err == nil {
			nets = append(nets, ps...)
			continue
		}
		d := normDomain(s)
		if d == "" || strings.ContainsAny(d, " /:") {
			return fmt.Errorf("allow_destinations: %q is not an address, CIDR or domain", s)
		}
		doms = append(doms, d)
	}
	p.allowNets, p.allowDomains, p.ignore, p.datasets = nets, doms, ignore, ds
	return nil
}

// normDomain lower-cases a name and drops a trailing dot.
func normDomain(s string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
}

// underDomain reports whether name is one of the domains or a subdomain.
func underDomain(name string, domains []string) bool {
	for _, d := range domains {
		if name == d || (len(name) > len(d) && strings.HasSuffix(name, d) && name[len(name)-len(d)-1] == '.') {
			return true
		}
	}
	return false
}

type bcState struct {
	beats []int64 // ascending
	ids   []string
	fired int64
}

// Beaconing detects connections repeated at regular intervals per (entity,
// source.ip, destination, destination.port).
type Beaconing struct {
	mu        sync.Mutex
	params    *Layered[BeaconParams]
	opts      Options
	keys      *lru[bcState]
	watermark int64
	horizon   int64
	stats     Stats
	buf       []byte
	scratch   []float64
	scratch2  []float64
}

// NewBeaconing returns a beaconing detector.
func NewBeaconing(params Layered[BeaconParams], opts Options) *Beaconing {
	d := &Beaconing{params: &params, opts: opts.withDefaults()}
	d.keys = newLRU[bcState](d.opts.MaxKeys)
	hz := func(p *BeaconParams) int64 {
		return max(int64(p.MaxPeriod)*int64(p.MaxMissed+1), int64(p.Realert))
	}
	d.horizon = hz(&params.Regional)
	for _, e := range params.Entities() {
		d.horizon = max(d.horizon, hz(params.For(e)))
	}
	return d
}

// ID returns BeaconingID.
func (d *Beaconing) ID() string { return BeaconingID }

// Stats returns the counters.
func (d *Beaconing) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.stats
	s.Keys = d.keys.len()
	return s
}

// Observe implements Detector.
func (d *Beaconing) Observe(ev event.Event) []Alert {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stats.Events++
	entity := ev.Org()
	p := d.params.For(entity)
	ds := ev.Dataset()
	if !p.datasets[ds] {
		d.stats.Ignored++
		return nil
	}
	src, _ := ev["source.ip"].(string)
	port, okp := intField(ev, "destination.port")
	t := evTime(ev)
	if src == "" || !okp || port < 0 || port > 65535 || t == 0 || p.ignore[uint16(port)] {
		d.stats.Ignored++
		return nil
	}
	dst, dstType := "", "ip"
	switch ds {
	case "tls":
		dst = normDomain(ev.String("tls.client.server_name"))
	case "http":
		dst = normDomain(ev.String("url.domain"))
	}
	if dst != "" {
		if _, err := netip.ParseAddr(dst); err == nil {
			dst = "" // an address as a name: the flow already covers it
		} else {
			dstType = "domain"
			if underDomain(dst, p.allowDomains) {
				d.stats.Ignored++
				return nil
			}
		}
	}
	if dst == "" {
		if ds != "flow" {
			d.stats.Ignored++
			return nil
		}
		a, ok := addrField(ev, "destination.ip")
		if !ok || isGroup(a) || inPrefixes(a, p.allowNets) {
			d.stats.Ignored++
			return nil
		}
		dst, _ = ev["destination.ip"].(string)
	}
	if t > d.watermark {
		d.watermark = t
		d.stats.KeysExpired += d.keys.expire(d.watermark - d.horizon)
	}
	d.buf = append(appendKey(d.buf[:0], entity, src, dst), '|')
	d.buf = strconv.AppendInt(d.buf, port, 10)
	e := d.keys.get(d.buf)
	if e == nil {
		var evicted bool
		e, evicted = d.keys.add(string(d.buf))
		if evicted {
			d.stats.KeysEvicted++
		}
	}
	e.last = max(e.last, t)
	st := &e.s
	if t <= st.fired {
		d.stats.Late++
		return nil
	}
	// Insert the beat in order, merging bursts.
	i, _ := slices.BinarySearch(st.beats, t)
	merge := int64(p.BurstMerge)
	if (i > 0 && t-st.beats[i-1] <= merge) || (i < len(st.beats) && st.beats[i]-t <= merge) {
		return nil
	}
	gap := int64(p.MaxPeriod) * int64(p.MaxMissed+1)
	if i == len(st.beats) && i > 0 && t-st.beats[i-1] > gap {
		st.beats, st.ids = st.beats[:0], st.ids[:0] // a new series
		i = 0
	} else if i == 0 && len(st.beats) > 0 && st.beats[0]-t > gap {
		d.stats.Late++
		return nil
	}
	st.beats = slices.Insert(st.beats, i, t)
	if len(st.beats) > p.MaxBeats {
		st.beats = append(st.beats[:0], st.beats[len(st.beats)-p.MaxBeats:]...)
	}
	if d.opts.MaxEventIDs > 0 && ev.ID() != "" {
		if len(st.ids) >= d.opts.MaxEventIDs {
			st.ids = append(st.ids[:0], st.ids[1:]...)
		}
		st.ids = append(st.ids, ev.ID())
	}
	n := len(st.beats) - 1
	if n < p.MinIntervals || (st.fired != 0 && t < st.fired+int64(p.Realert)) {
		return nil
	}
	period, disp, regular, missed, ok := d.regularity(st.beats, p)
	if !ok {
		return nil
	}
	key := string(d.buf)
	start, end := st.beats[0], st.beats[len(st.beats)-1]
	ps := time.Duration(period).Round(time.Millisecond)
	a := Alert{
		ID: AlertID(BeaconingID, key, start), Detector: BeaconingID, Name: "Beaconing",
		Key: key, Entity: entity, Host: ev.String("host.name"), SourceIP: src, Severity: SeverityMedium,
		WindowStart: fromNanos(start), WindowEnd: fromNanos(end),
		Observables: []Observable{{Type: "ip", Value: src}, {Type: dstType, Value: dst}, {Type: "port", Value: strconv.FormatInt(port, 10)}},
		Metrics: map[string]float64{
			"period_seconds": float64(period) / 1e9, "dispersion": disp, "regular_share": regular,
			"intervals": float64(n), "missed_beats": float64(missed),
		},
		EventIDs: append([]string(nil), st.ids...),
		Message: fmt.Sprintf("%s connected to %s port %d every %s (dispersion %.3f, %d intervals, %d missed beats)",
			src, dst, port, ps, disp, n, missed),
	}
	// Consume the series: the next alert needs new beats.
	st.fired = t
	st.beats = append(st.beats[:0], t)
	st.ids = st.ids[:0]
	d.stats.Alerts++
	return []Alert{a}
}

// regularity judges the intervals between beats: the period (median
// interval, intervals spanning missed beats divided by their beat count),
// the dispersion (median absolute deviation / period), the share of
// regular intervals and the missed beats.
func (d *Beaconing) regularity(beats []int64, p *BeaconParams) (period int64, disp, regular float64, missed int, ok bool) {
	iv := d.scratch[:0]
	for i := 1; i < len(beats); i++ {
		iv = append(iv, float64(beats[i]-beats[i-1]))
	}
	d.scratch = iv
	m := median(append(d.scratch2[:0], iv...))
	if m <= 0 {
		return 0, 0, 0, 0, false
	}
	// Intervals spanning missed beats pull the median up when they are
	// many; take the smallest whole fraction of the median that most
	// intervals are a multiple of.
	base := m
	best := -1
	for k := 1; k <= p.MaxMissed+1; k++ {
		c := m / float64(k)
		hits := 0
		for _, x := range iv {
			j := math.Round(x / c)
			if j >= 1 && j <= float64(p.MaxMissed+1) && math.Abs(x/j-c) <= p.Tolerance*c {
				hits++
			}
		}
		if hits > best {
			best, base = hits, c
		}
	}
	norm := d.scratch2[:0]
	for _, x := range iv {
		j := math.Round(x / base)
		if j >= 1 && j <= float64(p.MaxMissed+1) && math.Abs(x/j-base) <= p.Tolerance*base {
			norm = append(norm, x/j)
			missed += int(j) - 1
		}
	}
	d.scratch2 = norm
	regular = float64(len(norm)) / float64(len(iv))
	// At most one missed beat per regular interval on average: otherwise
	// the "period" is a small fraction that irregular intervals fit.
	if regular < p.MinRegular || len(norm) < 2 || 2*missed > len(norm) {
		return 0, 0, regular, missed, false
	}
	per := median(norm)
	for i := range norm {
		norm[i] = math.Abs(norm[i] - per)
	}
	disp = median(norm) / per
	period = int64(per)
	if period < int64(p.MinPeriod) || period > int64(p.MaxPeriod) || disp > p.MaxDispersion {
		return period, disp, regular, missed, false
	}
	return period, disp, regular, missed, true
}

// median sorts xs and returns its median.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

type bcKeySnap struct {
	K     string   `json:"k"`
	Last  int64    `json:"last"`
	Fired int64    `json:"fired,omitempty"`
	Beats []int64  `json:"beats,omitempty"`
	IDs   []string `json:"ids,omitempty"`
}

// Snapshot implements Detector.
func (d *Beaconing) Snapshot() ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	keys := make([]bcKeySnap, 0, d.keys.len())
	d.keys.each(func(e *entry[bcState]) {
		keys = append(keys, bcKeySnap{K: e.key, Last: e.last, Fired: e.s.fired, Beats: e.s.beats, IDs: e.s.ids})
	})
	st := d.stats
	st.Keys = d.keys.len()
	return encodeSnapshot(BeaconingID, d.watermark, st, keys)
}

// Restore implements Detector. On error the state is left as it was.
func (d *Beaconing) Restore(data []byte) error {
	s, err := decodeSnapshot[bcKeySnap](BeaconingID, data)
	if err != nil {
		return err
	}
	keys := newLRU[bcState](d.opts.MaxKeys)
	stats := s.Stats
	for i, k := range s.Keys {
		if _, dup := keys.m[k.K]; dup || k.K == "" {
			return fmt.Errorf("reading %s snapshot: key %d (%q) is empty or repeated", BeaconingID, i, k.K)
		}
		if !slices.IsSorted(k.Beats) || len(k.Beats) > 4096 {
			return fmt.Errorf("reading %s snapshot: key %q: beats are not in order or too many", BeaconingID, k.K)
		}
		e := &entry[bcState]{key: k.K, last: k.Last, s: bcState{beats: k.Beats, ids: k.IDs, fired: k.Fired}}
		if !keys.pushBack(e) {
			stats.KeysEvicted++
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.keys, d.watermark, d.stats = keys, s.Watermark, stats
	return nil
}
