package heuristics

import (
	"strings"
	"testing"
	"time"
)

func TestLoadConfigLayers(t *testing.T) {
	cfg, err := LoadConfig([]byte(`
port_scan:
  window: 2m
  min_ports: 30
beaconing:
  ignore_ports: [123]
dns_tunnel:
  extra_allow_parents: [regione.toscana.it]
entities:
  comune-firenze:
    port_scan: {min_ports: 50}
    outbound_volume: {min_bytes: 1000000000, allow_destinations: [192.0.2.0/24]}
  comune-prato:
    dns_tunnel: {threshold: 80}
`))
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.PortScan.For("comune-x"); p.Window.D() != 2*time.Minute || p.MinPorts != 30 || p.MinHosts != 20 {
		t.Errorf("regional port_scan %+v", p)
	}
	// The entity layer changes one key and keeps the regional others.
	if p := cfg.PortScan.For("comune-firenze"); p.MinPorts != 50 || p.Window.D() != 2*time.Minute {
		t.Errorf("comune-firenze port_scan %+v", p)
	}
	if p := cfg.Volume.For("comune-firenze"); p.MinBytes != 1e9 || len(p.allow) != 1 || p.Window.D() != 15*time.Minute {
		t.Errorf("comune-firenze volume %+v", p)
	}
	if p := cfg.Volume.For("comune-prato"); p.MinBytes != 100e6 {
		t.Errorf("comune-prato volume %+v", p)
	}
	if p := cfg.DNSTunnel.For("comune-prato"); p.Threshold != 80 || !underDomain("x.regione.toscana.it", p.allow) {
		t.Errorf("comune-prato dns %+v", p)
	}
	if p := cfg.Beaconing.For(""); !p.ignore[123] || p.ignore[53] {
		t.Errorf("beaconing ignore %v", p.ignore)
	}
	if got := cfg.PortScan.Entities(); len(got) != 1 || got[0] != "comune-firenze" {
		t.Errorf("entities %v", got)
	}
	empty, err := LoadConfig(nil)
	if err != nil || empty.PortScan.Regional.MinPorts != 20 {
		t.Fatalf("empty file: %v %+v", err, empty)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	cases := map[string]string{
		"port_scan: {min_port: 3}\n":                         "field min_port not found",
		"portscan: {}\n":                                     "field portscan not found",
		"entities: {c: {beaconing: {period: 1}}}\n":          "entities.c.beaconing",
		"beaconing: {min_period: 5}\n":                       "duration",
		"beaconing: {min_period: 1h, max_period: 1m}\n":      "min_period",
		"dns_tunnel: {long_label: 99}\n":                     "long_label",
		"outbound_volume: {key_by: user.name}\n":             "key_by",
		"outbound_volume: {allow_destinations: [nope]}\n":    "neither an address nor a CIDR",
		"port_scan: [1, 2]\n":                                "must be a mapping",
		"entities: {\"\": {port_scan: {min_ports: 3}}}\n":    "entity id is empty",
		"beaconing: {datasets: [conn]}\n":                    "not one of flow, tls, http",
		"port_scan: {success_weight: 2}\n":                   "success_weight",
		"port_scan: {window: -1s}\n":                         "window",
		"outbound_volume: {alpha: 0}\n":                      "alpha",
		"beaconing: {allow_destinations: [\"a b\"]}\n":       "not an address, CIDR or domain",
		"port_scan: {horizontal_ignore_ports: [70000]}\n":    "not a port number",
		"dns_tunnel: {allow_parents: [\"\"]}\n":              "not a domain",
		"outbound_volume: {window: 1h, forget_after: 30m}\n": "forget_after",
		"entities: {c: {port_scan: {window: 0s}}}\n":         "entities.c.port_scan",
	}
	for in, want := range cases {
		_, err := LoadConfig([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one containing %q", in, err, want)
		}
	}
}

func TestDefaultsAreValid(t *testing.T) {
	cfg := DefaultConfig()
	for _, v := range []validator{&cfg.PortScan.Regional, &cfg.Beaconing.Regional, &cfg.DNSTunnel.Regional, &cfg.Volume.Regional} {
		if err := v.Validate(); err != nil {
			t.Error(err)
		}
	}
}
