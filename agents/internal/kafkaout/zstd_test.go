package kafkaout

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// TestZstdCodecRoundTrip compresses batches of several sizes, one after the
// other on one codec (its buffers reused, and dropped after a batch too large
// to keep), and reads each back with kafka-go's zstd reader and with the
// reference decoder.
func TestZstdCodecRoundTrip(t *testing.T) {
	c, err := newZstdCodec()
	if err != nil {
		t.Fatal(err)
	}
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	for _, n := range []int{0, 1, 250, 17_500, 300_000, maxKeptBuffer + 1, 1000} {
		var in bytes.Buffer
		for i := 0; in.Len() < n; i++ {
			fmt.Fprintf(&in, "10.0.%d.%d - - \"GET /albo-pretorio/atti?id=%d HTTP/1.1\" 200\n", i%256, i%7, i*7919)
		}
		data := in.Bytes()[:n]
		var out bytes.Buffer
		w := c.NewWriter(&out)
		// Written in pieces, as kafka-go writes a record batch.
		for rest := data; len(rest) > 0; {
			k := min(len(rest), 333)
			if m, err := w.Write(rest[:k]); err != nil || m != k {
				t.Fatalf("%d bytes: write: %d, %v", n, m, err)
			}
			rest = rest[k:]
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte("x")); err == nil {
			t.Fatal("a write after Close was accepted")
		}
		if n > 1000 && out.Len() >= n/2 {
			t.Errorf("%d bytes of log lines compressed to %d bytes", n, out.Len())
		}
		r := c.NewReader(bytes.NewReader(out.Bytes()))
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%d bytes: kafka-go's reader got %d bytes, %v", n, len(got), err)
		}
		if got, err := dec.DecodeAll(out.Bytes(), nil); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%d bytes: zstd decoder got %d bytes, %v", n, len(got), err)
		}
	}
	if c.Code() != 4 || c.Name() != "zstd" {
		t.Errorf("codec %d %q, want Kafka's zstd (4)", c.Code(), c.Name())
	}
}
