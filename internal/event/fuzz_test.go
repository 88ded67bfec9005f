package event

import (
	"encoding/json"
	"testing"
)

// FuzzDecode checks that any input either fails with an error or decodes
// into an event that encodes and decodes again to the same event.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"@timestamp":"2026-11-02T08:30:01.123456789Z","source":{"ip":"10.0.0.1","port":22}}`))
	f.Add([]byte(`{"event.category":["authentication"],"tags":"x","a":{"b":[1,2,{"c":3}]}}`))
	f.Add([]byte(`{"related.ip":["::1","10.0.0.1"],"x":1e400}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := Decode(data)
		if err != nil {
			return
		}
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatalf("encoding a decoded event: %v", err)
		}
		back, err := Decode(b)
		if err != nil {
			t.Fatalf("decoding our own encoding %s: %v", b, err)
		}
		b2, err := json.Marshal(back)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != string(b2) {
			t.Fatalf("not stable:\n%s\n%s", b, b2)
		}
	})
}
