package syslogin

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/sqlite"
)

func quietLogger() logrus.FieldLogger {
	l := logrus.New()
	l.SetLevel(logrus.WarnLevel)
	l.SetOutput(os.Stderr)
	return l
}

func newStore(t testing.TB) store.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), sqlite.Options{Path: filepath.Join(t.TempDir(), "store.db"), Logger: quietLogger(), Synchronous: "NORMAL"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func addEntity(t testing.TB, st store.Store, id string) {
	t.Helper()
	src, _ := json.Marshal(map[string]any{"name": "Comune di " + id, "kind": "comune"})
	_, err := st.Put(context.Background(), store.TenantScope(id), store.Entities, store.Doc{ID: id, Tenant: id, Source: src}, store.WriteOptions{Refresh: store.RefreshWait})
	require.NoError(t, err)
}

func addDevice(t testing.TB, st store.Store, name, entity, hostname string, cidrs ...string) {
	t.Helper()
	d := Device{Name: name, Entity: entity, Hostname: hostname}
	for _, c := range cidrs {
		p, err := ParseNetwork(c)
		require.NoError(t, err)
		d.Networks = append(d.Networks, p)
	}
	require.NoError(t, AddDevice(context.Background(), st, d))
}

// memSink keeps what it is given; gate, when set, blocks Publish until it
// is closed (a slow sink).
type memSink struct {
	mu     sync.Mutex
	events []event.Event
	gate   chan struct{}
	fail   int // the next fail calls return an error
}

func (m *memSink) Publish(ctx context.Context, evs []event.Event) error {
	if m.gate != nil {
		select {
		case <-m.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail > 0 {
		m.fail--
		return errTest
	}
	m.events = append(m.events, evs...)
	return nil
}

var errTest = &net.OpError{Op: "publish", Err: os.ErrDeadlineExceeded}

func (m *memSink) all() []event.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]event.Event(nil), m.events...)
}

// waitEvents waits until the sink holds at least n events.
func (m *memSink) waitEvents(t testing.TB, n int) []event.Event {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		evs := m.all()
		if len(evs) >= n {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("sink has %d events, want %d", len(evs), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// running starts s and stops it (gracefully) at the end of the test; stop
// stops it earlier and returns Run's error.
type running struct {
	s      *Server
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

func start(t testing.TB, o Options) *running {
	t.Helper()
	if o.Logger == nil {
		o.Logger = quietLogger()
	}
	if o.BatchDelay == 0 {
		o.BatchDelay = 20 * time.Millisecond
	}
	s, err := New(o)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{s: s, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Run(ctx) }()
	t.Cleanup(func() { require.NoError(t, r.stop()) })
	return r
}

func (r *running) stop() error {
	r.once.Do(func() { r.cancel(); r.err = <-r.done })
	return r.err
}

// value reads a counter or gauge.
func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

// received returns csirt_syslog_received_messages_total for a transport.
func (r *running) received(tr string) float64 {
	return value(r.s.m.received.WithLabelValues(tr))
}

func (r *running) dropped(tr, reason string) float64 {
	return value(r.s.m.dropped.WithLabelValues(tr, reason))
}

// waitFor polls cond for up to 20 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// dialFrom connects to addr from a chosen loopback source address
// (127.0.0.0/8 is all loopback on Linux).
func dialFrom(t testing.TB, network, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	switch network {
	case "udp":
		d.LocalAddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(src), 0))
	default:
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(src), 0))
	}
	c, err := d.Dial(network, addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// testPKI is a CA with a server certificate for 127.0.0.1/localhost and a
// client certificate, written as PEM files under dir.
type testPKI struct {
	dir                   string
	caPool                *x509.CertPool
	server, client        tls.Certificate
	caFile                string
	serverCert, serverKey string
	clientCert, clientKey string
}

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "syslogin test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	p := &testPKI{dir: dir, caPool: x509.NewCertPool()}
	p.caPool.AddCert(ca)
	p.caFile = writePEM(t, dir, "ca.pem", "CERTIFICATE", caDER)
	issue := func(name string, serial int64, usage x509.ExtKeyUsage) (tls.Certificate, string, string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), DNSNames: []string{name},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		require.NoError(t, err)
		kder, err := x509.MarshalECPrivateKey(key)
		require.NoError(t, err)
		cf := writePEM(t, dir, name+".pem", "CERTIFICATE", der)
		kf := writePEM(t, dir, name+"-key.pem", "EC PRIVATE KEY", kder)
		cert, err := tls.LoadX509KeyPair(cf, kf)
		require.NoError(t, err)
		return cert, cf, kf
	}
	p.server, p.serverCert, p.serverKey = issue("localhost", 2, x509.ExtKeyUsageServerAuth)
	p.client, p.clientCert, p.clientKey = issue("fw1.example", 3, x509.ExtKeyUsageClientAuth)
	return p
}

func writePEM(t testing.TB, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
	return path
}
