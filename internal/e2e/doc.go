// Package e2e holds the end-to-end acceptance tests of the platform: the
// real csirt-agent and csirt binaries, run as separate processes against a
// real Kafka and Elasticsearch, from a log line on a municipal server to an
// incident in the store. It has no code besides its tests.
package e2e
