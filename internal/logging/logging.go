// Package logging builds the logrus logger every binary uses: text for a
// terminal, JSON in production, a level from configuration. Secrets are kept
// out by type (config.Secret prints as "[redacted]"), so structured fields
// can carry configuration safely.
package logging

import (
	"fmt"
	"io"

	"github.com/sirupsen/logrus"
)

// New returns a logger writing to w in the given format ("text" or "json")
// at the given level.
func New(w io.Writer, format, level string) (*logrus.Logger, error) {
	lvl, err := logrus.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level: %w", err)
	}
	log := logrus.New()
	log.SetOutput(w)
	log.SetLevel(lvl)
	switch format {
	case "json":
		log.SetFormatter(&logrus.JSONFormatter{TimestampFormat: "2006-01-02T15:04:05.000Z07:00"})
	case "text", "":
		log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: "15:04:05.000"})
	default:
		return nil, fmt.Errorf("log format %q is not text or json", format)
	}
	return log, nil
}
