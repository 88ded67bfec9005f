// Package heuristics detects network behaviours in the agent's summary
// events (datasets flow, dns, tls, http): port scans, beaconing, DNS
// tunnelling and unusual outbound volume. Each detector is a stateful
// streaming Detector fed events in event-time order per entity; it keeps
// bounded per-key state (least recently seen keys are evicted and counted),
// can be snapshotted and restored so a restart loses no window, and returns
// deduplicated Alerts with deterministic ids.
//
// The package is a pure library (no I/O): the correlator's stream,
// `csirt rules backtest` and `csirt rules hunt` run the same detection.
// Thresholds and windows are rule parameters: one Params struct per
// detector with defaults, loaded from YAML (LoadConfig, strict) with
// per-entity partial overrides layered over the regional values.
package heuristics
