package correlator

import (
	"testing"
)

// FuzzParseOverrides: any input gives overrides or an error, never a panic,
// and accepted overrides compile into layers.
func FuzzParseOverrides(f *testing.F) {
	f.Add([]byte("regional:\n  disabled: [a]\n  thresholds:\n    b: {timespan: 5m, count: 3}\n  allow:\n    c: {source.ip: [192.0.2.1]}\n"))
	f.Add([]byte("entities:\n  comune-a:\n    thresholds:\n      ssh_bruteforce: {count: 2}\nheuristics:\n  port_scan: {min_ports: 30}\n"))
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := ParseOverrides(data)
		if err != nil {
			return
		}
		l := compileLayer(o.Regional)
		for _, e := range o.Entities {
			_ = compileLayer(o.Regional, e)
		}
		_ = l.off("a", "b")
	})
}
