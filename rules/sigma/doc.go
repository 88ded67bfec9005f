// Package sigma parses Sigma detection rules and meta-filters (the Sigma
// specification, ../shared/data/sigma-spec) from YAML into typed values that
// keep the source position of every element, so that errors and unsupported
// features can be reported as file:line:col.
//
// The package does no I/O beyond reading an fs.FS handed to it. Correlation
// documents are recognised and kept raw (as *yaml.Node with their position)
// in a Collection for the correlation package to parse; this package does not
// import it, so the correlation package may import this one.
//
// Semantics follow pySigma where the specification is silent: a backslash
// escapes only `*`, `?` and itself; values are case-insensitive unless the
// `cased` modifier is present; regular expressions are case-sensitive unless
// the `i` flag is present.
package sigma
