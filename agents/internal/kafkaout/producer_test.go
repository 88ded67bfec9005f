package kafkaout

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/testenv"
)

func TestOptionsRejected(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"no broker", Options{}, "no broker"},
		{"bad address", Options{Brokers: []string{"kafka"}}, "not host:port"},
		{"bad compression", Options{Brokers: []string{"k:9093"}, Compression: "brotli"}, "unknown compression"},
	} {
		_, err := New(tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to mention %q", tc.name, err, tc.want)
		}
	}
	for _, c := range []bus.Compression{"", "ZSTD", "lz4", "snappy", "gzip", "none"} {
		if _, err := New(Options{Brokers: []string{"k:9093"}, Compression: c}); err != nil {
			t.Errorf("compression %q: %v", c, err)
		}
	}
}

func TestProduceWithoutTopicOrAfterClose(t *testing.T) {
	p, err := New(Options{Brokers: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Produce(t.Context()); err != nil {
		t.Fatalf("nothing to send: %v", err)
	}
	if err := p.Produce(t.Context(), bus.Message{Value: []byte("x")}); err == nil || !strings.Contains(err.Error(), "no topic") {
		t.Fatalf("message without topic: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Produce(t.Context(), bus.Message{Topic: "t", Value: []byte("x")}); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestUnreachableBroker(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePorts(t, 1)[0])
	p, err := New(Options{Brokers: []string{addr}, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	err = p.Produce(t.Context(), bus.Message{Topic: "t", Key: []byte("k"), Value: []byte("x")})
	if err == nil || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "bootstrap") {
		t.Fatalf("error %v, want one naming the bootstrap broker %s", err, addr)
	}
}

// topicName is a fresh topic of this package's tests.
func topicName(t *testing.T) string {
	return fmt.Sprintf("kafkaout-test-%s-%d", strings.NewReplacer("/", "-").Replace(strings.ToLower(t.Name())), rand.Uint64()) //nolint:gosec // G404: a test topic name
}

// readAll reads every record of topic (partitions 0..n-1) until want
// records arrived or ctx ends; it returns partition -> records.
func readAll(ctx context.Context, t *testing.T, broker, topic string, parts, want int) map[int][]kafka.Message {
	t.Helper()
	var mu sync.Mutex
	got := map[int][]kafka.Message{}
	total := 0
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for part := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{broker}, Topic: topic, Partition: part, MaxWait: 50 * time.Millisecond})
			defer r.Close()
			for {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					return
				}
				mu.Lock()
				got[part] = append(got[part], m)
				total++
				if total >= want {
					cancel()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return got
}

// TestPlacementLikeBusProducer writes the same keys with this producer and
// with internal/bus's (kafka-go's Writer, Murmur2) over mutual TLS and
// checks both put every key on the same partition, in order, with every
// codec.
func TestPlacementLikeBusProducer(t *testing.T) {
	plain := testenv.Kafka(t)
	mtls, tlsConf := testenv.KafkaMTLS(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	const parts = 5
	for _, codec := range []bus.Compression{bus.CompressionZstd, bus.CompressionLZ4, bus.CompressionNone} {
		t.Run(string(codec), func(t *testing.T) {
			topic := topicName(t)
			if err := bus.EnsureTopics(ctx, bus.Options{Brokers: []string{plain}}, []bus.TopicSpec{{Name: topic, Partitions: parts}}); err != nil {
				t.Fatal(err)
			}
			ours, err := New(Options{Brokers: []string{mtls}, TLS: tlsConf, Compression: codec})
			if err != nil {
				t.Fatal(err)
			}
			defer ours.Close()
			theirs, err := bus.NewProducer(bus.ProducerOptions{Options: bus.Options{Brokers: []string{mtls}, TLS: tlsConf}, Compression: codec})
			if err != nil {
				t.Fatal(err)
			}
			defer theirs.Close()
			const keys, perKey = 12, 5
			var msgs []bus.Message
			for i := range perKey {
				for k := range keys {
					msgs = append(msgs, bus.Message{Topic: topic, Key: fmt.Appendf(nil, "agent-%02d", k), Value: fmt.Appendf(nil, "%d", i),
						Headers: []bus.Header{{Key: bus.HeaderSchema, Value: []byte("1.0")}}})
				}
			}
			// Ours in two calls (one of several partitions, one of one
			// message), the bus producer's copy under a different value
			// prefix.
			if err := ours.Produce(ctx, msgs[:len(msgs)-1]...); err != nil {
				t.Fatal(err)
			}
			if err := ours.Produce(ctx, msgs[len(msgs)-1]); err != nil {
				t.Fatal(err)
			}
			theirMsgs := make([]bus.Message, len(msgs))
			for i, m := range msgs {
				m.Value = append([]byte("bus-"), m.Value...)
				theirMsgs[i] = m
			}
			if err := theirs.Produce(ctx, theirMsgs...); err != nil {
				t.Fatal(err)
			}
			got := readAll(ctx, t, plain, topic, parts, 2*len(msgs))
			oursAt, theirsAt := map[string]int{}, map[string]int{}
			order := map[string][]string{}
			n, used := 0, 0
			for part, ms := range got {
				if len(ms) > 0 {
					used++
				}
				for _, m := range ms {
					n++
					if h := m.Headers; len(h) != 1 || h[0].Key != bus.HeaderSchema || string(h[0].Value) != "1.0" {
						t.Errorf("headers %v", h)
					}
					if strings.HasPrefix(string(m.Value), "bus-") {
						theirsAt[string(m.Key)] = part
						continue
					}
					if p, ok := oursAt[string(m.Key)]; ok && p != part {
						t.Errorf("key %s on partitions %d and %d", m.Key, p, part)
					}
					oursAt[string(m.Key)] = part
					order[string(m.Key)] = append(order[string(m.Key)], string(m.Value))
				}
			}
			if n != 2*len(msgs) {
				t.Fatalf("read %d records, want %d", n, 2*len(msgs))
			}
			if used < 2 {
				t.Fatalf("%d keys all on one partition: the test shows nothing", keys)
			}
			for k, p := range theirsAt {
				if oursAt[k] != p {
					t.Errorf("key %s: partition %d here, %d with the bus producer", k, oursAt[k], p)
				}
			}
			for k, vs := range order {
				if strings.Join(vs, ",") != "0,1,2,3,4" {
					t.Errorf("key %s: values in order %v", k, vs)
				}
			}
		})
	}
}

// TestMutualTLSRequired shows a client without a certificate is refused
// with an error, not a hang.
func TestMutualTLSRequired(t *testing.T) {
	mtls, tlsConf := testenv.KafkaMTLS(t)
	noCert := &tls.Config{RootCAs: tlsConf.RootCAs, MinVersion: tls.VersionTLS12}
	p, err := New(Options{Brokers: []string{mtls}, TLS: noCert, DialTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Produce(t.Context(), bus.Message{Topic: bus.TopicRaw, Key: []byte("k"), Value: []byte("x")}); err == nil {
		t.Fatal("a client without certificate was accepted by the mutual-TLS listener")
	} else {
		t.Logf("refused as expected: %v", err)
	}
}

// TestBrokerRestart stops and starts a private broker under a producer
// that keeps its connection: sends fail while it is down, with an error,
// and succeed after it is back, over the same Producer.
func TestBrokerRestart(t *testing.T) {
	testenv.Kafka(t) // skips or fails in CI without the services
	k := testenv.StartPrivateKafka(t)
	_, tlsConf := testenv.KafkaMTLS(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	const topic, parts = "kafkaout.restart", 3
	if err := bus.EnsureTopics(ctx, bus.Options{Brokers: []string{k.PlainAddr()}}, []bus.TopicSpec{{Name: topic, Partitions: parts}}); err != nil {
		t.Fatal(err)
	}
	p, err := New(Options{Brokers: []string{k.TLSAddr()}, TLS: tlsConf, DialTimeout: 2 * time.Second, WriteTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	msg := func(i int) bus.Message {
		return bus.Message{Topic: topic, Key: []byte("agent-restart"), Value: fmt.Appendf(nil, "m%03d", i)}
	}
	sent := 0
	for range 10 {
		if err := p.Produce(ctx, msg(sent)); err != nil {
			t.Fatalf("before the restart: %v", err)
		}
		sent++
	}
	k.Stop()
	down := p.Produce(ctx, msg(sent))
	if down == nil {
		t.Fatal("Produce succeeded with the broker stopped")
	}
	t.Logf("broker down: %v", down)
	k.Start()
	// Retry as the shipper does until the restarted broker takes the
	// message; the same value may arrive twice (at-least-once).
	var last error
	for ctx.Err() == nil {
		if last = p.Produce(ctx, msg(sent)); last == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if last != nil {
		t.Fatalf("after the restart: %v", last)
	}
	sent++
	for range 10 {
		if err := p.Produce(ctx, msg(sent)); err != nil {
			t.Fatalf("after the restart, message %d: %v", sent, err)
		}
		sent++
	}
	got := readAll(ctx, t, k.PlainAddr(), topic, parts, sent)
	seen := map[string]bool{}
	used := 0
	for _, ms := range got {
		if len(ms) > 0 {
			used++
		}
		prev := ""
		for _, m := range ms {
			v := string(m.Value)
			if v < prev {
				t.Errorf("out of order: %s after %s", v, prev)
			}
			prev = v
			seen[v] = true
		}
	}
	if used != 1 {
		t.Errorf("one key on %d partitions", used)
	}
	for i := range sent {
		if !seen[fmt.Sprintf("m%03d", i)] {
			t.Errorf("m%03d missing", i)
		}
	}
}

// TestDeadConnectionRetriedOnce: a kept connection that died while idle
// (the broker closes idle connections) does not fail the next Produce: it
// is retried once at once on a new connection.
func TestDeadConnectionRetriedOnce(t *testing.T) {
	plain := testenv.Kafka(t)
	mtls, tlsConf := testenv.KafkaMTLS(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	topic := topicName(t)
	if err := bus.EnsureTopics(ctx, bus.Options{Brokers: []string{plain}}, []bus.TopicSpec{{Name: topic, Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	p, err := New(Options{Brokers: []string{mtls}, TLS: tlsConf})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	send := func(v string) error {
		return p.Produce(ctx, bus.Message{Topic: topic, Key: []byte("k"), Value: []byte(v)})
	}
	if err := send("first"); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	if len(p.conns) != 1 {
		t.Fatalf("%d connections kept, want 1", len(p.conns))
	}
	var old *kafka.Conn
	for _, c := range p.conns {
		old = c
		_ = c.Close() // as if the broker had closed it
	}
	p.mu.Unlock()
	if err := send("second"); err != nil {
		t.Fatalf("after the connection died: %v", err)
	}
	p.mu.Lock()
	for _, c := range p.conns {
		if c == old {
			t.Error("the dead connection is still kept")
		}
	}
	p.mu.Unlock()
	got := readAll(ctx, t, plain, topic, 1, 2)
	if len(got[0]) != 2 || string(got[0][0].Value) != "first" || string(got[0][1].Value) != "second" {
		t.Fatalf("records %v", got[0])
	}
}

func TestCancelledContext(t *testing.T) {
	p, err := New(Options{Brokers: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := p.Produce(ctx, bus.Message{Topic: "t", Value: []byte("x")}); !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want one wrapping context.Canceled", err)
	}
}
