package enroll

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/policy"
)

// AgentVersion is sent at enrolment; the agent binary sets it.
var AgentVersion = "dev"

// maxResponse bounds what the client reads from the intake.
const maxResponse = 4 << 20

// Timeouts of the client's own HTTP clients.
const (
	requestTimeout = 60 * time.Second
	dialTimeout    = 10 * time.Second
)

// Session is what an enrolled agent talks to the intake with: the intake
// URL and the mutual-TLS client configuration. From the agent's identity:
// Session{IntakeURL: id.IntakeURL, TLS: id.TLSConfig()}.
type Session struct {
	IntakeURL string
	TLS       *tls.Config
	// HTTPClient, when set, is used as is (its transport must present the
	// client certificate); default: a client built from TLS.
	HTTPClient *http.Client
}

func (s Session) client() *http.Client {
	if s.HTTPClient != nil {
		return s.HTTPClient
	}
	return &http.Client{Timeout: requestTimeout, Transport: newTransport(s.TLS)}
}

func (s Session) url(path string) (string, error) {
	base, _, err := serverURL(s.IntakeURL)
	if err != nil {
		return "", fmt.Errorf("intake URL: %w", err)
	}
	return base + path, nil
}

// EnrollOptions are the inputs of Enroll.
type EnrollOptions struct {
	Server   string // https://host:port of the intake
	Token    string // the token printed by `csirt admin token create`
	Hostname string // default os.Hostname()
	// CAFile, when set, is a PEM bundle to verify the intake with instead
	// of the pin in the token (the returned CA must still match the pin).
	CAFile string
	// HTTPClient, when set, is used for the request; if its Transport is
	// nil or an *http.Transport, a copy of it gets the pinned TLS
	// configuration.
	HTTPClient *http.Client
}

// Info is what the centre told the agent at enrolment (the same fields
// and JSON names as the agent's identity.Info).
type Info struct {
	AgentID        string    `json:"agent_id"`
	EntityID       string    `json:"entity_id"`
	KafkaBootstrap []string  `json:"kafka_bootstrap,omitempty"`
	IntakeURL      string    `json:"intake_url"`
	EnrolledAt     time.Time `json:"enrolled_at"`
	Hostname       string    `json:"hostname,omitempty"`
}

// Enrolment is the checked result of Enroll: everything the agent writes
// to its state directory (identity.Save with the key written 0600, then
// identity.SavePolicy).
type Enrolment struct {
	Info
	KeyPEM  []byte // PKCS#8 PEM of the key generated here; it never left this process
	CertPEM []byte
	CAPEM   []byte
	Policy  policy.Policy
}

// Enroll enrols this host: it generates an ECDSA P-256 key, sends a CSR
// with the token to the intake (authenticated by the token's CA pin or by
// CAFile), and checks the answer (the certificate is for our key, chains
// to the pinned CA, names the agent and entity returned; the policy is
// valid). The caller persists the result.
func Enroll(ctx context.Context, o EnrollOptions) (Enrolment, error) {
	tok, err := ParseToken(o.Token)
	if err != nil {
		return Enrolment{}, err
	}
	base, host, err := serverURL(o.Server)
	if err != nil {
		return Enrolment{}, err
	}
	if o.Hostname == "" {
		if o.Hostname, err = os.Hostname(); err != nil {
			return Enrolment{}, fmt.Errorf("enrol: reading the host name (pass it explicitly): %w", err)
		}
	}
	var tlsCfg *tls.Config
	if o.CAFile != "" {
		b, err := os.ReadFile(o.CAFile)
		if err != nil {
			return Enrolment{}, fmt.Errorf("enrol: reading --ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return Enrolment{}, fmt.Errorf("enrol: %s holds no PEM certificate", o.CAFile)
		}
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	} else {
		tlsCfg = PinnedTLSConfig(tok.Pin, host)
	}
	client, err := withTLS(o.HTTPClient, tlsCfg)
	if err != nil {
		return Enrolment{}, err
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Enrolment{}, fmt.Errorf("enrol: generating the key: %w", err)
	}
	csrPEM, err := MakeCSR(key, o.Hostname)
	if err != nil {
		return Enrolment{}, err
	}
	req := EnrollRequest{Token: tok.String(), CSRPEM: string(csrPEM), Hostname: o.Hostname,
		OS: runtime.GOOS + "/" + runtime.GOARCH, AgentVersion: AgentVersion}
	var resp EnrollResponse
	if _, err := doJSON(ctx, client, http.MethodPost, base+PathEnroll, req, &resp, nil); err != nil {
		return Enrolment{}, fmt.Errorf("enrol: %w", err)
	}
	caPin, err := pinOf([]byte(resp.CAPEM))
	if err != nil || caPin != tok.Pin {
		return Enrolment{}, fmt.Errorf("enrol: %w: the CA bundle the intake returned does not match the token's pin; is --server the intake the token was made for?", ErrCertificate)
	}
	cert, err := checkIssued([]byte(resp.CertificatePEM), []byte(resp.CAPEM), key.Public())
	if err != nil {
		return Enrolment{}, fmt.Errorf("enrol: %w", err)
	}
	if a, e := CertNames(cert); a != resp.AgentID || e != resp.EntityID || a == "" || e == "" {
		return Enrolment{}, fmt.Errorf("enrol: %w: the certificate names agent %q entity %q, the answer %q %q", ErrCertificate, a, e, resp.AgentID, resp.EntityID)
	}
	if err := resp.Policy.Validate(); err != nil {
		return Enrolment{}, fmt.Errorf("enrol: the policy sent by the intake is invalid: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Enrolment{}, err
	}
	intake := resp.IntakeURL
	if intake == "" {
		intake = base
	}
	return Enrolment{
		Info: Info{AgentID: resp.AgentID, EntityID: resp.EntityID, KafkaBootstrap: resp.KafkaBootstrap,
			IntakeURL: intake, EnrolledAt: time.Now().UTC(), Hostname: o.Hostname},
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		CertPEM: []byte(resp.CertificatePEM), CAPEM: []byte(resp.CAPEM), Policy: resp.Policy,
	}, nil
}

// Renewal is a renewed certificate.
type Renewal struct {
	CertPEM  []byte
	CAPEM    []byte
	NotAfter time.Time
}

// Renew asks the intake for a new certificate for the agent's existing key
// (batches already signed in the spool must keep verifying) and checks it:
// same key, chains to the session's roots for client authentication, same
// agent and entity as the current one (from the session's client
// certificate when it has a leaf, else not compared). The caller replaces
// the certificate on disk (identity.SaveCert).
func Renew(ctx context.Context, s Session, key crypto.Signer, hostname string) (Renewal, error) {
	u, err := s.url(PathRenew)
	if err != nil {
		return Renewal{}, err
	}
	csrPEM, err := MakeCSR(key, hostname)
	if err != nil {
		return Renewal{}, err
	}
	var resp RenewResponse
	if _, err := doJSON(ctx, s.client(), http.MethodPost, u, RenewRequest{CSRPEM: string(csrPEM)}, &resp, nil); err != nil {
		return Renewal{}, fmt.Errorf("renew: %w", err)
	}
	cert, err := checkIssued([]byte(resp.CertificatePEM), []byte(resp.CAPEM), key.Public())
	if err != nil {
		return Renewal{}, fmt.Errorf("renew: %w", err)
	}
	if s.TLS != nil && s.TLS.RootCAs != nil {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: s.TLS.RootCAs, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			return Renewal{}, fmt.Errorf("renew: %w: the new certificate does not chain to the enrolled CA bundle: %w", ErrCertificate, err)
		}
	}
	return Renewal{CertPEM: []byte(resp.CertificatePEM), CAPEM: []byte(resp.CAPEM), NotAfter: cert.NotAfter}, nil
}

// FetchPolicy asks the intake for the agent's policy. have is the revision
// the agent already applies ("" for none): when the intake answers that it
// is unchanged, FetchPolicy returns changed=false and a zero Policy. A
// changed policy is validated, not saved: the caller applies it and then
// calls identity.SavePolicy.
func FetchPolicy(ctx context.Context, s Session, have string) (p policy.Policy, changed bool, err error) {
	u, err := s.url(PathPolicy)
	if err != nil {
		return policy.Policy{}, false, err
	}
	hdr := http.Header{}
	if have != "" {
		hdr.Set("If-None-Match", strconv.Quote(have))
	}
	status, err := doJSON(ctx, s.client(), http.MethodGet, u, nil, &p, hdr)
	if err != nil {
		return policy.Policy{}, false, fmt.Errorf("policy: %w", err)
	}
	if status == http.StatusNotModified {
		return policy.Policy{}, false, nil
	}
	if err := p.Validate(); err != nil {
		return policy.Policy{}, false, fmt.Errorf("policy: the intake sent an invalid policy: %w", err)
	}
	return p, p.Revision != have, nil
}

// Health asks the intake whether it is up and returns its clock (from the
// Date header, to measure skew).
func Health(ctx context.Context, s Session) (time.Time, error) {
	u, err := s.url(PathHealth)
	if err != nil {
		return time.Time{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return time.Time{}, err
	}
	resp, err := s.client().Do(req)
	if err != nil {
		return time.Time{}, fmt.Errorf("health: cannot reach the intake at %s: %w", u, err)
	}
	defer resp.Body.Close()
	var h HealthResponse
	if err := readResponse(resp, &h); err != nil {
		return time.Time{}, fmt.Errorf("health: %w", err)
	}
	if d := resp.Header.Get("Date"); d != "" {
		if t, err := http.ParseTime(d); err == nil {
			return t, nil
		}
	}
	if h.Time.IsZero() {
		return time.Time{}, errors.New("health: the intake sent no time")
	}
	return h.Time, nil
}

// BatchClient ships envelopes to the intake's /v1/batches: the HTTPS
// alternative to the Kafka producer for agents that cannot reach Kafka.
// It is safe for concurrent use.
type BatchClient struct {
	url    string
	client *http.Client
}

// NewBatchClient builds a client for the session's intake.
func NewBatchClient(s Session) (*BatchClient, error) {
	if s.IntakeURL == "" {
		return nil, errors.New("batch client: the identity has no intake URL (enrol again)")
	}
	u, err := s.url(PathBatches)
	if err != nil {
		return nil, err
	}
	return &BatchClient{url: u, client: s.client()}, nil
}

// Produce sends the values of msgs (signed envelopes) in one request and
// returns nil only once the intake answered that Kafka acknowledged all of
// them. Topic and key are the intake's business (csirt.raw.v1, agent id);
// a message naming another topic is refused. On error nothing may be
// assumed written: retry the whole call (the collector deduplicates).
// A *ServerError carries RetryAfter for 429 and 503.
func (c *BatchClient) Produce(ctx context.Context, msgs ...bus.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if len(msgs) > MaxFrames {
		return fmt.Errorf("batch client: %d envelopes in one call, at most %d", len(msgs), MaxFrames)
	}
	size := 0
	for i, m := range msgs {
		if m.Topic != "" && m.Topic != bus.TopicRaw {
			return fmt.Errorf("batch client: message %d is for topic %q; the intake takes only %s", i, m.Topic, bus.TopicRaw)
		}
		size += 4 + len(m.Value)
	}
	body := make([]byte, 0, size)
	for _, m := range msgs {
		body = AppendFrame(body, m.Value)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", ContentTypeEnvelopes)
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("sending to the intake: %w", err)
	}
	defer resp.Body.Close()
	var br BatchesResponse
	if err := readResponse(resp, &br); err != nil {
		return err
	}
	if br.Accepted != len(msgs) {
		return fmt.Errorf("the intake accepted %d of %d envelopes", br.Accepted, len(msgs))
	}
	return nil
}

// Close releases idle connections.
func (c *BatchClient) Close() error {
	c.client.CloseIdleConnections()
	return nil
}

// PinnedTLSConfig verifies a server by a CA pin instead of a trust store:
// the server must present, after its leaf, a certificate whose SHA-256 is
// pin, and the leaf must chain to it and be valid for serverName.
func PinnedTLSConfig(pin [32]byte, serverName string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The standard verification needs a trust store the agent does not
		// have yet; VerifyConnection does the same checks with the pinned
		// CA as the only root.
		InsecureSkipVerify: true, //nolint:gosec // G402: replaced by VerifyConnection below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("%w: the server sent no certificate", ErrCertificate)
			}
			roots, inter := x509.NewCertPool(), x509.NewCertPool()
			found := false
			for _, c := range cs.PeerCertificates[1:] {
				if sha256.Sum256(c.Raw) == pin {
					roots.AddCert(c)
					found = true
				} else {
					inter.AddCert(c)
				}
			}
			if !found {
				return fmt.Errorf("%w: the server's CA does not match the pin in the token: this is not the intake the token was made for (or someone is in between)", ErrCertificate)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: serverName})
			if err != nil {
				return fmt.Errorf("%w: the server certificate is not valid for %s: %w", ErrCertificate, serverName, err)
			}
			return nil
		},
	}
}

func serverURL(s string) (base, host string, err error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return "", "", fmt.Errorf("the server must be an https:// URL such as https://intake.example:8443, got %q", s)
	}
	return strings.TrimRight(u.String(), "/"), u.Hostname(), nil
}

// MakeCSR makes a PEM certificate signing request for key.
func MakeCSR(key crypto.Signer, hostname string) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: hostname}}, key)
	if err != nil {
		return nil, fmt.Errorf("making the certificate request: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

func pinOf(caPEM []byte) ([32]byte, error) {
	blk, _ := pem.Decode(caPEM)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return [32]byte{}, errors.New("no PEM certificate")
	}
	return sha256.Sum256(blk.Bytes), nil
}

// checkIssued parses a PEM leaf, checks it carries pub and chains to the
// first certificate of caPEM for client authentication.
func checkIssued(certPEM, caPEM []byte, pub crypto.PublicKey) (*x509.Certificate, error) {
	blk, _ := pem.Decode(certPEM)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%w: the intake returned no PEM certificate", ErrCertificate)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCertificate, err)
	}
	type eq interface{ Equal(crypto.PublicKey) bool }
	if k, ok := cert.PublicKey.(eq); !ok || !k.Equal(pub) {
		return nil, fmt.Errorf("%w: the returned certificate is not for this agent's key", ErrCertificate)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%w: the returned CA bundle holds no certificate", ErrCertificate)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("%w: the returned certificate does not chain to the returned CA: %w", ErrCertificate, err)
	}
	return cert, nil
}

// CertNames reads the agent and entity URI SANs of a certificate (as
// pki.Identity does; pki is not imported to keep the agent small).
func CertNames(c *x509.Certificate) (agent, entity string) {
	for _, u := range c.URIs {
		s := u.String()
		if v, ok := strings.CutPrefix(s, "urn:csirt:agent:"); ok {
			agent = v
		} else if v, ok := strings.CutPrefix(s, "urn:csirt:entity:"); ok {
			entity = v
		}
	}
	return agent, entity
}

func withTLS(c *http.Client, cfg *tls.Config) (*http.Client, error) {
	if c == nil {
		return &http.Client{Timeout: requestTimeout, Transport: newTransport(cfg)}, nil
	}
	cp := *c
	switch t := c.Transport.(type) {
	case nil:
		cp.Transport = newTransport(cfg)
	case *http.Transport:
		t2 := t.Clone()
		t2.TLSClientConfig = cfg.Clone()
		cp.Transport = t2
	default:
		// The pin could not be enforced on an unknown transport.
		return nil, fmt.Errorf("enrol: HTTPClient.Transport must be nil or an *http.Transport, not %T", c.Transport)
	}
	return &cp, nil
}

func newTransport(cfg *tls.Config) *http.Transport {
	if cfg != nil {
		cfg = cfg.Clone() // the transport adds "h2" to NextProtos: keep the caller's config as it was
	}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       cfg,
		TLSHandshakeTimeout:   dialTimeout,
		ResponseHeaderTimeout: requestTimeout,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   2,
		ForceAttemptHTTP2:     true,
	}
}

// doJSON sends in (when not nil) as JSON and decodes a 2xx answer into
// out; a 304 is returned as such with out untouched.
func doJSON(ctx context.Context, c *http.Client, method, u string, in, out any, hdr http.Header) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return 0, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, fmt.Errorf("cannot reach the intake at %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified {
		return resp.StatusCode, nil
	}
	return resp.StatusCode, readResponse(resp, out)
}

// readResponse decodes a 2xx body into out or turns a refusal into a
// *ServerError.
func readResponse(resp *http.Response, out any) error {
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("reading the intake's answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		se := &ServerError{Status: resp.StatusCode}
		var er ErrorResponse
		if json.Unmarshal(b, &er) == nil && er.Code != "" {
			se.Code, se.Message = er.Code, er.Message
		} else {
			se.Message = fmt.Sprintf("HTTP status %d (%s)", resp.StatusCode, strings.TrimSpace(string(b[:min(len(b), 200)])))
		}
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			if n, err := strconv.Atoi(ra); err == nil && n >= 0 {
				se.RetryAfter = time.Duration(n) * time.Second
			}
		}
		return se
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("the intake's answer is not the expected JSON: %w", err)
	}
	return nil
}
