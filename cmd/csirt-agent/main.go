// Command csirt-agent is the CSIRT Toscana agent for entity servers: it
// enrols once, then follows log files and the journal, keeps what it read
// in a disk spool while the centre is unreachable, and ships signed
// batches to Kafka (or the HTTPS intake). See docs/agent.md.
package main

import (
	"os"

	"github.com/csirt-toscana/platform/agents/agentmain"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() { os.Exit(agentmain.Main(version, os.Args[1:], os.Stdout, os.Stderr)) }
