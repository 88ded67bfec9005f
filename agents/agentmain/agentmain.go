// Package agentmain exposes the csirt-agent command line to cmd/csirt-agent.
// Go lets only packages under agents/ import agents/internal/..., so the
// binary's main package forwards here; everything else stays internal.
package agentmain

import (
	"io"

	"github.com/csirt-toscana/platform/agents/internal/agent/cli"
)

// Main runs the agent's command line and returns the exit code.
func Main(version string, args []string, stdout, stderr io.Writer) int {
	return cli.Main(version, args, stdout, stderr)
}
