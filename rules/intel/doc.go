// Package intel is the platform's threat-intelligence library: the
// indicator model, parsers for the feed formats the CSIRT consumes (MISP
// events and feeds, abuse.ch Feodo Tracker, URLhaus and ThreatFox exports,
// STIX 2.1 bundles and TAXII 2.1 envelopes, local CSV lists) and an
// immutable matcher that finds indicators in events.
//
// It is pure: parsers read only the io.Reader (or loader) they are given,
// nothing here opens a file or a connection. The correlator fetches feeds,
// keeps indicators in the store's intel collection (Indicator.Doc,
// FromDoc), builds a Matcher on every refresh and swaps it in a Holder;
// `csirt rules hunt --intel FILE` uses ParseAny and the same Matcher.
//
// See docs/intel.md for formats, field mapping, normalisation, matching
// semantics and limits.
package intel
