package incident

import (
	"testing"
	"time"
)

// FuzzDecode: Decode never panics; what it accepts encodes and decodes to
// the same incident.
func FuzzDecode(f *testing.F) {
	at := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	in := New("inc-1", KeyOf(sample(at)), sample(at), true, "stage", at)
	doc, err := Encode(in)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(doc)
	f.Add([]byte(`{"id":"inc-1","kind":"campaign","created":"2026-11-20T10:00:00Z","status":"closed","resolution":"benign","severity":"low","tlp":"amber+strict","pap":"red","findings":{"count":0},"members":[{"entity":"a","incident":"b"}]}`))
	f.Add([]byte(`{"observables":{"type":["ip"],"value":["1.2.3.4","x"]}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := Decode(data)
		if err != nil {
			return
		}
		out, err := Encode(in)
		if err != nil {
			t.Fatalf("accepted document does not encode: %v", err)
		}
		again, err := Decode(out)
		if err != nil {
			t.Fatalf("re-decoding: %v\n%s", err, out)
		}
		out2, err := Encode(again)
		if err != nil || string(out2) != string(out) {
			t.Fatalf("not stable:\n%s\n%s", out, out2)
		}
	})
}
