// Package library embeds the project's own Sigma rule library (detection
// and correlation rules written for the municipal threat model) and its
// test cases, so that the correlator, the console and `csirt rules test`
// use exactly the files of this directory. See README.md.
package library

import "embed"

// FS holds the rule files (linux/, web/, network/) and their test cases
// (tests/*.test.yml, run by rules/ruletest).
//
//go:embed linux web network tests
var FS embed.FS

// RuleDirs are the directories of FS that hold rules.
var RuleDirs = []string{"linux", "web", "network"}
