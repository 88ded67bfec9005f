package syslogin

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/csirt-toscana/platform/internal/event"
)

// BenchmarkProcess measures one message through the limits, the device
// lookup, the parser and the intake's fields (no I/O).
func BenchmarkProcess(b *testing.B) {
	st := newStore(b)
	addEntity(b, st, "comune-a")
	addDevice(b, st, "fw-a", "comune-a", "fw1", "127.0.0.1/32")
	s, err := New(Options{UDPListen: "127.0.0.1:0", Store: st, Sink: &memSink{}, RatePerSource: 1e12})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.Devices().Load(context.Background()); err != nil {
		b.Fatal(err)
	}
	raw := []byte(rfc5424("fwhost", sshdLine))
	from := netip.MustParseAddrPort("127.0.0.1:514")
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := s.process(context.Background(), TCP, from, raw, false); !ok {
			b.Fatal("dropped")
		}
	}
}

// BenchmarkFrameReader measures splitting an octet-counted and a
// newline-framed stream.
func BenchmarkFrameReader(b *testing.B) {
	line := rfc5424("fwhost", sshdLine)
	for _, tc := range []struct {
		name string
		one  string
	}{{"octet", octet(line)}, {"newline", line + "\n"}} {
		b.Run(tc.name, func(b *testing.B) {
			stream := bytes.Repeat([]byte(tc.one), 1000)
			b.SetBytes(int64(len(stream)))
			b.ReportAllocs()
			for b.Loop() {
				fr := newFrameReader(bytes.NewReader(stream), 64<<10)
				n := 0
				for {
					if _, _, err := fr.Next(); err != nil {
						break
					}
					n++
				}
				if n != 1000 {
					b.Fatalf("%d frames", n)
				}
			}
		})
	}
}

type countSink struct{ n atomic.Int64 }

func (c *countSink) Publish(_ context.Context, evs []event.Event) error {
	c.n.Add(int64(len(evs)))
	return nil
}

// BenchmarkTCPIntake is the end-to-end rate of one TCP connection on
// loopback into a sink that only counts (messages/s = b.N / time).
func BenchmarkTCPIntake(b *testing.B) {
	st := newStore(b)
	addEntity(b, st, "comune-a")
	addDevice(b, st, "fw-a", "comune-a", "fw1", "127.0.0.1/32")
	sink := &countSink{}
	r := start(b, Options{TCPListen: "127.0.0.1:0", Store: st, Sink: sink, RatePerSource: 1e12})
	c := dialFrom(b, "tcp", "127.0.0.1", r.s.TCPAddr().String())
	var chunk bytes.Buffer
	for i := range 100 {
		fmt.Fprintf(&chunk, "<38>1 2026-11-20T10:00:00.123Z fwhost sshd %d - - %s\n", i, sshdLine)
	}
	b.SetBytes(int64(chunk.Len() / 100))
	b.ResetTimer()
	want := sink.n.Load()
	for sent := 0; sent < b.N; sent += 100 {
		if _, err := c.Write(chunk.Bytes()); err != nil {
			b.Fatal(err)
		}
		want += 100
	}
	waitFor(b, "every event", func() bool { return sink.n.Load() >= want })
}
