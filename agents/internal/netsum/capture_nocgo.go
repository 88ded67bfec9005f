//go:build !cgo

package netsum

import "errors"

// LiveCaptureAvailable reports whether this build can capture live.
const LiveCaptureAvailable = false

func openLive(string, int, string, bool, int) (liveHandle, error) {
	return nil, errors.New("this csirt-agent was built without cgo and has no live capture: install a package built with libpcap support, or use `csirt-agent pcap` on capture files")
}

// pcapWriter injects frames (benchmarks only); not in this build.
type pcapWriter struct{}

func openWriter(string) (*pcapWriter, error) {
	return nil, errors.New("frame injection needs libpcap (a cgo build)")
}

func (*pcapWriter) write([]byte) error {
	return errors.New("frame injection needs libpcap (a cgo build)")
}
func (*pcapWriter) close() {}
