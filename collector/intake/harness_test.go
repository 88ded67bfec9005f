package intake

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/config"
	"github.com/csirt-toscana/platform/internal/enroll"
	"github.com/csirt-toscana/platform/internal/envelope"
	"github.com/csirt-toscana/platform/internal/pki"
	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/sqlite"
)

const testEntity = "comune-test"

// harness runs a real intake over TLS on 127.0.0.1 with a SQLite store
// on a temporary directory and a fresh local CA.
type harness struct {
	t     *testing.T
	st    store.Store
	ca    *pki.LocalCA
	srv   *Server
	url   string
	skew  atomic.Int64 // added to the intake's clock (ns)
	caAdd atomic.Int64 // added to the CA's clock (ns)
}

type harnessOpts struct {
	producer Producer
	topic    string
	cfg      func(*Config)
}

func newHarness(t *testing.T, ho harnessOpts) *harness {
	t.Helper()
	ctx := context.Background()
	h := &harness{t: t}
	st, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(t.TempDir(), "store.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	h.st = st
	h.ca, err = pki.OpenLocalCA(filepath.Join(t.TempDir(), "pki"), "test CA")
	if err != nil {
		t.Fatal(err)
	}
	h.ca.Now = func() time.Time { return time.Now().Add(time.Duration(h.caAdd.Load())) }
	l, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	def := config.Default()
	cfg := Config{Intake: def.Intake, PKI: def.PKI}
	cfg.Intake.EnrolPerIPMin = 1000 // many enrolments from 127.0.0.1 in one test
	if ho.cfg != nil {
		ho.cfg(&cfg)
	}
	if ho.producer == nil {
		ho.producer = &fakeProducer{}
	}
	h.srv, err = New(Options{Store: st, Issuer: h.ca, Producer: ho.producer, Config: cfg, Listener: l, Topic: ho.topic,
		Now: func() time.Time { return time.Now().Add(time.Duration(h.skew.Load())) }})
	if err != nil {
		t.Fatal(err)
	}
	h.url = "https://" + l.Addr().String()
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- h.srv.Run(rctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("intake Run: %v", err)
		}
	})
	if err := AddEntity(ctx, st, Entity{ID: testEntity, Name: "Comune di Test", Kind: "comune", Province: "FI"}); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) token(uses int, ttl time.Duration) string {
	h.t.Helper()
	tok, _, err := CreateToken(context.Background(), h.st, h.ca.CAPEM(), TokenSpec{Entity: testEntity, TTL: ttl, Uses: uses})
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

func (h *harness) enrol(tok, hostname string) (enroll.Enrolment, error) {
	return enroll.Enroll(context.Background(), enroll.EnrollOptions{Server: h.url, Token: tok, Hostname: hostname})
}

func (h *harness) mustEnrol(hostname string) enroll.Enrolment {
	h.t.Helper()
	e, err := h.enrol(h.token(1, time.Hour), hostname)
	if err != nil {
		h.t.Fatal(err)
	}
	return e
}

// session is what the agent builds from its identity.
func session(t *testing.T, e enroll.Enrolment) enroll.Session {
	t.Helper()
	kp, err := tls.X509KeyPair(e.CertPEM, e.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.CAPEM)
	return enroll.Session{IntakeURL: e.IntakeURL, TLS: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, Certificates: []tls.Certificate{kp}}}
}

func agentKey(t *testing.T, e enroll.Enrolment) *ecdsa.PrivateKey {
	t.Helper()
	blk, _ := pem.Decode(e.KeyPEM)
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(*ecdsa.PrivateKey)
}

func leaf(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode(certPEM)
	if blk == nil {
		t.Fatal("no PEM certificate")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// sealed makes an envelope signed with the agent's key and the key id the
// agent uses.
func sealed(t *testing.T, e enroll.Enrolment, agentID, entityID string, firstSeq uint64, lines ...string) []byte {
	t.Helper()
	key := agentKey(t, e)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	s, err := envelope.NewECDSASigner(KeyID(der), key)
	if err != nil {
		t.Fatal(err)
	}
	b := &envelope.Batch{AgentID: agentID, EntityID: entityID, StreamID: "auth", FirstSeq: firstSeq, Created: time.Now()}
	for _, l := range lines {
		b.Records = append(b.Records, envelope.Record{Time: time.Now(), Kind: envelope.KindRawLine, Data: []byte(l)})
	}
	wire, err := envelope.Seal(b, s)
	if err != nil {
		t.Fatal(err)
	}
	return wire
}

// fakeProducer records messages, or fails with err: the Kafka-down case
// (the real-Kafka path is tested in TestBatchesReachKafka).
type fakeProducer struct {
	mu   sync.Mutex
	msgs []bus.Message
	err  error
}

func (p *fakeProducer) Produce(_ context.Context, msgs ...bus.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	p.msgs = append(p.msgs, msgs...)
	return nil
}

func (p *fakeProducer) setErr(err error) {
	p.mu.Lock()
	p.err = err
	p.mu.Unlock()
}

var errKafkaDown = errors.New("kafka: connection refused")

func writeFile(path string, b []byte) error { return os.WriteFile(path, b, 0o600) }

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
