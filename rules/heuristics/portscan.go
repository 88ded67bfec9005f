package heuristics

import (
	"fmt"
	"net/netip"
	"strconv"
	"sync"

	"github.com/csirt-toscana/platform/internal/event"
)

// PortScanParams are the port-scan detector's parameters.
type PortScanParams struct {
	// Window is the sliding window over which distinct targets are counted.
	Window Duration `yaml:"window"`
	// MinPorts: weighted distinct destination ports on one destination host
	// (vertical scan) that raise an alert.
	MinPorts float64 `yaml:"min_ports"`
	// MinHosts: weighted distinct destination hosts on one destination port
	// (horizontal scan) that raise an alert.
	MinHosts float64 `yaml:"min_hosts"`
	// SuccessWeight is what a target reached by a successful connection
	// counts (a failed or short one counts 1).
	SuccessWeight float64 `yaml:"success_weight"`
	// MaxTargets bounds the (host, port) pairs a key remembers per window.
	MaxTargets int `yaml:"max_targets"`
	// HorizontalIgnorePorts are destination ports not counted for
	// horizontal scans (resolvers, time servers, discovery protocols talk
	// to many hosts on one port).
	HorizontalIgnorePorts []int `yaml:"horizontal_ignore_ports"`
	// AllowSources are addresses or CIDRs never reported (the entity's own
	// vulnerability scanner, monitoring).
	AllowSources []string `yaml:"allow_sources"`
	// ExternalSources: whether scans from non-internal addresses are
	// reported (at low severity); internal sources always are.
	ExternalSources bool `yaml:"external_sources"`

	allow  []netip.Prefix
	ignore map[uint16]bool
}

// DefaultPortScanParams returns the defaults (see docs/heuristics.md).
func DefaultPortScanParams() PortScanParams {
	p := PortScanParams{
		Window:                Duration(60e9),
		MinPorts:              20,
		MinHosts:              20,
		SuccessWeight:         0.1,
		MaxTargets:            2048,
		ExternalSources:       true,
		HorizontalIgnorePorts: []int{53, 67, 68, 123, 137, 138, 1900, 3702, 5353, 5355},
	}
	if err := p.Validate(); err != nil {
		panic(err)
	}
	return p
}

// Validate checks the parameters and prepares their compiled forms.
func (p *PortScanParams) Validate() error {
	if p.Window <= 0 {
		return fmt.Errorf("window must be a positive duration (got %s)", p.Window)
	}
	if err := positive("min_ports", p.MinPorts); err != nil {
		return err
	}
	if err := positive("min_hosts", p.MinHosts); err != nil {
		return err
	}
	if err := fraction("success_weight", p.SuccessWeight); err != nil {
		return err
	}
	if p.MaxTargets < 1 || p.MaxTargets > 1<<20 {
		return fmt.Errorf("max_targets must be between 1 and %d (got %d)", 1<<20, p.MaxTargets)
	}
	allow, err := parsePrefixes("allow_sources", p.AllowSources)
	if err != nil {
		return err
	}
	ignore := make(map[uint16]bool, len(p.HorizontalIgnorePorts))
	for _, port := range p.HorizontalIgnorePorts {
		if port < 0 || port > 65535 {
			return fmt.Errorf("horizontal_ignore_ports: %d is not a port number (0-65535)", port)
		}
		ignore[uint16(port)] = true
	}
	p.allow, p.ignore = allow, ignore
	return nil
}

type psTarget struct {
	t      int64
	ip     netip.Addr
	port   uint16
	failed bool
}

type psState struct {
	targets []psTarget
	newest  int64
	fired   int64 // event time of the last alert (events before it are replays)
	ids     []string
}

// PortScan detects vertical (many ports on one host) and horizontal (many
// hosts on one port) scans per (entity, source.ip) in flow events.
type PortScan struct {
	mu        sync.Mutex
	params    *Layered[PortScanParams]
	opts      Options
	keys      *lru[psState]
	watermark int64
	maxWindow int64
	stats     Stats
	buf       []byte
}

// NewPortScan returns a port-scan detector.
func NewPortScan(params Layered[PortScanParams], opts Options) *PortScan {
	d := &PortScan{params: &params, opts: opts.withDefaults()}
	d.keys = newLRU[psState](d.opts.MaxKeys)
	d.maxWindow = int64(params.Regional.Window)
	for _, e := range params.Entities() {
		d.maxWindow = max(d.maxWindow, int64(params.For(e).Window))
	}
	return d
}

// ID returns PortScanID.
func (d *PortScan) ID() string { return PortScanID }

// Stats returns the counters.
func (d *PortScan) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.stats
	s.Keys = d.keys.len()
	return s
}

// Observe implements Detector.
func (d *PortScan) Observe(ev event.Event) []Alert {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stats.Events++
	if ds := ev.Dataset(); ds != "flow" {
		d.stats.Ignored++
		return nil
	}
	src, ok1 := addrField(ev, "source.ip")
	dst, ok2 := addrField(ev, "destination.ip")
	port, ok3 := intField(ev, "destination.port")
	t := evTime(ev)
	if !ok1 || !ok2 || !ok3 || port < 0 || port > 65535 || t == 0 || isGroup(dst) {
		d.stats.Ignored++
		return nil
	}
	entity := ev.Org()
	p := d.params.For(entity)
	if inPrefixes(src, p.allow) || (!p.ExternalSources && !isInternal(src, nil)) {
		d.stats.Ignored++
		return nil
	}
	failed, _ := connFailed(ev)
	if t > d.watermark {
		d.watermark = t
		d.stats.KeysExpired += d.keys.expire(d.watermark - d.maxWindow)
	}
	srcS, _ := ev["source.ip"].(string)
	d.buf = appendKey(d.buf[:0], entity, srcS)
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
	win := int64(p.Window)
	if t < st.fired || t < st.newest-win {
		d.stats.Late++
		return nil
	}
	st.newest = max(st.newest, t)
	// Slide the window.
	cut := st.newest - win
	kept := st.targets[:0]
	for _, x := range st.targets {
		if x.t >= cut {
			kept = append(kept, x)
		}
	}
	clear(st.targets[len(kept):])
	st.targets = kept
	if len(st.targets) == 0 {
		st.ids = st.ids[:0]
	}
	p16 := uint16(port)
	found := false
	var vert, horiz float64
	var nPorts, nHosts, nFailed int
	w := p.SuccessWeight
	for i := range st.targets {
		x := &st.targets[i]
		if x.ip == dst && x.port == p16 {
			found = true
			x.t = max(x.t, t)
			x.failed = x.failed && failed
		}
	}
	if !found {
		if len(st.targets) >= p.MaxTargets {
			// Forget the oldest target.
			oldest := 0
			for i := range st.targets {
				if st.targets[i].t < st.targets[oldest].t {
					oldest = i
				}
			}
			st.targets[oldest] = psTarget{t: t, ip: dst, port: p16, failed: failed}
		} else {
			st.targets = append(st.targets, psTarget{t: t, ip: dst, port: p16, failed: failed})
		}
	}
	if failed {
		st.ids = addID(st.ids, ev.ID(), d.opts.MaxEventIDs)
	}
	ignoreH := p.ignore[p16]
	start := t
	for i := range st.targets {
		x := &st.targets[i]
		start = min(start, x.t)
		if x.failed {
			nFailed++
		}
		wt := 1.0
		if !x.failed {
			wt = w
		}
		if x.ip == dst {
			vert += wt
			nPorts++
		}
		if x.port == p16 && !ignoreH {
			horiz += wt
			nHosts++
		}
	}
	vertical, horizontal := vert >= p.MinPorts, horiz >= p.MinHosts
	if !vertical && !horizontal {
		return nil
	}
	if st.fired != 0 && t < st.fired+win {
		return nil
	}
	kind := "vertical"
	obs := []Observable{{Type: "ip", Value: srcS}}
	dstS, _ := ev["destination.ip"].(string)
	if vertical {
		obs = append(obs, Observable{Type: "ip", Value: dstS})
	}
	if horizontal && (!vertical || horiz/p.MinHosts > vert/p.MinPorts) {
		kind = "horizontal"
		obs = []Observable{{Type: "ip", Value: srcS}, {Type: "port", Value: strconv.Itoa(int(p16))}}
	}
	sev := SeverityMedium
	key := string(d.buf)
	var msg string
	if kind == "vertical" {
		msg = fmt.Sprintf("%s probed %d ports of %s within %s (%d of %d targets failed or empty)", srcS, nPorts, dstS, p.Window, nFailed, len(st.targets))
	} else {
		msg = fmt.Sprintf("%s probed port %d on %d hosts within %s (%d of %d targets failed or empty)", srcS, p16, nHosts, p.Window, nFailed, len(st.targets))
	}
	a := Alert{
		ID: AlertID(PortScanID, key, start), Detector: PortScanID, Name: "Port scan (" + kind + ")",
		Key: key, Entity: entity, Host: ev.String("host.name"), SourceIP: srcS, Severity: sev,
		WindowStart: fromNanos(start), WindowEnd: fromNanos(t), Observables: obs,
		Metrics: map[string]float64{
			"distinct_ports": float64(nPorts), "distinct_hosts": float64(nHosts),
			"weighted_ports": vert, "weighted_hosts": horiz,
			"targets": float64(len(st.targets)), "failed_targets": float64(nFailed),
		},
		EventIDs: append([]string(nil), st.ids...),
		Message:  msg,
	}
	if kind == "horizontal" {
		a.Metrics["horizontal"] = 1
	}
	if !isInternal(src, nil) {
		// Scans from the Internet are background noise for exposed
		// servers: reported, at low severity.
		a.Severity = SeverityLow
	}
	// The events that fired are consumed: a new alert needs a new window.
	st.fired = t
	clear(st.targets)
	st.targets = st.targets[:0]
	st.ids = st.ids[:0]
	d.stats.Alerts++
	return []Alert{a}
}

type psKeySnap struct {
	K       string       `json:"k"`
	Last    int64        `json:"last"`
	Newest  int64        `json:"newest,omitempty"`
	Fired   int64        `json:"fired,omitempty"`
	IDs     []string     `json:"ids,omitempty"`
	Targets []psTargSnap `json:"targets,omitempty"`
}

type psTargSnap struct {
	T      int64  `json:"t"`
	IP     string `json:"ip"`
	Port   uint16 `json:"p"`
	Failed bool   `json:"f,omitempty"`
}

// Snapshot implements Detector.
func (d *PortScan) Snapshot() ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	keys := make([]psKeySnap, 0, d.keys.len())
	d.keys.each(func(e *entry[psState]) {
		k := psKeySnap{K: e.key, Last: e.last, Newest: e.s.newest, Fired: e.s.fired, IDs: e.s.ids}
		for _, x := range e.s.targets {
			k.Targets = append(k.Targets, psTargSnap{T: x.t, IP: x.ip.String(), Port: x.port, Failed: x.failed})
		}
		keys = append(keys, k)
	})
	st := d.stats
	st.Keys = d.keys.len()
	return encodeSnapshot(PortScanID, d.watermark, st, keys)
}

// Restore implements Detector. On error the state is left as it was.
func (d *PortScan) Restore(data []byte) error {
	s, err := decodeSnapshot[psKeySnap](PortScanID, data)
	if err != nil {
		return err
	}
	keys := newLRU[psState](d.opts.MaxKeys)
	stats := s.Stats
	for i, k := range s.Keys {
		if _, dup := keys.m[k.K]; dup || k.K == "" {
			return fmt.Errorf("reading %s snapshot: key %d (%q) is empty or repeated", PortScanID, i, k.K)
		}
		e := &entry[psState]{key: k.K, last: k.Last}
		e.s = psState{newest: k.Newest, fired: k.Fired, ids: k.IDs}
		for _, x := range k.Targets {
			ip, err := netip.ParseAddr(x.IP)
			if err != nil {
				return fmt.Errorf("reading %s snapshot: key %q: target address %q: %w", PortScanID, k.K, x.IP, err)
			}
			e.s.targets = append(e.s.targets, psTarget{t: x.T, ip: ip, port: x.Port, failed: x.Failed})
		}
		if !keys.pushBack(e) {
			stats.KeysEvicted++
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.keys, d.watermark, d.stats = keys, s.Watermark, stats
	return nil
}
