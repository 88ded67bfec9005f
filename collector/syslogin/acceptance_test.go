package syslogin

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/csirt-toscana/platform/collector/eventsink"
	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/testenv"
)

// realSink is the collector's output path as csirt serve wires it
// (collector/eventsink) on a private topic, with helpers to read it back.
type realSink struct {
	*eventsink.Sink
	topic string
	st    store.Store
}

// newRealSink makes a unique topic on the real Kafka and a SQLite store.
func newRealSink(t *testing.T) (*realSink, bus.Options) {
	t.Helper()
	addr := testenv.Kafka(t)
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	opts := bus.Options{Brokers: []string{addr}}
	topic := bus.TopicEvents + ".syslogin-test-" + hex.EncodeToString(rnd[:])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, bus.EnsureTopics(ctx, opts, []bus.TopicSpec{{Name: topic, Partitions: 2}}))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cl := &kafka.Client{Addr: kafka.TCP(addr)}
		if _, err := cl.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{topic}}); err != nil {
			t.Logf("deleting test topic: %v", err)
		}
	})
	prod, err := bus.NewProducer(bus.ProducerOptions{Options: opts, BatchTimeout: 2 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = prod.Close() })
	st := newStore(t)
	s := &realSink{Sink: eventsink.New(prod, topic, st), topic: topic, st: st}
	t.Cleanup(s.Close)
	return s, opts
}

// storedEvents returns the events in the store matching q.
func (s *realSink) storedEvents(t *testing.T, q string) []event.Event {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, s.st.Refresh(ctx, store.Events))
	res, err := s.st.Search(ctx, store.RegionalScope(), store.Events, store.SearchRequest{Query: q, Size: 1000})
	require.NoError(t, err)
	out := make([]event.Event, 0, len(res.Docs))
	for _, d := range res.Docs {
		e, err := event.Decode(d.Source)
		require.NoError(t, err)
		out = append(out, e)
	}
	return out
}

func (s *realSink) waitStored(t *testing.T, q string, n int) []event.Event {
	t.Helper()
	var evs []event.Event
	waitFor(t, fmt.Sprintf("%d stored events matching %q", n, q), func() bool {
		evs = s.storedEvents(t, q)
		return len(evs) >= n
	})
	return evs
}

// kafkaKeys reads every message of the sink's topic and returns their keys.
func (s *realSink) kafkaKeys(t *testing.T, opts bus.Options) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := bus.EndOffsets(ctx, opts, s.topic)
	require.NoError(t, err)
	var keys []string
	for p, end := range ends {
		if end == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: opts.Brokers, Topic: s.topic, Partition: p, MaxWait: 100 * time.Millisecond})
		for i := int64(0); i < end; i++ {
			m, err := r.ReadMessage(ctx)
			require.NoError(t, err)
			keys = append(keys, string(m.Key))
		}
		_ = r.Close()
	}
	sort.Strings(keys)
	return keys
}

func needProgram(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		msg := name + " is not installed: run deploy/dev/packages"
		testenv.Unavailable(t, msg)
	}
	return p
}

// TestLoggerUDPAndTCP: util-linux logger sends RFC 5424 over UDP, over TCP
// (logger frames with a newline by default) and over TCP with
// --octet-count; each line arrives parsed, as an event of the entity whose
// device covers 127.0.0.1, in Kafka and in the store.
func TestLoggerUDPAndTCP(t *testing.T) {
	logger := needProgram(t, "logger")
	sink, busOpts := newRealSink(t)
	addEntity(t, sink.st, "comune-lucca")
	addDevice(t, sink.st, "fw-lucca", "comune-lucca", "fw1.lucca", "127.0.0.1/32")
	r := start(t, Options{UDPListen: "127.0.0.1:0", TCPListen: "127.0.0.1:0", Store: sink.st, Sink: sink, Logger: quietLogger()})
	udpPort := fmt.Sprint(r.s.UDPAddr().(*net.UDPAddr).Port)
	tcpPort := fmt.Sprint(r.s.TCPAddr().(*net.TCPAddr).Port)

	runs := []struct {
		user string
		args []string
	}{
		{"udpuser", []string{"-d", "-P", udpPort}},
		{"tcpuser", []string{"-T", "-P", tcpPort}},
		{"octetuser", []string{"-T", "--octet-count", "-P", tcpPort}},
	}
	for i, run := range runs {
		msg := fmt.Sprintf("Failed password for invalid user %s from 198.51.100.%d port 4%d022 ssh2", run.user, i+10, i)
		args := append([]string{"--rfc5424", "-n", "127.0.0.1", "-t", "sshd", "-p", "auth.info"}, run.args...)
		args = append(args, msg)
		out, err := exec.Command(logger, args...).CombinedOutput()
		require.NoError(t, err, "logger %v: %s", args, out)
	}
	evs := sink.waitStored(t, "event.dataset:sshd", len(runs))
	require.Len(t, evs, len(runs))
	byUser := map[string]event.Event{}
	for _, e := range evs {
		byUser[e.String("user.name")] = e
	}
	for i, run := range runs {
		e, ok := byUser[run.user]
		require.True(t, ok, "no event for %s: %v", run.user, evs)
		require.NoError(t, e.Validate())
		require.Equal(t, "comune-lucca", e.Org())
		require.Equal(t, fmt.Sprintf("198.51.100.%d", i+10), e.String("source.ip"))
		require.Equal(t, "fw1.lucca", e.String("host.name"))
		require.Equal(t, "syslog:fw-lucca", e.String("agent.id"))
		require.Equal(t, "1", e.String("log.syslog.version"), "RFC 5424")
		require.Contains(t, e.Strings("event.category"), "authentication")
		require.Equal(t, "failure", e.String("event.outcome"))
	}
	require.Equal(t, float64(1), r.received(UDP))
	require.Equal(t, float64(2), r.received(TCP))
	require.Equal(t, []string{"comune-lucca", "comune-lucca", "comune-lucca"}, sink.kafkaKeys(t, busOpts))
}

// TestRsyslogTLS: rsyslogd (gtls) receives RFC 3164 lines on a plain TCP
// input and forwards them over TLS (octet-counted RFC 5424, x509/name
// authentication of our certificate, its own client certificate verified
// by our listener); they arrive parsed as events of the device's entity.
func TestRsyslogTLS(t *testing.T) {
	rsyslogd := needProgram(t, "rsyslogd")
	if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so"); err != nil {
		if _, err2 := os.Stat("/usr/lib/rsyslog/lmnsd_gtls.so"); err2 != nil {
			testenv.Unavailable(t, "rsyslog-gnutls is not installed: run deploy/dev/packages")
		}
	}
	sink, busOpts := newRealSink(t)
	pki := newPKI(t)
	addEntity(t, sink.st, "comune-siena")
	addDevice(t, sink.st, "relay-siena", "comune-siena", "", "127.0.0.1/32")
	r := start(t, Options{TLSListen: "127.0.0.1:0", CertFile: pki.serverCert, KeyFile: pki.serverKey, ClientCAs: pki.caPool,
		Store: sink.st, Sink: sink, Logger: quietLogger()})
	tlsPort := r.s.TLSAddr().(*net.TCPAddr).Port

	dir := t.TempDir()
	work := filepath.Join(dir, "work")
	require.NoError(t, os.Mkdir(work, 0o700))
	inPort := freePort(t)
	conf := fmt.Sprintf(`global(workDirectory=%q
  defaultNetstreamDriverCAFile=%q
  defaultNetstreamDriverCertFile=%q
  defaultNetstreamDriverKeyFile=%q
  maxMessageSize="64k")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="%d")
action(type="omfwd" target="127.0.0.1" port="%d" protocol="tcp"
  streamDriver="gtls" streamDriverMode="1" streamDriverAuthMode="x509/name"
  streamDriverPermittedPeers="localhost"
  tcp_framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format"
  action.resumeRetryCount="-1" action.resumeInterval="1")
`, work, pki.caFile, pki.clientCert, pki.clientKey, inPort, tlsPort)
	confFile := filepath.Join(dir, "rsyslog.conf")
	require.NoError(t, os.WriteFile(confFile, []byte(conf), 0o600))
	check, err := exec.Command(rsyslogd, "-N1", "-f", confFile).CombinedOutput()
	require.NoError(t, err, "rsyslogd -N1: %s", check)

	var out bytes.Buffer
	cmd := exec.Command(rsyslogd, "-n", "-f", confFile, "-i", filepath.Join(dir, "rsyslogd.pid"))
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("rsyslogd output:\n%s", out.String())
		}
	})

	var c net.Conn
	waitFor(t, "rsyslogd's TCP input", func() bool {
		c, err = net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", inPort), time.Second)
		return err == nil
	})
	defer c.Close()
	users := []string{"alice", "bob", "carol"}
	for i, u := range users {
		_, err := fmt.Fprintf(c, "<38>Nov 20 10:00:0%d nas-siena sshd[%d]: Failed password for %s from 192.0.2.%d port 5%d000 ssh2\n", i, 100+i, u, 20+i, i)
		require.NoError(t, err)
	}
	evs := sink.waitStored(t, "event.dataset:sshd", len(users))
	require.Len(t, evs, len(users))
	got := map[string]event.Event{}
	for _, e := range evs {
		got[e.String("user.name")] = e
	}
	for i, u := range users {
		e, ok := got[u]
		require.True(t, ok, "no event for %s", u)
		require.NoError(t, e.Validate())
		require.Equal(t, "comune-siena", e.Org())
		require.Equal(t, fmt.Sprintf("192.0.2.%d", 20+i), e.String("source.ip"))
		require.Equal(t, "nas-siena", e.String("host.name"), "the syslog HOSTNAME when the device names no host")
		require.Equal(t, fmt.Sprint(100+i), e.String("log.syslog.procid"))
		require.Equal(t, "1", e.String("log.syslog.version"), "forwarded as RFC 5424")
		require.True(t, strings.HasPrefix(e.String("event.original"), "<38>1 "), e.String("event.original"))
	}
	require.Equal(t, float64(len(users)), r.received(TLS))
	require.Equal(t, []string{"comune-siena", "comune-siena", "comune-siena"}, sink.kafkaKeys(t, busOpts))
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return port
}
