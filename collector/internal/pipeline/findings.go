package pipeline

import (
	"fmt"
	"strconv"
	"time"

	"github.com/csirt-toscana/platform/collector/internal/verify"
	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/finding"
)

// Rule ids and group of the findings the pipeline raises.
const (
	RuleIntegrity = "csirt.agent.integrity"
	RuleCoverage  = "csirt.agent.coverage"
	GroupHealth   = "agent-health"
)

// integrityFinding describes a rejected batch. Its id is derived from the
// Kafka position and the reason, so a redelivered message gives the same
// finding. Its entity is the enrolled agent's: when the sender is not a
// known agent the finding is regional (an unverified envelope must not
// place data in an entity's view).
func integrityFinding(msg bus.Message, rej *verify.Rejection, now time.Time) *finding.Finding {
	agent := rej.AgentID
	if agent == "" {
		agent = string(msg.Key) // the producer's key: the agent id it claims
	}
	host := rej.Agent.Hostname
	if host == "" {
		host = agent
	}
	sev := finding.High
	if rej.Reason == verify.ReasonMalformed || rej.Reason == verify.ReasonUnsupportedVersion {
		sev = finding.Medium
	}
	f := &finding.Finding{
		ID:   finding.NewID(RuleIntegrity, msg.Topic, strconv.Itoa(msg.Partition), strconv.FormatInt(msg.Offset, 10), string(rej.Reason)),
		Time: now.UTC(), Kind: finding.KindIntegrity,
		RuleID: RuleIntegrity, RuleName: "Agent batch rejected", RuleGroup: GroupHealth, Severity: sev,
		Entity: rej.Agent.EntityID, Host: host,
		Tags: []string{"reason:" + string(rej.Reason)},
		Message: fmt.Sprintf("Batch from agent %q (stream %q, sequence %d-%d) rejected: %s. It was sent to %s (%s/%d@%d).",
			agent, rej.StreamID, rej.FirstSeq, rej.LastSeq, rej.Reason, bus.TopicDLQ, msg.Topic, msg.Partition, msg.Offset),
		Evidence: finding.Truncate(rej.Err.Error(), finding.MaxEvidence),
		Labels: map[string]string{"reason": string(rej.Reason), "stream": rej.StreamID,
			"first_seq": strconv.FormatUint(rej.FirstSeq, 10), "last_seq": strconv.FormatUint(rej.LastSeq, 10),
			"kafka_position": fmt.Sprintf("%s/%d@%d", msg.Topic, msg.Partition, msg.Offset)},
	}
	if agent != "" && len(agent) <= 256 {
		f.Observables = []finding.Observable{{Type: "agent", Value: agent}}
		f.AgentID = agent
	}
	if rej.ClaimedEntity != "" && rej.ClaimedEntity != rej.Agent.EntityID {
		f.Labels["claimed_entity"] = rej.ClaimedEntity
	}
	return f
}

// coverageFinding describes a sequence gap. Its id is derived from agent,
// stream and range.
func coverageFinding(g *verify.Gap, ag verify.Agent, now time.Time) *finding.Finding {
	host := ag.Hostname
	if host == "" {
		host = g.Agent
	}
	from, to := strconv.FormatUint(g.From, 10), strconv.FormatUint(g.To, 10)
	return &finding.Finding{
		ID:   finding.NewID(RuleCoverage, g.Agent, g.Stream, from, to),
		Time: now.UTC(), Kind: finding.KindCoverage,
		RuleID: RuleCoverage, RuleName: "Agent records lost (sequence gap)", RuleGroup: GroupHealth, Severity: finding.Medium,
		Entity: g.Entity, Host: host, AgentID: g.Agent,
		Observables: []finding.Observable{{Type: "agent", Value: g.Agent}},
		Tags:        []string{"coverage:sequence-gap"},
		Message: fmt.Sprintf("Agent %q stream %q: sequence numbers %d to %d (%d records) never arrived.",
			g.Agent, g.Stream, g.From, g.To, g.To-g.From+1),
		Labels: map[string]string{"stream": g.Stream, "gap_from": from, "gap_to": to},
	}
}
