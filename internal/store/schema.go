package store

import (
	"fmt"
	"sort"

	"github.com/csirt-toscana/platform/internal/event"
)

// Schema declares what a collection's documents look like to the backends:
// the time field (for ranges, retention and histograms) and the type of
// every searchable field. Elasticsearch mappings are generated from it and
// never dynamic for these fields; the SQLite query compiler uses the same
// types, so a query means the same on both. A field not declared here is
// stored but cannot be searched (the query is refused with ErrInvalid).
type Schema struct {
	TimeField  string // "" for collections without a time axis
	TimeSeries bool   // append-only (ES data stream): Put never replaces
	Fields     map[string]event.FieldDef
}

// Field returns a field's definition.
func (s Schema) Field(name string) (event.FieldDef, bool) {
	f, ok := s.Fields[name]
	return f, ok
}

func defs(list ...event.FieldDef) map[string]event.FieldDef {
	m := make(map[string]event.FieldDef, len(list)+1)
	for _, f := range list {
		m[f.Name] = f
	}
	m[TenantField] = event.FieldDef{Name: TenantField, Type: event.Keyword, Description: "tenant"}
	return m
}

func kw(name string) event.FieldDef { return event.FieldDef{Name: name, Type: event.Keyword} }
func kws(name string) event.FieldDef {
	return event.FieldDef{Name: name, Type: event.Keyword, Array: true}
}
func txt(name string) event.FieldDef  { return event.FieldDef{Name: name, Type: event.Text} }
func long(name string) event.FieldDef { return event.FieldDef{Name: name, Type: event.Long} }
func date(name string) event.FieldDef { return event.FieldDef{Name: name, Type: event.Date} }
func ip(name string) event.FieldDef   { return event.FieldDef{Name: name, Type: event.IP} }
func boolean(name string) event.FieldDef {
	return event.FieldDef{Name: name, Type: event.Bool}
}

var schemas = map[Collection]Schema{
	Events: {TimeField: "@timestamp", TimeSeries: true, Fields: func() map[string]event.FieldDef {
		return defs(event.Fields()...)
	}()},
	Findings: {TimeField: "@timestamp", TimeSeries: true, Fields: defs(
		date("@timestamp"), kw("finding.id"), kw("rule.id"), kw("rule.name"), kw("rule.group"),
		kw("severity"), long("risk_score"), kw("host.name"), ip("source.ip"), kw("user.name"),
		kws("threat.technique.id"), kws("event.ids"), kw("incident.id"), txt("message"),
		kws("tags"), kws("observables.value"), kw("kind"), kw("agent.id"), kws("observables.type"),
	)},
	Incidents: {TimeField: "created", Fields: defs(
		date("created"), date("updated"), kw("title"), kw("status"), kw("resolution"),
		kw("severity"), kw("assignee"), kw("tlp"), kw("pap"), kw("category"), kws("attack.technique"),
		kws("observables.value"), kws("hosts"), kw("campaign.id"), long("findings.count"), txt("description"),
		// kind: "incident" or "campaign" (a regional campaign linking entity incidents).
		kw("kind"), kws("entities"),
	)},
	Entities: {Fields: defs(kw("name"), kw("kind"), kw("province"), boolean("nis2"), kws("networks"))},
	Contacts: {Fields: defs(kw("name"), kw("email"), kw("role"), kw("language"))},
	Agents: {TimeField: "last_seen", Fields: defs(
		date("last_seen"), date("enrolled"), kw("hostname"), kw("status"), kw("version"), ip("address"),
		// kind: "agent" (enrolled csirt-agent) or "device" (syslog source);
		// networks: a device's source CIDRs.
		kw("kind"), kws("networks"), kw("agent.id"),
	)},
	Users: {Fields: defs(kw("username"), kw("role"), kw("email"), boolean("disabled"))},
	Notifications: {TimeField: "created", Fields: defs(
		date("created"), date("next_attempt"), kw("status"), kw("channel"), kw("incident.id"), long("attempts"),
	)},
	Audit: {TimeField: "@timestamp", Fields: defs(
		date("@timestamp"), kw("actor"), kw("action"), kw("object.collection"), kw("object.id"),
	)},
	RulesState: {TimeField: "updated", Fields: defs(date("updated"), kw("rule.id"), kw("partition"),
		// kind tells the state documents apart (enrol-token, seq, correlation, ...).
		kw("kind"), date("expires"))},
	Intel: {TimeField: "last_seen", Fields: defs(
		date("first_seen"), date("last_seen"), date("expires"), kw("type"), kw("value"), ip("ip"),
		kw("source"), long("confidence"), kw("tlp"), kws("tags"),
	)},
}

// SchemaOf returns the schema of a collection, or ErrInvalid for a name
// outside the closed set.
func SchemaOf(c Collection) (Schema, error) {
	s, ok := schemas[c]
	if !ok {
		return Schema{}, fmt.Errorf("%w: unknown collection %q", ErrInvalid, c)
	}
	return s, nil
}

// DefaultFields returns the Text fields searched by a query term that names
// no field, sorted by name.
func (s Schema) DefaultFields() []string {
	var out []string
	for name, f := range s.Fields {
		if f.Type == event.Text {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}
