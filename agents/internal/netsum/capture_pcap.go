//go:build cgo

package netsum

import (
	"errors"
	"fmt"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcap"
)

// pcapHandle is a live capture through libpcap: a TPACKET_V3 memory-mapped
// ring on Linux, the kernel BPF filter compiled by libpcap from the
// policy's expression, and the kernel's drop counters. It needs
// CAP_NET_RAW (and nothing else) when not promiscuous.
type pcapHandle struct {
	h *pcap.Handle
}

// LiveCaptureAvailable reports whether this build can capture live.
const LiveCaptureAvailable = true

func openLive(iface string, snaplen int, filter string, promisc bool, bufferBytes int) (liveHandle, error) {
	in, err := pcap.NewInactiveHandle(iface)
	if err != nil {
		return nil, fmt.Errorf("opening interface %q for capture: %w", iface, err)
	}
	defer in.CleanUp()
	for _, step := range []error{
		in.SetSnapLen(snaplen),
		in.SetPromisc(promisc),
		in.SetTimeout(250 * time.Millisecond),
		in.SetBufferSize(bufferBytes),
	} {
		if step != nil {
			return nil, fmt.Errorf("configuring capture on %q: %w", iface, step)
		}
	}
	h, err := in.Activate()
	if err != nil {
		return nil, fmt.Errorf("starting capture on %q: %w (the agent needs CAP_NET_RAW; check the interface name)", iface, err)
	}
	if filter != "" {
		if err := h.SetBPFFilter(filter); err != nil {
			h.Close()
			return nil, fmt.Errorf("capture filter %q does not compile: %w (fix capture.bpf in the policy)", filter, err)
		}
	}
	return &pcapHandle{h: h}, nil
}

func (p *pcapHandle) read() ([]byte, gopacket.CaptureInfo, error) {
	data, ci, err := p.h.ZeroCopyReadPacketData()
	if errors.Is(err, pcap.NextErrorTimeoutExpired) {
		return nil, ci, errTimeout
	}
	return data, ci, err
}

func (p *pcapHandle) linkType() layers.LinkType { return p.h.LinkType() }

func (p *pcapHandle) stats() (received, dropped, ifDropped uint64, err error) {
	s, err := p.h.Stats()
	if err != nil {
		return 0, 0, 0, err
	}
	return uint64(max(s.PacketsReceived, 0)), uint64(max(s.PacketsDropped, 0)), uint64(max(s.PacketsIfDropped, 0)), nil //nolint:gosec // clamped
}

func (p *pcapHandle) close() { p.h.Close() }

// pcapWriter injects frames on an interface (benchmarks only).
type pcapWriter struct{ h *pcap.Handle }

func openWriter(iface string) (*pcapWriter, error) {
	h, err := pcap.OpenLive(iface, 1600, false, time.Millisecond)
	if err != nil {
		return nil, err
	}
	return &pcapWriter{h: h}, nil
}

func (w *pcapWriter) write(b []byte) error { return w.h.WritePacketData(b) }
func (w *pcapWriter) close()               { w.h.Close() }
