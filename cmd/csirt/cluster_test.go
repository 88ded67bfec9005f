package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/csirt-toscana/platform/collector"
	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/envelope"
	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/elastic"
	"github.com/csirt-toscana/platform/internal/testenv"
)

// TestClusterCollectorRole runs `csirt collector` alone against the real
// Kafka and Elasticsearch: a signed batch of an enrolled agent becomes
// parsed events in Elasticsearch, in the agent's tenant only.
func TestClusterCollectorRole(t *testing.T) {
	kafka := testenv.Kafka(t)
	esURL := testenv.Elasticsearch(t)
	bin := binary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// Data streams cannot be deleted on the dev node: a stable prefix,
	// and a fresh entity per run to tell this run's events apart.
	const prefix = "csirt-it-cluster"
	entity := fmt.Sprintf("comune-it-%d", time.Now().UnixNano())
	zero := 0
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	st, err := elastic.Open(ctx, elastic.Options{Addresses: []string{esURL}, IndexPrefix: prefix, Replicas: &zero, Logger: quiet})
	require.NoError(t, err)
	defer st.Close()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	der, err := x509.MarshalPKIXPublicKey(pub)
	require.NoError(t, err)
	agentID := "agent-" + entity
	require.NoError(t, collector.RegisterAgent(ctx, st, collector.Agent{AgentID: agentID, EntityID: entity,
		Hostname: "mail01", Algorithm: envelope.Ed25519.String(), KeyID: "k1",
		PublicKey: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}))
	require.NoError(t, st.Refresh(ctx, store.Agents))

	cfg := filepath.Join(t.TempDir(), "cluster.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`bus:
  brokers: [%s]
  topics:
    partitions: 3
store:
  backend: elasticsearch
  elasticsearch:
    addresses: [%s]
    index_prefix: %s
    replicas: 0
intake:
  listen: ""
`, kafka, esURL, prefix)), 0o600))
	httpAddr := freePort(t)
	cmd := exec.Command(bin, "collector", "--config", cfg, "--listen", httpAddr, "--data-dir", t.TempDir())
	n := &node{cmd: cmd, log: &strings.Builder{}, http: httpAddr}
	cmd.Stdout, cmd.Stderr = n.log, n.log
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitHealthy(t, n)

	signer, err := envelope.NewEd25519Signer("k1", priv)
	require.NoError(t, err)
	b := &envelope.Batch{AgentID: agentID, EntityID: entity, StreamID: "/var/log/mail.log", FirstSeq: 1, Created: time.Now()}
	for i := 0; i < 5; i++ {
		b.Records = append(b.Records, envelope.Record{Time: time.Now(), Kind: envelope.KindRawLine,
			Data: []byte(fmt.Sprintf("Nov 22 10:00:0%d mail01 dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<u%d>, method=PLAIN, rip=198.51.100.7, lip=10.0.0.5, TLS, session=<s%d>", i, i, i))})
	}
	raw, err := envelope.Seal(b, signer)
	require.NoError(t, err)
	p, err := bus.NewProducer(bus.ProducerOptions{Options: bus.Options{Brokers: []string{kafka}}})
	require.NoError(t, err)
	require.NoError(t, p.Produce(ctx, bus.Message{Topic: bus.TopicRaw, Key: []byte(agentID), Value: raw}))
	require.NoError(t, p.Close())

	var total int64
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		require.NoError(t, st.Refresh(ctx, store.Events))
		res, err := st.Search(ctx, store.TenantScope(entity), store.Events, store.SearchRequest{Query: "event.dataset:dovecot AND source.ip:198.51.100.7"})
		require.NoError(t, err)
		if total = res.Total; total >= 5 {
			break
		}
	}
	require.EqualValues(t, 5, total, "events in Elasticsearch for %s; collector log:\n%s", entity, n.log)
	other, err := st.Search(ctx, store.TenantScope(entity+"-other"), store.Events, store.SearchRequest{Query: "source.ip:198.51.100.7"})
	require.NoError(t, err)
	require.Zero(t, other.Total, "another tenant sees the entity's events")
	n.stop(t)
	require.Contains(t, n.log.String(), "csirt collector stopped")
}
