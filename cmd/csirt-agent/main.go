// Command csirt-agent is the lightweight agent installed on entities'
// servers. This build only reports its version: enrolment, log sources,
// the disk spool and shipping arrive with the agent issue.
package main

import (
	"fmt"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `csirt-agent: the CSIRT Toscana agent for entity servers.

Usage:
  csirt-agent version    print the version

This build has no enrolment or shipping yet (see the project's issue tracker).
`

func main() {
	if len(os.Args) == 2 && (os.Args[1] == "version" || os.Args[1] == "--version") {
		fmt.Println("csirt-agent", version)
		return
	}
	if len(os.Args) == 2 && (os.Args[1] == "help" || os.Args[1] == "--help" || os.Args[1] == "-h") {
		fmt.Print(usage)
		return
	}
	fmt.Fprint(os.Stderr, usage)
	os.Exit(2)
}
