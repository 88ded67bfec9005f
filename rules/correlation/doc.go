// Package correlation implements Sigma correlation rules (Sigma
// specification 2.1.0: event_count, value_count, temporal,
// temporal_ordered, value_sum, value_avg, value_percentile): parsing them
// from YAML with source positions (Parse, ParseBytes, *ParseError), and an
// Engine that evaluates them over the matches of the detection rules, on
// event time, with bounded state that can be snapshotted and restored.
//
// The package is a pure library: no I/O beyond the io.Reader/io.Writer given
// to Snapshot and Restore.
//
// # Semantics
//
// Windows use the event time (@timestamp of the matched event). The
// injected clock is used only to expire idle keys (Expire).
//
// Sliding windows, fire once per set of events. For event_count,
// value_count and value_sum with lower-bound conditions (gt, gte), and for
// temporal and temporal_ordered, a group key's window is the timespan
// ending at its newest event; the correlation fires as soon as the
// condition holds, and the events that made it fire are consumed (the key
// is reset). A new alert needs a new set of events satisfying the
// condition: 25 failed logins with "gte: 10" give two alerts, not sixteen.
// Windows are not tied to fixed boundaries (as the specification asks of
// backends that can), and consuming the events on firing is what stream
// engines such as CrowdSec's leaky buckets do (overflow empties the bucket).
//
// Window-close evaluation. A condition with an upper bound (lt, lte, eq,
// neq, or a range), and every value_avg and value_percentile, can only be
// decided when the window is over: such correlations use a window that
// starts at the key's first event and is evaluated when a later event of
// the key falls past its end, or on Expire or Flush (end of input).
//
// temporal: every referenced rule (or, with a condition, that many
// distinct rules) matched within the timespan for the key, in any order.
// temporal_ordered: the referenced rules matched in the order listed
// (event times non-decreasing), the whole sequence within the timespan;
// with a condition, the ordered prefix length is compared.
//
// value_percentile: at window close, the share (in percent) of each
// distinct value of the field among the key's events; the rare values
// whose share satisfies the condition are reported (Alert.Values).
//
// Group-by. Keys are typed composite keys (Key: up to MaxGroupBy strings;
// the store uses an array as long as the group-by). A match without one of
// the group-by fields is ignored and counted (RuleStats.MissingGroupBy),
// as query backends drop null group-by values. Aliases map, per referenced
// rule, the event field holding an alias's value. Options.Field maps names
// written in rules (Sigma taxonomy) to event fields (ECS).
//
// Chains. Each alert is fed back as a Match of its correlation
// (Alert.Match: the triggering event with the group-by values, @timestamp
// the end of the window, event.id the alert id), so correlations can
// reference correlations. New refuses unknown references (naming the
// reference and its position) and cycles.
//
// generate. By default (generate: false) the rules a correlation references
// do not produce findings of their own; with generate: true they do.
// Engine.Emit answers this for a rule; Alert.Emit for an alert (false for
// an intermediate correlation). Alerts are always returned: the caller
// decides what becomes a finding.
//
// Bounds. Options.MaxKeysPerRule (the least recently seen key of a random
// sample of 8 is evicted), Options.MaxEventsPerKey (oldest event or value
// dropped) and Options.MaxEventIDs (ids carried by an alert); every drop is
// counted in Stats.
//
// Restarts. Snapshot writes every window, what already fired per key, and
// the counters (versioned JSON Lines, sorted: the same state gives the same
// bytes); Restore brings them back, dropping the state of rules whose
// semantics changed. Matches older than the last alert of their key are
// ignored, so replaying already-processed events after a restore does not
// fire again, and alert ids are deterministic (rule, key, window), so a
// replay that does fire again overwrites rather than duplicates downstream.
package correlation
