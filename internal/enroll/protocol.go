// Package enroll is the agent enrolment and HTTPS intake protocol: the wire
// types of the intake's versioned JSON endpoints, the enrolment token
// format, the length-prefixed envelope framing of /v1/batches, the typed
// errors both sides share, and the agent-side client (Enroll, Renew,
// FetchPolicy, BatchClient, Health). The central side (collector/intake)
// serves it. It is linked into csirt-agent, so it depends only on the
// standard library and the agent's own building blocks.
package enroll

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/csirt-toscana/platform/internal/envelope"
	"github.com/csirt-toscana/platform/internal/policy"
)

// Endpoint paths of the intake.
const (
	PathEnroll  = "/v1/enroll"
	PathRenew   = "/v1/renew"
	PathPolicy  = "/v1/policy"
	PathBatches = "/v1/batches"
	PathHealth  = "/v1/health"
)

// ContentTypeEnvelopes is the body type of POST /v1/batches: envelopes,
// each prefixed by its length as a 4-byte big-endian integer.
const ContentTypeEnvelopes = "application/x-csirt-envelopes"

// MaxFrames is the most envelopes in one /v1/batches request.
const MaxFrames = 4096

// EnrollRequest is the body of POST /v1/enroll.
type EnrollRequest struct {
	Token        string `json:"token"`
	CSRPEM       string `json:"csr_pem"`
	Hostname     string `json:"hostname"`
	OS           string `json:"os"`
	AgentVersion string `json:"agent_version"`
}

// EnrollResponse is the answer to a successful enrolment.
type EnrollResponse struct {
	AgentID        string        `json:"agent_id"`
	EntityID       string        `json:"entity_id"`
	CertificatePEM string        `json:"certificate_pem"`
	CAPEM          string        `json:"ca_pem"`
	KafkaBootstrap []string      `json:"kafka_bootstrap"`
	IntakeURL      string        `json:"intake_url"`
	Policy         policy.Policy `json:"policy"`
}

// RenewRequest is the body of POST /v1/renew (authenticated by the client
// certificate). The CSR must carry the key the agent enrolled with.
type RenewRequest struct {
	CSRPEM string `json:"csr_pem"`
}

// RenewResponse is the renewed certificate and the CA bundle.
type RenewResponse struct {
	CertificatePEM string `json:"certificate_pem"`
	CAPEM          string `json:"ca_pem"`
}

// BatchesResponse is the answer to an accepted POST /v1/batches.
type BatchesResponse struct {
	Accepted int `json:"accepted"`
}

// HealthResponse is the body of GET /v1/health.
type HealthResponse struct {
	Status string    `json:"status"`
	Time   time.Time `json:"time"`
}

// ErrorResponse is the body of every refusal (4xx, 5xx).
type ErrorResponse struct {
	Code    string `json:"error"`
	Message string `json:"message"`
}

// Error codes of ErrorResponse.
const (
	CodeTokenUnknown  = "token_unknown"
	CodeTokenExpired  = "token_expired"
	CodeTokenUsedUp   = "token_used_up"
	CodeTokenRevoked  = "token_revoked"
	CodeEntityUnknown = "entity_unknown"
	CodeAgentRevoked  = "agent_revoked"
	CodeAgentUnknown  = "agent_unknown"
	CodeCertificate   = "certificate"
	CodeForbidden     = "forbidden"
	CodeBadRequest    = "bad_request"
	CodeTooLarge      = "too_large"
	CodeRateLimited   = "rate_limited"
	CodeUnavailable   = "unavailable"
	CodeInternal      = "internal"
)

// Errors a client call wraps (errors.Is) according to the server's code.
var (
	ErrTokenUnknown  = errors.New("the enrolment token is unknown")
	ErrTokenExpired  = errors.New("the enrolment token has expired")
	ErrTokenUsedUp   = errors.New("the enrolment token has been used up")
	ErrTokenRevoked  = errors.New("the enrolment token was revoked")
	ErrEntityUnknown = errors.New("the token's entity is unknown")
	ErrAgentRevoked  = errors.New("this agent was revoked")
	ErrAgentUnknown  = errors.New("this agent is unknown to the centre")
	// ErrCertificate: the certificate (the agent's, the server's, or a
	// CSR) is not acceptable; enrolling again is usually the remedy.
	ErrCertificate = errors.New("certificate problem")
	ErrForbidden   = errors.New("the intake refused the request")
	ErrBadRequest  = errors.New("the intake could not understand the request")
	ErrRateLimited = errors.New("too many requests")
	ErrUnavailable = errors.New("the intake is temporarily unavailable")
)

var codeErrors = map[string]error{
	CodeTokenUnknown: ErrTokenUnknown, CodeTokenExpired: ErrTokenExpired, CodeTokenUsedUp: ErrTokenUsedUp,
	CodeTokenRevoked: ErrTokenRevoked, CodeEntityUnknown: ErrEntityUnknown, CodeAgentRevoked: ErrAgentRevoked,
	CodeAgentUnknown: ErrAgentUnknown, CodeCertificate: ErrCertificate, CodeForbidden: ErrForbidden,
	CodeBadRequest: ErrBadRequest, CodeTooLarge: ErrBadRequest, CodeRateLimited: ErrRateLimited,
	CodeUnavailable: ErrUnavailable,
}

// ServerError is a refusal by the intake. errors.Is matches it against
// the Err* variables by its code.
type ServerError struct {
	Status     int           // HTTP status
	Code       string        // ErrorResponse.Code
	Message    string        // the server's explanation, for people
	RetryAfter time.Duration // from Retry-After, when given
}

func (e *ServerError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = fmt.Sprintf("HTTP status %d", e.Status)
	}
	return "the intake refused: " + msg
}

// Is makes errors.Is(err, ErrTokenExpired) and the like work.
func (e *ServerError) Is(target error) bool {
	t, ok := codeErrors[e.Code]
	return ok && t == target
}

// Temporary reports whether the same request may succeed later (rate
// limits, Kafka or store unavailable).
func (e *ServerError) Temporary() bool {
	return e.Code == CodeRateLimited || e.Code == CodeUnavailable || e.Status >= 500
}

// AppendFrame appends one envelope with its 4-byte big-endian length.
func AppendFrame(dst, env []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(env))) //nolint:gosec // G115: envelopes are below MaxBatchSize
	return append(dst, env...)
}

// FrameError says where a /v1/batches body is malformed.
type FrameError struct {
	Offset int // byte offset of the bad length prefix
	Frame  int // index of the frame
	Msg    string
}

func (e *FrameError) Error() string {
	return fmt.Sprintf("envelope %d at byte %d: %s", e.Frame, e.Offset, e.Msg)
}

// SplitFrames splits a /v1/batches body into envelopes without copying.
// Every frame must hold 1..envelope.MaxBatchSize bytes, there must be
// 1..MaxFrames of them, and nothing may follow the last one.
func SplitFrames(body []byte) ([][]byte, error) {
	if len(body) == 0 {
		return nil, &FrameError{Msg: "the body is empty: send at least one envelope"}
	}
	var out [][]byte
	for off := 0; off < len(body); {
		if len(out) == MaxFrames {
			return nil, &FrameError{Offset: off, Frame: len(out), Msg: fmt.Sprintf("more than %d envelopes in one request", MaxFrames)}
		}
		if len(body)-off < 4 {
			return nil, &FrameError{Offset: off, Frame: len(out), Msg: "truncated length prefix"}
		}
		n := binary.BigEndian.Uint32(body[off:])
		if n == 0 || n > envelope.MaxBatchSize {
			return nil, &FrameError{Offset: off, Frame: len(out), Msg: fmt.Sprintf("length %d is outside 1..%d", n, envelope.MaxBatchSize)}
		}
		start := off + 4
		if uint64(len(body)-start) < uint64(n) {
			return nil, &FrameError{Offset: off, Frame: len(out), Msg: fmt.Sprintf("length %d runs past the end of the body (%d bytes left)", n, len(body)-start)}
		}
		end := start + int(n)
		out = append(out, body[start:end:end])
		off = end
	}
	return out, nil
}
