package netsum

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/csirt-toscana/platform/internal/event"
)

// connKey is a conn.log 5-tuple as Zeek writes it (ICMP: type and
// counterpart type or code as ports).
func connKey(proto, oh, op, rh, rp string) string {
	return strings.Join([]string{proto, oh, op, rh, rp}, " ")
}

func normAddr(s string) string {
	if strings.Contains(s, ":") {
		if a, err := parseAddr(s); err == nil {
			return a
		}
	}
	return s
}

func eventConnKey(e event.Event) string {
	proto := e.String("network.transport")
	sp, dp := e.String("source.port"), e.String("destination.port")
	if proto == "icmp" || proto == "ipv6-icmp" {
		typ, _ := strconv.Atoi(e.String("icmp.type"))
		code, _ := strconv.Atoi(e.String("icmp.code"))
		s, d, _ := icmpPorts(proto == "ipv6-icmp", uint8(typ), uint8(code)) //nolint:gosec // test
		sp, dp = strconv.Itoa(int(s)), strconv.Itoa(int(d))
		proto = "icmp"
	}
	return connKey(proto, normAddr(e.String("source.ip")), sp, normAddr(e.String("destination.ip")), dp)
}

func zeekRowKey(r map[string]string) string {
	return connKey(r["proto"], normAddr(r["id.orig_h"]), r["id.orig_p"], normAddr(r["id.resp_h"]), r["id.resp_p"])
}

// supportedServices are the services our l7 decoders confirm, in Zeek's
// names.
var supportedServices = map[string]bool{"dns": true, "http": true, "ssl": true}

// expectedService is Zeek's service restricted to what we decode.
func expectedService(z string) (want string, ignored []string) {
	if z == "-" || z == "" {
		return "", nil
	}
	for _, s := range strings.Split(z, ",") {
		if supportedServices[s] {
			if want == "" {
				want = s
			}
		} else {
			ignored = append(ignored, s)
		}
	}
	return want, ignored
}

func ourService(e event.Event) string {
	s := e.String("network.protocol")
	if s == "tls" {
		return "ssl"
	}
	return s
}

// fieldTally counts agreement per field.
type fieldTally struct {
	name        string
	agree, seen map[string]int
	order       []string
	conns, ok   int
	noService   bool // the baseline ran without the protocol analyzers
}

func newTally(name string) *fieldTally {
	return &fieldTally{name: name, agree: map[string]int{}, seen: map[string]int{}}
}

func (ft *fieldTally) field(t *testing.T, conn, field, want, got string) bool {
	if _, known := ft.seen[field]; !known {
		ft.order = append(ft.order, field)
	}
	ft.seen[field]++
	if want == got {
		ft.agree[field]++
		return true
	}
	t.Logf("%s: %s: %s: zeek %q, ours %q", ft.name, conn, field, want, got)
	return false
}

func (ft *fieldTally) report(t *testing.T) {
	for _, f := range ft.order {
		t.Logf("%s: field %-14s agrees on %d/%d (%.1f%%)", ft.name, f, ft.agree[f], ft.seen[f], 100*float64(ft.agree[f])/float64(ft.seen[f]))
	}
	if ft.conns > 0 {
		t.Logf("%s: %d/%d connections agree on every compared field (%.1f%%)", ft.name, ft.ok, ft.conns, 100*float64(ft.ok)/float64(ft.conns))
	}
}

// compareConn compares our flow events with a conn.log. fields limits
// the compared columns (nil: all that we emulate).
func compareConn(t *testing.T, ft *fieldTally, zeek zeekLog, evs []event.Event) {
	ours := map[string][]event.Event{}
	for _, e := range byDataset(evs, "flow") {
		k := eventConnKey(e)
		ours[k] = append(ours[k], e)
	}
	used := map[string]int{}
	flows := byDataset(evs, "flow")
	for n, r := range zeek {
		if _, ok := r["id.orig_h"]; !ok {
			// A zeek-cut output without the 5-tuple: match flows in order.
			ft.conns++
			if n >= len(flows) {
				ft.field(t, strconv.Itoa(n), "5-tuple", "present", "absent")
				continue
			}
			e := flows[n]
			k := eventConnKey(e)
			used[k]++
			good := ft.field(t, k, "5-tuple", "present", "present")
			want, ignored := expectedService(r["service"])
			if len(ignored) > 0 {
				t.Logf("%s: %s: zeek service %q: %v not decoded by us, comparing %q", ft.name, k, r["service"], ignored, want)
			}
			good = ft.field(t, k, "service", want, ourService(e)) && good
			good = ft.field(t, k, "history", r["history"], e.String(FieldHistory)) && good
			if good {
				ft.ok++
			}
			continue
		}
		k := zeekRowKey(r)
		if tp := r["tunnel_parents"]; tp != "" && tp != "-" {
			t.Logf("%s: skipped %s: inside a tunnel (%s); we summarise the outer packets only", ft.name, k, tp)
			continue
		}
		ft.conns++
		cands := ours[k]
		i := used[k]
		if i >= len(cands) {
			ft.field(t, k, "5-tuple", "present", "absent")
			continue
		}
		used[k]++
		e := cands[i]
		good := ft.field(t, k, "5-tuple", "present", "present")
		if !ft.noService {
			want, ignored := expectedService(r["service"])
			if len(ignored) > 0 {
				t.Logf("%s: %s: zeek service %q: %v not decoded by us, comparing %q", ft.name, k, r["service"], ignored, want)
			}
			good = ft.field(t, k, "service", want, ourService(e)) && good
		}
		if h, ok := r["history"]; ok {
			got := e.String(FieldHistory)
			if h == "-" {
				h = ""
			}
			good = ft.field(t, k, "history", h, got) && good
		}
		if cs, ok := r["conn_state"]; ok {
			good = ft.field(t, k, "conn_state", cs, e.String(FieldConnState)) && good
		}
		for _, c := range [][2]string{
			{"orig_pkts", "source.packets"}, {"resp_pkts", "destination.packets"},
			{"orig_ip_bytes", "source.bytes"}, {"resp_ip_bytes", "destination.bytes"},
			{"orig_bytes", FieldOrigPayload}, {"resp_bytes", FieldRespPayload},
		} {
			z, ok := r[c[0]]
			if !ok {
				continue
			}
			got := e.String(c[1])
			if z == "-" {
				// Zeek leaves sizes unset for flows of zero duration.
				z = "unset (duration 0)"
				if e.String("event.duration") == "0" {
					got = z
				}
			}
			good = ft.field(t, k, c[0], z, got) && good
		}
		if good {
			ft.ok++
		}
	}
	for k, list := range ours {
		for i := used[k]; i < len(list); i++ {
			t.Logf("%s: extra flow of ours not in conn.log: %s (%s)", ft.name, k, list[i].String(FieldConnState))
		}
	}
}

func TestZeekConnAgreement(t *testing.T) {
	dir := zeekDir(t)
	total := newTally("conn")
	cases := []struct {
		trace, baseline, note string
		noService             bool
	}{
		{"wikipedia.pcap", "opt.basic/conn.log", "", false},
		{"tunnels/Teredo.pcap", "core.tunnels.teredo/conn.log", "rows inside the Teredo tunnel are skipped", false},
		{"websocket/wstunnel-ssh.pcap", "scripts.base.protocols.websocket.wstunnel-ssh/conn.log", "only history and service are in this baseline (zeek-cut, no 5-tuple: flows matched in order)", false},
		{"http/get.pcap", "scripts.policy.protocols.conn.community-id-logging/conn.log.cut", "5-tuple only: the baseline ran `zeek -b` without the HTTP analyzer, so its service is \"-\": service not compared", true},
	}
	for _, c := range cases {
		var zl zeekLog
		switch {
		case strings.HasSuffix(c.baseline, ".cut"):
			zl = readZeekLogCols(t, filepath.Join(dir, "Baseline", c.baseline), []string{"id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "service", "community_id"})
		case strings.Contains(c.baseline, "wstunnel"):
			zl = readZeekLogCols(t, filepath.Join(dir, "Baseline", c.baseline), []string{"ts", "uid", "history", "service"})
			zl = zl[1:] // its header line
		default:
			zl = readZeekLog(t, filepath.Join(dir, "Baseline", c.baseline))
		}
		evs := summarize(t, Config{}, filepath.Join(dir, "Traces", c.trace))
		ft := newTally(c.trace)
		ft.noService = c.noService
		if c.note != "" {
			t.Logf("%s: %s", c.trace, c.note)
		}
		compareConn(t, ft, zl, evs)
		ft.report(t)
		total.conns += ft.conns
		total.ok += ft.ok
		for _, f := range ft.order {
			if _, ok := total.seen[f]; !ok {
				total.order = append(total.order, f)
			}
			total.seen[f] += ft.seen[f]
			total.agree[f] += ft.agree[f]
		}
	}
	total.report(t)
	if total.conns == 0 {
		t.Fatal("no connection compared")
	}
	share := float64(total.ok) / float64(total.conns)
	if share < 0.95 {
		t.Errorf("only %.1f%% of %d connections agree with Zeek on every field; want >= 95%%", 100*share, total.conns)
	}
	for _, f := range total.order {
		if s := float64(total.agree[f]) / float64(total.seen[f]); s < 0.95 {
			t.Errorf("field %s agrees on %.1f%% of connections; want >= 95%%", f, 100*s)
		}
	}
}

// TestZeekCommunityID: our Community ID equals Zeek's for every flow of
// the Community ID baselines.
func TestZeekCommunityID(t *testing.T) {
	dir := zeekDir(t)
	cases := map[string][]cidWant{}
	cut := readZeekLogCols(t, filepath.Join(dir, "Baseline", "scripts.policy.protocols.conn.community-id-logging", "conn.log.cut"),
		[]string{"id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "service", "community_id"})
	for _, r := range cut {
		cases["http/get.pcap"] = append(cases["http/get.pcap"], cidWant{zeekRowKey(r), r["community_id"]})
	}
	for _, name := range []string{"tcp", "udp"} {
		rows := readBifsOut(t, filepath.Join(dir, "Baseline", "bifs.community_id.run-pcaps", name+".pcap.out"))
		cases["communityid/"+name+".pcap"] = append(cases["communityid/"+name+".pcap"], rows...)
	}
	compared := 0
	for trace, wants := range cases {
		evs := byDataset(summarize(t, Config{}, filepath.Join(dir, "Traces", trace)), "flow")
		got := map[string]string{}
		for _, e := range evs {
			got[eventConnKey(e)] = e.String("network.community_id")
		}
		for _, w := range wants {
			compared++
			if got[w.key] != w.id {
				t.Errorf("%s: flow %s: community id %q, zeek %q", trace, w.key, got[w.key], w.id)
			}
		}
	}
	t.Logf("compared %d Community IDs with Zeek's", compared)
	if compared < 3 {
		t.Fatalf("only %d Community IDs compared", compared)
	}
}

type cidWant struct{ key, id string }

// readBifsOut reads "[orig_h=A, orig_p=P/tcp, resp_h=B, resp_p=Q/tcp, proto=6, ctx=[]], 1:..." lines.
func readBifsOut(t *testing.T, path string) []cidWant {
	t.Helper()
	var out []cidWant
	for _, line := range strings.Split(readFile(t, path), "\n") {
		if !strings.HasPrefix(line, "[orig_h=") {
			continue
		}
		i := strings.LastIndex(line, "], ")
		if i < 0 {
			t.Fatalf("%s: unexpected line %q", path, line)
		}
		kv := map[string]string{}
		for _, part := range strings.Split(strings.TrimPrefix(line[:i], "["), ", ") {
			if k, v, ok := strings.Cut(part, "="); ok {
				kv[k] = v
			}
		}
		op, proto, _ := strings.Cut(kv["orig_p"], "/")
		rp, _, _ := strings.Cut(kv["resp_p"], "/")
		out = append(out, cidWant{connKey(proto, normAddr(kv["orig_h"]), op, normAddr(kv["resp_h"]), rp), line[i+3:]})
	}
	if len(out) == 0 {
		t.Fatalf("%s: no flow found", path)
	}
	return out
}

func TestZeekDNSAgreement(t *testing.T) {
	dir := zeekDir(t)
	cases := []struct{ trace, baseline string }{
		{"wikipedia.pcap", "opt.basic/dns.log"},
		{"dns53.pcap", "scripts.base.protocols.dns.flip/dns.log"},
		{"dns-txt-multiple.pcap", "scripts.base.protocols.dns.multiple-txt-strings/dns.log"},
	}
	rows, agree := 0, 0
	for _, c := range cases {
		zl := readZeekLog(t, filepath.Join(dir, "Baseline", c.baseline))
		evs := byDataset(summarize(t, Config{}, filepath.Join(dir, "Traces", c.trace)), "dns")
		pool := map[string][]event.Event{}
		for _, e := range evs {
			k := eventConnKey(e) + " " + e.String("dns.question.name")
			pool[k] = append(pool[k], e)
		}
		for _, r := range zl {
			rows++
			k := zeekRowKey(r) + " " + r["query"]
			cands := pool[k]
			if len(cands) == 0 {
				t.Logf("%s: dns %s: zeek row (qtype %s rcode %s) has no event of ours", c.trace, k, r["qtype_name"], r["rcode_name"])
				continue
			}
			// Prefer the candidate agreeing on type and rcode.
			best := -1
			for i, e := range cands {
				if (r["qtype_name"] == "-" || e.String("dns.question.type") == r["qtype_name"]) &&
					(r["rcode_name"] == "-" || e.String("dns.response_code") == r["rcode_name"]) {
					best = i
					break
				}
			}
			if best < 0 {
				e := cands[0]
				t.Logf("%s: dns %s: zeek qtype %s rcode %s, ours %s %s", c.trace, k, r["qtype_name"], r["rcode_name"], e.String("dns.question.type"), e.String("dns.response_code"))
				pool[k] = cands[1:]
				continue
			}
			agree++
			pool[k] = append(cands[:best], cands[best+1:]...)
		}
		for k, left := range pool {
			for range left {
				t.Logf("%s: extra dns event of ours: %s", c.trace, k)
			}
		}
	}
	t.Logf("dns: %d/%d Zeek dns.log rows agree on query, qtype and rcode", agree, rows)
	if rows == 0 || float64(agree)/float64(rows) < 0.95 {
		t.Errorf("dns agreement %d/%d below 95%%", agree, rows)
	}
}

func TestZeekHTTPAgreement(t *testing.T) {
	dir := zeekDir(t)
	cases := []struct{ trace, baseline string }{
		{"wikipedia.pcap", "opt.basic/http.log"},
		{"tunnels/Teredo.pcap", "core.tunnels.teredo/http.log"},
	}
	rows, agree, skipped := 0, 0, 0
	for _, c := range cases {
		zl := readZeekLog(t, filepath.Join(dir, "Baseline", c.baseline))
		evs := byDataset(summarize(t, Config{}, filepath.Join(dir, "Traces", c.trace)), "http")
		got := map[string][]string{}
		for _, e := range evs {
			k := eventConnKey(e)
			got[k] = append(got[k], strings.Join([]string{e.String("http.request.method"), e.String("url.domain"), e.String("url.original")}, " "))
		}
		for _, r := range zl {
			k := connKey("tcp", normAddr(r["id.orig_h"]), r["id.orig_p"], normAddr(r["id.resp_h"]), r["id.resp_p"])
			if strings.Contains(r["id.orig_h"], ":") && c.trace == "tunnels/Teredo.pcap" {
				skipped++
				t.Logf("%s: skipped %s: inside the Teredo tunnel", c.trace, k)
				continue
			}
			rows++
			want := strings.Join([]string{r["method"], r["host"], r["uri"]}, " ")
			depth, _ := strconv.Atoi(r["trans_depth"])
			list := got[k]
			if depth < 1 || depth > len(list) {
				t.Logf("%s: http %s #%d: zeek %q, ours missing (%d requests)", c.trace, k, depth, want, len(list))
				continue
			}
			if list[depth-1] != want {
				t.Logf("%s: http %s #%d: zeek %q, ours %q", c.trace, k, depth, want, list[depth-1])
				continue
			}
			agree++
		}
	}
	t.Logf("http: %d/%d Zeek http.log rows agree on method, host and uri (%d skipped)", agree, rows, skipped)
	if rows == 0 || float64(agree)/float64(rows) < 0.95 {
		t.Errorf("http agreement %d/%d below 95%%", agree, rows)
	}
}

func TestZeekSSLAgreement(t *testing.T) {
	dir := zeekDir(t)
	zl := readZeekLog(t, filepath.Join(dir, "Baseline", "scripts.base.protocols.ssl.tls-1.2", "ssl.log"))
	evs := byDataset(summarize(t, Config{}, filepath.Join(dir, "Traces", "tls", "tls1.2.pcap")), "tls")
	got := map[string]event.Event{}
	for _, e := range evs {
		got[eventConnKey(e)] = e
	}
	for _, r := range zl {
		k := connKey("tcp", normAddr(r["id.orig_h"]), r["id.orig_p"], normAddr(r["id.resp_h"]), r["id.resp_p"])
		e, ok := got[k]
		if !ok {
			t.Errorf("ssl %s: no tls event of ours", k)
			continue
		}
		want := r["server_name"]
		if want == "-" {
			want = ""
		}
		if sni := e.String("tls.client.server_name"); sni != want {
			t.Errorf("ssl %s: server_name zeek %q ours %q", k, want, sni)
		}
		if v := r["version"]; v == "TLSv12" && e.String("tls.version") != "1.2" {
			t.Errorf("ssl %s: version zeek %s ours %q", k, v, e.String("tls.version"))
		}
	}
	t.Logf("ssl: compared %d ssl.log rows", len(zl))
}
