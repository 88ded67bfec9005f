package netsum

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/agents/internal/seq"
	"github.com/csirt-toscana/platform/agents/internal/ship"
	"github.com/csirt-toscana/platform/agents/internal/source"
	"github.com/csirt-toscana/platform/agents/internal/spool"
	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/bus/bustest"
	"github.com/csirt-toscana/platform/internal/envelope"
	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/testenv"
)

// TestLiveCaptureToKafka runs the capture source inside the agent's
// shipping pipeline (batcher, spool, shipper) against the real Kafka and
// reads the signed batches back: the http summary of a curl arrives with
// its fields.
func TestLiveCaptureToKafka(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		testenv.Unavailable(t, "needs curl (deploy/dev/packages installs it)")
	}
	brokers := testenv.Kafka(t)
	lab := newNetnsLab(t)
	srv := &http.Server{Addr: lab.HostIP + ":8080", ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })}
	ln, err := net.Listen("tcp4", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	opts := bus.Options{Brokers: []string{brokers}}
	topic := bustest.Unique(t, "netsum-raw")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := bus.EnsureTopics(ctx, opts, []bus.TopicSpec{{Name: topic, Partitions: 1, ReplicationFactor: 1}}); err != nil {
		t.Fatal(err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := envelope.NewEd25519Signer("k1", priv)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sq, err := seq.Open(dir+"/seq", seq.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(dir+"/spool", spool.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sp.Close() }()
	prod, err := bus.NewProducer(bus.ProducerOptions{Options: opts, MaxAttempts: 1, WriteTimeout: 5 * time.Second, BatchTimeout: 2 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = prod.Close() }()
	src, err := NewLive("capture", CaptureConfig{Interface: lab.HostIf}, source.Deps{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	pipe, err := ship.NewPipeline(ship.PipelineOptions{
		Sources: []source.Source{src},
		Batcher: ship.BatcherOptions{AgentID: "agent-netsum", EntityID: "comune-test", Signer: signer, Sequencer: sq, Spool: sp, Linger: 50 * time.Millisecond},
		Shipper: ship.ShipperOptions{Queue: sp, Producer: prod, AgentID: "agent-netsum", Topic: topic},
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- pipe.Run(runCtx) }()
	for src.Status()[0].State != source.StateReading {
		if ctx.Err() != nil {
			t.Fatal("capture did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	run(t, "ip", "netns", "exec", lab.NS, "curl", "-sS", "--max-time", "5", "-A", "netsum-kafka/1", "http://"+lab.HostIP+":8080/kafka-check")

	c, err := bus.NewConsumer(bus.ConsumerOptions{Options: opts, GroupID: bustest.Unique(t, "netsum-check"), Topics: []string{topic}, SessionTimeout: 6 * time.Second, MaxWait: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	resolve := func(agentID, keyID string) (envelope.Verifier, error) {
		if agentID != "agent-netsum" || keyID != "k1" {
			return nil, fmt.Errorf("%w: unknown agent %q", envelope.ErrBadSignature, agentID)
		}
		return envelope.NewEd25519Verifier(pub)
	}
	var found event.Event
	for found == nil {
		m, err := c.Fetch(ctx)
		if err != nil {
			t.Fatalf("no http summary arrived in Kafka: %v", err)
		}
		b, err := envelope.Open(m.Value, resolve)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range b.Records {
			if r.Kind != envelope.KindSummary {
				t.Fatalf("record of kind %v", r.Kind)
			}
			e, err := event.Decode(r.Data)
			if err != nil {
				t.Fatal(err)
			}
			if e.Dataset() == "http" && e.String("url.path") == "/kafka-check" {
				found = e
			}
		}
	}
	stop()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"http.request.method": "GET", "user_agent.original": "netsum-kafka/1",
		"http.response.status_code": "200", "source.ip": lab.PeerIP, "destination.ip": lab.HostIP} {
		if got := found.String(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
}
