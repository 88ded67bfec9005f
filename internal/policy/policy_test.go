package policy

import (
	"encoding/json"
	"testing"
	"time"
)

func TestDefaultValidAndRoundTrips(t *testing.T) {
	p := Default()
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if p.HeartbeatInterval.D() != 30*time.Second || p.Revision == "" {
		t.Fatalf("defaults not filled: %+v", p)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var q Policy
	if err := json.Unmarshal(b, &q); err != nil {
		t.Fatal(err)
	}
	if q.Digest() != p.Revision {
		t.Fatalf("digest changed over a round trip: %s != %s", q.Digest(), p.Revision)
	}
	q.Capture.Enabled = true
	if q.Digest() == p.Revision {
		t.Fatal("digest did not change with the content")
	}
}

func TestValidateRejects(t *testing.T) {
	for name, mut := range map[string]func(*Policy){
		"dup name":  func(p *Policy) { p.Sources = append(p.Sources, p.Sources[0]) },
		"bad name":  func(p *Policy) { p.Sources[0].Name = "Auth Log" },
		"no kind":   func(p *Policy) { p.Sources[0].Kind = "" },
		"fast beat": func(p *Policy) { p.HeartbeatInterval = Duration(time.Millisecond) },
		"snaplen":   func(p *Policy) { p.Capture.SnapLen = 10 },
	} {
		p := Default()
		mut(&p)
		if err := p.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
