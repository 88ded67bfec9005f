package syslogin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/csirt-toscana/platform/internal/store"
)

// KindDevice is the kind of a device's document in the agents collection
// (enrolled agents have kind "agent").
const KindDevice = "device"

// DeviceIDPrefix starts the document id of every device: "device:NAME".
// Device names are unique across entities.
const DeviceIDPrefix = "device:"

// Device statuses.
const (
	StatusRegistered = "registered" // added, nothing received yet
	StatusActive     = "active"     // has sent at least once
)

// Device is a syslog source registered for an entity: the networks its
// messages come from, and how to name it in events.
type Device struct {
	Name     string         // unique; the document id is DeviceIDPrefix + Name
	Entity   string         // the tenant of its events
	Networks []netip.Prefix // source addresses, longest prefix wins across devices
	Hostname string         // host.name of its events; "" keeps the syslog HOSTNAME
	Status   string
	LastSeen time.Time // zero when never seen
}

// deviceDoc is a device's document in the agents collection.
type deviceDoc struct {
	Kind     string     `json:"kind"`
	Name     string     `json:"name"`
	Networks []string   `json:"networks"`
	Hostname string     `json:"hostname,omitempty"`
	Status   string     `json:"status,omitempty"`
	LastSeen *time.Time `json:"last_seen,omitempty"`
}

// ValidDeviceName checks a device name: 1 to 200 characters of
// [A-Za-z0-9._-], starting with a letter or digit.
func ValidDeviceName(name string) error {
	if name == "" || len(name) > 200 {
		return fmt.Errorf("device name must be 1 to 200 characters, got %d", len(name))
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || (i > 0 && (r == '.' || r == '_' || r == '-'))
		if !ok {
			return fmt.Errorf("device name %q: use letters, digits, '.', '_' and '-' only, starting with a letter or digit", name)
		}
	}
	return nil
}

// ParseNetwork parses a CIDR ("10.1.2.0/24") or a single address (taken as
// /32 or /128). Host bits are cleared; IPv4-mapped IPv6 becomes IPv4.
func ParseNetwork(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is neither an address nor a CIDR such as 10.1.2.0/24", s)
		}
		a = a.Unmap().WithZone("")
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR such as 10.1.2.0/24: %w", s, err)
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

func (d Device) doc() deviceDoc {
	nets := make([]string, len(d.Networks))
	for i, p := range d.Networks {
		nets[i] = p.String()
	}
	out := deviceDoc{Kind: KindDevice, Name: d.Name, Networks: nets, Hostname: d.Hostname, Status: d.Status}
	if !d.LastSeen.IsZero() {
		t := d.LastSeen.UTC()
		out.LastSeen = &t
	}
	return out
}

func deviceFrom(doc store.Doc) (Device, error) {
	var dd deviceDoc
	if err := json.Unmarshal(doc.Source, &dd); err != nil {
		return Device{}, fmt.Errorf("device document %s: %w", doc.ID, err)
	}
	if dd.Kind != KindDevice {
		return Device{}, fmt.Errorf("document %s is of kind %q, not a device", doc.ID, dd.Kind)
	}
	d := Device{Name: strings.TrimPrefix(doc.ID, DeviceIDPrefix), Entity: doc.Tenant, Hostname: dd.Hostname, Status: dd.Status}
	if dd.LastSeen != nil {
		d.LastSeen = *dd.LastSeen
	}
	for _, n := range dd.Networks {
		p, err := ParseNetwork(n)
		if err != nil {
			return Device{}, fmt.Errorf("device %s: %w", d.Name, err)
		}
		d.Networks = append(d.Networks, p)
	}
	return d, nil
}

// ListDevices returns the registered devices, of one entity or (entity "")
// of all, sorted by entity then name.
func ListDevices(ctx context.Context, st store.Store, entity string) ([]Device, error) {
	scope := store.RegionalScope()
	if entity != "" {
		scope = store.TenantScope(entity)
	}
	var out []Device
	err := st.Scan(ctx, scope, store.Agents, store.ScanRequest{Query: "kind:" + KindDevice}, func(doc store.Doc) error {
		d, err := deviceFrom(doc)
		if err != nil {
			return err
		}
		out = append(out, d)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing devices: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Entity != out[j].Entity {
			return out[i].Entity < out[j].Entity
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// ErrDeviceExists: a device with this name is already registered.
var ErrDeviceExists = errors.New("device already registered")

// ErrUnknownEntity: the entity named for a device is not in the store.
var ErrUnknownEntity = errors.New("entity not known")

// AddDevice registers a device. The entity must exist (entities
// collection); the name must be free; no other device may claim exactly the
// same network (overlapping networks are allowed: the longest prefix wins).
func AddDevice(ctx context.Context, st store.Store, d Device) error {
	if err := ValidDeviceName(d.Name); err != nil {
		return err
	}
	if d.Entity == "" || strings.HasPrefix(d.Entity, "_") {
		return fmt.Errorf("device %s: an entity id is required (entity ids do not start with '_')", d.Name)
	}
	if len(d.Networks) == 0 {
		return fmt.Errorf("device %s: at least one network (CIDR) is required", d.Name)
	}
	for i, p := range d.Networks {
		if !p.IsValid() {
			return fmt.Errorf("device %s: network %d is not valid", d.Name, i+1)
		}
		d.Networks[i] = p.Masked()
	}
	if _, err := st.Get(ctx, store.TenantScope(d.Entity), store.Entities, d.Entity); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("device %s: %w: %q; add it first with `csirt admin entity add %s --name ...`", d.Name, ErrUnknownEntity, d.Entity, d.Entity)
		}
		return fmt.Errorf("device %s: looking up entity %s: %w", d.Name, d.Entity, err)
	}
	all, err := ListDevices(ctx, st, "")
	if err != nil {
		return err
	}
	for _, o := range all {
		for _, p := range o.Networks {
			if slices.Contains(d.Networks, p) {
				return fmt.Errorf("device %s: network %s is already registered for device %s of entity %s: remove it there first or use a more specific prefix", d.Name, p, o.Name, o.Entity)
			}
		}
	}
	if d.Status == "" {
		d.Status = StatusRegistered
	}
	src, err := json.Marshal(d.doc())
	if err != nil {
		return err
	}
	_, err = st.Create(ctx, store.TenantScope(d.Entity), store.Agents, store.Doc{ID: DeviceIDPrefix + d.Name, Tenant: d.Entity, Source: src},
		store.WriteOptions{Refresh: store.RefreshWait})
	if errors.Is(err, store.ErrExists) {
		return fmt.Errorf("device %s: %w (remove it first to change it)", d.Name, ErrDeviceExists)
	}
	if err != nil {
		return fmt.Errorf("device %s: storing: %w", d.Name, err)
	}
	return nil
}

// ErrUnknownDevice: no device has this name.
var ErrUnknownDevice = errors.New("no such device")

// RemoveDevice deletes a device by name and returns what it was.
func RemoveDevice(ctx context.Context, st store.Store, name string) (Device, error) {
	if err := ValidDeviceName(name); err != nil {
		return Device{}, err
	}
	doc, err := st.Get(ctx, store.RegionalScope(), store.Agents, DeviceIDPrefix+name)
	if errors.Is(err, store.ErrNotFound) {
		return Device{}, fmt.Errorf("%w: %q (see `csirt admin device list`)", ErrUnknownDevice, name)
	}
	if err != nil {
		return Device{}, fmt.Errorf("looking up device %s: %w", name, err)
	}
	d, err := deviceFrom(doc)
	if err != nil {
		return Device{}, err
	}
	if err := st.Delete(ctx, store.TenantScope(doc.Tenant), store.Agents, doc.ID, store.Version{}, store.WriteOptions{Refresh: store.RefreshWait}); err != nil {
		return Device{}, fmt.Errorf("removing device %s: %w", name, err)
	}
	return d, nil
}

// RegistryOptions tune a Registry.
type RegistryOptions struct {
	// Refresh is how often the devices are reloaded; default 30 s.
	Refresh time.Duration
	// MissReload is the least time between two reloads caused by a message
	// from an address no device covers; default 10 s.
	MissReload time.Duration
	// TouchEvery is the least time between two writes of one device's
	// last_seen; default 1 min.
	TouchEvery time.Duration
	Now        func() time.Time
	Logger     logrus.FieldLogger
}

// Registry maps source addresses to devices: the longest prefix among
// every device's networks wins. It keeps a copy of the devices, reloaded
// periodically (Run) and, at most once per MissReload, when an address
// matches none. It also records when each device was last heard from and
// writes that to the device's last_seen, throttled. Safe for concurrent use.
type Registry struct {
	st  store.Store
	o   RegistryOptions
	log logrus.FieldLogger

	table    atomic.Pointer[table]
	loadMu   sync.Mutex // one load at a time
	lastMiss atomic.Int64

	seenMu  sync.Mutex
	seen    map[string]time.Time // device name -> newest message time not yet written
	written map[string]time.Time // device name -> last write
}

// table is an immutable snapshot of the devices, indexed by prefix length.
type table struct {
	byBits  map[int]map[netip.Prefix]*Device
	lengths []int // present prefix lengths, longest first
	count   int
}

// NewRegistry returns a Registry over the store's agents collection. Call
// Load (or Run) before Lookup finds anything.
func NewRegistry(st store.Store, o RegistryOptions) *Registry {
	if o.Refresh <= 0 {
		o.Refresh = 30 * time.Second
	}
	if o.MissReload <= 0 {
		o.MissReload = 10 * time.Second
	}
	if o.TouchEvery <= 0 {
		o.TouchEvery = time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = discard()
	}
	r := &Registry{st: st, o: o, log: o.Logger.WithField("component", "syslog.devices"),
		seen: map[string]time.Time{}, written: map[string]time.Time{}}
	r.table.Store(&table{})
	return r
}

// Load reads every device from the store and replaces the lookup table.
func (r *Registry) Load(ctx context.Context) error {
	r.loadMu.Lock()
	defer r.loadMu.Unlock()
	devs, err := ListDevices(ctx, r.st, "")
	if err != nil {
		return err
	}
	t := &table{byBits: map[int]map[netip.Prefix]*Device{}, count: len(devs)}
	for i := range devs {
		d := &devs[i]
		for _, p := range d.Networks {
			m := t.byBits[p.Bits()]
			if m == nil {
				m = map[netip.Prefix]*Device{}
				t.byBits[p.Bits()] = m
				t.lengths = append(t.lengths, p.Bits())
			}
			if o, dup := m[p]; dup && o.Name < d.Name {
				continue // same network on two devices (written around AddDevice): the first name wins
			}
			m[p] = d
		}
	}
	sort.Sort(sort.Reverse(sort.IntSlice(t.lengths)))
	r.table.Store(t)
	return nil
}

// Len returns the number of devices loaded.
func (r *Registry) Len() int { return r.table.Load().count }

// Lookup returns the device whose network holds addr most specifically.
// On a miss it reloads the devices first, at most once per MissReload.
func (r *Registry) Lookup(ctx context.Context, addr netip.Addr) (Device, bool) {
	addr = addr.Unmap().WithZone("")
	if d, ok := r.table.Load().lookup(addr); ok {
		return d, true
	}
	now := r.o.Now().UnixNano()
	last := r.lastMiss.Load()
	if now-last < int64(r.o.MissReload) || !r.lastMiss.CompareAndSwap(last, now) {
		return Device{}, false
	}
	if err := r.Load(ctx); err != nil {
		r.log.WithError(err).Warn("reloading syslog devices after a message from an unregistered address failed; will retry")
		return Device{}, false
	}
	return r.table.Load().lookup(addr)
}

func (t *table) lookup(addr netip.Addr) (Device, bool) {
	for _, bits := range t.lengths {
		if bits > addr.BitLen() {
			continue
		}
		p, err := addr.Prefix(bits)
		if err != nil {
			continue
		}
		if d, ok := t.byBits[bits][p]; ok {
			return *d, true
		}
	}
	return Device{}, false
}

// Seen records that a device sent a message at t; Run writes it to the
// device's last_seen.
func (r *Registry) Seen(name string, t time.Time) {
	r.seenMu.Lock()
	if t.After(r.seen[name]) {
		r.seen[name] = t
	}
	r.seenMu.Unlock()
}

// Run reloads the devices every Refresh and writes last_seen of the devices
// heard from, until ctx is cancelled; then it writes the pending last_seen
// once more (bounded by a few seconds) and returns nil. A failed load or
// write is logged and retried at the next tick.
func (r *Registry) Run(ctx context.Context) error {
	tick := time.NewTicker(min(r.o.Refresh, r.o.TouchEvery))
	defer tick.Stop()
	lastLoad := r.o.Now()
	for {
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			r.flushSeen(dctx, true)
			cancel()
			return nil
		case <-tick.C:
		}
		if r.o.Now().Sub(lastLoad) >= r.o.Refresh {
			lastLoad = r.o.Now()
			if err := r.Load(ctx); err != nil && ctx.Err() == nil {
				r.log.WithError(err).Warn("reloading syslog devices failed; keeping the previous list")
			}
		}
		r.flushSeen(ctx, false)
	}
}

// flushSeen writes last_seen for the devices heard from whose last write is
// older than TouchEvery (all of them when final).
func (r *Registry) flushSeen(ctx context.Context, final bool) {
	now := r.o.Now()
	r.seenMu.Lock()
	due := map[string]time.Time{}
	for name, t := range r.seen {
		if final || now.Sub(r.written[name]) >= r.o.TouchEvery {
			due[name] = t
			delete(r.seen, name)
		}
	}
	r.seenMu.Unlock()
	for name, t := range due {
		err := r.touch(ctx, name, t)
		r.seenMu.Lock()
		if err != nil {
			if t.After(r.seen[name]) {
				r.seen[name] = t // retry at the next tick
			}
		} else {
			r.written[name] = now
		}
		r.seenMu.Unlock()
		if err != nil && ctx.Err() == nil {
			r.log.WithError(err).WithField("device", name).Warn("updating the device's last_seen failed; will retry")
		}
	}
}

// touch sets last_seen (and status active) on a device's document with
// optimistic concurrency; a removed device stays removed.
func (r *Registry) touch(ctx context.Context, name string, t time.Time) error {
	for attempt := 0; ; attempt++ {
		doc, err := r.st.Get(ctx, store.RegionalScope(), store.Agents, DeviceIDPrefix+name)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		var m map[string]any
		if err := json.Unmarshal(doc.Source, &m); err != nil {
			return fmt.Errorf("device document %s: %w", doc.ID, err)
		}
		if prev, ok := m["last_seen"].(string); ok {
			if pt, err := time.Parse(time.RFC3339Nano, prev); err == nil && !t.After(pt) {
				return nil
			}
		}
		m["last_seen"] = t.UTC().Format(time.RFC3339Nano)
		m["status"] = StatusActive
		src, err := json.Marshal(m)
		if err != nil {
			return err
		}
		doc.Source = src
		_, err = r.st.Update(ctx, store.TenantScope(doc.Tenant), store.Agents, doc, store.WriteOptions{})
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if errors.Is(err, store.ErrConflict) && attempt < 3 {
			continue
		}
		return err
	}
}

func discard() logrus.FieldLogger {
	l := logrus.New()
	l.SetLevel(logrus.PanicLevel)
	return l
}
