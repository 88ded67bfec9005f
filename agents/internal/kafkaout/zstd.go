package kafkaout

import (
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/segmentio/kafka-go"
)

// zstdCodec is the producer's zstd codec for Kafka record batches. kafka-go's
// own codec streams through a pooled encoder at level 3: the pool loses the
// encoder at garbage collections and level 3's hash tables are large, which
// on an agent that compresses about fourteen batches a second, each with
// cold caches, cost more than the rest of the send (docs/PERFORMANCE.md,
// "Agent"). This one keeps one encoder at zstd's fastest level for the
// producer's life and compresses each batch in one EncodeAll call; the output
// is ordinary zstd that any consumer reads. Reading is kafka-go's.
type zstdCodec struct {
	enc *zstd.Encoder // EncodeAll is safe for concurrent use

	mu      sync.Mutex
	in, out []byte // buffers kept for the next batch
}

func newZstdCodec() (*zstdCodec, error) {
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(1),
		zstd.WithZeroFrames(true),
		// The default 8 MiB window makes the encoder keep a history buffer
		// of twice that once a request of several batches passes 128 KiB
		// (a backlog): most of the agent's heap. Log lines repeat within a
		// few KiB; 256 KiB of window loses nothing measurable.
		zstd.WithWindowSize(windowSize),
		zstd.WithLowerEncoderMem(true),
	)
	if err != nil {
		return nil, err
	}
	return &zstdCodec{enc: enc}, nil
}

// Code is Kafka's attribute value for zstd.
func (c *zstdCodec) Code() int8 { return kafka.Zstd.Codec().Code() }

// Name is the codec's name.
func (c *zstdCodec) Name() string { return "zstd" }

// NewReader is kafka-go's zstd reader (the producer reads no records).
func (c *zstdCodec) NewReader(r io.Reader) io.ReadCloser { return kafka.Zstd.Codec().NewReader(r) }

// NewWriter returns a writer that collects a batch and writes it to w,
// compressed, on Close.
func (c *zstdCodec) NewWriter(w io.Writer) io.WriteCloser {
	c.mu.Lock()
	in, out := c.in[:0], c.out[:0]
	c.in, c.out = nil, nil
	c.mu.Unlock()
	return &zstdWriter{c: c, w: w, in: in, out: out}
}

// windowSize is the zstd window of the producer's batches.
const windowSize = 256 << 10

// maxKeptBuffer bounds the buffers kept between batches.
const maxKeptBuffer = 4 << 20

type zstdWriter struct {
	c       *zstdCodec
	w       io.Writer
	in, out []byte
	closed  bool
}

func (z *zstdWriter) Write(p []byte) (int, error) {
	if z.closed {
		return 0, io.ErrClosedPipe
	}
	z.in = append(z.in, p...)
	return len(p), nil
}

// Close compresses what was written and writes it to the underlying
// writer.
func (z *zstdWriter) Close() error {
	if z.closed {
		return nil
	}
	z.closed = true
	z.out = z.c.enc.EncodeAll(z.in, z.out)
	_, err := z.w.Write(z.out)
	if cap(z.in) <= maxKeptBuffer && cap(z.out) <= maxKeptBuffer {
		z.c.mu.Lock()
		z.c.in, z.c.out = z.in[:0], z.out[:0]
		z.c.mu.Unlock()
	}
	z.in, z.out = nil, nil
	return err
}
