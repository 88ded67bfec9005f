package netsum

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/csirt-toscana/platform/internal/event"
)

// packetSource is what pcap and pcapng readers have in common.
type packetSource interface {
	ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
}

// ReadPcap feeds every packet of a pcap or pcapng stream to s (it does not
// flush: call s.Flush after the last file).
func ReadPcap(r io.Reader, s *Summarizer) error {
	br := bufio.NewReaderSize(r, 1<<16)
	magic, err := br.Peek(4)
	if err != nil {
		return fmt.Errorf("reading the capture header: %w (is this a pcap or pcapng file?)", err)
	}
	var src packetSource
	var linkOf func(gopacket.CaptureInfo) layers.LinkType
	if bytes.Equal(magic, []byte{0x0a, 0x0d, 0x0d, 0x0a}) {
		ng, err := pcapgo.NewNgReader(br, pcapgo.DefaultNgReaderOptions)
		if err != nil {
			return fmt.Errorf("reading the pcapng header: %w", err)
		}
		src = ng
		linkOf = func(ci gopacket.CaptureInfo) layers.LinkType {
			if ifc, err := ng.Interface(ci.InterfaceIndex); err == nil {
				return ifc.LinkType
			}
			return ng.LinkType()
		}
	} else {
		pr, err := pcapgo.NewReader(br)
		if err != nil {
			return fmt.Errorf("reading the pcap header: %w (only pcap and pcapng files are supported)", err)
		}
		src = pr
		lt := pr.LinkType()
		linkOf = func(gopacket.CaptureInfo) layers.LinkType { return lt }
	}
	for {
		data, ci, err := src.ZeroCopyReadPacketData()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return nil // a capture cut short: keep what was read
			}
			return fmt.Errorf("reading a packet: %w", err)
		}
		s.Packet(ci.Timestamp, linkOf(ci), data)
	}
}

// SummarizeFiles summarises the given capture files as one trace (flows
// may span files given in order) and calls emit for each event.
func SummarizeFiles(paths []string, cfg Config) (Stats, error) {
	s := New(cfg)
	for _, p := range paths {
		f, err := os.Open(p) //nolint:gosec // the analyst names the file
		if err != nil {
			return s.Stats(), fmt.Errorf("opening capture file: %w", err)
		}
		err = ReadPcap(f, s)
		_ = f.Close()
		if err != nil {
			return s.Stats(), fmt.Errorf("%s: %w", p, err)
		}
	}
	s.Flush()
	return s.Stats(), nil
}

const pcapUsage = `Usage: csirt-agent pcap [--format jsonl] [--stats] FILE...

Summarises pcap or pcapng files as the agent's live capture would (flows
with Community ID, DNS, TLS ClientHello, HTTP requests; never payload) and
prints one JSON event per line on standard output. Files are read in the
order given, as one trace.
`

// PcapMain is the `csirt-agent pcap` command: it returns the exit code.
func PcapMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pcap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { _, _ = io.WriteString(stderr, pcapUsage) }
	format := fs.String("format", "jsonl", "output format (jsonl)")
	stats := fs.Bool("stats", false, "print counters on standard error at the end")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *format != "jsonl" {
		_, _ = fmt.Fprintf(stderr, "csirt-agent pcap: unknown format %q: only jsonl is supported\n", *format)
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	w := bufio.NewWriterSize(stdout, 1<<16)
	var werr error
	emit := func(e event.Event) {
		if werr != nil {
			return
		}
		b, err := e.MarshalJSON()
		if err != nil {
			werr = fmt.Errorf("encoding an event: %w", err)
			return
		}
		b = append(b, '\n')
		_, werr = w.Write(b)
	}
	st, err := SummarizeFiles(fs.Args(), Config{Emit: emit})
	if ferr := w.Flush(); werr == nil {
		werr = ferr
	}
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "csirt-agent pcap: %v\n", err)
		return 1
	}
	if werr != nil {
		_, _ = fmt.Fprintf(stderr, "csirt-agent pcap: writing the events: %v\n", werr)
		return 1
	}
	if *stats {
		b, _ := json.Marshal(st) //nolint:errchkjson // plain struct
		_, _ = fmt.Fprintf(stderr, "%s\n", b)
	}
	return 0
}
