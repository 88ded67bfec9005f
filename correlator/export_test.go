package correlator

import (
	"encoding/json"
	"time"

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
