package envelope

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// FuzzDecode checks that Decode never panics, and that whatever it accepts
// is canonical: encoding the decoded batch gives back the input exactly.
func FuzzDecode(f *testing.F) {
	k, err := NewHMACKey("hmac-1", bytes.Repeat([]byte{9}, 32))
	if err != nil {
		f.Fatal(err)
	}
	for _, n := range []int{1, 3} {
		w, err := Seal(testBatch(n, 4), k)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(w)
	}
	f.Add([]byte(Magic))
	f.Add([]byte("CSEB\x01\x00\x031.0"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := Decode(data)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error is not a *DecodeError: %v", err)
			}
			if de.Offset < 0 || de.Offset > len(data) {
				t.Fatalf("offset %d outside input of %d bytes", de.Offset, len(data))
			}
			return
		}
		// Open hashes the input's signed part in place of re-encoding:
		// both must give the same message.
		d := decoder{buf: data}
		_, signed, _ := d.batch()
		m, err := b.SignedMessage()
		if err != nil || !bytes.Equal(m, message(data[:signed])) {
			t.Fatalf("signed message differs from the input's (err %v)", err)
		}
		again, err := Encode(b)
		if err != nil {
			t.Fatalf("re-encoding an accepted batch: %v", err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("not canonical:\n in %x\nout %x", data, again)
		}
		// A random input essentially never carries a valid HMAC.
		if b.Algorithm == HMACSHA256 {
			if err := Verify(b, k); err == nil && !bytes.Contains(data, []byte("hmac-1")) {
				t.Fatal("random input verified")
			}
		}
	})
}

// FuzzRoundTrip seals batches built from fuzzed fields and checks that
// Open returns them unchanged.
func FuzzRoundTrip(f *testing.F) {
	f.Add("agent", "entity", "stream", uint64(1), int64(1e18), []byte("line one\nline two"), uint8(0), uint8(1))
	f.Add("a", "é", "file:/var/log/x", uint64(1<<63), int64(-5), []byte{0xff, 0, 0xfe}, uint8(3), uint8(2))
	k, err := NewHMACKey("hmac-1", bytes.Repeat([]byte{9}, 32))
	if err != nil {
		f.Fatal(err)
	}
	resolve := func(string, string) (Verifier, error) { return k, nil }
	f.Fuzz(func(t *testing.T, agent, entity, stream string, seq uint64, ns int64, data []byte, flags, kind uint8) {
		b := &Batch{AgentID: agent, EntityID: entity, StreamID: stream, FirstSeq: seq, Created: time.Unix(0, ns)}
		// Split data into records at each newline.
		for i, line := range bytes.Split(data, []byte("\n")) {
			b.Records = append(b.Records, Record{
				Time: time.Unix(0, ns+int64(i)), Kind: Kind(kind%2 + 1), Flags: Flags(flags) & knownFlags, Data: line,
			})
		}
		w, err := Seal(b, k)
		if err != nil {
			return // invalid ids, overflowing sequence: refused, fine
		}
		got, err := Open(w, resolve)
		if err != nil {
			t.Fatalf("opening our own batch: %v", err)
		}
		if got.AgentID != agent || got.EntityID != entity || got.StreamID != stream || got.FirstSeq != seq ||
			got.Created.UnixNano() != ns || len(got.Records) != len(b.Records) {
			t.Fatalf("header changed: %+v", got)
		}
		for i := range got.Records {
			g, w := got.Records[i], b.Records[i]
			if !g.Time.Equal(w.Time) || g.Kind != w.Kind || g.Flags != w.Flags || !bytes.Equal(g.Data, w.Data) {
				t.Fatalf("record %d changed: %+v != %+v", i, g, w)
			}
		}
	})
}
