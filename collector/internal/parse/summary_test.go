package parse

import (
	"testing"
)

// A flow summary as `csirt-agent pcap` writes it for Zeek's http/get.pcap.
const flowSummary = `{"@timestamp":"2013-03-07T21:42:06.869344Z","connection":{"history":"ShADadFf","orig_bytes":136,"resp_bytes":5007,"state":"SF"},"destination":{"bytes":5379,"ip":"192.150.187.43","packets":7,"port":80},"event":{"category":["network"],"dataset":"flow","duration":211628000,"end":"2013-03-07T21:42:07.080972Z","kind":"event","module":"network","start":"2013-03-07T21:42:06.869344Z","type":["connection","end"]},"network":{"bytes":5891,"community_id":"1:yvyB8h+3dnggTZW0UEITWCst97w=","packets":14,"protocol":"http","transport":"tcp","type":"ipv4"},"source":{"bytes":512,"ip":"141.142.228.5","packets":7,"port":59856}}`

func TestSummaryKeepsTheAgentsEvent(t *testing.T) {
	d := New(Options{Now: fuzzNow})
	ev := d.Summary(Record{Raw: []byte(flowSummary), Source: "capture"})
	for k, want := range map[string]string{
		"event.dataset": "flow", "connection.state": "SF", "source.ip": "141.142.228.5",
		"network.community_id": "1:yvyB8h+3dnggTZW0UEITWCst97w=", "event.module": "network",
	} {
		if got := ev.String(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if ev["destination.port"] == nil || ev["connection.orig_bytes"] == nil {
		t.Errorf("numbers lost: %v", ev)
	}
}

func TestSummaryBadRecordsAreKept(t *testing.T) {
	d := New(Options{Now: fuzzNow})
	for name, raw := range map[string]string{
		"not json":      "GET / HTTP/1.1",
		"other dataset": `{"@timestamp":"2024-01-01T00:00:00Z","event":{"dataset":"sshd"}}`,
		"no timestamp":  `{"event":{"dataset":"dns"}}`,
	} {
		ev := d.Summary(Record{Raw: []byte(raw), Source: "capture"})
		if ev.String("event.dataset") != "summary.unparsed" || ev.String("event.original") != raw {
			t.Errorf("%s: dataset %q original %q", name, ev.String("event.dataset"), ev.String("event.original"))
		}
	}
}
