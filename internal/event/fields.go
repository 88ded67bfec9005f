package event

import "sort"

// Type is the storage and query type of a schema field. Stores derive their
// mappings from it (Elasticsearch mapping type, SQLite comparison rules) and
// the query language uses it to decide what a term means (a CIDR on an IP
// field, a range on a number or a date).
type Type string

// Field types. They follow Elasticsearch's mapping types so that a mapping
// can be generated from the registry without translation tables.
const (
	Keyword Type = "keyword" // exact string, case-insensitive in queries
	Text    Type = "text"    // free text: matched by words and phrases
	IP      Type = "ip"      // IPv4 or IPv6 address
	Long    Type = "long"    // signed 64-bit integer
	Double  Type = "double"  // 64-bit float
	Date    Type = "date"    // RFC 3339 time with nanoseconds
	Bool    Type = "boolean" // true or false
)

// FieldDef describes one field of the schema.
type FieldDef struct {
	Name        string // dotted ECS name, e.g. "source.ip"
	Type        Type
	Array       bool // the field holds a list of values of Type
	Description string
}

// registry lists every field the platform writes into events. It is the one
// place a new field is declared: docs/schema.md and the Elasticsearch mapping
// are checked against it by tests. Keep it sorted by name.
var registry = []FieldDef{
	{"@timestamp", Date, false, "Event time: when it happened at the source (RFC 3339, nanoseconds)."},
	{"agent.id", Keyword, false, "Id of the csirt-agent that shipped the record; `syslog:<device>` for devices sending to the syslog intake."},
	{"agent.type", Keyword, false, "Kind of shipper: `csirt-agent`, or `syslog` for devices sending to the syslog intake."},
	{"agent.version", Keyword, false, "Version of the shipping agent."},
	{"connection.history", Keyword, false, "TCP state history of a flow, in Zeek's conn.log `history` letters (custom field)."},
	{"connection.orig_bytes", Long, false, "Payload bytes sent by the originator, from TCP sequence numbers (Zeek orig_bytes; custom field)."},
	{"connection.resp_bytes", Long, false, "Payload bytes sent by the responder (Zeek resp_bytes; custom field)."},
	{"connection.state", Keyword, false, "Connection state of a flow, Zeek's conn_state: S0, S1, SF, REJ, S2, S3, RSTO, RSTR, RSTOS0, RSTRH, SH, SHR, OTH (custom field)."},
	{"destination.address", Keyword, false, "Destination address as seen (IP or name)."},
	{"destination.bytes", Long, false, "Bytes sent by the responder."},
	{"destination.domain", Keyword, false, "Destination domain name."},
	{"destination.ip", IP, false, "Destination IP address."},
	{"destination.packets", Long, false, "Packets sent by the responder."},
	{"destination.port", Long, false, "Destination port."},
	{"dns.answers.data", Keyword, true, "Answer data (addresses, names) of a DNS response."},
	{"dns.answers.name", Keyword, true, "Owner names of the answers of a DNS response."},
	{"dns.answers.ttl", Long, true, "TTLs of the answers of a DNS response."},
	{"dns.answers.type", Keyword, true, "Types of the answers of a DNS response (A, CNAME, ...)."},
	{"dns.id", Keyword, false, "DNS transaction id."},
	{"dns.op_code", Keyword, false, "DNS operation code (QUERY, NOTIFY, UPDATE, ...)."},
	{"dns.question.name", Keyword, false, "Queried name."},
	{"dns.question.type", Keyword, false, "Query type (A, AAAA, TXT, ...)."},
	{"dns.response_code", Keyword, false, "Response code (NOERROR, NXDOMAIN, ...)."},
	{"dns.type", Keyword, false, "query or answer."},
	{"ecs.version", Keyword, false, "ECS version the event follows."},
	{"email.from.address", Keyword, true, "Sender addresses of an email."},
	{"entity.criticality", Keyword, false, "Criticality of the affected asset, from the entity's asset registry."},
	{"error.code", Keyword, false, "Error code given by the source (e.g. Apache AH01618)."},
	{"error.message", Text, false, "Error message; for `<source>.unparsed` events, why no parser understood the record."},
	{"event.action", Keyword, false, "Action captured by the event (e.g. ssh_login, user_add)."},
	{"event.category", Keyword, true, "ECS category list (authentication, network, process, web, ...)."},
	{"event.code", Keyword, false, "Source-specific identifier of the event type."},
	{"event.dataset", Keyword, false, "Dataset: sshd, nginx.access, flow, dns, tls, http, <source>.unparsed, ..."},
	{"event.duration", Long, false, "Duration in nanoseconds."},
	{"event.end", Date, false, "When the event ended (last packet of a flow)."},
	{"event.id", Keyword, false, "Deterministic id: hash of agent id, stream and sequence, or of the raw record."},
	{"event.ingested", Date, false, "When the collector received the record."},
	{"event.kind", Keyword, false, "ECS kind: event, alert, metric, state, pipeline_error."},
	{"event.module", Keyword, false, "Module that produced the event (system, nginx, network, ...)."},
	{"event.original", Text, false, "The raw record, unless the entity's policy drops it."},
	{"event.outcome", Keyword, false, "success, failure or unknown."},
	{"event.provider", Keyword, false, "Source of the event (program name, journal unit)."},
	{"event.reason", Keyword, false, "Why the event happened, as the source says (disconnect reason, sudo refusal, ...)."},
	{"event.sequence", Long, false, "Sequence number of the record within its agent stream."},
	{"event.severity", Long, false, "Numeric severity given by the source."},
	{"event.start", Date, false, "When the event started (first packet of a flow)."},
	{"event.type", Keyword, true, "ECS type list (start, end, info, denied, creation, ...)."},
	{"file.hash.md5", Keyword, false, "MD5 of a file."},
	{"file.hash.sha1", Keyword, false, "SHA-1 of a file."},
	{"file.hash.sha256", Keyword, false, "SHA-256 of a file."},
	{"file.path", Keyword, false, "Full path of a file involved in the event."},
	{"group.id", Keyword, false, "Group id (GID) of the group the event is about."},
	{"group.name", Keyword, false, "Name of the group the event is about (groupadd, sudo -g, ...)."},
	{"host.hostname", Keyword, false, "Hostname as reported by the host."},
	{"host.ip", IP, true, "Addresses of the host."},
	{"host.name", Keyword, false, "Name of the host the event comes from."},
	{"http.request.method", Keyword, false, "HTTP method."},
	{"http.request.referrer", Keyword, false, "Referer header."},
	{"http.response.body.bytes", Long, false, "Response body size."},
	{"http.response.status_code", Long, false, "HTTP status code."},
	{"http.version", Keyword, false, "HTTP version."},
	{"icmp.code", Long, false, "ICMP code (custom field)."},
	{"icmp.type", Long, false, "ICMP type (custom field)."},
	{"labels.asset_criticality", Keyword, false, "Asset criticality of the host (enrichment; e.g. high, medium, low)."},
	{"labels.asset_owner", Keyword, false, "Owner of the asset (enrichment)."},
	{"labels.entity_kind", Keyword, false, "Kind of the entity: comune, provincia, asl, regione, unione (enrichment)."},
	{"labels.entity_nis2", Keyword, false, "\"true\" when the entity is in NIS2 scope (enrichment)."},
	{"labels.host_alias", Keyword, false, "Host name as the record gave it, when enrichment replaced it with the canonical name."},
	{"log.file.path", Keyword, false, "Path of the log file the record was read from."},
	{"log.level", Keyword, false, "Log level of the record."},
	{"log.logger", Keyword, false, "Module or logger inside the application that wrote the record (Apache module)."},
	{"log.offset", Long, false, "Byte offset of the record in its file."},
	{"log.syslog.appname", Keyword, false, "APP-NAME of RFC 5424, or the program of the RFC 3164 tag."},
	{"log.syslog.facility.code", Long, false, "Syslog facility."},
	{"log.syslog.hostname", Keyword, false, "Hostname in the syslog header."},
	{"log.syslog.msgid", Keyword, false, "MSGID of RFC 5424."},
	{"log.syslog.priority", Long, false, "Syslog priority."},
	{"log.syslog.procid", Keyword, false, "PROCID of RFC 5424, or the pid of the RFC 3164 tag."},
	{"log.syslog.severity.code", Long, false, "Syslog severity."},
	{"log.syslog.version", Keyword, false, "Syslog protocol version (1 for RFC 5424)."},
	{"message", Text, false, "Human-readable message of the record."},
	{"network.bytes", Long, false, "Total bytes in both directions."},
	{"network.community_id", Keyword, false, "Community ID v1 flow hash."},
	{"network.direction", Keyword, false, "inbound, outbound, internal, external."},
	{"network.packets", Long, false, "Total packets in both directions."},
	{"network.protocol", Keyword, false, "Application protocol (dns, tls, http, ssh, ...)."},
	{"network.transport", Keyword, false, "Transport protocol (tcp, udp, icmp, ...)."},
	{"network.type", Keyword, false, "ipv4 or ipv6."},
	{"observer.egress.interface.name", Keyword, false, "Interface a packet left the observer by (netfilter OUT=)."},
	{"observer.hostname", Keyword, false, "Host name the observing device reported (syslog HOSTNAME)."},
	{"observer.ingress.interface.name", Keyword, false, "Interface a packet entered the observer by (netfilter IN=, Suricata in_iface)."},
	{"observer.ip", IP, true, "Address the observing device sent from."},
	{"observer.name", Keyword, false, "Device that observed the event (firewall, sensor)."},
	{"organization.id", Keyword, false, "The entity (tenant) the event belongs to."},
	{"organization.name", Keyword, false, "Name of the entity."},
	{"process.args", Keyword, true, "Process arguments."},
	{"process.command_line", Keyword, false, "Full command line."},
	{"process.executable", Keyword, false, "Absolute path of the executable."},
	{"process.name", Keyword, false, "Process name."},
	{"process.parent.command_line", Keyword, false, "Parent command line."},
	{"process.parent.executable", Keyword, false, "Parent executable."},
	{"process.parent.name", Keyword, false, "Parent process name."},
	{"process.parent.pid", Long, false, "Parent process id."},
	{"process.pid", Long, false, "Process id."},
	{"process.thread.id", Long, false, "Thread id."},
	{"process.working_directory", Keyword, false, "Working directory of the process (sudo PWD=, auditd CWD)."},
	{"related.hosts", Keyword, true, "Every host name in the event."},
	{"related.ip", IP, true, "Every IP address in the event."},
	{"related.user", Keyword, true, "Every user name in the event."},
	{"rule.category", Keyword, false, "Category of the rule or signature (Suricata alert category)."},
	{"rule.id", Keyword, false, "Id of the rule that produced a finding."},
	{"rule.name", Keyword, false, "Title of the rule that produced a finding."},
	{"source.address", Keyword, false, "Source address as seen (IP or name)."},
	{"source.bytes", Long, false, "Bytes sent by the originator."},
	{"source.domain", Keyword, false, "Source domain name."},
	{"source.ip", IP, false, "Source IP address."},
	{"source.packets", Long, false, "Packets sent by the originator."},
	{"source.port", Long, false, "Source port."},
	{"tags", Keyword, true, "Free tags (threat-intel hits, parser notes)."},
	{"tls.client.alpn", Keyword, true, "ALPN protocols offered in the ClientHello."},
	{"tls.client.ja3", Keyword, false, "JA3 hash of the ClientHello."},
	{"tls.client.ja4", Keyword, false, "JA4 fingerprint of the ClientHello."},
	{"tls.client.server_name", Keyword, false, "SNI of the ClientHello."},
	{"tls.version", Keyword, false, "TLS version."},
	{"tls.version_protocol", Keyword, false, "Normalised TLS protocol name, e.g. `tls`."},
	{"url.domain", Keyword, false, "Domain of the URL."},
	{"url.full", Keyword, false, "Full URL, scheme to fragment."},
	{"url.original", Keyword, false, "URL as seen."},
	{"url.path", Keyword, false, "Path of the URL."},
	{"url.port", Long, false, "Port of the URL (virtual host port of an access log)."},
	{"url.query", Keyword, false, "Query string of the URL."},
	{"user.audit.id", Keyword, false, "Audit (login) user id, auditd auid."},
	{"user.audit.name", Keyword, false, "Audit (login) user name."},
	{"user.changes.name", Keyword, false, "Previous user name of a renamed account (usermod -l)."},
	{"user.effective.id", Keyword, false, "Effective user id (euid; the account sudo or su ran as)."},
	{"user.effective.name", Keyword, false, "Effective user name: the account sudo or su ran as."},
	{"user.id", Keyword, false, "User id (UID) of user.name."},
	{"user.name", Keyword, false, "User the event is about (the one logging in, running sudo, ...)."},
	{"user.target.name", Keyword, false, "Target user (sudo -u, useradd, su)."},
	{"user_agent.original", Keyword, false, "User-Agent header."},
}

var byName = func() map[string]FieldDef {
	m := make(map[string]FieldDef, len(registry))
	for _, f := range registry {
		m[f.Name] = f
	}
	return m
}()

// Lookup returns the definition of a schema field.
func Lookup(name string) (FieldDef, bool) {
	f, ok := byName[name]
	return f, ok
}

// Fields returns every field of the schema, sorted by name. The slice is a
// copy: callers may keep or modify it.
func Fields() []FieldDef {
	out := append([]FieldDef(nil), registry...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
