package envelope

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

var t0 = time.Date(2026, 11, 22, 23, 0, 0, 123456789, time.UTC)

func testBatch(n, size int) *Batch {
	b := &Batch{
		AgentID: "agent-0001", EntityID: "comune-di-prato", StreamID: "file:sshd",
		FirstSeq: 1000, Created: t0.Add(time.Second),
	}
	for i := range n {
		d := bytes.Repeat([]byte{'a' + byte(i%26)}, size)
		b.Records = append(b.Records, Record{Time: t0.Add(time.Duration(i) * time.Millisecond), Kind: KindRawLine, Data: d})
	}
	return b
}

func ed25519Key(tb testing.TB) (Signer, Verifier) {
	tb.Helper()
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	s, err := NewEd25519Signer("ed-1", priv)
	if err != nil {
		tb.Fatal(err)
	}
	v, err := NewVerifier(priv.Public())
	if err != nil {
		tb.Fatal(err)
	}
	return s, v
}

func ecdsaKey(tb testing.TB) (Signer, Verifier) {
	tb.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := NewSigner("ec-1", priv)
	if err != nil {
		tb.Fatal(err)
	}
	v, err := NewVerifier(&priv.PublicKey)
	if err != nil {
		tb.Fatal(err)
	}
	return s, v
}

func hmacKey(tb testing.TB) (Signer, Verifier) {
	tb.Helper()
	k, err := NewHMACKey("hmac-1", bytes.Repeat([]byte{9}, 32))
	if err != nil {
		tb.Fatal(err)
	}
	return k, k
}

func TestSealOpenAllAlgorithms(t *testing.T) {
	for name, mk := range map[string]func(testing.TB) (Signer, Verifier){
		"ed25519": ed25519Key, "ecdsa": ecdsaKey, "hmac": hmacKey,
	} {
		t.Run(name, func(t *testing.T) {
			s, v := mk(t)
			b := testBatch(3, 40)
			b.Records[1].Flags = FlagTruncated | FlagInvalidUTF8
			b.Records[2].Kind = KindSummary
			b.Records[2].Data = nil
			wire, err := Seal(b, s)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Open(wire, func(agent, key string) (Verifier, error) {
				if agent != "agent-0001" || key != s.KeyID() {
					t.Errorf("resolver got agent %q key %q", agent, key)
				}
				return v, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if got.SchemaVersion != "1.0" || got.AgentID != b.AgentID || got.EntityID != b.EntityID ||
				got.StreamID != b.StreamID || got.FirstSeq != 1000 || !got.Created.Equal(b.Created) ||
				got.Algorithm != s.Algorithm() || got.KeyID != s.KeyID() || len(got.Records) != 3 {
				t.Fatalf("decoded header differs: %+v", got)
			}
			for i, r := range got.Records {
				w := b.Records[i]
				if !r.Time.Equal(w.Time) || r.Kind != w.Kind || r.Flags != w.Flags || !bytes.Equal(r.Data, w.Data) {
					t.Errorf("record %d: got %+v want %+v", i, r, w)
				}
			}
			if got.LastSeq() != 1002 || got.EventID(2) == got.EventID(1) {
				t.Errorf("sequence helpers: last %d", got.LastSeq())
			}
			// The streamed message equals the one hashed from the wire.
			m, err := got.SignedMessage()
			if err != nil || !bytes.Equal(m, message(wire[:len(wire)-2-len(got.Signature)])) || len(m) != 50 {
				t.Fatalf("streamed message differs (err %v)", err)
			}
			// Encode of the decoded batch is byte-identical (canonical).
			again, err := Encode(got)
			if err != nil || !bytes.Equal(again, wire) {
				t.Fatalf("re-encoding differs (err %v)", err)
			}
			// Sign+Encode gives the same signed part as Seal.
			b2 := testBatch(3, 40)
			b2.Records = b.Records
			if err := Sign(b2, s); err != nil {
				t.Fatal(err)
			}
			if err := Verify(b2, v); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestTamper flips every byte of a small sealed batch: each flip must fail
// decoding or verification, never pass.
func TestTamper(t *testing.T) {
	s, v := ed25519Key(t)
	wire, err := Seal(testBatch(2, 5), s)
	if err != nil {
		t.Fatal(err)
	}
	for i := range wire {
		bad := append([]byte(nil), wire...)
		bad[i] ^= 0x01
		b, err := Decode(bad)
		if err != nil {
			continue
		}
		if err := Verify(b, v); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("flipping byte %d: verify returned %v, want ErrBadSignature", i, err)
		}
	}
}

func TestVerifyFailures(t *testing.T) {
	s, _ := ed25519Key(t)
	_, otherV := ecdsaKey(t)
	other, _ := NewEd25519Verifier(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, 32)).Public().(ed25519.PublicKey))
	b := testBatch(1, 10)
	if err := Sign(b, s); err != nil {
		t.Fatal(err)
	}
	if err := Verify(b, other); !errors.Is(err, ErrBadSignature) {
		t.Errorf("wrong key: %v", err)
	}
	if err := Verify(b, otherV); !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), "ecdsa") {
		t.Errorf("wrong algorithm: %v", err)
	}
	b.EntityID = "another-entity" // an agent claiming another entity
	_, v := ed25519Key(t)
	if err := Verify(b, v); !errors.Is(err, ErrBadSignature) {
		t.Errorf("changed entity: %v", err)
	}
	b.Signature = nil
	if err := Verify(b, v); !errors.Is(err, ErrBadSignature) {
		t.Errorf("unsigned: %v", err)
	}
	if _, err := Encode(b); !errors.Is(err, ErrUnsigned) {
		t.Errorf("encode unsigned: %v", err)
	}
	if _, err := NewHMACKey("k", []byte("short")); err == nil {
		t.Error("short HMAC key accepted")
	}
	k, _ := NewHMACKey("k", make([]byte, 32))
	if strings.Contains(k.String(), "\x00") || !strings.Contains(k.String(), "redacted") {
		t.Errorf("HMAC key prints as %q", k.String())
	}
}

func TestEncodeRefuses(t *testing.T) {
	s, _ := hmacKey(t)
	cases := map[string]struct {
		mod  func(*Batch)
		want error
	}{
		"no records":      {func(b *Batch) { b.Records = nil }, nil},
		"empty agent":     {func(b *Batch) { b.AgentID = "" }, nil},
		"long stream":     {func(b *Batch) { b.StreamID = strings.Repeat("s", 256) }, ErrTooLarge},
		"schema 2":        {func(b *Batch) { b.SchemaVersion = "2.0" }, ErrUnsupportedVersion},
		"zero time":       {func(b *Batch) { b.Records[0].Time = time.Time{} }, nil},
		"year 3000":       {func(b *Batch) { b.Created = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC) }, nil},
		"bad kind":        {func(b *Batch) { b.Records[0].Kind = 9 }, nil},
		"bad flags":       {func(b *Batch) { b.Records[0].Flags = 0x80 }, nil},
		"record too big":  {func(b *Batch) { b.Records[0].Data = make([]byte, MaxRecordSize+1) }, ErrTooLarge},
		"batch too big":   {func(b *Batch) { *b = *testBatch(5, MaxRecordSize) }, ErrTooLarge},
		"too many":        {func(b *Batch) { *b = *testBatch(MaxRecords+1, 0) }, ErrTooLarge},
		"seq overflow":    {func(b *Batch) { b.FirstSeq = ^uint64(0) }, nil},
		"invalid utf8 id": {func(b *Batch) { b.AgentID = "\xff" }, nil},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			b := testBatch(2, 3)
			c.mod(b)
			_, err := Seal(b, s)
			if err == nil {
				t.Fatal("sealed")
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

func sealed(t *testing.T) []byte {
	t.Helper()
	s, _ := hmacKey(t)
	w, err := Seal(testBatch(2, 3), s)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// offsets in a testBatch(2,3) encoding signed with "hmac-1".
func TestDecodeErrors(t *testing.T) {
	w := sealed(t)
	countOff := 4 + 1 + 1 + 4 + 1 + 7 + 11 + 16 + 10 + 8 + 8
	if got := binary.BigEndian.Uint32(w[countOff:]); got != 2 {
		t.Fatalf("test offsets wrong: count field holds %d", got)
	}
	set := func(off int, v ...byte) []byte {
		b := append([]byte(nil), w...)
		copy(b[off:], v)
		return b
	}
	cases := []struct {
		name   string
		in     []byte
		offset int
		want   error
	}{
		{"empty", nil, 0, nil},
		{"magic", set(0, 'X'), 0, nil},
		{"format 2", set(4, 2), 4, ErrUnsupportedVersion},
		{"header flags", set(5, 1), 5, nil},
		{"schema 9.0", set(7, '9'), 6, ErrUnsupportedVersion},
		{"algorithm", set(10, 0), 10, nil},
		{"huge count", set(countOff, 0xff, 0xff, 0xff, 0xff), countOff, ErrTooLarge},
		{"count beyond input", set(countOff, 0, 0, 0x10, 0), countOff, nil},
		{"kind", set(countOff+4+8, 7), countOff + 4 + 8, nil},
		{"flags", set(countOff+4+9, 0x40), countOff + 4 + 9, nil},
		{"record size", set(countOff+4+10, 0x7f), countOff + 4 + 10, ErrTooLarge},
		{"trailing", append(append([]byte(nil), w...), 0), len(w), nil},
		{"truncated", w[:len(w)-1], len(w) - 32, nil},
		{"oversize input", make([]byte, MaxBatchSize+1), 0, ErrTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode(c.in)
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("got %v, want a *DecodeError", err)
			}
			if de.Offset != c.offset {
				t.Errorf("offset %d, want %d (%v)", de.Offset, c.offset, err)
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Errorf("got %v, want %v", err, c.want)
			}
		})
	}
}

// TestGolden pins the wire format: an Ed25519 batch from a fixed seed (the
// signature is deterministic). Collector implementations in other languages
// can use testdata/golden-ed25519.hex as a test vector; the public key is
// ed25519.NewKeyFromSeed(32 bytes of 0x07).
func TestGolden(t *testing.T) {
	s, v := ed25519Key(t)
	b := testBatch(2, 5)
	b.Records[1].Flags = FlagTruncated
	wire, err := Seal(b, s)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "golden-ed25519.hex")
	got := hex.Dump(wire)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if got != string(want) {
		t.Fatalf("wire format changed:\n%s\nwant:\n%s", got, want)
	}
	if _, err := Open(wire, func(string, string) (Verifier, error) { return v, nil }); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkSeal500x250(b *testing.B) {
	for _, alg := range []struct {
		name string
		mk   func(testing.TB) (Signer, Verifier)
	}{{"ed25519", ed25519Key}, {"ecdsa", ecdsaKey}, {"hmac", hmacKey}} {
		b.Run(alg.name, func(b *testing.B) {
			s, _ := alg.mk(b)
			batch := testBatch(500, 250)
			b.ReportAllocs()
			var n int
			for b.Loop() {
				w, err := Seal(batch, s)
				if err != nil {
					b.Fatal(err)
				}
				n = len(w)
			}
			b.SetBytes(int64(n))
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/500, "ns/record")
		})
	}
}

func BenchmarkOpen500x250(b *testing.B) {
	for _, alg := range []struct {
		name string
		mk   func(testing.TB) (Signer, Verifier)
	}{{"ed25519", ed25519Key}, {"ecdsa", ecdsaKey}, {"hmac", hmacKey}} {
		b.Run(alg.name, func(b *testing.B) {
			s, v := alg.mk(b)
			w, err := Seal(testBatch(500, 250), s)
			if err != nil {
				b.Fatal(err)
			}
			resolve := func(string, string) (Verifier, error) { return v, nil }
			b.SetBytes(int64(len(w)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Open(w, resolve); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/500, "ns/record")
		})
	}
}
