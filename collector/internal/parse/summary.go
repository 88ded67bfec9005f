package parse

import (
	"errors"
	"fmt"

	"github.com/csirt-toscana/platform/internal/event"
)

// SummaryDatasets are the datasets of the agent's packet summaries.
var SummaryDatasets = map[string]bool{"flow": true, "dns": true, "tls": true, "http": true}

// Summary turns a packet summary record (envelope.KindSummary: one JSON
// event of our schema written by the agent, see docs/network-summaries.md)
// into an event. The agent's fields are kept; the caller stamps the fields
// the collector owns (event.id, event.ingested, organization.id,
// agent.id). A record that is not a JSON object of a summary dataset
// becomes a "summary.unparsed" event with the raw text: nothing is lost.
func (d *Dispatcher) Summary(rec Record) event.Event {
	ev, err := event.Decode(rec.Raw)
	if err == nil {
		ds := ev.String("event.dataset")
		switch {
		case !SummaryDatasets[ds]:
			err = fmt.Errorf("event.dataset %q is not a packet summary dataset (flow, dns, tls, http)", ds)
		case ev.String("@timestamp") == "" && ev["@timestamp"] == nil:
			err = errors.New("the summary has no @timestamp")
		}
	}
	if err != nil {
		rec.Source = "summary"
		return d.unparsed(newInput(rec, d.opts), "summary", err)
	}
	if ev["event.kind"] == nil {
		ev["event.kind"] = "event"
	}
	if ev["event.category"] == nil {
		ev["event.category"] = []string{"network"}
	}
	if ev["event.type"] == nil {
		ev["event.type"] = []string{"info"}
	}
	if ev["event.module"] == nil {
		ev["event.module"] = "network"
	}
	return ev
}
