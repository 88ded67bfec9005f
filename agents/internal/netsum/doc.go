// Package netsum turns captured packets into network summaries: one flow
// record per connection (5-tuple, bytes, packets, TCP history and a
// Zeek-compatible connection state, Community ID) and one record per DNS
// transaction, TLS ClientHello and HTTP request, as events of the
// platform's schema. It never keeps or emits payload: application bytes are
// held only in small bounded per-flow buffers long enough for the l7
// decoders to read the named header fields.
//
// The package owns decoding (gopacket's DecodingLayerParser, no allocation
// per packet), the flow table (bounded, with idle and active timeouts and
// eviction of the oldest idle flow), the privacy rules of the capture
// policy (excluded networks and ports, keyed hashing of internal
// addresses), the offline pcap/pcapng reader behind `csirt-agent pcap`, and
// the live "capture" source of the agent's source registry.
package netsum
