package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/csirt-toscana/platform/agents/internal/agent"
	"github.com/csirt-toscana/platform/agents/internal/identity"
	"github.com/csirt-toscana/platform/agents/internal/ship"
	"github.com/csirt-toscana/platform/internal/enroll"
	"github.com/csirt-toscana/platform/internal/policy"
)

// This file is the only place the binary talks to the enrolment client
// (internal/enroll): enrolment, renewal, policy, health and the intake
// transport.

type enrollRequest struct {
	Server, Token, StateDir, CAFile string
}

// enrollWith enrols and persists the identity and the first policy.
func enrollWith(ctx context.Context, r enrollRequest) (identity.Info, error) {
	if _, err := identity.Load(r.StateDir); err == nil {
		return identity.Info{}, fmt.Errorf("%s already holds an enrolled identity: to enrol again, move %s away first (the spool keeps its data)", r.StateDir, identity.Path(r.StateDir))
	}
	e, err := enroll.Enroll(ctx, enroll.EnrollOptions{Server: r.Server, Token: r.Token, CAFile: r.CAFile})
	if err != nil {
		return identity.Info{}, err
	}
	info := identity.Info{
		AgentID: e.AgentID, EntityID: e.EntityID, KafkaBootstrap: e.KafkaBootstrap,
		IntakeURL: e.IntakeURL, EnrolledAt: e.EnrolledAt, Hostname: e.Hostname,
	}
	if info.EnrolledAt.IsZero() {
		info.EnrolledAt = time.Now()
	}
	if err := os.MkdirAll(r.StateDir, 0o750); err != nil {
		return identity.Info{}, fmt.Errorf("creating the state directory: %w", err)
	}
	if err := identity.Save(r.StateDir, info, e.KeyPEM, e.CertPEM, e.CAPEM); err != nil {
		return identity.Info{}, fmt.Errorf("saving the identity: %w", err)
	}
	p := e.Policy
	if p.Revision == "" {
		p.Normalize()
	}
	if err := identity.SavePolicy(r.StateDir, p); err != nil {
		return identity.Info{}, fmt.Errorf("saving the policy: %w", err)
	}
	if err := identity.MatchOwner(r.StateDir); err != nil {
		return identity.Info{}, fmt.Errorf("giving the identity to the state directory's owner: %w", err)
	}
	return info, nil
}

func session(id *identity.Identity) enroll.Session {
	return enroll.Session{IntakeURL: id.IntakeURL, TLS: id.TLSConfig()}
}

// central implements agent.Central with internal/enroll.
type central struct{}

func newCentral() agent.Central { return central{} }

func (central) FetchPolicy(ctx context.Context, id *identity.Identity, have string) (policy.Policy, bool, error) {
	return enroll.FetchPolicy(ctx, session(id), have)
}

func (central) Renew(ctx context.Context, stateDir string) (time.Time, error) {
	id, err := identity.Load(stateDir)
	if err != nil {
		return time.Time{}, err
	}
	host, _ := os.Hostname()
	r, err := enroll.Renew(ctx, session(id), id.Key, host)
	if err != nil {
		return time.Time{}, err
	}
	if err := identity.SaveCert(stateDir, r.CertPEM); err != nil {
		return time.Time{}, err
	}
	return r.NotAfter, nil
}

func (central) Health(ctx context.Context, id *identity.Identity) (time.Time, error) {
	return enroll.Health(ctx, session(id))
}

func (central) NewBatchProducer(id *identity.Identity) (ship.Producer, error) {
	return enroll.NewBatchClient(session(id))
}

func (central) Revoked(err error) bool { return errors.Is(err, enroll.ErrAgentRevoked) }
