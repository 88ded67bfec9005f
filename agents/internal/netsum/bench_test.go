package netsum

import (
	"bytes"
	"encoding/binary"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/csirt-toscana/platform/internal/event"
)

var (
	benchPcapOnce sync.Once
	benchPcap     []byte
	benchPackets  int
)

// generatedPcap builds a capture of about 1M packets: 20,000 client
// addresses making HTTP sessions (8 packets each, with a 2 KiB response
// body spread over bulk data segments) and DNS exchanges, in time order.
func generatedPcap(b *testing.B) ([]byte, int) {
	benchPcapOnce.Do(func() {
		var buf bytes.Buffer
		w := pcapgo.NewWriter(&buf)
		if err := w.WriteFileHeader(1600, layers.LinkTypeEthernet); err != nil {
			b.Fatal(err)
		}
		fb := newFrameBuilder()
		server, dnsServer := net.IPv4(198, 51, 100, 80), net.IPv4(198, 51, 100, 53)
		ts := t0
		n := 0
		body := bytes.Repeat([]byte("x"), 1400)
		write := func(data []byte) {
			ts = ts.Add(10 * time.Microsecond)
			ci := ciFor(ts, len(data))
			if err := w.WritePacket(ci, data); err != nil {
				b.Fatal(err)
			}
			n++
		}
		for i := 0; n < 1_000_000; i++ {
			client := net.IPv4(10, byte(i>>16), byte(i>>8), byte(i))
			sport := uint16(10000 + i%50000) //nolint:gosec // bounded
			for _, f := range httpSession(b, fb, client, server, sport, ts) {
				write(f.data)
			}
			// bulk data on the same connection's tuple shape (new port)
			for j := range 20 {
				write(fb.tcp(b, server, client, 8080, sport, flagACK, uint32(1000+j*1400), 1, body)) //nolint:gosec // test
			}
			write(fb.udp(b, client, dnsServer, sport, 53, dnsMessage(uint16(i), "host"+strconv.Itoa(i%1000)+".example.test", false))) //nolint:gosec // test
			write(fb.udp(b, dnsServer, client, 53, sport, dnsMessage(uint16(i), "host"+strconv.Itoa(i%1000)+".example.test", true)))  //nolint:gosec // test
		}
		benchPcap, benchPackets = buf.Bytes(), n
	})
	return benchPcap, benchPackets
}

// BenchmarkOfflineSummarize measures offline summarisation (pcap reading,
// decoding, flow table, l7 decoders, event building) in packets per second.
// Run with -cpu 1 for the per-core figure.
func BenchmarkOfflineSummarize(b *testing.B) {
	data, n := generatedPcap(b)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	events := 0
	for b.Loop() {
		s := New(Config{Emit: func(event.Event) { events++ }})
		if err := ReadPcap(bytes.NewReader(data), s); err != nil {
			b.Fatal(err)
		}
		s.Flush()
	}
	el, cpu := time.Since(start), cpuTime()-cpu0
	b.ReportMetric(float64(n)*float64(b.N)/el.Seconds(), "packets/s")
	// On a shared machine the wall-clock rate understates what one core
	// does: packets per CPU-second of this process is the per-core figure.
	b.ReportMetric(float64(n)*float64(b.N)/cpu.Seconds(), "packets/cpu-s")
	b.ReportMetric(float64(events)/float64(b.N), "events/op")
}

// BenchmarkDecodeAndTrack measures the per-packet hot path alone (frames
// in memory, no pcap reading, no event output) and its allocations.
func BenchmarkDecodeAndTrack(b *testing.B) {
	fb := newFrameBuilder()
	frames := make([][]byte, 0, 1024)
	for i := range 64 {
		client := net.IPv4(10, 0, byte(i>>8), byte(i))
		for _, f := range httpSession(b, fb, client, net.IPv4(198, 51, 100, 80), uint16(20000+i), t0) {
			frames = append(frames, f.data)
		}
	}
	// Steady state: data segments of established flows.
	steady := make([][]byte, 0, 64)
	for i := range 64 {
		steady = append(steady, fb.tcp(b, net.IPv4(198, 51, 100, 80), net.IPv4(10, 0, 0, byte(i)), 80, uint16(20000+i), flagACK, uint32(9000+i), 1, bytes.Repeat([]byte("y"), 1000))) //nolint:gosec // test
	}
	s := New(Config{})
	for _, f := range frames {
		s.Packet(t0, layers.LinkTypeEthernet, f)
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	cpu0 := cpuTime()
	for b.Loop() {
		s.Packet(t0, layers.LinkTypeEthernet, steady[i&63])
		i++
	}
	b.ReportMetric(float64(b.N)/(cpuTime()-cpu0).Seconds(), "packets/cpu-s")
}

// BenchmarkFlowTableMemory holds 100,000 concurrent TCP flows (handshake
// and a request each, so l7 state exists) and reports the heap they take
// and the process RSS.
func BenchmarkFlowTableMemory(b *testing.B) {
	fb := newFrameBuilder()
	const flows = 100_000
	// a request cut before the end of its head keeps a stream buffer
	req := []byte("GET / HTTP/1.1\r\nHost: a.example.test\r\n")
	server := net.IPv4(198, 51, 100, 80)
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		s := New(Config{MaxFlows: 200_000})
		for i := range flows {
			c := net.IPv4(10, byte(i>>16), byte(i>>8), byte(i))
			sp := uint16(1024 + i%60000) //nolint:gosec // bounded
			s.Packet(t0, layers.LinkTypeEthernet, fb.tcp(b, c, server, sp, 80, flagSYN, 1, 0, nil))
			s.Packet(t0, layers.LinkTypeEthernet, fb.tcp(b, server, c, 80, sp, flagSYN|flagACK, 7, 2, nil))
			s.Packet(t0, layers.LinkTypeEthernet, fb.tcp(b, c, server, sp, 80, flagACK|flagPSH, 2, 8, req))
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if got := s.Stats().ActiveFlows; got != flows {
			b.Fatalf("%d flows in the table, want %d", got, flows)
		}
		heap := float64(after.HeapAlloc) - float64(before.HeapAlloc)
		b.ReportMetric(heap/(1<<20), "heap-MiB")
		b.ReportMetric(heap/flows, "bytes/flow")
		b.ReportMetric(float64(rssKiB())/1024, "rss-MiB")
		runtime.KeepAlive(s)
	}
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func rssKiB() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}

// BenchmarkLiveCapture sends b.N frames on a veth pair (a libpcap writer
// on the root side; needs root) and captures them with the live source's
// handle and a summarizer, reporting the rate and the kernel's drops.
func BenchmarkLiveCapture(b *testing.B) {
	lab := newNetnsLab(b)
	h, err := openLive(lab.HostIf, 1600, "udp", false, 8<<20)
	if err != nil {
		b.Fatal(err)
	}
	defer h.close()
	w, err := openWriter(lab.HostIf)
	if err != nil {
		b.Fatal(err)
	}
	defer w.close()
	fb := newFrameBuilder()
	frames := make([][]byte, 256)
	for i := range frames {
		frames[i] = fb.udp(b, net.ParseIP(lab.HostIP), net.ParseIP(lab.PeerIP), uint16(30000+i), 9999, dnsMessage(uint16(i), "bench.example.test", false)) //nolint:gosec // test
	}
	s := New(Config{})
	lt := h.linkType()
	var captured int
	done := make(chan struct{})
	stop := make(chan struct{})
	go func() {
		defer close(done)
		for {
			data, ci, err := h.read()
			if err == nil {
				s.Packet(ci.Timestamp, lt, data)
				captured++
				continue
			}
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	b.ResetTimer()
	start := time.Now()
	for i := 0; b.Loop(); i++ {
		if err := w.write(frames[i&255]); err != nil {
			b.Fatal(err)
		}
	}
	sendTime := time.Since(start)
	time.Sleep(500 * time.Millisecond)
	close(stop)
	<-done
	rcv, drop, _, _ := h.stats()
	b.ReportMetric(float64(b.N)/sendTime.Seconds(), "sent-pkts/s")
	b.ReportMetric(float64(captured), "captured")
	b.ReportMetric(float64(drop), "kernel-drops")
	_ = rcv
	_ = binary.BigEndian
}

// BenchmarkCaptureMethods compares the CPU cost per captured packet of
// libpcap (the choice) and gopacket's pure-Go pcapgo.EthernetHandle (one
// recvmsg per packet), with the same libpcap sender on a veth pair.
func BenchmarkCaptureMethods(b *testing.B) {
	for _, method := range []string{"libpcap", "pcapgo-ethernet-handle"} {
		b.Run(method, func(b *testing.B) {
			lab := newNetnsLab(b)
			var read func() error
			var closeFn func()
			switch method {
			case "libpcap":
				h, err := openLive(lab.HostIf, 1600, "", false, 8<<20)
				if err != nil {
					b.Fatal(err)
				}
				read = func() error { _, _, err := h.read(); return err }
				closeFn = h.close
			default:
				h, err := pcapgo.NewEthernetHandle(lab.HostIf)
				if err != nil {
					b.Fatal(err)
				}
				read = func() error { _, _, err := h.ZeroCopyReadPacketData(); return err }
				closeFn = h.Close
			}
			defer closeFn()
			w, err := openWriter(lab.HostIf)
			if err != nil {
				b.Fatal(err)
			}
			defer w.close()
			frame := newFrameBuilder().udp(b, net.ParseIP(lab.HostIP), net.ParseIP(lab.PeerIP), 30000, 9999, []byte("benchmark"))
			stop := make(chan struct{})
			go func() {
				for {
					select {
					case <-stop:
						return
					default:
						_ = w.write(frame)
					}
				}
			}()
			defer close(stop)
			b.ResetTimer()
			cpu0, start := cpuTime(), time.Now()
			got := 0
			for got < b.N {
				if err := read(); err == nil {
					got++
				}
			}
			el := time.Since(start)
			b.ReportMetric(float64(got)/el.Seconds(), "captured-pkts/s")
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(got), "process-cpu-ns/pkt")
		})
	}
}
