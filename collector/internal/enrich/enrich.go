// Package enrich adds context to the collector's events after parsing:
// the entity's name, kind and NIS2 status, the asset's criticality and
// owner, and one canonical host name for the several spellings a host
// goes by. Each step is an Enricher; a Chain runs them in order. Steps
// read from caches refreshed at most once per TTL and per entity, never
// from the store once per event. docs/findings.md ("Enrichment") lists the
// fields and where their data lives.
package enrich

import (
	"context"
	"errors"

	"github.com/csirt-toscana/platform/internal/event"
)

// Enricher adds fields to an event in place. An error means the step could
// not do its work (its data source is unreachable and nothing is cached);
// the event is still valid and the pipeline keeps it.
type Enricher interface {
	Enrich(ctx context.Context, ev event.Event) error
}

// Func adapts a function to Enricher.
type Func func(ctx context.Context, ev event.Event) error

// Enrich calls f.
func (f Func) Enrich(ctx context.Context, ev event.Event) error { return f(ctx, ev) }

// Chain runs its steps in order. Every step runs even when an earlier one
// failed; Enrich returns their errors joined.
type Chain []Enricher

// Enrich runs every step.
func (c Chain) Enrich(ctx context.Context, ev event.Event) error {
	var errs []error
	for _, e := range c {
		if err := e.Enrich(ctx, ev); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Fields the steps fill. organization.name is ECS; the rest are ECS
// labels (keyword values), the place ECS reserves for custom metadata.
const (
	FieldEntityName       = "organization.name"
	FieldEntityKind       = "labels.entity_kind"       // "comune", "asl", "provincia", ...
	FieldEntityNIS2       = "labels.entity_nis2"       // "true" when the entity is in NIS2 scope
	FieldAssetCriticality = "labels.asset_criticality" // "low", "medium", "high", "critical"
	FieldAssetOwner       = "labels.asset_owner"       // person or office responsible
	FieldHostAlias        = "labels.host_alias"        // the host.name the record gave, when an alias was replaced
)
