package intake

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/collector/internal/verify"
	"github.com/csirt-toscana/platform/internal/enroll"
	"github.com/csirt-toscana/platform/internal/envelope"
)

// BenchmarkBatchMessages measures the intake's own work on a /v1/batches
// body (framing, envelope decoding, agent and entity check): 20 envelopes
// of 250 lines of 250 bytes per request. TLS, the store's revocation
// check and Kafka are not included.
func BenchmarkBatchMessages(b *testing.B) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signer, err := envelope.NewECDSASigner("bench", key)
	if err != nil {
		b.Fatal(err)
	}
	line := []byte(strings.Repeat("x", 250))
	var body []byte
	lines := 0
	for i := range 20 {
		bt := &envelope.Batch{AgentID: "comune-b-host-aaaaaa", EntityID: "comune-b", StreamID: "auth", FirstSeq: uint64(i*250 + 1), Created: time.Now()}
		for range 250 {
			bt.Records = append(bt.Records, envelope.Record{Time: time.Now(), Kind: envelope.KindRawLine, Data: line})
			lines++
		}
		wire, err := envelope.Seal(bt, signer)
		if err != nil {
			b.Fatal(err)
		}
		body = enroll.AppendFrame(body, wire)
	}
	s := &Server{o: Options{Now: time.Now, Topic: "bench"}}
	a := AgentRecord{AgentDoc: verify.AgentDoc{AgentID: "comune-b-host-aaaaaa", EntityID: "comune-b"}}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		msgs, err := s.batchMessages(a, body)
		if err != nil || len(msgs) != 20 {
			b.Fatal(len(msgs), err)
		}
	}
	b.ReportMetric(float64(lines)*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}
