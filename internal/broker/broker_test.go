package broker_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/broker"
	"github.com/csirt-toscana/platform/internal/bus"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

func consume(ctx context.Context, t *testing.T, opts bus.Options, group, topic string, n int) []bus.Message {
	t.Helper()
	c, err := bus.NewConsumer(bus.ConsumerOptions{Options: opts, GroupID: group, Topics: []string{topic}, SessionTimeout: 6 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	}()
	var got []bus.Message
	for len(got) < n {
		m, err := c.Fetch(ctx)
		if err != nil {
			t.Fatalf("Fetch after %d of %d: %v", len(got), n, err)
		}
		got = append(got, m)
		if len(got)%100 == 0 || len(got) == n {
			if err := c.Commit(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	return got
}

// TestRestartKeepsData produces, consumes part with a committed offset,
// stops the broker, starts it again on the same address and data directory,
// and checks that the log, the topic and the group's offset survived.
func TestRestartKeepsData(t *testing.T) {
	for _, sync := range []bool{false, true} {
		t.Run(fmt.Sprintf("SyncWrites=%v", sync), func(t *testing.T) {
			const n, firstRead = 3000, 1000
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			bopts := broker.Options{Addr: freeAddr(t), DataDir: t.TempDir(), SyncWrites: sync}
			b, err := broker.Start(bopts)
			if err != nil {
				t.Fatal(err)
			}
			opts := bus.Options{Brokers: []string{b.Addr()}}
			topic, group := "restart.topic", "restart.group"
			if err := bus.EnsureTopics(ctx, opts, []bus.TopicSpec{{Name: topic, Partitions: 1}}); err != nil {
				t.Fatal(err)
			}
			p, err := bus.NewProducer(bus.ProducerOptions{Options: opts})
			if err != nil {
				t.Fatal(err)
			}
			msgs := make([]bus.Message, n)
			for i := range msgs {
				msgs[i] = bus.Message{Topic: topic, Key: []byte("k"), Value: fmt.Appendf(nil, "%05d", i)}
			}
			if err := p.Produce(ctx, msgs...); err != nil {
				t.Fatal(err)
			}
			consume(ctx, t, opts, group, topic, firstRead)
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}

			b, err = broker.Start(bopts)
			if err != nil {
				t.Fatalf("restarting on the same address and data dir: %v", err)
			}
			defer b.Close()
			// The producer built before the restart reconnects to the fixed port.
			if err := p.Produce(ctx, bus.Message{Topic: topic, Key: []byte("k"), Value: fmt.Appendf(nil, "%05d", n)}); err != nil {
				t.Fatalf("producing after restart: %v", err)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			rest := consume(ctx, t, opts, group, topic, n+1-firstRead)
			if got := string(rest[0].Value); got != fmt.Sprintf("%05d", firstRead) {
				t.Errorf("group resumed at %q, want %05d", got, firstRead)
			}
			all := consume(ctx, t, opts, "restart.fresh", topic, n+1)
			for i, m := range all {
				if string(m.Value) != fmt.Sprintf("%05d", i) || m.Offset != int64(i) {
					t.Fatalf("after restart message %d is %q at offset %d", i, m.Value, m.Offset)
				}
			}
		})
	}
}

func TestStartErrors(t *testing.T) {
	if _, err := broker.Start(broker.Options{Addr: "127.0.0.1:0"}); err == nil {
		t.Error("a random port was accepted")
	}
	if _, err := broker.Start(broker.Options{Addr: freeAddr(t), SyncWrites: true}); err == nil {
		t.Error("SyncWrites without DataDir was accepted")
	}
	addr := freeAddr(t)
	b, err := broker.Start(broker.Options{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Addr() != addr {
		t.Errorf("Addr() = %s, want %s", b.Addr(), addr)
	}
	if _, err := broker.Start(broker.Options{Addr: addr}); err == nil {
		t.Error("a second broker started on a busy address")
	}
}
