package heuristics

import (
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/testenv"
)

// zeekTrace is a benign Zeek test trace: its baseline logs and the pcap
// they came from. Zeek masks timestamps in baselines, so each row's time
// is taken from the first packet of its 5-tuple in the pcap.
type zeekTrace struct {
	baseline string
	pcap     string
	logs     []string
}

var zeekTraces = []zeekTrace{
	{"opt.basic", "wikipedia.pcap", []string{"conn.log", "dns.log"}},
	{"core.tunnels.teredo", "tunnels/Teredo.pcap", []string{"conn.log"}},
	{"scripts.base.protocols.dns.flip", "dns53.pcap", []string{"dns.log"}},
	{"scripts.base.protocols.dns.multiple-txt-strings", "dns-txt-multiple.pcap", []string{"dns.log"}},
}

func tupleKey(proto, a string, ap string, b string, bp string) string {
	if x, err := netip.ParseAddr(a); err == nil {
		a = x.Unmap().String()
	}
	if x, err := netip.ParseAddr(b); err == nil {
		b = x.Unmap().String()
	}
	return proto + " " + a + " " + ap + " " + b + " " + bp
}

// firstSeen maps each TCP/UDP 5-tuple (as sent) of a pcap to the time of
// its first packet, and returns the capture's first packet time.
func firstSeen(path string) (map[string]time.Time, time.Time, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, time.Time{}, err
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		return nil, time.Time{}, err
	}
	out := map[string]time.Time{}
	var first time.Time
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, time.Time{}, err
		}
		if first.IsZero() {
			first = ci.Timestamp
		}
		pkt := gopacket.NewPacket(data, r.LinkType(), gopacket.NoCopy)
		var src, dst string
		if ip4, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
			src, dst = ip4.SrcIP.String(), ip4.DstIP.String()
		} else if ip6, ok := pkt.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ok {
			src, dst = ip6.SrcIP.String(), ip6.DstIP.String()
		} else {
			continue
		}
		var k string
		if tcp, ok := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP); ok {
			k = tupleKey("tcp", src, strconv.Itoa(int(tcp.SrcPort)), dst, strconv.Itoa(int(tcp.DstPort)))
		} else if udp, ok := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP); ok {
			k = tupleKey("udp", src, strconv.Itoa(int(udp.SrcPort)), dst, strconv.Itoa(int(udp.DstPort)))
		} else {
			continue
		}
		if _, seen := out[k]; !seen {
			out[k] = ci.Timestamp
		}
	}
	return out, first, nil
}

func zeekInt(row map[string]string, name string) (int64, bool) {
	v, err := strconv.ParseInt(row[name], 10, 64)
	return v, err == nil
}

// zeekEvents converts a trace's rows into events with the agent's field
// names, sorted by time.
func zeekEvents(t *testing.T, root string, tr zeekTrace) []event.Event {
	t.Helper()
	seen, first, err := firstSeen(filepath.Join(root, "Traces", tr.pcap))
	if err != nil {
		t.Fatalf("reading %s: %v", tr.pcap, err)
	}
	var evs []event.Event
	matched, total := 0, 0
	for _, log := range tr.logs {
		rows := testenv.ZeekLog(t, filepath.Join(root, "Baseline", tr.baseline, log))
		prev := first
		for _, row := range rows {
			total++
			proto := row["proto"]
			k := tupleKey(proto, row["id.orig_h"], row["id.orig_p"], row["id.resp_h"], row["id.resp_p"])
			ts, ok := seen[k]
			if !ok {
				ts, ok = seen[tupleKey(proto, row["id.resp_h"], row["id.resp_p"], row["id.orig_h"], row["id.orig_p"])]
			}
			if ok {
				matched++
				prev = ts
			} else {
				ts = prev // tunnelled flows: the time of the previous row
			}
			ev := event.Event{
				"@timestamp": ts.UTC(), "event.id": tr.baseline + "/" + log + "/" + row["uid"] + "/" + strconv.Itoa(total),
				"event.kind": "event", "organization.id": "zeek-traces", "host.name": "sensor", "agent.id": "zeek",
				"source.ip": row["id.orig_h"], "destination.ip": row["id.resp_h"], "network.transport": proto,
			}
			if proto != "icmp" {
				if p, ok := zeekInt(row, "id.orig_p"); ok {
					ev["source.port"] = p
				}
				if p, ok := zeekInt(row, "id.resp_p"); ok {
					ev["destination.port"] = p
				}
			}
			if log == "conn.log" {
				ev["event.dataset"] = "flow"
				ev["event.type"] = []string{"connection", "end"}
				ev["event.start"] = ts.UTC()
				for zf, ef := range map[string]string{"orig_ip_bytes": "source.bytes", "resp_ip_bytes": "destination.bytes",
					"orig_pkts": "source.packets", "resp_pkts": "destination.packets",
					"orig_bytes": "connection.orig_bytes", "resp_bytes": "connection.resp_bytes"} {
					if v, ok := zeekInt(row, zf); ok {
						ev[ef] = v
					}
				}
				if d, err := strconv.ParseFloat(row["duration"], 64); err == nil {
					ev["event.duration"] = int64(d * 1e9)
					ev["event.end"] = ts.Add(time.Duration(d * 1e9)).UTC()
				}
				ev["connection.state"] = row["conn_state"]
				ev["connection.history"] = row["history"]
			} else {
				ev["event.dataset"] = "dns"
				ev["dns.question.name"] = row["query"]
				ev["dns.question.type"] = row["qtype_name"]
				ev["dns.response_code"] = row["rcode_name"]
			}
			evs = append(evs, ev)
		}
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Time().Before(evs[j].Time()) })
	t.Logf("%s: %d rows, %d timed from the pcap", tr.baseline, total, matched)
	if total == 0 || matched == 0 {
		t.Fatalf("%s: no usable row (%d rows, %d timed)", tr.baseline, total, matched)
	}
	return evs
}

// TestZeekBenignTracesGiveNoAlert runs every detector with its defaults
// over the benign Zeek traces' conn.log and dns.log rows.
func TestZeekBenignTracesGiveNoAlert(t *testing.T) {
	root := filepath.Join(testenv.SharedData(t), "pcaps", "zeek")
	for _, tr := range zeekTraces {
		t.Run(tr.baseline, func(t *testing.T) {
			evs := zeekEvents(t, root, tr)
			set := NewSet(nil, Options{})
			alerts := runSetAll(set, evs)
			for _, d := range set.Detectors {
				t.Logf("%s: %d alerts, stats %+v", d.ID(), countAlerts(alerts, d.ID()), d.Stats())
			}
			for _, a := range alerts {
				t.Errorf("alert on benign trace: %s: %s", a.Detector, a.Message)
			}
			var used uint64
			for _, d := range set.Detectors {
				st := d.Stats()
				used += st.Events - st.Ignored
			}
			if used == 0 {
				t.Fatal("no detector looked at any event: the conversion is broken")
			}
		})
	}
}

func runSetAll(s *Set, evs []event.Event) []Alert {
	var out []Alert
	for _, ev := range evs {
		out = append(out, s.Observe(ev)...)
	}
	return out
}

func countAlerts(as []Alert, id string) int {
	n := 0
	for _, a := range as {
		if a.Detector == id {
			n++
		}
	}
	return n
}
