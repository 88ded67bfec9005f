// Package netns gives tests real network traffic on a real interface: a
// throwaway network namespace joined to the root namespace by a veth pair
// (Linux, root), and the traffic generators the network-heuristics
// acceptance tests share (a beacon client, DNS tunnelling queries) with the
// small servers they talk to (a DNS responder, an HTTP server). It is test
// support only: no production code imports it.
package netns
