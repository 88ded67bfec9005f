package bus_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/broker"
	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/bus/bustest"
	"github.com/csirt-toscana/platform/internal/testenv"
)

// TestBustestHelper is the subprocess body of the killed-consumer test.
func TestBustestHelper(t *testing.T) { bustest.Helper(t) }

// freeAddr returns a loopback address with a port that was free a moment
// ago; the embedded broker then listens on it as a fixed port.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		tb.Fatal(err)
	}
	return addr
}

func startEmbedded(tb testing.TB) bus.Options {
	tb.Helper()
	b, err := broker.Start(broker.Options{Addr: freeAddr(tb), DataDir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = b.Close() })
	return bus.Options{Brokers: []string{b.Addr()}, ClientID: "bustest"}
}

func TestConformanceEmbedded(t *testing.T) {
	opts := startEmbedded(t)
	bustest.Run(t, func(*testing.T) bus.Options { return opts })
}

func TestConformanceKafka(t *testing.T) {
	addr := testenv.Kafka(t)
	bustest.Run(t, func(*testing.T) bus.Options {
		return bus.Options{Brokers: []string{addr}, ClientID: "bustest"}
	})
}

func TestMutualTLSKafka(t *testing.T) {
	addr, tlsCfg := testenv.KafkaMTLS(t)
	opts := bus.Options{Brokers: []string{addr}, TLS: tlsCfg, ClientID: "bustest-mtls"}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topic := bustest.Unique(t, "topic")
	if err := bus.EnsureTopics(ctx, opts, []bus.TopicSpec{{Name: topic, Partitions: 2, ReplicationFactor: 1}}); err != nil {
		t.Fatalf("EnsureTopics over mTLS: %v", err)
	}
	p, err := bus.NewProducer(bus.ProducerOptions{Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const n = 1000
	msgs := make([]bus.Message, n)
	for i := range msgs {
		msgs[i] = bus.Message{Topic: topic, Key: []byte(strconv.Itoa(i % 10)), Value: []byte(strconv.Itoa(i))}
	}
	if err := p.Produce(ctx, msgs...); err != nil {
		t.Fatalf("Produce over mTLS: %v", err)
	}
	c, err := bus.NewConsumer(bus.ConsumerOptions{Options: opts, GroupID: bustest.Unique(t, "group"), Topics: []string{topic}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	seen := map[string]bool{}
	for len(seen) < n {
		m, err := c.Fetch(ctx)
		if err != nil {
			t.Fatalf("Fetch over mTLS after %d: %v", len(seen), err)
		}
		seen[string(m.Value)] = true
		if err := c.Commit(ctx, m); err != nil {
			t.Fatal(err)
		}
	}

	// Without a client certificate the listener must refuse us.
	noCert := tlsCfg.Clone()
	noCert.Certificates = nil
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	if _, err := bus.EndOffsets(sctx, bus.Options{Brokers: []string{addr}, TLS: noCert}, topic); err == nil {
		t.Error("the mTLS listener accepted a client without a certificate")
	}
}

func TestOptionsValidation(t *testing.T) {
	base := bus.Options{Brokers: []string{"127.0.0.1:1"}}
	cases := []struct {
		name string
		make func() error
		want string // substring of the error; "" means no error
	}{
		{"producer defaults", func() error { _, err := bus.NewProducer(bus.ProducerOptions{Options: base}); return err }, ""},
		{"no brokers", func() error { _, err := bus.NewProducer(bus.ProducerOptions{}); return err }, "brokers"},
		{"batch timeout too long", func() error {
			_, err := bus.NewProducer(bus.ProducerOptions{Options: base, BatchTimeout: 60 * time.Millisecond})
			return err
		}, "batch_timeout"},
		{"bad compression", func() error {
			_, err := bus.NewProducer(bus.ProducerOptions{Options: base, Compression: "brotli"})
			return err
		}, "compression"},
		{"bad sasl", func() error {
			o := base
			o.SASL = &bus.SASL{Mechanism: "GSSAPI", Username: "u"}
			_, err := bus.NewProducer(bus.ProducerOptions{Options: o})
			return err
		}, "sasl"},
		{"scram ok", func() error {
			o := base
			o.SASL = &bus.SASL{Mechanism: bus.SASLScramSHA512, Username: "u", Password: "p"}
			_, err := bus.NewProducer(bus.ProducerOptions{Options: o})
			return err
		}, ""},
		{"consumer no group", func() error {
			_, err := bus.NewConsumer(bus.ConsumerOptions{Options: base, Topics: []string{"t"}})
			return err
		}, "group_id"},
		{"consumer no topics", func() error {
			_, err := bus.NewConsumer(bus.ConsumerOptions{Options: base, GroupID: "g"})
			return err
		}, "topics"},
		{"dlq no sender", func() error { _, err := bus.NewDLQ(bus.DLQOptions{}); return err }, "sender"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.make()
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error %v, want one mentioning %q", err, c.want)
			}
		})
	}
	if s := (bus.SASL{Mechanism: bus.SASLPlain, Username: "u", Password: "secret"}).String(); strings.Contains(s, "secret") {
		t.Errorf("SASL.String leaks the password: %s", s)
	}
	if _, err := bus.ParseCompression("LZ4"); err != nil {
		t.Error(err)
	}
}

// Benchmarks: ~200-byte messages, produced by 4 concurrent callers in
// batches of 1000 (synchronous, acks=all, zstd), consumed by one group
// member committing every 1000 messages.

const benchValueSize = 200

func BenchmarkProduceEmbedded(b *testing.B) { benchProduce(b, startEmbedded(b)) }
func BenchmarkConsumeEmbedded(b *testing.B) { benchConsume(b, startEmbedded(b)) }

func BenchmarkProduceKafka(b *testing.B) {
	benchProduce(b, bus.Options{Brokers: []string{testenv.Kafka(b)}})
}

func BenchmarkConsumeKafka(b *testing.B) {
	benchConsume(b, bus.Options{Brokers: []string{testenv.Kafka(b)}})
}

func benchTopic(b *testing.B, opts bus.Options) string {
	b.Helper()
	topic := bustest.Unique(b, "topic")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := bus.EnsureTopics(ctx, opts, []bus.TopicSpec{{Name: topic, Partitions: 6, ReplicationFactor: 1}}); err != nil {
		b.Fatal(err)
	}
	return topic
}

func produceN(ctx context.Context, p *bus.Producer, topic string, n int) error {
	const callers, chunk = 4, 1000
	value := []byte(strings.Repeat("v", benchValueSize-12))
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	next := make(chan int, n/chunk+1)
	for lo := 0; lo < n; lo += chunk {
		next <- lo
	}
	close(next)
	for range callers {
		wg.Go(func() {
			for lo := range next {
				msgs := make([]bus.Message, 0, chunk)
				for i := lo; i < min(lo+chunk, n); i++ {
					msgs = append(msgs, bus.Message{Topic: topic, Key: fmt.Appendf(nil, "entity-%03d", i%270), Value: value})
				}
				if err := p.Produce(ctx, msgs...); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func benchProduce(b *testing.B, opts bus.Options) {
	topic := benchTopic(b, opts)
	p, err := bus.NewProducer(bus.ProducerOptions{Options: opts})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	b.SetBytes(benchValueSize)
	b.ResetTimer()
	start := time.Now()
	if err := produceN(ctx, p, topic, b.N); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

func benchConsume(b *testing.B, opts bus.Options) {
	topic := benchTopic(b, opts)
	p, err := bus.NewProducer(bus.ProducerOptions{Options: opts})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := produceN(ctx, p, topic, b.N); err != nil {
		b.Fatal(err)
	}
	c, err := bus.NewConsumer(bus.ConsumerOptions{Options: opts, GroupID: bustest.Unique(b, "group"), Topics: []string{topic}})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.SetBytes(benchValueSize)
	b.ResetTimer()
	start := time.Now()
	var last bus.Message
	for i := range b.N {
		m, err := c.Fetch(ctx)
		if err != nil {
			b.Fatalf("Fetch %d of %d: %v", i, b.N, err)
		}
		last = m
		if i%1000 == 999 {
			if err := c.Commit(ctx, m); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := c.Commit(ctx, last); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

func TestPing(t *testing.T) {
	b, err := broker.Start(broker.Options{Addr: freeAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := bus.Ping(ctx, bus.Options{Brokers: []string{b.Addr()}}); err != nil {
		t.Fatalf("ping of a running broker: %v", err)
	}
	short, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	if err := bus.Ping(short, bus.Options{Brokers: []string{freeAddr(t)}, DialTimeout: time.Second}); err == nil {
		t.Fatal("ping of a closed port succeeded")
	}
}
