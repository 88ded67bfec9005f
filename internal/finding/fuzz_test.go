package finding

import (
	"bytes"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to Decode: it must not panic, and what
// it accepts must encode again and decode to the same encoding.
func FuzzDecode(f *testing.F) {
	good, err := Encode(sample())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"@timestamp":"2026-11-22T10:00:00Z","finding":{"id":"x"},"kind":"coverage","rule":{"id":"r"},"severity":"low","risk_score":0}`))
	f.Add([]byte(`{"@timestamp":"2026-11-22T10:00:00Z","finding":{"id":"x"},"kind":"integrity","rule":{"id":"r"},"severity":"high","observables":{"type":["ip"],"value":[]}}`))
	f.Add([]byte(`{"labels":{"a":"b"},"organization":{"id":"_regional"}}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Decode(data)
		if err != nil {
			return
		}
		enc, err := Encode(d)
		if err != nil {
			t.Fatalf("decoded finding does not encode: %v", err)
		}
		d2, err := Decode(enc)
		if err != nil {
			t.Fatalf("re-encoded finding does not decode: %v\n%s", err, enc)
		}
		enc2, err := Encode(d2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable: %v\n%s\n%s", err, enc, enc2)
		}
	})
}
