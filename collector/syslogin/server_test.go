package syslogin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/store"
)

const sshdLine = "Failed password for invalid user admin from 203.0.113.7 port 50022 ssh2"

func rfc5424(host, msg string) string {
	return fmt.Sprintf("<38>1 2026-11-20T10:00:00.123Z %s sshd 4242 - - %s", host, msg)
}

// byDataset returns the events whose event.original contains s.
func containing(evs []event.Event, s string) []event.Event {
	var out []event.Event
	for _, e := range evs {
		if strings.Contains(e.String("event.original"), s) {
			out = append(out, e)
		}
	}
	return out
}

func TestRegistry(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	addEntity(t, st, "comune-a")
	addEntity(t, st, "comune-b")
	addDevice(t, st, "net-a", "comune-a", "", "10.1.0.0/16")
	addDevice(t, st, "fw-a", "comune-a", "fw1", "10.1.2.0/24", "2001:db8::/64")
	addDevice(t, st, "nas-b", "comune-b", "nas", "10.1.2.9")

	// Refusals.
	p24, _ := ParseNetwork("10.1.2.0/24")
	err := AddDevice(ctx, st, Device{Name: "dup-net", Entity: "comune-b", Networks: []netip.Prefix{p24}})
	require.ErrorContains(t, err, "already registered for device fw-a")
	err = AddDevice(ctx, st, Device{Name: "fw-a", Entity: "comune-b", Networks: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
	require.ErrorIs(t, err, ErrDeviceExists)
	err = AddDevice(ctx, st, Device{Name: "x", Entity: "nosuch", Networks: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
	require.ErrorIs(t, err, ErrUnknownEntity)
	require.Error(t, AddDevice(ctx, st, Device{Name: "bad name", Entity: "comune-a", Networks: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}))
	require.Error(t, AddDevice(ctx, st, Device{Name: "nonet", Entity: "comune-a"}))

	r := NewRegistry(st, RegistryOptions{})
	require.NoError(t, r.Load(ctx))
	require.Equal(t, 3, r.Len())
	for addr, want := range map[string]string{
		"10.1.2.9": "nas-b", "10.1.2.10": "fw-a", "10.1.3.1": "net-a", "::ffff:10.1.2.10": "fw-a",
		"2001:db8::1": "fw-a", "10.2.0.1": "", "2001:db8:1::1": "",
	} {
		d, ok := r.Lookup(ctx, netip.MustParseAddr(addr))
		require.Equal(t, want != "", ok, addr)
		require.Equal(t, want, d.Name, addr)
	}
	d, _ := r.Lookup(ctx, netip.MustParseAddr("10.1.2.9"))
	require.Equal(t, "comune-b", d.Entity)
	require.Equal(t, "nas", d.Hostname)

	list, err := ListDevices(ctx, st, "comune-a")
	require.NoError(t, err)
	require.Len(t, list, 2)
	require.Equal(t, "fw-a", list[0].Name)
	require.Equal(t, StatusRegistered, list[0].Status)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.1.2.0/24"), netip.MustParsePrefix("2001:db8::/64")}, list[0].Networks)

	// A device added after the load is found on a miss (reload at most once
	// per MissReload; the first miss above already spent this period).
	addEntity(t, st, "comune-c")
	addDevice(t, st, "sw-c", "comune-c", "", "192.0.2.0/24")
	now := time.Now()
	clock := func() time.Time { return now }
	r2 := NewRegistry(st, RegistryOptions{Now: clock, MissReload: time.Minute})
	_, ok := r2.Lookup(ctx, netip.MustParseAddr("192.0.2.1")) // first miss: loads
	require.True(t, ok)
	_, err = RemoveDevice(ctx, st, "sw-c")
	require.NoError(t, err)
	_, ok = r2.Lookup(ctx, netip.MustParseAddr("198.51.100.1")) // a miss within the minute: no reload
	require.False(t, ok)
	_, ok = r2.Lookup(ctx, netip.MustParseAddr("192.0.2.1")) // still in the table until a reload
	require.True(t, ok)
	require.NoError(t, r2.Load(ctx))
	_, ok = r2.Lookup(ctx, netip.MustParseAddr("192.0.2.1"))
	require.False(t, ok)
	_, err = RemoveDevice(ctx, st, "sw-c")
	require.ErrorIs(t, err, ErrUnknownDevice)
}

// TestUDPAndTCP sends the same sshd line over UDP, TCP with octet counting
// and TCP with newline framing from a registered address.
func TestUDPAndTCP(t *testing.T) {
	st := newStore(t)
	addEntity(t, st, "comune-a")
	addDevice(t, st, "fw-a", "comune-a", "fw1", "127.0.0.1/32")
	sink := &memSink{}
	r := start(t, Options{UDPListen: "127.0.0.1:0", TCPListen: "127.0.0.1:0", Store: st, Sink: sink})

	line := rfc5424("fwhost", sshdLine)
	u := dialFrom(t, "udp", "127.0.0.1", r.s.UDPAddr().String())
	_, err := u.Write([]byte(line))
	require.NoError(t, err)
	_, err = u.Write([]byte(line)) // the same line again: a second event
	require.NoError(t, err)
	oc := dialFrom(t, "tcp", "127.0.0.1", r.s.TCPAddr().String())
	_, err = io.WriteString(oc, octet(line, line))
	require.NoError(t, err)
	nc := dialFrom(t, "tcp", "127.0.0.1", r.s.TCPAddr().String())
	_, err = io.WriteString(nc, line+"\n"+line+"\n")
	require.NoError(t, err)

	evs := sink.waitEvents(t, 6)
	require.Len(t, evs, 6)
	ids := map[string]bool{}
	for _, e := range evs {
		require.NoError(t, e.Validate(), "%v", e)
		require.Equal(t, "sshd", e.Dataset())
		require.Equal(t, "comune-a", e.Org())
		require.Equal(t, "fw1", e.String("host.name"))
		require.Equal(t, "fwhost", e.String("log.syslog.hostname"))
		require.Equal(t, "syslog:fw-a", e.String("agent.id"))
		require.Equal(t, "203.0.113.7", e.String("source.ip"))
		require.Equal(t, "admin", e.String("user.name"))
		require.Equal(t, "127.0.0.1", e.String("observer.ip"))
		require.Equal(t, "fw-a", e.String("observer.name"))
		require.Equal(t, time.Date(2026, 11, 20, 10, 0, 0, 123e6, time.UTC), e.Time())
		require.Equal(t, line, e.String("event.original"))
		ids[e.ID()] = true
	}
	require.Len(t, ids, 6, "identical lines must be distinct events")
	require.Equal(t, float64(2), r.received(UDP))
	require.Equal(t, float64(4), r.received(TCP))

	// Graceful stop writes the device's last_seen.
	require.NoError(t, r.stop())
	list, err := ListDevices(context.Background(), st, "comune-a")
	require.NoError(t, err)
	require.Equal(t, StatusActive, list[0].Status)
	require.False(t, list[0].LastSeen.IsZero())
	require.WithinDuration(t, time.Now(), list[0].LastSeen, time.Minute)
}

func TestEventIDDeterministic(t *testing.T) {
	st := newStore(t)
	addEntity(t, st, "comune-a")
	addDevice(t, st, "fw-a", "comune-a", "", "127.0.0.1/32")
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	mk := func() *Server {
		s, err := New(Options{UDPListen: "127.0.0.1:0", Store: st, Sink: &memSink{}, Now: func() time.Time { return at }})
		require.NoError(t, err)
		t.Cleanup(s.Close)
		require.NoError(t, s.Devices().Load(context.Background()))
		return s
	}
	from := netip.MustParseAddrPort("127.0.0.1:5000")
	raw := []byte(rfc5424("h", sshdLine))
	e1, ok := mk().process(context.Background(), UDP, from, raw, false)
	require.True(t, ok)
	s2 := mk()
	e2, _ := s2.process(context.Background(), UDP, from, raw, false)
	e3, _ := s2.process(context.Background(), UDP, from, raw, false)
	require.Equal(t, e1.ID(), e2.ID(), "same record, source and receive time: same id")
	require.NotEqual(t, e2.ID(), e3.ID(), "a second identical message is a second event")
	// The host falls back to the syslog HOSTNAME when the device names none.
	require.Equal(t, "h", e1.String("host.name"))
}

func TestOversizedMessage(t *testing.T) {
	st := newStore(t)
	addEntity(t, st, "comune-a")
	addDevice(t, st, "fw-a", "comune-a", "", "127.0.0.1/32")
	sink := &memSink{}
	r := start(t, Options{UDPListen: "127.0.0.1:0", TCPListen: "127.0.0.1:0", Store: st, Sink: sink, MaxMessageBytes: 600})
	long := rfc5424("h", sshdLine+" "+strings.Repeat("A", 3000))
	u := dialFrom(t, "udp", "127.0.0.1", r.s.UDPAddr().String())
	_, err := u.Write([]byte(long))
	require.NoError(t, err)
	c := dialFrom(t, "tcp", "127.0.0.1", r.s.TCPAddr().String())
	_, err = io.WriteString(c, octet(long)+octet(rfc5424("h", "short one"))+"")
	require.NoError(t, err)
	c2 := dialFrom(t, "tcp", "127.0.0.1", r.s.TCPAddr().String())
	_, err = io.WriteString(c2, long+"\n"+rfc5424("h", "short two")+"\n")
	require.NoError(t, err)

	evs := sink.waitEvents(t, 5)
	cut := containing(evs, "AAAA")
	require.Len(t, cut, 3)
	for _, e := range cut {
		require.Contains(t, e.Strings("tags"), TagTruncated)
		require.Equal(t, long[:600], e.String("event.original"))
		require.Equal(t, "sshd", e.Dataset())
		require.Equal(t, "203.0.113.7", e.String("source.ip"))
	}
	for _, s := range []string{"short one", "short two"} {
		ev := containing(evs, s)
		require.Len(t, ev, 1, s)
		require.NotContains(t, ev[0].Strings("tags"), TagTruncated)
	}
	require.Equal(t, float64(1), value(r.s.m.truncated.WithLabelValues(UDP)))
	require.Equal(t, float64(2), value(r.s.m.truncated.WithLabelValues(TCP)))
}

// TestRateLimitPerSource: with a frozen clock the bucket never refills, so
// a flood from one address gets exactly its burst through while another
// address still flows.
func TestRateLimitPerSource(t *testing.T) {
	st := newStore(t)
	addEntity(t, st, "comune-a")
	addDevice(t, st, "lo", "comune-a", "", "127.0.0.0/8")
	sink := &memSink{}
	frozen := time.Now()
	r := start(t, Options{TCPListen: "127.0.0.1:0", UDPListen: "127.0.0.1:0", Store: st, Sink: sink, RatePerSource: 50,
		Now: func() time.Time { return frozen }})

	flood := dialFrom(t, "tcp", "127.0.0.2", r.s.TCPAddr().String())
	var b strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&b, "<13>1 - flood app - - - flood %d\n", i)
	}
	_, err := io.WriteString(flood, b.String())
	require.NoError(t, err)
	waitFor(t, "the flood to be read", func() bool { return r.received(TCP) == 1000 })
	require.Equal(t, float64(900), r.dropped(TCP, DropRateLimit), "burst is twice the rate: 100 pass")

	other := dialFrom(t, "udp", "127.0.0.3", r.s.UDPAddr().String())
	for i := range 20 {
		_, err := fmt.Fprintf(other, "<13>1 - other app - - - other %d", i)
		require.NoError(t, err)
	}
	evs := sink.waitEvents(t, 120)
	require.Len(t, containing(evs, "flood "), 100)
	require.Len(t, containing(evs, "other "), 20)
	require.Equal(t, float64(0), r.dropped(UDP, DropRateLimit))
}

func TestConnectionCap(t *testing.T) {
	st := newStore(t)
	addEntity(t, st, "comune-a")
	addDevice(t, st, "lo", "comune-a", "", "127.0.0.0/8")
	sink := &memSink{}
	r := start(t, Options{TCPListen: "127.0.0.1:0", Store: st, Sink: sink, MaxConnections: 2})
	addr := r.s.TCPAddr().String()
	c1 := dialFrom(t, "tcp", "127.0.0.1", addr)
	c2 := dialFrom(t, "tcp", "127.0.0.1", addr)
	for i, c := range []net.Conn{c1, c2} {
		_, err := fmt.Fprintf(c, "<13>1 - h app - - - conn %d\n", i)
		require.NoError(t, err)
	}
	sink.waitEvents(t, 2) // both connections are being served

	c3 := dialFrom(t, "tcp", "127.0.0.1", addr)
	require.NoError(t, c3.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err := c3.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "the third connection is closed at once")
	require.Equal(t, float64(1), value(r.s.m.connsRefused.WithLabelValues(TCP)))

	require.NoError(t, c1.Close())
	waitFor(t, "a slot to free", func() bool { return value(r.s.m.connsOpen.WithLabelValues(TCP)) == 1 })
	c4 := dialFrom(t, "tcp", "127.0.0.1", addr)
	_, err = io.WriteString(c4, "<13>1 - h app - - - conn 4\n")
	require.NoError(t, err)
	evs := sink.waitEvents(t, 3)
	require.Len(t, containing(evs, "conn 4"), 1)
}

func TestIdleTimeout(t *testing.T) {
	st := newStore(t)
	sink := &memSink{}
	r := start(t, Options{TCPListen: "127.0.0.1:0", Store: st, Sink: sink, IdleTimeout: 100 * time.Millisecond})
	c := dialFrom(t, "tcp", "127.0.0.1", r.s.TCPAddr().String())
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err := c.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "a silent connection is closed by the server")
}

func TestUnknownSource(t *testing.T) {
	st := newStore(t)
	addEntity(t, st, "comune-a")
	addDevice(t, st, "fw-a", "comune-a", "", "127.0.0.1/32")
	sink := &memSink{}
	r := start(t, Options{UDPListen: "127.0.0.1:0", Store: st, Sink: sink})
	u := dialFrom(t, "udp", "127.0.0.9", r.s.UDPAddr().String())
	_, err := u.Write([]byte(rfc5424("stranger", sshdLine)))
	require.NoError(t, err)
	evs := sink.waitEvents(t, 1)
	e := evs[0]
	require.NoError(t, e.Validate())
	require.Equal(t, store.RegionalTenant, e.Org())
	require.Contains(t, e.Strings("tags"), TagUnknownSource)
	require.Equal(t, "stranger", e.String("host.name"))
	require.Equal(t, "127.0.0.9", e.String("observer.ip"))
	require.Equal(t, "syslog:unknown", e.String("agent.id"))
	require.Equal(t, "sshd", e.Dataset())
	require.Equal(t, float64(1), value(r.s.m.unknown.WithLabelValues(UDP)))

	// With DropUnknown the message is counted and dropped.
	sink2 := &memSink{}
	r2 := start(t, Options{UDPListen: "127.0.0.1:0", Store: st, Sink: sink2, DropUnknown: true})
	u2 := dialFrom(t, "udp", "127.0.0.9", r2.s.UDPAddr().String())
	_, err = u2.Write([]byte(rfc5424("stranger", sshdLine)))
	require.NoError(t, err)
	known := dialFrom(t, "udp", "127.0.0.1", r2.s.UDPAddr().String())
	_, err = known.Write([]byte(rfc5424("fw", "known")))
	require.NoError(t, err)
	waitFor(t, "both datagrams", func() bool { return r2.received(UDP) == 2 })
	require.NoError(t, r2.stop())
	require.Len(t, sink2.all(), 1)
	require.Equal(t, "comune-a", sink2.all()[0].Org())
	require.Equal(t, float64(1), r2.dropped(UDP, DropUnknownSource))
}

// TestBackPressure: while the sink is blocked, a TCP sender is slowed
// (nothing is dropped) and UDP messages beyond the queue are dropped and
// counted; once the sink resumes every TCP message arrives.
func TestBackPressure(t *testing.T) {
	st := newStore(t)
	addEntity(t, st, "comune-a")
	addDevice(t, st, "lo", "comune-a", "", "127.0.0.0/8")
	sink := &memSink{gate: make(chan struct{})}
	r := start(t, Options{UDPListen: "127.0.0.1:0", TCPListen: "127.0.0.1:0", Store: st, Sink: sink, QueueSize: 4, BatchSize: 2})
	c := dialFrom(t, "tcp", "127.0.0.1", r.s.TCPAddr().String())
	const n = 200
	written := make(chan error, 1)
	go func() {
		var err error
		for i := 0; i < n && err == nil; i++ {
			_, err = fmt.Fprintf(c, "<13>1 - h app - - - tcp %d\n", i)
		}
		written <- err
	}()
	// The reader stops at queue + batch + the message in hand.
	waitFor(t, "the TCP reader to block", func() bool { return r.received(TCP) >= 7 })
	time.Sleep(50 * time.Millisecond)
	require.Less(t, r.received(TCP), float64(n), "the TCP reader must wait for the sink")

	u := dialFrom(t, "udp", "127.0.0.2", r.s.UDPAddr().String())
	for i := range 50 {
		_, err := fmt.Fprintf(u, "<13>1 - h app - - - udp %d", i)
		require.NoError(t, err)
	}
	waitFor(t, "the datagrams", func() bool { return r.received(UDP) == 50 })
	require.Equal(t, float64(50), r.dropped(UDP, DropQueueFull), "the queue was full: every datagram dropped")

	close(sink.gate)
	require.NoError(t, <-written)
	evs := sink.waitEvents(t, n)
	require.Len(t, containing(evs, "tcp "), n)
	require.Equal(t, float64(0), r.dropped(TCP, DropQueueFull))
}

// TestSinkRetryAndDrain: a failing sink is retried; on shutdown what was
// read is handed over before Run returns.
func TestSinkRetryAndDrain(t *testing.T) {
	st := newStore(t)
	addEntity(t, st, "comune-a")
	addDevice(t, st, "lo", "comune-a", "", "127.0.0.0/8")
	sink := &memSink{fail: 2}
	r := start(t, Options{TCPListen: "127.0.0.1:0", Store: st, Sink: sink, BatchDelay: time.Second, BatchSize: 1000})
	c := dialFrom(t, "tcp", "127.0.0.1", r.s.TCPAddr().String())
	for i := range 10 {
		_, err := fmt.Fprintf(c, "<13>1 - h app - - - drain %d\n", i)
		require.NoError(t, err)
	}
	waitFor(t, "the messages to be read", func() bool { return r.received(TCP) == 10 })
	require.NoError(t, r.stop())
	require.Len(t, containing(sink.all(), "drain "), 10)
	_, err := net.DialTimeout("tcp", r.s.TCPAddr().String(), time.Second)
	require.Error(t, err, "no longer accepting after shutdown")
	require.Equal(t, float64(10), value(r.s.m.published))
}

func TestTLSClientCertificate(t *testing.T) {
	pki := newPKI(t)
	st := newStore(t)
	addEntity(t, st, "comune-a")
	addDevice(t, st, "fw-a", "comune-a", "", "127.0.0.1/32")
	sink := &memSink{}
	handshakes := 0
	getCert := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { handshakes++; return &pki.server, nil }
	r := start(t, Options{TLSListen: "127.0.0.1:0", GetCertificate: getCert, ClientCAs: pki.caPool, Store: st, Sink: sink})
	addr := r.s.TLSAddr().String()

	// Without a client certificate the handshake fails.
	bad, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pki.caPool, ServerName: "localhost", MinVersion: tls.VersionTLS12})
	if err == nil {
		_, _ = io.WriteString(bad, octet(rfc5424("h", "no cert")))
		_, err = bad.Read(make([]byte, 1))
		_ = bad.Close()
	}
	require.Error(t, err)
	waitFor(t, "the handshake error to be counted", func() bool {
		return value(r.s.m.connErrors.WithLabelValues(TLS)) == 1
	})

	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pki.caPool, ServerName: "localhost", Certificates: []tls.Certificate{pki.client}, MinVersion: tls.VersionTLS12})
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, octet(rfc5424("fw", sshdLine)))
	require.NoError(t, err)
	evs := sink.waitEvents(t, 1)
	require.Equal(t, "sshd", evs[0].Dataset())
	require.Equal(t, "comune-a", evs[0].Org())
	require.Equal(t, float64(1), r.received(TLS))
	require.Empty(t, containing(sink.all(), "no cert"))
	require.NoError(t, r.stop())
	require.Equal(t, 2, handshakes, "the certificate is asked for at every handshake")
}

func TestOptionsErrors(t *testing.T) {
	st := newStore(t)
	_, err := New(Options{UDPListen: "127.0.0.1:0", Store: st})
	require.ErrorContains(t, err, "sink")
	_, err = New(Options{Store: st, Sink: &memSink{}})
	require.ErrorContains(t, err, "no listen address")
	_, err = New(Options{TLSListen: "127.0.0.1:0", Store: st, Sink: &memSink{}})
	require.ErrorContains(t, err, "certificate")
	_, err = New(Options{TLSListen: "127.0.0.1:0", CertFile: "/nonexistent.pem", KeyFile: "/nonexistent-key.pem", Store: st, Sink: &memSink{}})
	require.ErrorContains(t, err, "syslog.cert_file")
	s, err := New(Options{TCPListen: "127.0.0.1:0", Store: st, Sink: &memSink{}})
	require.NoError(t, err)
	defer s.Close()
	_, err = New(Options{TCPListen: s.TCPAddr().String(), Store: st, Sink: &memSink{}})
	require.Error(t, err, "a taken port fails in New")
	var oe *net.OpError
	require.True(t, errors.As(err, &oe))
}
