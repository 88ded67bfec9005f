package correlator

import (
	"time"

	"github.com/csirt-toscana/platform/internal/finding"
)

// SetOnStored makes c call fn with every batch of stream findings once they
// are stored (for the load run, which measures the detection delay).
func SetOnStored(c *Correlator, fn func(fs []*finding.Finding, at time.Time)) { c.onStored = fn }
