package event

import (
	"encoding/json"
	"testing"
)

// BenchmarkMarshal encodes a typical sshd event (about 25 fields).
func BenchmarkMarshal(b *testing.B) {
	e := sample()
	e["event.original"] = "Nov  2 08:30:01 web01 sshd[4121]: Failed password for root from 203.0.113.7 port 52144 ssh2"
	e["message"] = "Failed password for root from 203.0.113.7 port 52144 ssh2"
	e["event.action"] = "ssh_login"
	e["event.module"] = "system"
	e["process.name"] = "sshd"
	e["process.pid"] = int64(4121)
	e["related.user"] = []string{"root"}
	e["log.syslog.hostname"] = "web01"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(e); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecode decodes the same event.
func BenchmarkDecode(b *testing.B) {
	e := sample()
	e["event.original"] = "Nov  2 08:30:01 web01 sshd[4121]: Failed password for root from 203.0.113.7 port 52144 ssh2"
	data, err := json.Marshal(e)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendJSON is the encoder without encoding/json's re-validation
// of MarshalJSON output.
func BenchmarkAppendJSON(b *testing.B) {
	e := sample()
	e["event.original"] = "Nov  2 08:30:01 web01 sshd[4121]: Failed password for root from 203.0.113.7 port 52144 ssh2"
	e["message"] = "Failed password for root from 203.0.113.7 port 52144 ssh2"
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		var err error
		if buf, err = e.AppendJSON(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}
