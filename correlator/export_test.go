package correlator

import (
	"encoding/json"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/csirt-toscana/platform/internal/finding"
)

// SetOnStored makes c call fn with every batch of stream findings once they
// are stored (for the load run, which measures the detection delay).
func SetOnStored(c *Correlator, fn func(fs []*finding.Finding, at time.Time)) { c.onStored = fn }

// EncodeSnapshotDoc is the document a checkpoint stores for st.
func EncodeSnapshotDoc(st *Snapshot) ([]byte, error) {
	blob, err := encodeSnapshot(st)
	if err != nil {
		return nil, err
	}
	return json.Marshal(snapshotDoc{Kind: SnapshotKind, Encoding: SnapshotEncoding, Blob: blob})
}

// Handled is how many events c has taken from the topic (evaluated,
// skipped as already in a restored state, or sent to the DLQ).
func Handled(c *Correlator) int64 {
	var n float64
	for _, ctr := range []prometheus.Counter{c.m.events, c.m.skipped, c.m.poison} {
		var m dto.Metric
		if err := ctr.Write(&m); err == nil {
			n += m.GetCounter().GetValue()
		}
	}
	return int64(n)
}
