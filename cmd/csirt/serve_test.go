package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/csirt-toscana/platform/collector"
	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/envelope"
	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/sqlite"
)

// binary builds csirt once for the integration tests of this package.
func binary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "csirt")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "building csirt: %s", out)
	return bin
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

type node struct {
	cmd  *exec.Cmd
	log  *strings.Builder
	http string
}

// start runs `csirt serve` on the given data dir and waits for /healthz. It
// reports how long the start took (a measurement, not an assertion: see
// docs/PERFORMANCE.md).
func start(t *testing.T, bin, dataDir, cfg, httpAddr string) *node {
	t.Helper()
	n := &node{log: &strings.Builder{}, http: httpAddr}
	n.cmd = exec.Command(bin, "serve", "--config", cfg, "--data-dir", dataDir, "--listen", httpAddr)
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	require.NoError(t, n.cmd.Start())
	t.Cleanup(func() { _ = n.cmd.Process.Kill(); _ = n.cmd.Wait() })
	waitHealthy(t, n)
	return n
}

// waitHealthy waits for the node's /healthz and logs how long it took.
func waitHealthy(t *testing.T, n *node) {
	t.Helper()
	began := time.Now()
	httpAddr := n.http
	deadline := time.Now().Add(2 * time.Minute)
	for {
		res, err := http.Get("http://" + httpAddr + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("csirt serve did not answer /healthz within 2 minutes; its log:\n%s", n.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%s answered /healthz %s after start", "csirt "+n.cmd.Args[1], time.Since(began).Round(time.Millisecond))
}

// stop sends SIGTERM and waits for a clean exit.
func (n *node) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, n.cmd.Process.Signal(syscall.SIGTERM))
	done := make(chan error, 1)
	go func() { done <- n.cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err, "csirt serve exit after SIGTERM; log:\n%s", n.log)
	case <-time.After(time.Minute):
		t.Fatalf("csirt serve did not stop within a minute of SIGTERM; log:\n%s", n.log)
	}
	require.Contains(t, n.log.String(), " stopped")
}

func TestServeRestartKeepsData(t *testing.T) {
	bin := binary(t)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	brokerAddr := freePort(t)
	cfg := filepath.Join(dir, "csirt.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf("bus:\n  embedded:\n    listen: %s\nintake:\n  listen: %s\n", brokerAddr, freePort(t))), 0o600))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// First run: healthy, ready, console page served; write to the broker.
	n := start(t, bin, dataDir, cfg, freePort(t))
	var ready struct {
		Ready  bool              `json:"ready"`
		Checks map[string]string `json:"checks"`
	}
	res, err := http.Get("http://" + n.http + "/readyz")
	require.NoError(t, err)
	require.NoError(t, json.NewDecoder(res.Body).Decode(&ready))
	res.Body.Close()
	require.True(t, ready.Ready, "readyz: %+v", ready.Checks)
	require.Contains(t, ready.Checks, "bus")
	require.Contains(t, ready.Checks, "store")

	res, err = http.Get("http://" + n.http + "/")
	require.NoError(t, err)
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	require.Contains(t, string(page), "Il nodo è attivo.")
	require.Contains(t, string(page), "broker integrato "+brokerAddr)

	opts := bus.Options{Brokers: []string{brokerAddr}}
	p, err := bus.NewProducer(bus.ProducerOptions{Options: opts})
	require.NoError(t, err)
	const total = 500
	msgs := make([]bus.Message, total)
	for i := range msgs {
		msgs[i] = bus.Message{Topic: bus.TopicEvents, Key: []byte(fmt.Sprintf("e%d", i%7)), Value: []byte(fmt.Sprintf("event-%d", i))}
	}
	require.NoError(t, p.Produce(ctx, msgs...))
	require.NoError(t, p.Close())
	n.stop(t)

	// Between runs, write a document into the node's store and enrol an
	// agent of that entity.
	s, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(dataDir, "store.db")})
	require.NoError(t, err)
	_, err = s.Put(ctx, store.TenantScope("comune-prato"), store.Entities,
		store.Doc{ID: "comune-prato", Tenant: "comune-prato", Source: json.RawMessage(`{"name":"Comune di Prato"}`)}, store.WriteOptions{})
	require.NoError(t, err)
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	der, err := x509.MarshalPKIXPublicKey(pub)
	require.NoError(t, err)
	require.NoError(t, collector.RegisterAgent(ctx, s, collector.Agent{AgentID: "agent-web01", EntityID: "comune-prato",
		Hostname: "web01", Algorithm: envelope.Ed25519.String(), KeyID: "k1",
		PublicKey: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}))
	require.NoError(t, s.Close())

	// Second run on the same data: the broker still has every message.
	n = start(t, bin, dataDir, cfg, freePort(t))
	c, err := bus.NewConsumer(bus.ConsumerOptions{Options: opts, GroupID: "restart-check", Topics: []string{bus.TopicEvents}})
	require.NoError(t, err)
	seen := map[string]bool{}
	for len(seen) < total {
		m, err := c.Fetch(ctx)
		require.NoError(t, err, "after %d of %d messages", len(seen), total)
		seen[string(m.Value)] = true
	}
	require.NoError(t, c.Close())

	// The collector role verifies a signed batch of that agent and
	// publishes its records as parsed events, keyed by the entity.
	signer, err := envelope.NewEd25519Signer("k1", priv)
	require.NoError(t, err)
	b := &envelope.Batch{AgentID: "agent-web01", EntityID: "comune-prato", StreamID: "/var/log/auth.log", FirstSeq: 1, Created: time.Now()}
	for i := 0; i < 3; i++ {
		b.Records = append(b.Records, envelope.Record{Time: time.Now(), Kind: envelope.KindRawLine,
			Data: []byte(fmt.Sprintf("Nov 22 10:00:0%d web01 sshd[4%d]: Failed password for root from 203.0.113.9 port 5000%d ssh2", i, i, i))})
	}
	raw, err := envelope.Seal(b, signer)
	require.NoError(t, err)
	p, err = bus.NewProducer(bus.ProducerOptions{Options: opts})
	require.NoError(t, err)
	require.NoError(t, p.Produce(ctx, bus.Message{Topic: bus.TopicRaw, Key: []byte("agent-web01"), Value: raw}))
	require.NoError(t, p.Close())
	c, err = bus.NewConsumer(bus.ConsumerOptions{Options: opts, GroupID: "events-check", Topics: []string{bus.TopicEvents}})
	require.NoError(t, err)
	parsed := 0
	for parsed < 3 {
		m, err := c.Fetch(ctx)
		require.NoError(t, err)
		if !strings.HasPrefix(string(m.Value), "event-") {
			require.Equal(t, "comune-prato", string(m.Key))
			require.Contains(t, string(m.Value), `"dataset":"sshd"`)
			require.Contains(t, string(m.Value), `"ip":"203.0.113.9"`)
			parsed++
		}
	}
	require.NoError(t, c.Close())
	n.stop(t)

	// And the store kept its document through a run of the node.
	s, err = sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(dataDir, "store.db")})
	require.NoError(t, err)
	d, err := s.Get(ctx, store.TenantScope("comune-prato"), store.Entities, "comune-prato")
	require.NoError(t, err)
	require.Contains(t, string(d.Source), "Comune di Prato")
	found, err := s.Search(ctx, store.TenantScope("comune-prato"), store.Events, store.SearchRequest{Query: "event.dataset:sshd AND source.ip:203.0.113.9"})
	require.NoError(t, err)
	require.EqualValues(t, 3, found.Total, "the collector archived the batch's events")
	require.NoError(t, s.Close())
}

func TestServeBadConfig(t *testing.T) {
	bin := binary(t)
	cfg := filepath.Join(t.TempDir(), "bad.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("store:\n  backend: mongodb\n"), 0o600))
	out, err := exec.Command(bin, "serve", "--config", cfg).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "key store.backend")
	require.Contains(t, string(out), "bad.yml")

	out, err = exec.Command(bin, "config", "check", cfg).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), `key store.backend: "mongodb" is not sqlite or elasticsearch`)
}
