package pipeline

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/collector/internal/enrich"
	"github.com/csirt-toscana/platform/collector/internal/verify"
	"github.com/csirt-toscana/platform/internal/envelope"
	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/sqlite"
)

// benchBatch is one Ed25519-signed batch of n mixed sshd/sudo lines and
// a verifier that knows its agent.
func benchBatch(b *testing.B, n int) ([]byte, verify.Agent) {
	b.Helper()
	pub, priv := benchKey(b)
	s, err := envelope.NewEd25519Signer("k", priv)
	if err != nil {
		b.Fatal(err)
	}
	a := &simAgent{id: "agent-1", entity: "comune-a", host: "srv", signer: s, next: map[string]uint64{}}
	data := a.batch(b, "/var/log/auth.log", 1, n, nil)
	v, err := envelope.NewEd25519Verifier(pub)
	if err != nil {
		b.Fatal(err)
	}
	return data, verify.Agent{ID: "agent-1", EntityID: "comune-a", Hostname: "srv", Algorithm: envelope.Ed25519, Key: v}
}

// BenchmarkVerifyParse measures the collector's CPU path for one batch:
// decode, signature check, sequence check, parse every record, stamp and
// encode every event (no Kafka, no store). Run with -cpu 1 for one core.
func BenchmarkVerifyParse(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(map[int]string{100: "batch=100", 1000: "batch=1000"}[n], func(b *testing.B) {
			data, ag := benchBatch(b, n)
			agents := verify.NewMemoryAgents(ag)
			d := newParser()
			ctx := context.Background()
			ingested := time.Unix(1763805600, 0)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				v, err := verify.New(verify.Options{Agents: agents}) // fresh marks: the batch is new each time
				if err != nil {
					b.Fatal(err)
				}
				res, err := v.Verify(ctx, data, &verify.Position{})
				if err != nil {
					b.Fatal(err)
				}
				evs, err := parseBatch(d, nil, res, ingested)
				if err != nil || len(evs) != n {
					b.Fatalf("%d events, %v", len(evs), err)
				}
			}
			b.ReportMetric(float64(b.N)*float64(n)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkVerifyOnly is the verification share of BenchmarkVerifyParse.
func BenchmarkVerifyOnly(b *testing.B) {
	const n = 1000
	data, ag := benchBatch(b, n)
	agents := verify.NewMemoryAgents(ag)
	ctx := context.Background()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		v, err := verify.New(verify.Options{Agents: agents})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := v.Verify(ctx, data, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)*n/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkVerifyParseEnrich is BenchmarkVerifyParse (batch=1000) with the
// collector's enrichment chain (entity and asset from a warm cache).
func BenchmarkVerifyParseEnrich(b *testing.B) {
	const n = 1000
	data, ag := benchBatch(b, n)
	agents := verify.NewMemoryAgents(ag)
	st, err := sqlite.Open(context.Background(), sqlite.Options{Path: filepath.Join(b.TempDir(), "s.db")})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	ctx := context.Background()
	if _, err := st.Put(ctx, store.TenantScope("comune-a"), store.Entities, store.Doc{ID: "comune-a", Tenant: "comune-a",
		Source: []byte(`{"name":"Comune A","kind":"comune","nis2":true}`)}, store.WriteOptions{}); err != nil {
		b.Fatal(err)
	}
	if err := enrich.PutAsset(ctx, st, "comune-a", enrich.AssetDoc{Name: "srv-main", Aliases: []string{"srv"}, Criticality: "high"}); err != nil {
		b.Fatal(err)
	}
	chain := enrich.Default(&enrich.Directory{Store: st})
	enr := func(ev event.Event) { _ = chain.Enrich(ctx, ev) }
	d := newParser()
	ingested := time.Unix(1763805600, 0)
	b.ReportAllocs()
	for b.Loop() {
		v, err := verify.New(verify.Options{Agents: agents})
		if err != nil {
			b.Fatal(err)
		}
		res, err := v.Verify(ctx, data, &verify.Position{})
		if err != nil {
			b.Fatal(err)
		}
		evs, err := parseBatch(d, enr, res, ingested)
		if err != nil || len(evs) != n {
			b.Fatalf("%d events, %v", len(evs), err)
		}
	}
	b.ReportMetric(float64(b.N)*n/b.Elapsed().Seconds(), "records/s")
}
