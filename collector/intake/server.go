// Package intake is the collector's HTTPS intake: the central side of agent
// enrolment (POST /v1/enroll: token, CSR -> certificate, CA, policy),
// certificate renewal, policy delivery, and the HTTPS alternative to Kafka
// for agents' signed batches (POST /v1/batches, produced to csirt.raw.v1
// and acknowledged only after Kafka's acks=all). It also holds the store
// records that `csirt admin` manages for it: entities, enrolment tokens,
// agents and entity policies. The wire protocol is internal/enroll.
package intake

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/csirt-toscana/platform/collector/internal/verify"
	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/config"
	"github.com/csirt-toscana/platform/internal/enroll"
	"github.com/csirt-toscana/platform/internal/envelope"
	"github.com/csirt-toscana/platform/internal/pki"
	"github.com/csirt-toscana/platform/internal/store"
)

// Producer is the part of bus.Producer the intake uses: Produce returns
// only after the brokers acknowledged every message (acks=all).
type Producer interface {
	Produce(ctx context.Context, msgs ...bus.Message) error
}

// Config is the configuration the intake reads.
type Config struct {
	Intake config.Intake
	PKI    config.PKI
}

// Options configure a Server.
type Options struct {
	Store    store.Store
	Issuer   pki.Issuer
	Producer Producer
	Config   Config

	Logger     logrus.FieldLogger    // default: discard
	Registerer prometheus.Registerer // nil: metrics kept but not registered

	// Listener, when set, is served instead of listening on
	// Config.Intake.Listen (tests: 127.0.0.1:0).
	Listener net.Listener
	// Topic batches are produced to. Default bus.TopicRaw.
	Topic string
	// MaxConcurrent is the most requests served at once; more get 503.
	// Default 256.
	MaxConcurrent int
	// ProduceTimeout bounds the wait for Kafka's acknowledgement of one
	// batch request before it is answered 503. Default 30 s.
	ProduceTimeout time.Duration
	// Now is the clock (tests). Default time.Now.
	Now func() time.Time
}

// Server is the HTTPS intake.
type Server struct {
	o       Options
	log     logrus.FieldLogger
	m       *metrics
	handler http.Handler
	tls     *tls.Config
	names   []string
	agentRL *buckets
	enrolRL *buckets
	sem     chan struct{}
	certMu  sync.Mutex
	cert    *tls.Certificate
	touchMu sync.Mutex
	touched map[string]time.Time
	caPool  *x509.CertPool
	caPEM   []byte
	intake  string
}

const (
	maxJSONBody   = 64 << 10
	touchInterval = time.Minute
)

// New checks the options, issues the intake's server certificate and
// builds the handler. It does not listen yet (Run does).
func New(o Options) (*Server, error) {
	if o.Store == nil || o.Issuer == nil || o.Producer == nil {
		return nil, errors.New("intake: Store, Issuer and Producer are required")
	}
	if o.Logger == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		o.Logger = l
	}
	if o.Topic == "" {
		o.Topic = bus.TopicRaw
	}
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = 256
	}
	if o.ProduceTimeout <= 0 {
		o.ProduceTimeout = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	ic := &o.Config.Intake
	if ic.MaxBodyBytes <= 0 {
		ic.MaxBodyBytes = 16 << 20
	}
	if ic.RatePerAgent <= 0 {
		ic.RatePerAgent = 50
	}
	if ic.EnrolPerIPMin <= 0 {
		ic.EnrolPerIPMin = 10
	}
	if o.Config.PKI.CertTTL <= 0 {
		o.Config.PKI.CertTTL = config.Duration(90 * 24 * time.Hour)
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, fmt.Errorf("intake metrics: %w", err)
	}
	s := &Server{
		o: o, log: o.Logger.WithField("component", "intake"), m: m,
		agentRL: newBuckets(ic.RatePerAgent, 2*ic.RatePerAgent),
		enrolRL: newBuckets(float64(ic.EnrolPerIPMin)/60, float64(ic.EnrolPerIPMin)),
		sem:     make(chan struct{}, o.MaxConcurrent),
		touched: map[string]time.Time{},
		caPEM:   o.Issuer.CAPEM(),
	}
	s.caPool = x509.NewCertPool()
	if !s.caPool.AppendCertsFromPEM(s.caPEM) {
		return nil, errors.New("intake: the issuer's CA bundle holds no certificate")
	}
	listen := ic.Listen
	if o.Listener != nil {
		listen = o.Listener.Addr().String()
	}
	s.names = serverNames(ic.ServerNames, listen, ic.AdvertiseURL)
	s.intake = ic.AdvertiseURL
	if s.intake == "" {
		s.intake = "https://" + listen
	}
	s.intake = strings.TrimRight(s.intake, "/")
	if _, err := s.serverCert(context.Background()); err != nil {
		return nil, fmt.Errorf("intake: issuing the server certificate: %w", err)
	}
	s.tls = &tls.Config{
		MinVersion:     tls.VersionTLS12,
		ClientAuth:     tls.VerifyClientCertIfGiven, // enrolment has no certificate yet
		ClientCAs:      s.caPool,
		GetCertificate: func(hi *tls.ClientHelloInfo) (*tls.Certificate, error) { return s.serverCert(hi.Context()) },
	}
	mux := http.NewServeMux()
	mux.Handle("POST "+enroll.PathEnroll, s.endpoint("enroll", s.handleEnroll))
	mux.Handle("POST "+enroll.PathRenew, s.endpoint("renew", s.handleRenew))
	mux.Handle("GET "+enroll.PathPolicy, s.endpoint("policy", s.handlePolicy))
	mux.Handle("POST "+enroll.PathBatches, s.endpoint("batches", s.handleBatches))
	mux.Handle("GET "+enroll.PathHealth, s.endpoint("health", s.handleHealth))
	mux.Handle("/", s.endpoint("other", func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, &refusal{http.StatusNotFound, enroll.CodeBadRequest, "no such endpoint: the intake serves " +
			strings.Join([]string{enroll.PathEnroll, enroll.PathRenew, enroll.PathPolicy, enroll.PathBatches, enroll.PathHealth}, ", ")}, 0)
	}))
	s.handler = s.limitConcurrency(mux)
	return s, nil
}

// serverNames is the configured list, or the listen host, the advertised
// host and localhost.
func serverNames(configured []string, listen, advertise string) []string {
	if len(configured) > 0 {
		return configured
	}
	var names []string
	add := func(n string) {
		if n != "" && !contains(names, n) {
			names = append(names, n)
		}
	}
	if host, _, err := net.SplitHostPort(listen); err == nil {
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			if h, err := os.Hostname(); err == nil {
				add(h)
			}
		} else {
			add(host)
		}
	}
	if advertise != "" {
		if i := strings.Index(advertise, "://"); i >= 0 {
			hp := advertise[i+3:]
			if j := strings.IndexAny(hp, "/?#"); j >= 0 {
				hp = hp[:j]
			}
			if h, _, err := net.SplitHostPort(hp); err == nil {
				hp = h
			}
			add(strings.Trim(hp, "[]"))
		}
	}
	add("localhost")
	add("127.0.0.1")
	return names
}

// serverCert returns the current server certificate, issuing a new one
// when a third of its lifetime is left.
func (s *Server) serverCert(ctx context.Context) (*tls.Certificate, error) {
	s.certMu.Lock()
	defer s.certMu.Unlock()
	now := s.o.Now()
	if c := s.cert; c != nil && c.Leaf != nil && now.Before(c.Leaf.NotAfter.Add(-c.Leaf.NotAfter.Sub(c.Leaf.NotBefore)/3)) {
		return c, nil
	}
	c, err := s.o.Issuer.ServerCertificate(ctx, s.names, s.o.Config.PKI.CertTTL.D())
	if err != nil {
		if s.cert != nil && now.Before(s.cert.Leaf.NotAfter) {
			s.log.WithError(err).Warn("renewing the intake's server certificate failed; keeping the current one")
			return s.cert, nil
		}
		return nil, err
	}
	s.cert = c
	return c, nil
}

// Handler is the intake's HTTP handler (tests may serve it themselves).
func (s *Server) Handler() http.Handler { return s.handler }

// TLSConfig is the server TLS configuration (server certificate from the
// issuer; client certificates verified against the CA when presented).
func (s *Server) TLSConfig() *tls.Config { return s.tls.Clone() }

// URL is the intake URL told to agents.
func (s *Server) URL() string { return s.intake }

// Run serves HTTPS until ctx is cancelled, then drains open requests.
func (s *Server) Run(ctx context.Context) error {
	l := s.o.Listener
	if l == nil {
		var err error
		l, err = (&net.ListenConfig{}).Listen(ctx, "tcp", s.o.Config.Intake.Listen)
		if err != nil {
			return fmt.Errorf("intake: listening on %s: %w", s.o.Config.Intake.Listen, err)
		}
	}
	srv := &http.Server{
		Handler:           s.handler,
		TLSConfig:         s.tls,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          log.New(s.log.WithField("source", "http").WriterLevel(logrus.DebugLevel), "", 0),
	}
	s.log.WithFields(logrus.Fields{"listen": l.Addr().String(), "url": s.intake, "names": strings.Join(s.names, ",")}).Info("HTTPS intake listening")
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(l, "", "") }()
	select {
	case err := <-errc:
		return fmt.Errorf("intake: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("intake: draining: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("intake: %w", err)
	}
	return nil
}

// statusWriter records the status for metrics.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (s *Server) endpoint(name string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		h(sw, r)
		s.m.requests.WithLabelValues(name, strconv.Itoa(sw.status)).Inc()
	})
}

func (s *Server) limitConcurrency(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case s.sem <- struct{}{}:
		default:
			writeError(w, &refusal{http.StatusServiceUnavailable, enroll.CodeUnavailable, "the intake is busy: try again shortly"}, time.Second)
			return
		}
		s.m.inflight.Inc()
		defer func() { <-s.sem; s.m.inflight.Dec() }()
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal","message":"encoding the answer failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, r *refusal, retryAfter time.Duration) {
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(retryAfter)))
	}
	writeJSON(w, r.status, enroll.ErrorResponse{Code: r.code, Message: r.msg})
}

// fail answers an error: a *refusal as is, anything else as 503 (store
// or issuer unavailable) with a generic message; the cause is logged.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var rf *refusal
	if errors.As(err, &rf) {
		writeError(w, rf, 0)
		return
	}
	s.log.WithError(err).WithField("path", r.URL.Path).Error("intake request failed")
	writeError(w, &refusal{http.StatusServiceUnavailable, enroll.CodeUnavailable, "the centre cannot serve this request right now: try again later"}, 30*time.Second)
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (s *Server) handleHealth(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, enroll.HealthResponse{Status: "ok", Time: s.o.Now().UTC()})
}

func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxJSONBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &refusal{http.StatusRequestEntityTooLarge, enroll.CodeTooLarge, fmt.Sprintf("the request body exceeds %d bytes", maxJSONBody)}
		}
		return &refusal{http.StatusBadRequest, enroll.CodeBadRequest, "reading the request body failed"}
	}
	if err := json.Unmarshal(b, v); err != nil {
		return &refusal{http.StatusBadRequest, enroll.CodeBadRequest, "the request body is not the expected JSON: " + err.Error()}
	}
	return nil
}

func (s *Server) handleEnroll(w http.ResponseWriter, r *http.Request) {
	ip := clientIP(r)
	if ok, wait := s.enrolRL.take(ip, s.o.Now()); !ok {
		s.m.enrolments.WithLabelValues(enroll.CodeRateLimited).Inc()
		writeError(w, &refusal{http.StatusTooManyRequests, enroll.CodeRateLimited, "too many enrolment attempts from this address: wait a minute and try again"}, wait)
		return
	}
	resp, err := s.enrol(r.Context(), w, r, ip)
	if err != nil {
		var rf *refusal
		if errors.As(err, &rf) {
			s.m.enrolments.WithLabelValues(rf.code).Inc()
			s.log.WithFields(logrus.Fields{"remote": ip, "refusal": rf.code}).Warn("enrolment refused")
		} else {
			s.m.enrolments.WithLabelValues(enroll.CodeUnavailable).Inc()
		}
		s.fail(w, r, err)
		return
	}
	s.m.enrolments.WithLabelValues("ok").Inc()
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) enrol(ctx context.Context, w http.ResponseWriter, r *http.Request, ip string) (*enroll.EnrollResponse, error) {
	var req enroll.EnrollRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return nil, err
	}
	tok, err := enroll.ParseToken(req.Token)
	if err != nil {
		return nil, &refusal{http.StatusForbidden, enroll.CodeTokenUnknown, "this enrolment token is not known to the centre: " + err.Error()}
	}
	csr, err := pki.ParseCSR([]byte(req.CSRPEM))
	if err != nil {
		return nil, &refusal{http.StatusBadRequest, enroll.CodeCertificate, err.Error()}
	}
	hostname := cleanHostname(req.Hostname)
	now := s.o.Now()
	rec, err := useToken(ctx, s.o.Store, tok, now, func(entity string) error {
		if _, err := GetEntity(ctx, s.o.Store, entity); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return &refusal{http.StatusForbidden, enroll.CodeEntityUnknown, fmt.Sprintf("the entity %q this token was made for no longer exists at the centre: ask the CSIRT", entity)}
			}
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, &refusal{http.StatusBadRequest, enroll.CodeCertificate, "only ECDSA P-256 keys are accepted"}
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	pol, err := EntityPolicy(ctx, s.o.Store, rec.Entity)
	if err != nil {
		return nil, err
	}
	var agentID string
	var certPEM []byte
	for attempt := 0; ; attempt++ {
		agentID, err = newAgentID(rec.Entity, hostname)
		if err != nil {
			return nil, err
		}
		certPEM, err = s.o.Issuer.SignAgent(ctx, pki.AgentRequest{CSRPEM: []byte(req.CSRPEM), AgentID: agentID, EntityID: rec.Entity, TTL: s.o.Config.PKI.CertTTL.D()})
		if errors.Is(err, pki.ErrBadCSR) {
			return nil, &refusal{http.StatusBadRequest, enroll.CodeCertificate, err.Error()}
		}
		if err != nil {
			return nil, err
		}
		cert, err := parseCertPEM(certPEM)
		if err != nil {
			return nil, err
		}
		a := AgentRecord{
			AgentDoc: verify.AgentDoc{AgentID: agentID, EntityID: rec.Entity, Hostname: hostname, Status: "active",
				Algorithm: ecdsaAlgorithm, KeyID: KeyID(pubDER),
				PublicKey: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}))},
			Kind: "agent", Enrolled: now.UTC(), LastSeen: now.UTC(), Address: ip, Version: limit(req.AgentVersion, 64),
			OS: limit(req.OS, 64), CertSerial: cert.SerialNumber.Text(16), CertNotAfter: cert.NotAfter.UTC(), TokenID: rec.ID,
		}
		src, err := json.Marshal(a)
		if err != nil {
			return nil, err
		}
		_, err = s.o.Store.Create(ctx, store.TenantScope(rec.Entity), store.Agents, store.Doc{ID: agentID, Tenant: rec.Entity, Source: src}, store.WriteOptions{Refresh: store.RefreshWait})
		if errors.Is(err, store.ErrExists) && attempt < 5 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("writing agent %s: %w", agentID, err)
		}
		break
	}
	s.log.WithFields(logrus.Fields{"agent": agentID, "entity": rec.Entity, "hostname": hostname, "token_id": rec.ID,
		"remote": ip, "uses": fmt.Sprintf("%d/%d", rec.Uses, rec.MaxUses)}).Info("agent enrolled")
	return &enroll.EnrollResponse{AgentID: agentID, EntityID: rec.Entity, CertificatePEM: string(certPEM), CAPEM: string(s.caPEM),
		KafkaBootstrap: append([]string{}, s.o.Config.Intake.KafkaBootstrap...), IntakeURL: s.intake, Policy: pol}, nil
}

// KeyID is the key id of an agent's envelopes for its PKIX public key: the
// first 16 hex digits of its SHA-256, as the agent computes it
// (agents/internal/identity.KeyID).
func KeyID(pkixDER []byte) string {
	sum := sha256.Sum256(pkixDER)
	return hex.EncodeToString(sum[:8])
}

func samePublicKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

func pinBytes(der []byte) [32]byte { return sha256.Sum256(der) }

func parseCertPEM(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("the issuer returned no PEM certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}

var idB32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newAgentID is entity-shorthost-xxxxxx: readable in listings, unique by
// its random suffix (and checked by the store's Create).
func newAgentID(entity, hostname string) (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	short := hostname
	if i := strings.IndexByte(short, '.'); i >= 0 {
		short = short[:i]
	}
	var sb strings.Builder
	for _, c := range strings.ToLower(short) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' {
			sb.WriteRune(c)
		}
		if sb.Len() >= 20 {
			break
		}
	}
	short = strings.Trim(sb.String(), "-")
	if short == "" {
		short = "host"
	}
	return entity + "-" + short + "-" + idB32.EncodeToString(b[:])[:6], nil
}

func cleanHostname(h string) string {
	h = strings.TrimSpace(h)
	var sb strings.Builder
	for _, c := range h {
		if c > ' ' && c < 0x7f {
			sb.WriteRune(c)
		}
	}
	return limit(sb.String(), 253)
}

func limit(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// agentFromRequest authenticates an agent by its verified client
// certificate and the store: known, not revoked, same entity.
func (s *Server) agentFromRequest(r *http.Request) (AgentRecord, error) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.PeerCertificates) == 0 {
		return AgentRecord{}, &refusal{http.StatusUnauthorized, enroll.CodeCertificate, "this endpoint needs the agent's client certificate: enrol the agent first (csirt-agent enroll)"}
	}
	leaf := r.TLS.PeerCertificates[0]
	agentID, entityID, err := pki.Identity(leaf)
	if err != nil {
		return AgentRecord{}, &refusal{http.StatusForbidden, enroll.CodeCertificate, err.Error()}
	}
	a, _, err := GetAgent(r.Context(), s.o.Store, agentID)
	if errors.Is(err, store.ErrNotFound) {
		return AgentRecord{}, &refusal{http.StatusForbidden, enroll.CodeAgentUnknown, fmt.Sprintf("agent %q is not enrolled at this centre: enrol again with a new token", agentID)}
	}
	if err != nil {
		return AgentRecord{}, err
	}
	if a.IsRevoked() {
		when := ""
		if !a.RevokedAt.IsZero() {
			when = " on " + a.RevokedAt.Format(time.RFC3339)
		}
		return AgentRecord{}, &refusal{http.StatusForbidden, enroll.CodeAgentRevoked, fmt.Sprintf("agent %q was revoked by the CSIRT%s: its data is refused; contact the CSIRT", agentID, when)}
	}
	if a.EntityID != entityID {
		return AgentRecord{}, &refusal{http.StatusForbidden, enroll.CodeCertificate, fmt.Sprintf("the certificate binds agent %q to entity %q but the centre has it under %q", agentID, entityID, a.EntityID)}
	}
	return a, nil
}

// touch records when and from where an agent was last seen, at most once
// a minute per agent; failures only cost freshness.
func (s *Server) touch(ctx context.Context, a AgentRecord, ip string) {
	now := s.o.Now()
	s.touchMu.Lock()
	if t, ok := s.touched[a.AgentID]; ok && now.Sub(t) < touchInterval {
		s.touchMu.Unlock()
		return
	}
	s.touched[a.AgentID] = now
	if len(s.touched) > 100000 {
		clear(s.touched)
	}
	s.touchMu.Unlock()
	err := updateAgent(ctx, s.o.Store, a.AgentID, func(AgentRecord) (map[string]any, error) {
		return map[string]any{"last_seen": now.UTC(), "address": ip}, nil
	})
	if err != nil {
		s.log.WithError(err).WithField("agent", a.AgentID).Debug("recording the agent's last contact failed")
	}
}

func (s *Server) handleRenew(w http.ResponseWriter, r *http.Request) {
	a, err := s.agentFromRequest(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var req enroll.RenewRequest
	if err := decodeJSON(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	csr, err := pki.ParseCSR([]byte(req.CSRPEM))
	if err != nil {
		s.fail(w, r, &refusal{http.StatusBadRequest, enroll.CodeCertificate, err.Error()})
		return
	}
	if !samePublicKey(csr.PublicKey, r.TLS.PeerCertificates[0].PublicKey) {
		s.fail(w, r, &refusal{http.StatusForbidden, enroll.CodeCertificate, "renewal must keep the enrolled key (batches already signed with it must still verify): send a CSR made with the agent's current key, or enrol again"})
		return
	}
	certPEM, err := s.o.Issuer.SignAgent(r.Context(), pki.AgentRequest{CSRPEM: []byte(req.CSRPEM), AgentID: a.AgentID, EntityID: a.EntityID, TTL: s.o.Config.PKI.CertTTL.D()})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := updateAgent(r.Context(), s.o.Store, a.AgentID, func(AgentRecord) (map[string]any, error) {
		return map[string]any{"cert.serial": cert.SerialNumber.Text(16), "cert.not_after": cert.NotAfter.UTC(),
			"last_seen": s.o.Now().UTC(), "address": clientIP(r)}, nil
	}); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.WithFields(logrus.Fields{"agent": a.AgentID, "entity": a.EntityID, "not_after": cert.NotAfter.UTC().Format(time.RFC3339)}).Info("agent certificate renewed")
	writeJSON(w, http.StatusOK, enroll.RenewResponse{CertificatePEM: string(certPEM), CAPEM: string(s.caPEM)})
}

func (s *Server) handlePolicy(w http.ResponseWriter, r *http.Request) {
	a, err := s.agentFromRequest(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p, err := EntityPolicy(r.Context(), s.o.Store, a.EntityID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.touch(r.Context(), a, clientIP(r))
	etag := strconv.Quote(p.Revision)
	w.Header().Set("ETag", etag)
	if etagMatches(r.Header.Get("If-None-Match"), p.Revision) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// etagMatches reads If-None-Match: a list of (possibly weak, possibly
// unquoted) tags, or "*".
func etagMatches(header, revision string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || strings.Trim(t, `"`) == revision && revision != "" {
			return true
		}
	}
	return false
}

func (s *Server) handleBatches(w http.ResponseWriter, r *http.Request) {
	a, err := s.agentFromRequest(r)
	if err != nil {
		s.rejectBatch(w, r, err)
		return
	}
	if ok, wait := s.agentRL.take(a.AgentID, s.o.Now()); !ok {
		s.m.rejected.WithLabelValues(enroll.CodeRateLimited).Inc()
		writeError(w, &refusal{http.StatusTooManyRequests, enroll.CodeRateLimited, fmt.Sprintf("agent %q sends more than %g batch requests per second: slow down", a.AgentID, s.o.Config.Intake.RatePerAgent)}, wait)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != enroll.ContentTypeEnvelopes {
		s.rejectBatch(w, r, &refusal{http.StatusUnsupportedMediaType, enroll.CodeBadRequest, fmt.Sprintf("Content-Type must be %s, got %q", enroll.ContentTypeEnvelopes, ct)})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.o.Config.Intake.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.rejectBatch(w, r, &refusal{http.StatusRequestEntityTooLarge, enroll.CodeTooLarge, fmt.Sprintf("the body exceeds %d bytes: send fewer envelopes per request", s.o.Config.Intake.MaxBodyBytes)})
			return
		}
		s.rejectBatch(w, r, &refusal{http.StatusBadRequest, enroll.CodeBadRequest, "reading the body failed"})
		return
	}
	msgs, err := s.batchMessages(a, body)
	if err != nil {
		s.rejectBatch(w, r, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.o.ProduceTimeout)
	err = s.o.Producer.Produce(ctx, msgs...)
	cancel()
	if err != nil {
		s.m.produceErrs.Inc()
		s.log.WithError(err).WithFields(logrus.Fields{"agent": a.AgentID, "envelopes": len(msgs)}).Warn("Kafka did not acknowledge a batch from the intake; the agent keeps it and retries")
		writeError(w, &refusal{http.StatusServiceUnavailable, enroll.CodeUnavailable, "Kafka did not acknowledge the batch: keep it and retry later"}, 10*time.Second)
		return
	}
	s.m.envelopes.Add(float64(len(msgs)))
	s.m.bytes.Add(float64(len(body) - 4*len(msgs)))
	s.touch(r.Context(), a, clientIP(r))
	writeJSON(w, http.StatusOK, enroll.BatchesResponse{Accepted: len(msgs)})
}

func (s *Server) rejectBatch(w http.ResponseWriter, r *http.Request, err error) {
	var rf *refusal
	if errors.As(err, &rf) {
		s.m.rejected.WithLabelValues(rf.code).Inc()
	}
	s.fail(w, r, err)
}

// batchMessages splits and checks a /v1/batches body: every envelope must
// decode and name the certificate's agent and entity.
func (s *Server) batchMessages(a AgentRecord, body []byte) ([]bus.Message, error) {
	frames, err := enroll.SplitFrames(body)
	if err != nil {
		return nil, &refusal{http.StatusBadRequest, enroll.CodeBadRequest, "malformed body: " + err.Error()}
	}
	now := s.o.Now()
	msgs := make([]bus.Message, len(frames))
	for i, f := range frames {
		b, err := envelope.Decode(f)
		if err != nil {
			return nil, &refusal{http.StatusBadRequest, enroll.CodeBadRequest, fmt.Sprintf("envelope %d: %v", i, err)}
		}
		if b.AgentID != a.AgentID || b.EntityID != a.EntityID {
			return nil, &refusal{http.StatusForbidden, enroll.CodeForbidden, fmt.Sprintf("envelope %d claims agent %q of entity %q, but this client certificate is agent %q of entity %q: nothing of this request was accepted", i, b.AgentID, b.EntityID, a.AgentID, a.EntityID)}
		}
		msgs[i] = bus.Message{Topic: s.o.Topic, Key: []byte(a.AgentID), Value: f, Time: now}
	}
	return msgs, nil
}
