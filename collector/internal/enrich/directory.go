package enrich

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/store"
)

// AssetKind is the kind of the asset documents in the entities collection.
const AssetKind = "asset"

// AssetDocID is the document id of an entity's asset named host (the
// canonical host name, lower-cased).
func AssetDocID(entity, host string) string {
	return "asset." + entity + "." + strings.ToLower(host)
}

// EntityDoc is the part of an entity's document (entities collection, id
// and tenant the entity id) the enrichment reads.
type EntityDoc struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	NIS2 bool   `json:"nis2"`
}

// AssetDoc is an asset of an entity: a document of kind "asset" in the
// entities collection, in the entity's tenant, id AssetDocID(entity,
// name). Name is the canonical host name; Aliases are other spellings
// (short name, FQDN, old names) that events may carry in host.name.
type AssetDoc struct {
	Kind        string   `json:"kind"` // AssetKind
	Name        string   `json:"name"`
	Aliases     []string `json:"aliases,omitempty"`
	Criticality string   `json:"criticality,omitempty"`
	Owner       string   `json:"owner,omitempty"`
}

// PutAsset writes an asset document (admin tools and tests).
func PutAsset(ctx context.Context, s store.Store, entity string, a AssetDoc) error {
	a.Kind = AssetKind
	src, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("encoding asset %q: %w", a.Name, err)
	}
	_, err = s.Put(ctx, store.TenantScope(entity), store.Entities,
		store.Doc{ID: AssetDocID(entity, a.Name), Tenant: entity, Source: src}, store.WriteOptions{})
	if err != nil {
		return fmt.Errorf("writing asset %q of entity %q: %w", a.Name, entity, err)
	}
	return nil
}

// Info is what the Directory knows of one entity.
type Info struct {
	Found  bool // the entity has a document
	Entity EntityDoc
	assets map[string]*AssetDoc // by lower-cased canonical name
	alias  map[string]string    // lower-cased alias -> canonical name
	// fields are the entity fields to set, values boxed once.
	fields []field
}

type field struct {
	name  string
	value any
}

// Asset returns the asset of a host name or one of its aliases, and the
// canonical name.
func (i *Info) Asset(host string) (*AssetDoc, string, bool) {
	key := strings.ToLower(host)
	if canon, ok := i.alias[key]; ok {
		key = strings.ToLower(canon)
	}
	a, ok := i.assets[key]
	if !ok {
		return nil, "", false
	}
	return a, a.Name, true
}

// Directory caches, per entity, its document and its assets, read from
// the store at most once per TTL. A lookup of a cached entity is a map
// read; a lookup after expiry refreshes (two store reads: one Get and one
// Search of the entity's assets). When a refresh fails the stale
// information stays in use and the error is returned once per RetryAfter.
// It is safe for concurrent use.
type Directory struct {
	Store      store.Store
	TTL        time.Duration    // default 5 min
	RetryAfter time.Duration    // after a failed refresh; default 30 s
	Now        func() time.Time // default time.Now

	mu      sync.RWMutex
	entries map[string]*dirEntry
}

type dirEntry struct {
	info    *Info
	expires time.Time
}

// MaxAssets bounds the assets read per entity.
const MaxAssets = store.MaxPage

func (d *Directory) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

// Lookup returns the entity's information, refreshing it when expired.
func (d *Directory) Lookup(ctx context.Context, entity string) (*Info, error) {
	now := d.now()
	d.mu.RLock()
	e := d.entries[entity]
	d.mu.RUnlock()
	if e != nil && now.Before(e.expires) {
		return e.info, nil
	}
	info, err := d.load(ctx, entity)
	ttl := d.TTL
	if ttl <= 0 {
		ttl = 5 * time.Minute
	}
	if err != nil {
		retry := d.RetryAfter
		if retry <= 0 {
			retry = 30 * time.Second
		}
		stale := &Info{}
		if e != nil {
			stale = e.info
		}
		d.mu.Lock()
		if d.entries == nil {
			d.entries = map[string]*dirEntry{}
		}
		d.entries[entity] = &dirEntry{info: stale, expires: now.Add(retry)}
		d.mu.Unlock()
		return stale, err
	}
	d.mu.Lock()
	if d.entries == nil {
		d.entries = map[string]*dirEntry{}
	}
	d.entries[entity] = &dirEntry{info: info, expires: now.Add(ttl)}
	d.mu.Unlock()
	return info, nil
}

// Invalidate drops the cached information of an entity (all when "").
func (d *Directory) Invalidate(entity string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if entity == "" {
		d.entries = nil
		return
	}
	delete(d.entries, entity)
}

func (d *Directory) load(ctx context.Context, entity string) (*Info, error) {
	info := &Info{assets: map[string]*AssetDoc{}, alias: map[string]string{}}
	if !validTenant(entity) {
		return info, nil // no store document can have this id: nothing to read
	}
	scope := store.TenantScope(entity)
	doc, err := d.Store.Get(ctx, scope, store.Entities, entity)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("enrichment: reading entity %q: %w", entity, err)
	default:
		if err := json.Unmarshal(doc.Source, &info.Entity); err != nil {
			return nil, fmt.Errorf("enrichment: entity %q: decoding its document: %w", entity, err)
		}
		info.Found = true
		if info.Entity.Name != "" {
			info.fields = append(info.fields, field{FieldEntityName, info.Entity.Name})
		}
		if info.Entity.Kind != "" {
			info.fields = append(info.fields, field{FieldEntityKind, info.Entity.Kind})
		}
		if info.Entity.NIS2 {
			info.fields = append(info.fields, field{FieldEntityNIS2, "true"})
		}
	}
	res, err := d.Store.Search(ctx, scope, store.Entities, store.SearchRequest{Query: "kind:" + AssetKind, Size: MaxAssets})
	if err != nil {
		return nil, fmt.Errorf("enrichment: reading assets of entity %q: %w", entity, err)
	}
	for _, doc := range res.Docs {
		var a AssetDoc
		if json.Unmarshal(doc.Source, &a) != nil || a.Name == "" {
			continue // a malformed asset must not stop the others
		}
		info.assets[strings.ToLower(a.Name)] = &a
		for _, al := range a.Aliases {
			if al != "" {
				info.alias[strings.ToLower(al)] = a.Name
			}
		}
	}
	return info, nil
}

func validTenant(entity string) bool { return store.ValidID(entity) == nil }

// Entities is the entity step: organization.name, labels.entity_kind and
// labels.entity_nis2 from the entity's document.
type Entities struct{ Dir *Directory }

// Enrich fills the entity fields of events of a known entity.
func (s Entities) Enrich(ctx context.Context, ev event.Event) error {
	info, err := s.Dir.Lookup(ctx, ev.Org())
	for _, f := range info.fields {
		ev[f.name] = f.value
	}
	return err
}

// Assets is the asset and host-alias step: an event whose host.name is an
// alias of an asset gets the asset's canonical name in host.name (the
// original in labels.host_alias); an event of a known asset gets its
// criticality and owner.
type Assets struct{ Dir *Directory }

// Enrich fills the asset fields.
func (s Assets) Enrich(ctx context.Context, ev event.Event) error {
	host := ev.String("host.name")
	if host == "" {
		return nil
	}
	info, err := s.Dir.Lookup(ctx, ev.Org())
	a, canon, ok := info.Asset(host)
	if !ok {
		return err
	}
	if canon != host {
		ev[FieldHostAlias] = host
		ev["host.name"] = canon
	}
	if a.Criticality != "" {
		ev[FieldAssetCriticality] = a.Criticality
	}
	if a.Owner != "" {
		ev[FieldAssetOwner] = a.Owner
	}
	return err
}

// Default is the chain the collector runs: entity, then assets and host
// aliases, both from one Directory.
func Default(dir *Directory) Chain { return Chain{Entities{Dir: dir}, Assets{Dir: dir}} }
