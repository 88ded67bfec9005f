package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/csirt-toscana/platform/agents/internal/identity"
	"github.com/csirt-toscana/platform/agents/internal/ship"
	"github.com/csirt-toscana/platform/internal/policy"
)

// Central is what the agent asks of the central side over the HTTPS
// intake. The binary implements it with internal/enroll (FetchPolicy,
// Renew, Health, NewBatchClient); tests give fakes.
type Central interface {
	// FetchPolicy returns the current policy; changed is false when it
	// still has revision have.
	FetchPolicy(ctx context.Context, id *identity.Identity, have string) (p policy.Policy, changed bool, err error)
	// Renew renews the certificate under stateDir (same key) and returns
	// the new NotAfter.
	Renew(ctx context.Context, stateDir string) (time.Time, error)
	// Health returns the server's clock.
	Health(ctx context.Context, id *identity.Identity) (time.Time, error)
	// NewBatchProducer ships envelopes over the intake (POST /v1/batches).
	NewBatchProducer(id *identity.Identity) (ship.Producer, error)
	// Revoked reports whether err says the CSIRT revoked this agent.
	Revoked(err error) bool
}

// ErrNoCentral is returned when the agent has no way to reach the
// intake (no URL from enrolment, or a build without the enrolment client).
var ErrNoCentral = errors.New("the central intake is not configured for this agent (no intake URL from enrolment)")

// Certificate states shown in status and heartbeats.
const (
	CertOK       = "ok"
	CertRenewDue = "renew-due" // less than a third of the lifetime left
	CertExpired  = "expired"
	CertNotYet   = "not-yet-valid"
	CertRevoked  = "revoked"
	CertMissing  = "missing"
)

// CertState classifies a certificate at now. The message is what a
// technician reads.
func CertState(c *x509.Certificate, now time.Time) (state, msg string) {
	if c == nil {
		return CertMissing, "no certificate: run csirt-agent enroll"
	}
	switch {
	case now.After(c.NotAfter):
		return CertExpired, fmt.Sprintf("certificate expired on %s: run csirt-agent enroll again (ask the CSIRT for a new token)", c.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(c.NotBefore):
		return CertNotYet, fmt.Sprintf("certificate is valid only from %s: check this server's clock (timedatectl)", c.NotBefore.UTC().Format(time.RFC3339))
	case RenewDue(c, now):
		return CertRenewDue, fmt.Sprintf("certificate expires on %s (%d days left); the agent renews it automatically", c.NotAfter.UTC().Format("2006-01-02"), DaysLeft(c, now))
	default:
		return CertOK, fmt.Sprintf("certificate valid until %s (%d days left)", c.NotAfter.UTC().Format("2006-01-02"), DaysLeft(c, now))
	}
}

// RenewDue reports whether less than a third of c's lifetime is left.
func RenewDue(c *x509.Certificate, now time.Time) bool {
	life := c.NotAfter.Sub(c.NotBefore)
	return c.NotAfter.Sub(now) < life/3
}

// DaysLeft is the whole days until c expires (negative after).
func DaysLeft(c *x509.Certificate, now time.Time) int {
	return int(c.NotAfter.Sub(now).Hours() / 24)
}

// certProblem reports whether a transport error is about certificates
// (the server refused ours, or ours expired): shown as such in status.
func certProblem(err error) bool {
	if err == nil {
		return false
	}
	var ue x509.UnknownAuthorityError
	var ie x509.CertificateInvalidError
	if errors.As(err, &ue) || errors.As(err, &ie) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "bad certificate") || strings.Contains(s, "certificate expired") ||
		strings.Contains(s, "certificate revoked") || strings.Contains(s, "unknown certificate")
}
