package pipeline

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/csirt-toscana/platform/collector/internal/verify"
	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/store"
)

// Rule ids and kinds of the findings the pipeline raises.
const (
	RuleIntegrity = "csirt.agent.integrity"
	RuleCoverage  = "csirt.agent.coverage"
	KindIntegrity = "agent-integrity"
	KindCoverage  = "coverage"
)

// finding is a findings document: Source is the nested JSON, Tenant the
// entity it belongs to (RegionalTenant when the sender is not a known
// agent: an unverified envelope must not place data in an entity's view).
type finding struct {
	tenant string
	id     string
	fields event.Event
}

// integrityFinding describes a rejected batch. Its id is a hash of the
// Kafka position and the reason, so a redelivered message gives the same
// finding.
func integrityFinding(msg bus.Message, rej *verify.Rejection, now time.Time) finding {
	tenant := rej.Agent.EntityID
	if tenant == "" {
		tenant = store.RegionalTenant
	}
	agent := rej.AgentID
	if agent == "" {
		agent = string(msg.Key) // the producer's key: the agent id it claims
	}
	host := rej.Agent.Hostname
	if host == "" {
		host = agent
	}
	id := event.IDFromRaw([]byte(RuleIntegrity), []byte(msg.Topic), []byte(strconv.Itoa(msg.Partition)),
		[]byte(strconv.FormatInt(msg.Offset, 10)), []byte(rej.Reason))
	severity := "high"
	if rej.Reason == verify.ReasonMalformed || rej.Reason == verify.ReasonUnsupportedVersion {
		severity = "medium"
	}
	return finding{tenant: tenant, id: id, fields: event.Event{
		"@timestamp": now.UTC(),
		"finding.id": id,
		"rule.id":    RuleIntegrity,
		"rule.name":  "Agent batch rejected",
		"rule.group": "agent-health",
		"severity":   severity,
		"host.name":  host,
		"agent.id":   agent,
		"kind":       KindIntegrity,
		"tags":       []string{"reason:" + string(rej.Reason)},
		"message": fmt.Sprintf("Batch from agent %q (stream %q, sequence %d-%d) rejected: %s. It was sent to %s (%s/%d@%d).",
			agent, rej.StreamID, rej.FirstSeq, rej.LastSeq, rej.Reason, bus.TopicDLQ, msg.Topic, msg.Partition, msg.Offset),
		"error.message":     rej.Err.Error(),
		"agent.stream":      rej.StreamID,
		"agent.reason":      string(rej.Reason),
		"observables.value": []string{agent},
	}}
}

// coverageFinding describes a sequence gap. Its id is a hash of agent,
// stream and range.
func coverageFinding(g *verify.Gap, ag verify.Agent, now time.Time) finding {
	host := ag.Hostname
	if host == "" {
		host = g.Agent
	}
	from, to := strconv.FormatUint(g.From, 10), strconv.FormatUint(g.To, 10)
	id := event.IDFromRaw([]byte(RuleCoverage), []byte(g.Agent), []byte(g.Stream), []byte(from), []byte(to))
	return finding{tenant: g.Entity, id: id, fields: event.Event{
		"@timestamp": now.UTC(),
		"finding.id": id,
		"rule.id":    RuleCoverage,
		"rule.name":  "Agent records lost (sequence gap)",
		"rule.group": "agent-health",
		"severity":   "medium",
		"host.name":  host,
		"agent.id":   g.Agent,
		"kind":       KindCoverage,
		"message": fmt.Sprintf("Agent %q stream %q: sequence numbers %d to %d (%d records) never arrived.",
			g.Agent, g.Stream, g.From, g.To, g.To-g.From+1),
		"agent.stream":    g.Stream,
		"gap.from":        from,
		"gap.to":          to,
		"organization.id": g.Entity,
	}}
}

// putFinding writes a finding durably (Put is idempotent by id).
func (p *Pipeline) putFinding(ctx context.Context, f finding) error {
	f.fields["organization.id"] = f.tenant
	src, err := f.fields.MarshalJSON()
	if err != nil {
		return fmt.Errorf("encoding finding %s: %w", f.id, err)
	}
	scope := store.TenantScope(f.tenant)
	if f.tenant == store.RegionalTenant {
		scope = store.RegionalScope()
	}
	if _, err := p.o.Store.Put(ctx, scope, store.Findings, store.Doc{ID: f.id, Tenant: f.tenant, Source: src}, store.WriteOptions{}); err != nil {
		return fmt.Errorf("writing finding %s: %w", f.id, err)
	}
	return nil
}
