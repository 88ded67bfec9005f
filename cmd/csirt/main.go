// Command csirt is the central node of the CSIRT Toscana platform: the
// collector, correlator and console roles, and the admin and rules tools.
package main

import (
	"os"

	"github.com/csirt-toscana/platform/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
